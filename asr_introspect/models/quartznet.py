"""QuartzNet-style CTC models: time-channel separable convolutions in residual blocks (Kriman et al. 2020).

A *time-channel separable* convolution is a depthwise ``Conv1d`` over time (one kernel per
channel) followed by a pointwise (kernel 1) ``Conv1d`` across channels and BatchNorm. The
model::

    features (B, F, T)
      prolog       separable conv (kernel k, stride 2) + BN + ReLU           (B, C_0, T' = ceil(T / 2))
      block{i}     R sub-blocks, each separable conv + BN + ReLU; the last one adds the residual
                   (pointwise conv + BN of the block's input) before its ReLU
      epilog1      separable conv (dilation 2) + BN + ReLU
      epilog2      pointwise conv + BN + ReLU
      ctc          pointwise conv -> logits                                   (B, C, T')

"BxR" names B blocks of R sub-blocks each. Every convolution has "same" padding (odd
kernels), so ``T_out = ceil(T_in / 2)`` for every input length.

**Named layers**, each ``(B, channels, T_layer)``: ``prolog``; per block ``i`` (1 to B) the
outputs of its first R - 1 sub-blocks, ``block{i}.{j}`` (``j`` 1 to R - 1, after the ReLU), and
``block{i}``, the block's output (after the residual addition and the ReLU); ``epilog1``,
``epilog2``, ``ctc`` (the logits).

**Exact padding** (``takes_lengths = True``): the module is called as ``module(features,
lengths)`` and zeroes every named layer beyond each utterance's frames inside its forward
(hooks see the masked activations). Every convolution wider than one frame reads a named
layer (or the zero-padded features), and the residual branch reads the block's input, also a
named layer, so a padded batch gives, layer by layer, what each utterance gives alone.

**Frame map**: one entry per named layer, each the depthwise convolution that ends it (the
residual branch is pointwise, so it adds nothing beyond the main path's receptive field).

**LRP** is refused for these models (the residual additions are outside the explicit
Conv1d-stack backward; see :func:`asr_introspect.attribution.lrp.require_lrp_support`): use
a gradient method.

Presets (:data:`QUARTZNET_PRESETS`; parameter counts with 29 classes, BatchNorm running
statistics not counted):

- ``quartznet-tiny``: for tests, 64 mels, prolog 16 channels, blocks of 16 and 24 channels with
  R = 2 each, epilogs 32: 7,645 parameters; receptive field 83 input frames.
- ``quartznet-5x1``: 64 mels, prolog 256 channels (kernel 33, stride 2), five blocks of 256
  channels with R = 1 and kernels 15, 19, 25, 31, 37, epilog1 512 channels (kernel 29,
  dilation 2), epilog2 512: 1,129,565 parameters; receptive field 389 input frames (3.1 s at
  the toolkit's 8 ms hop; the paper's kernels, made for 10 ms frames and R = 5, halved).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.models.asr_model import ASRModel
from asr_introspect.models.frame_map import ConvSpec, FrameMap
from asr_introspect.text import Alphabet

__all__ = [
    "QUARTZNET_PRESETS",
    "BlockSpec",
    "PointwiseHead",
    "QuartzNetConfig",
    "QuartzNetCTC",
    "ResidualBlock",
    "SeparableBlock",
    "SeparableConv",
    "build_quartznet",
    "quartznet_config",
]


def _positive(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _same(kernel: int, dilation: int = 1) -> ConvSpec:
    """The frame-map entry of a "same" convolution (odd kernel, stride 1)."""
    half = dilation * (kernel - 1) // 2
    return ConvSpec(kernel, 1, dilation, half, half)


@dataclass(frozen=True)
class BlockSpec:
    """One residual block: output channels, depthwise kernel, R sub-blocks, dilation."""

    channels: int
    kernel: int
    repeat: int = 1
    dilation: int = 1

    def __post_init__(self) -> None:
        _positive("BlockSpec", channels=self.channels, kernel=self.kernel, repeat=self.repeat, dilation=self.dilation)
        if self.kernel % 2 == 0:
            raise ValueError(f"BlockSpec.kernel must be odd ('same' padding), got {self.kernel}")


@dataclass(frozen=True)
class QuartzNetConfig:
    """A whole :class:`QuartzNetCTC` (see the module docstring for the layers)."""

    n_features: int
    n_classes: int
    prolog_channels: int
    prolog_kernel: int
    blocks: tuple[BlockSpec, ...]
    epilog_channels: int
    epilog_kernel: int
    epilog_dilation: int
    head_channels: int
    dropout: float = 0.0
    batch_norm: bool = True
    preset: str | None = None

    def __post_init__(self) -> None:
        blocks = tuple(b if isinstance(b, BlockSpec) else BlockSpec(**b) for b in self.blocks)
        object.__setattr__(self, "blocks", blocks)
        _positive(
            "QuartzNetConfig",
            n_features=self.n_features,
            n_classes=self.n_classes,
            prolog_channels=self.prolog_channels,
            prolog_kernel=self.prolog_kernel,
            epilog_channels=self.epilog_channels,
            epilog_kernel=self.epilog_kernel,
            epilog_dilation=self.epilog_dilation,
            head_channels=self.head_channels,
        )
        if not blocks:
            raise ValueError("a QuartzNetConfig needs at least one block")
        for name in ("prolog_kernel", "epilog_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"QuartzNetConfig.{name} must be odd ('same' padding), got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"QuartzNetConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def layer_names(self) -> list[str]:
        names = ["prolog"]
        for i, block in enumerate(self.blocks, 1):
            names += [f"block{i}.{j}" for j in range(1, block.repeat)] + [f"block{i}"]
        return names + ["epilog1", "epilog2", "ctc"]

    def frame_map(self) -> FrameMap:
        half = (self.prolog_kernel - 1) // 2
        specs = [ConvSpec(self.prolog_kernel, 2, 1, half, half)]
        for block in self.blocks:
            specs += [_same(block.kernel, block.dilation)] * block.repeat
        specs += [_same(self.epilog_kernel, self.epilog_dilation), ConvSpec(1), ConvSpec(1)]
        return FrameMap(specs, self.layer_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuartzNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown quartznet settings {unknown}; expected a subset of {sorted(known)}")
        return cls(**{**d, "blocks": tuple(BlockSpec(**b) for b in d["blocks"])})


#: preset name -> QuartzNetConfig fields (``n_classes`` comes from the alphabet)
QUARTZNET_PRESETS: dict[str, dict[str, Any]] = {
    "quartznet-tiny": {
        "n_features": 64,
        "prolog_channels": 16,
        "prolog_kernel": 11,
        "blocks": (BlockSpec(16, 5, 2), BlockSpec(24, 7, 2)),
        "epilog_channels": 32,
        "epilog_kernel": 9,
        "epilog_dilation": 2,
        "head_channels": 32,
    },
    "quartznet-5x1": {
        "n_features": 64,
        "prolog_channels": 256,
        "prolog_kernel": 33,
        "blocks": tuple(BlockSpec(256, k) for k in (15, 19, 25, 31, 37)),
        "epilog_channels": 512,
        "epilog_kernel": 29,
        "epilog_dilation": 2,
        "head_channels": 512,
    },
}


def quartznet_config(name: str, n_classes: int = 29, **overrides: Any) -> QuartzNetConfig:
    """The :class:`QuartzNetConfig` of preset ``name`` with ``overrides`` (e.g. ``dropout``, ``batch_norm``)."""
    if name not in QUARTZNET_PRESETS:
        raise InputError(f"unknown quartznet preset {name!r}; choose one of {', '.join(sorted(QUARTZNET_PRESETS))}")
    return QuartzNetConfig(**{**QUARTZNET_PRESETS[name], "n_classes": int(n_classes), **overrides, "preset": name})


def _masked(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """x (B, C, T) with the frames outside ``valid`` (B, T) set to 0 (None: unchanged)."""
    return x if valid is None else x * valid[:, None, :].to(x.dtype)


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm1d(channels) if batch_norm else nn.Identity()


class SeparableConv(nn.Module):
    """Depthwise Conv1d over time ("same" padding), pointwise Conv1d, BatchNorm.

    (B, C_in, T) -> (B, C_out, ceil(T / stride)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.depthwise = nn.Conv1d(
            in_channels, in_channels, kernel, stride, padding, dilation, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=not batch_norm)
        self.bn = _norm(out_channels, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class SeparableBlock(nn.Module):
    """:class:`SeparableConv` (or any conv) -> ReLU -> dropout, zero outside ``valid`` (B, T) when given.

    A sub-block, the prolog and the epilogs.
    """

    def __init__(self, conv: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = conv
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return _masked(self.dropout(self.act(self.conv(x))), valid)


class ResidualBlock(nn.Module):
    """R sub-blocks; the residual (pointwise conv + BN of the input) joins before the last ReLU.

    (B, C_in, T) [, valid (B, T)] -> (B, C_out, T), every sub-block's output and the block's zero
    outside ``valid``. ``subblocks`` holds the first R - 1 (:class:`SeparableBlock`), ``last`` the
    last :class:`SeparableConv`.
    """

    def __init__(self, in_channels: int, spec: BlockSpec, dropout: float = 0.0, batch_norm: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.subblocks = nn.ModuleList()
        channels = in_channels
        for _ in range(spec.repeat - 1):
            conv = SeparableConv(channels, spec.channels, spec.kernel, dilation=spec.dilation, batch_norm=batch_norm)
            self.subblocks.append(SeparableBlock(conv, dropout))
            channels = spec.channels
        self.last = SeparableConv(channels, spec.channels, spec.kernel, dilation=spec.dilation, batch_norm=batch_norm)
        self.residual = nn.Sequential(
            nn.Conv1d(in_channels, spec.channels, 1, bias=not batch_norm), _norm(spec.channels, batch_norm)
        )
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for subblock in self.subblocks:
            h = subblock(h, valid)
        return _masked(self.dropout(self.act(self.last(h) + self.residual(x))), valid)


class PointwiseHead(nn.Conv1d):
    """The ``ctc`` layer: a kernel-1 ``Conv1d`` to class logits, zero outside ``valid`` (B, T) when given."""

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return _masked(super().forward(x), valid)


class QuartzNetCTC(nn.Module):
    """features (B, F, T) [, lengths (B,)] -> logits (B, C, ceil(T / 2)) through the layers in the
    module docstring.

    ``blocks`` is an ``nn.ModuleList`` of :class:`ResidualBlock`; ``layer_modules()`` maps every
    layer name to the module whose forward output is that layer's activation.
    """

    #: called as ``module(features, lengths)``: it masks its own padding
    takes_lengths = True

    def __init__(self, config: QuartzNetConfig) -> None:
        super().__init__()
        self.config = c = config
        bn = c.batch_norm
        self.prolog = SeparableBlock(
            SeparableConv(c.n_features, c.prolog_channels, c.prolog_kernel, stride=2, batch_norm=bn), c.dropout
        )
        self.blocks = nn.ModuleList()
        channels = c.prolog_channels
        for spec in c.blocks:
            self.blocks.append(ResidualBlock(channels, spec, c.dropout, bn))
            channels = spec.channels
        self.epilog1 = SeparableBlock(
            SeparableConv(channels, c.epilog_channels, c.epilog_kernel, dilation=c.epilog_dilation, batch_norm=bn),
            c.dropout,
        )
        self.epilog2 = SeparableBlock(
            nn.Sequential(nn.Conv1d(c.epilog_channels, c.head_channels, 1, bias=not bn), _norm(c.head_channels, bn)),
            c.dropout,
        )
        self.ctc = PointwiseHead(c.head_channels, c.n_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-in) convolutions, zero biases; the output layer gets gain 1."""
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                linear = module is self.ctc
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="linear" if linear else "relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                module.reset_parameters()

    @property
    def layer_names(self) -> list[str]:
        return self.config.layer_names

    def layer_modules(self) -> dict[str, nn.Module]:
        """name -> module whose forward output is that layer's activation (B, C, T_layer)."""
        modules: dict[str, nn.Module] = {"prolog": self.prolog}
        for i, block in enumerate(self.blocks, 1):
            modules.update({f"block{i}.{j}": sub for j, sub in enumerate(block.subblocks, 1)})
            modules[f"block{i}"] = block
        modules.update(epilog1=self.epilog1, epilog2=self.epilog2, ctc=self.ctc)
        return modules

    def frame_map(self) -> FrameMap:
        return self.config.frame_map()

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, F, T) (zero beyond each length), lengths (B,) int64 or None -> logits (B, C, ceil(T / 2))."""
        if features.dim() != 3 or features.shape[1] != self.config.n_features:
            raise ValueError(f"expected features (B, {self.config.n_features}, T), got {tuple(features.shape)}")
        valid = None
        if lengths is not None:  # every layer after the stride-2 prolog has ceil(n / 2) frames
            lengths = (torch.as_tensor(lengths, dtype=torch.long, device=features.device) + 1) // 2
            valid = torch.arange((features.shape[-1] + 1) // 2, device=features.device)[None, :] < lengths[:, None]
        x = self.prolog(features, valid)
        for block in self.blocks:
            x = block(x, valid)
        return self.ctc(self.epilog2(self.epilog1(x, valid), valid), valid)


def quartznet_model(module: QuartzNetCTC, alphabet: Alphabet, feature_config: FeatureConfig) -> ASRModel:
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
        model_config={"architecture": "quartznet", "config": c.to_dict()},
    )


def build_quartznet(
    preset: str = "quartznet-5x1",
    alphabet: Alphabet | None = None,
    feature_config: FeatureConfig | None = None,
    **overrides: Any,
) -> ASRModel:
    """A freshly initialized QuartzNet preset (:data:`QUARTZNET_PRESETS`) as an :class:`ASRModel`.

    Defaults: ``Alphabet.default()`` and the toolkit's log-mel front end (``FeatureConfig.paper()``)
    with the preset's mel bands; a given ``feature_config`` sets the input channels
    (``n_mels``). ``overrides`` replace :class:`QuartzNetConfig` fields (``dropout``,
    ``batch_norm``, ...). Unknown preset: :class:`~asr_introspect.errors.InputError`.
    """
    alphabet = alphabet if alphabet is not None else Alphabet.default()
    if feature_config is not None:
        overrides = {"n_features": feature_config.n_mels, **overrides}
    config = quartznet_config(preset, len(alphabet), **overrides)
    if feature_config is None:
        feature_config = dataclasses.replace(FeatureConfig.paper(), n_mels=config.n_features)
    return quartznet_model(QuartzNetCTC(config), alphabet, feature_config)
