"""Conformer CTC models: a convolutional subsampling front, ``torchaudio.models.Conformer`` blocks, a linear head.

The architecture (Gulati et al. 2020, blocks as ``torchaudio.models.Conformer`` builds them)::

    features (B, F, T)
      subsample1   Conv1d(F -> d, kernel k, stride 2, "same") + ReLU          (B, d, ceil(T / 2))
      subsample2   Conv1d(d -> d, kernel k, stride 2, "same") + ReLU          (B, d, T' = ceil(ceil(T / 2) / 2))
      N blocks     x = x + FFN1(x) / 2
                   x = x + MHSA(LayerNorm(x))       keys beyond each utterance masked
                   x = x + ConvModule(x)            pointwise, GLU, depthwise (kernel K), BatchNorm, SiLU, pointwise
                   x = LayerNorm(x + FFN2(x) / 2)
      ctc          Linear(d -> classes)                                        (B, C, T') logits

(``convolution_first`` swaps the attention and convolution modules.) torchaudio's
Conformer has no positional encoding: the order of frames reaches the attention only
through the subsampling and depthwise convolutions.

**Named layers**, each ``(B, channels, T_layer)`` and zero beyond each utterance's frames:
``subsample1``, ``subsample2``; per block ``i`` (1 to N): ``block{i}.ffn1`` and ``block{i}.ffn2`` (the
feed-forward modules' outputs, before the half-step scaling: what they add to the residual
stream), ``block{i}.attn`` (the attention module's output after its output projection),
``block{i}.conv`` (the convolution module's output), ``block{i}`` (the block's output: the
residual stream after the final LayerNorm); then ``ctc`` (the logits). Every block layer is a
:class:`~asr_introspect.models.taps.LayerTap` that :meth:`ConformerCTC.forward` calls on the
``(B, C, T)`` view of that tensor, so a forward hook that returns a tensor there (ablation,
patching) changes what flows on.

**Exact padding** (``takes_lengths = True``): the module is called as ``module(features,
lengths)``; the attention ignores keys beyond each utterance (key padding mask), the depthwise
convolution sees zeros there (its input is masked, as the utterance alone sees its zero
padding), and every named layer is zeroed beyond each utterance's frames. So a padded batch
gives, on each utterance's frames, what the utterance gives alone (eval mode). With
``use_group_norm`` the convolution module normalizes over time, padding included, so such a
model declares ``exact_batch = False``.

**Frame map**: the subsampling convolutions are local layers (stride 2 each); every block
layer from the first attention on is *global* (:meth:`FrameMap.is_global`): each frame depends
on every frame of the utterance. The map keeps the local geometry (a frame's own position:
kernel 1 for the feed-forward modules, attention and block outputs, the depthwise kernel for
the convolution module), which puts labels on each layer's time axis.

**LRP** is refused for these models (self-attention; see
:func:`asr_introspect.attribution.lrp.require_lrp_support`): use a gradient method.

Presets (:data:`CONFORMER_PRESETS`; parameter counts with 29 classes):

- ``conformer-tiny``: for tests, 64 mels, d 32, 2 heads, FFN 64, 2 blocks, depthwise kernel 7:
  43,069 parameters.
- ``conformer-cpu``: sized to train within a session on 2 CPU cores: 64 mels, d 96, 4 heads,
  FFN 384, 6 blocks, depthwise kernel 15, dropout 0.1: 1,346,813 parameters.
- ``conformer-small``: 80 mels, d 144, 4 heads, FFN 576, 8 blocks, depthwise kernel 15,
  dropout 0.1: 3,968,525 parameters (+ 2,304 BatchNorm running statistics). Output frames
  every 4 input frames (32 ms with the toolkit's 8 ms hop).

Build one with :func:`build_conformer`; wrap a ``torchaudio.models.Conformer`` of your own
(plus a ``nn.Linear`` head) with :func:`wrap_conformer`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchaudio.models import Conformer

from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.models.asr_model import ASRModel
from asr_introspect.models.frame_map import ConvSpec, FrameMap
from asr_introspect.models.taps import LayerTap
from asr_introspect.text import Alphabet

__all__ = [
    "CONFORMER_PRESETS",
    "ConformerConfig",
    "ConformerCTC",
    "build_conformer",
    "conformer_config",
    "conformer_model",
    "wrap_conformer",
]

#: the sublayer taps of a block, by the order of its modules (``convolution_first`` swaps attn and conv)
_SUBLAYERS = ("ffn1", "attn", "conv", "ffn2")


@dataclass(frozen=True)
class ConformerConfig:
    """A whole :class:`ConformerCTC`: input features, subsampling, Conformer blocks, classes."""

    n_features: int
    n_classes: int
    d_model: int
    n_heads: int
    ffn_dim: int
    n_layers: int
    conv_kernel: int
    subsample_kernel: int = 3
    dropout: float = 0.0
    use_group_norm: bool = False
    convolution_first: bool = False
    preset: str | None = None

    def __post_init__(self) -> None:
        sizes = ("n_features", "n_classes", "d_model", "n_heads", "ffn_dim", "n_layers", "conv_kernel")
        for name in (*sizes, "subsample_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ConformerConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        for name in ("conv_kernel", "subsample_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"ConformerConfig.{name} must be odd ('same' padding), got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ConformerConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def layer_names(self) -> list[str]:
        """``subsample1``, ``subsample2``, per block its sublayers in forward order and ``block{i}``, ``ctc``."""
        order = ("ffn1", "conv", "attn", "ffn2") if self.convolution_first else _SUBLAYERS
        names = ["subsample1", "subsample2"]
        for i in range(1, self.n_layers + 1):
            names += [f"block{i}.{part}" for part in order] + [f"block{i}"]
        return names + ["ctc"]

    def frame_map(self) -> FrameMap:
        """Two local stride-2 convolutions, then block layers that mix the whole utterance."""
        k, half = self.subsample_kernel, (self.subsample_kernel - 1) // 2
        conv_half = (self.conv_kernel - 1) // 2
        specs = []
        for name in self.layer_names:
            part = name.rpartition(".")[2]
            if name.startswith("subsample"):
                specs.append(ConvSpec(k, 2, 1, half, half))
            elif part == "attn":
                specs.append(ConvSpec.utterance())
            elif part == "conv":
                specs.append(ConvSpec(self.conv_kernel, 1, 1, conv_half, conv_half))
            else:
                specs.append(ConvSpec(1))
        return FrameMap(specs, self.layer_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConformerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown conformer settings {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)


#: preset name -> ConformerConfig fields (``n_classes`` comes from the alphabet)
CONFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "conformer-tiny": {
        "n_features": 64,
        "d_model": 32,
        "n_heads": 2,
        "ffn_dim": 64,
        "n_layers": 2,
        "conv_kernel": 7,
    },
    "conformer-cpu": {
        "n_features": 64,
        "d_model": 96,
        "n_heads": 4,
        "ffn_dim": 384,
        "n_layers": 6,
        "conv_kernel": 15,
        "dropout": 0.1,
    },
    "conformer-small": {
        "n_features": 80,
        "d_model": 144,
        "n_heads": 4,
        "ffn_dim": 576,
        "n_layers": 8,
        "conv_kernel": 15,
        "dropout": 0.1,
    },
}


def conformer_config(name: str, n_classes: int = 29, **overrides: Any) -> ConformerConfig:
    """The :class:`ConformerConfig` of preset ``name`` with ``overrides`` (e.g. ``n_features``, ``dropout``)."""
    if name not in CONFORMER_PRESETS:
        raise InputError(f"unknown conformer preset {name!r}; choose one of {', '.join(sorted(CONFORMER_PRESETS))}")
    return ConformerConfig(**{**CONFORMER_PRESETS[name], "n_classes": int(n_classes), **overrides, "preset": name})


def _valid_frames(lengths: torch.Tensor | None, n_frames: int) -> torch.Tensor | None:
    """(B, n_frames) bool, True on each utterance's frames (None: every frame is valid)."""
    if lengths is None:
        return None
    return torch.arange(n_frames, device=lengths.device)[None, :] < lengths[:, None]


def _masked(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """x (B, C, T) with the frames outside ``valid`` (B, T) set to 0."""
    return x if valid is None else x * valid[:, None, :].to(x.dtype)


def _halved(lengths: torch.Tensor | None) -> torch.Tensor | None:
    """Frames after a stride-2 "same" convolution: ``ceil(n / 2)``."""
    return None if lengths is None else (lengths + 1) // 2


class Subsample(nn.Module):
    """Conv1d (stride 2, "same" padding) + ReLU, zero beyond each utterance: (B, C_in, T) -> (B, C_out, ceil(T/2))."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return _masked(self.act(self.conv(x)), valid)


class CTCHead(nn.Module):
    """Linear map per frame to class logits: residual stream (T, B, d) -> logits (B, C, T), zero beyond."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return _masked(self.linear(x).permute(1, 2, 0), valid)


def _check_subsample(conv: nn.Conv1d, in_channels: int, out_channels: int, which: str) -> None:
    k = conv.kernel_size[0] if isinstance(conv, nn.Conv1d) else 0
    ok = (
        isinstance(conv, nn.Conv1d)
        and conv.in_channels == in_channels
        and conv.out_channels == out_channels
        and conv.stride == (2,)
        and conv.dilation == (1,)
        and conv.groups == 1
        and k % 2 == 1
        and conv.padding == ((k - 1) // 2,)
        and conv.padding_mode == "zeros"
    )
    if not ok:
        raise ValueError(
            f"{which} must be a Conv1d({in_channels}, {out_channels}, odd kernel k, stride=2, "
            f"padding=(k - 1) // 2), got {conv}"
        )


class ConformerCTC(nn.Module):
    """features (B, F, T) [, lengths (B,)] -> logits (B, C, T') through the layers in the module docstring.

    ``conformer``, ``head`` and ``subsample`` (two Conv1d) default to fresh modules built from
    ``config``; pass your own (:func:`wrap_conformer`) to use trained ones. ``layer_modules()``
    maps every layer name to the module whose forward output is that layer's activation.
    """

    #: called as ``module(features, lengths)``: it masks its own padding
    takes_lengths = True

    def __init__(
        self,
        config: ConformerConfig,
        conformer: Conformer | None = None,
        head: nn.Linear | None = None,
        subsample: tuple[nn.Conv1d, nn.Conv1d] | None = None,
    ) -> None:
        super().__init__()
        self.config = c = config
        if subsample is None:
            pad = (c.subsample_kernel - 1) // 2
            subsample = (
                nn.Conv1d(c.n_features, c.d_model, c.subsample_kernel, stride=2, padding=pad),
                nn.Conv1d(c.d_model, c.d_model, c.subsample_kernel, stride=2, padding=pad),
            )
        _check_subsample(subsample[0], c.n_features, c.d_model, "the first subsampling convolution")
        _check_subsample(subsample[1], c.d_model, c.d_model, "the second subsampling convolution")
        if {conv.kernel_size[0] for conv in subsample} != {c.subsample_kernel}:
            raise ValueError(
                f"the subsampling convolutions must both have kernel {c.subsample_kernel} (config.subsample_kernel), "
                f"got {subsample[0].kernel_size[0]} and {subsample[1].kernel_size[0]}"
            )
        self.subsample1 = Subsample(subsample[0])
        self.subsample2 = Subsample(subsample[1])
        if conformer is None:
            conformer = Conformer(
                input_dim=c.d_model,
                num_heads=c.n_heads,
                ffn_dim=c.ffn_dim,
                num_layers=c.n_layers,
                depthwise_conv_kernel_size=c.conv_kernel,
                dropout=c.dropout,
                use_group_norm=c.use_group_norm,
                convolution_first=c.convolution_first,
            )
        self.conformer = conformer
        self.ctc = CTCHead(head if head is not None else nn.Linear(c.d_model, c.n_classes))
        self.taps = nn.ModuleList(
            nn.ModuleDict({part: LayerTap() for part in (*_SUBLAYERS, "out")}) for _ in range(c.n_layers)
        )
        #: False with GroupNorm in the convolution modules (it normalizes over time, padding included)
        self.exact_batch = not c.use_group_norm

    @property
    def layer_names(self) -> list[str]:
        return self.config.layer_names

    def layer_modules(self) -> dict[str, nn.Module]:
        """name -> module whose forward output is that layer's activation (B, C, T_layer)."""
        modules: dict[str, nn.Module] = {"subsample1": self.subsample1, "subsample2": self.subsample2}
        for name in self.layer_names:
            block, _, part = name.partition(".")
            if block.startswith("block"):
                modules[name] = self.taps[int(block[5:]) - 1][part or "out"]
        modules["ctc"] = self.ctc
        return modules

    def frame_map(self) -> FrameMap:
        return self.config.frame_map()

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, F, T) (zero beyond each length), lengths (B,) int64 or None -> logits (B, C, T')."""
        if features.dim() != 3 or features.shape[1] != self.config.n_features:
            raise ValueError(f"expected features (B, {self.config.n_features}, T), got {tuple(features.shape)}")
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long, device=features.device)
        x = self.subsample1(features, _valid_frames(_halved(lengths), (features.shape[-1] + 1) // 2))
        lengths = _halved(_halved(lengths))
        valid = _valid_frames(lengths, (x.shape[-1] + 1) // 2)
        x = self.subsample2(x, valid).permute(2, 0, 1)  # (T', B, d): torchaudio's layers are time-major
        padding_mask = None if valid is None else ~valid
        for layer, taps in zip(self.conformer.conformer_layers, self.taps):
            x = self._block(layer, taps, x, padding_mask, valid)
        return self.ctc(x, valid)

    @staticmethod
    def _block(layer: nn.Module, taps: nn.ModuleDict, x: torch.Tensor, padding_mask, valid) -> torch.Tensor:
        """One torchaudio ``ConformerLayer`` on x (T, B, d), each sublayer's output through its tap."""

        def tap(part: str, y: torch.Tensor) -> torch.Tensor:  # (T, B, d) -> tap on (B, d, T) -> (T, B, d)
            return taps[part](_masked(y.permute(1, 2, 0), valid)).permute(2, 0, 1)

        def convolution(x: torch.Tensor) -> torch.Tensor:
            module = layer.conv_module
            h = module.layer_norm(x).permute(1, 2, 0)  # (B, d, T)
            h = module.sequential[1](module.sequential[0](h))  # pointwise, GLU
            h = _masked(h, valid)  # the depthwise convolution sees zeros beyond the utterance, as alone
            for m in module.sequential[2:]:
                h = m(h)
            return tap("conv", h.permute(2, 0, 1))

        x = x + tap("ffn1", layer.ffn1(x)) * 0.5
        if layer.convolution_first:
            x = x + convolution(x)
        h = layer.self_attn_layer_norm(x)
        h, _ = layer.self_attn(h, h, h, key_padding_mask=padding_mask, need_weights=False)
        x = x + tap("attn", layer.self_attn_dropout(h))
        if not layer.convolution_first:
            x = x + convolution(x)
        x = x + tap("ffn2", layer.ffn2(x)) * 0.5
        return tap("out", layer.final_layer_norm(x))


def conformer_model(module: ConformerCTC, alphabet: Alphabet, feature_config: FeatureConfig) -> ASRModel:
    """``module`` as an :class:`ASRModel` (layers, frame map and config from ``module.config``)."""
    c = module.config
    return ASRModel(
        module,
        alphabet,
        feature_config,
        module.frame_map(),
        module.layer_names,
        module.layer_modules(),
        "ctc",
        n_features=c.n_features,
        n_classes=c.n_classes,
        model_config={"architecture": "conformer", "config": c.to_dict()},
    )


def build_conformer(
    preset: str = "conformer-small",
    alphabet: Alphabet | None = None,
    feature_config: FeatureConfig | None = None,
    **overrides: Any,
) -> ASRModel:
    """A freshly initialized Conformer CTC preset (:data:`CONFORMER_PRESETS`) as an :class:`ASRModel`.

    Defaults: ``Alphabet.default()`` and the toolkit's log-mel front end (``FeatureConfig.paper()``)
    with the preset's mel bands; a given ``feature_config`` sets the input channels
    (``n_mels``). ``overrides`` replace :class:`ConformerConfig` fields (e.g. ``dropout``).
    Unknown preset: :class:`~asr_introspect.errors.InputError`.
    """
    alphabet = alphabet if alphabet is not None else Alphabet.default()
    if feature_config is not None:
        overrides = {"n_features": feature_config.n_mels, **overrides}
    config = conformer_config(preset, len(alphabet), **overrides)
    if feature_config is None:
        feature_config = dataclasses.replace(FeatureConfig.paper(), n_mels=config.n_features)
    return conformer_model(ConformerCTC(config), alphabet, feature_config)


def wrap_conformer(
    conformer: Conformer,
    head: nn.Linear,
    alphabet: Alphabet,
    feature_config: FeatureConfig,
    subsample: tuple[nn.Conv1d, nn.Conv1d] | None = None,
) -> ASRModel:
    """Your own ``torchaudio.models.Conformer`` and ``nn.Linear(d, classes)`` head as an :class:`ASRModel`.

    The modules are used, not copied. ``subsample``: the two stride-2 ``Conv1d`` that take the
    log-mel features (``n_mels -> d -> d``, odd kernel ``k``, ``padding=(k - 1) // 2``; each is
    followed by a ReLU); None builds fresh ones (to be trained). The blocks' settings are read
    from the modules, so the model saves and loads with
    :func:`~asr_introspect.models.save_checkpoint` / ``load_checkpoint`` like a preset.
    """
    if not isinstance(conformer, Conformer):
        raise TypeError(f"expected a torchaudio.models.Conformer, got {type(conformer).__name__}")
    if not isinstance(head, nn.Linear):
        raise TypeError(f"expected an nn.Linear head, got {type(head).__name__}")
    layers = list(conformer.conformer_layers)
    first = layers[0]
    depthwise = first.conv_module.sequential[2]
    config = ConformerConfig(
        n_features=feature_config.n_mels,
        n_classes=head.out_features,
        d_model=first.self_attn.embed_dim,
        n_heads=first.self_attn.num_heads,
        ffn_dim=first.ffn1.sequential[1].out_features,
        n_layers=len(layers),
        conv_kernel=depthwise.kernel_size[0],
        subsample_kernel=getattr(subsample[0], "kernel_size", (3,))[0] if subsample is not None else 3,
        dropout=float(first.self_attn.dropout),
        use_group_norm=isinstance(first.conv_module.sequential[3], nn.GroupNorm),
        convolution_first=bool(first.convolution_first),
    )
    if head.in_features != config.d_model:
        raise ValueError(f"the head takes {head.in_features} features, the Conformer gives {config.d_model}")
    return conformer_model(ConformerCTC(config, conformer, head, subsample), alphabet, feature_config)
