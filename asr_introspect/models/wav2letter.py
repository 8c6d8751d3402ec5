"""Wav2Letter-style fully convolutional CTC model, described by a list of layer specs.

Layers are named ``conv1`` ... ``convN`` (``N = 11`` for every preset, so "the
9th and 10th layer" mean the same thing in every model). Each is a
:class:`ConvBlock`: zero padding -> ``Conv1d`` -> optional ``BatchNorm1d`` ->
activation (out-of-place ``ReLU`` or ``Identity``) -> dropout. The block's
output is the layer's activation: hook the block to record it.

Padding ("same" in the ceil sense): with the dilated kernel span
``K = dilation*(kernel-1) + 1`` a block pads ``L = (K-1)//2`` zero frames on the
left and ``K-1-L`` on the right (one more on the right for even kernels, e.g.
23 + 24 for the paper's kernel 48), then convolves without padding. Hence
``T_out = ceil(T_in / stride)`` for every ``T_in >= 1`` and the padding does not
depend on the input length, so the frame map (offset ``-L`` per layer) is
fixed. In a padded batch the last valid frames of an utterance see the
batch's padding (hidden activations, not zeros) beyond the first layer, a
small edge effect every padded-batch conv model has.

Presets (:func:`preset`, parameter counts with 29 classes):

- ``speechless``: the paper's model, 128 mels; 250 ch k48 s2; 7 x 250 ch k7;
  2000 ch k32; 2000 ch k1; output k1; ReLU; no batch norm: 24,662,529
  parameters; receptive field 194 input frames, output stride 2.
- ``small``: the CPU default, 64 mels, the same 11 layers and kernels with 160
  channels, 448 in the wide layers and BatchNorm after every hidden
  convolution: 4,259,933 parameters (+ 4,352 BatchNorm running statistics;
  about 8.5 MB in fp16).
- ``tiny``: for tests, 64 mels, 16 channels / 32 wide, BatchNorm: 80,637
  parameters, runs in milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from asr_introspect.models.frame_map import ConvSpec, FrameMap

__all__ = ["LayerSpec", "Wav2LetterConfig", "ConvBlock", "Wav2Letter", "preset", "PRESETS", "count_parameters"]

_ACTIVATIONS = ("relu", "none")


@dataclass(frozen=True)
class LayerSpec:
    """One convolutional layer: output channels, kernel, stride, dilation, activation, BN, dropout."""

    channels: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.channels < 1 or self.kernel < 1 or self.stride < 1 or self.dilation < 1:
            raise ValueError(f"channels, kernel, stride and dilation must be >= 1: {self}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1): {self.dropout}")

    @property
    def padding(self) -> tuple[int, int]:
        """(left, right) zero frames: ``(K-1)//2`` and the rest, ``K`` the dilated span."""
        total = self.dilation * (self.kernel - 1)
        return total // 2, total - total // 2

    def conv_spec(self) -> ConvSpec:
        left, right = self.padding
        return ConvSpec(self.kernel, self.stride, self.dilation, left, right)


@dataclass
class Wav2LetterConfig:
    """The whole model: input features, layers (the last is the output layer), classes."""

    n_features: int
    layers: list[LayerSpec]
    n_classes: int
    preset: str | None = None

    def __post_init__(self) -> None:
        self.layers = [s if isinstance(s, LayerSpec) else LayerSpec(**s) for s in self.layers]
        if self.n_features < 1 or not self.layers:
            raise ValueError("a Wav2LetterConfig needs n_features >= 1 and at least one layer")
        if self.layers[-1].channels != self.n_classes:
            raise ValueError(
                f"the output layer has {self.layers[-1].channels} channels but n_classes is {self.n_classes}"
            )

    @property
    def layer_names(self) -> list[str]:
        return [f"conv{i + 1}" for i in range(len(self.layers))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "preset": self.preset,
            "layers": [asdict(s) for s in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Wav2LetterConfig:
        return cls(
            n_features=int(d["n_features"]),
            n_classes=int(d["n_classes"]),
            layers=[LayerSpec(**s) for s in d["layers"]],
            preset=d.get("preset"),
        )

    def frame_map(self) -> FrameMap:
        return FrameMap([s.conv_spec() for s in self.layers], self.layer_names)


class ConvBlock(nn.Module):
    """pad -> conv -> (bn) -> act -> dropout; (B, C_in, T) -> (B, C_out, ceil(T / stride))."""

    def __init__(self, in_channels: int, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.pad = nn.ConstantPad1d(spec.padding, 0.0)
        self.conv = nn.Conv1d(
            in_channels, spec.channels, spec.kernel, stride=spec.stride, dilation=spec.dilation, padding=0, bias=True
        )
        self.bn = nn.BatchNorm1d(spec.channels) if spec.batch_norm else None
        self.act = nn.ReLU(inplace=False) if spec.activation == "relu" else nn.Identity()
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if self.bn is not None:
            x = self.bn(x)
        return self.dropout(self.act(x))


class Wav2Letter(nn.Module):
    """Fully convolutional CTC acoustic model: features (B, F, T) -> logits (B, C, T_out).

    ``blocks`` is an ``nn.ModuleDict`` ``conv1`` ... ``convN`` of :class:`ConvBlock`;
    the last block has no activation (pre-softmax logits).
    """

    def __init__(self, config: Wav2LetterConfig) -> None:
        super().__init__()
        self.config = config
        blocks: dict[str, ConvBlock] = {}
        in_channels = config.n_features
        for name, spec in zip(config.layer_names, config.layers):
            blocks[name] = ConvBlock(in_channels, spec)
            in_channels = spec.channels
        self.blocks = nn.ModuleDict(blocks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-in) weights, zero biases; the output layer gets gain 1."""
        names = self.layer_names
        for name, block in self.blocks.items():
            linear = name == names[-1] or block.spec.activation == "none"
            nn.init.kaiming_normal_(block.conv.weight, mode="fan_in", nonlinearity="linear" if linear else "relu")
            nn.init.zeros_(block.conv.bias)
            if block.bn is not None:
                block.bn.reset_parameters()
                block.bn.reset_running_stats()

    @property
    def layer_names(self) -> list[str]:
        return list(self.blocks.keys())

    @property
    def n_features(self) -> int:
        return self.config.n_features

    @property
    def n_classes(self) -> int:
        return self.config.n_classes

    def layer_modules(self) -> dict[str, nn.Module]:
        """name -> block whose forward output is that layer's activation."""
        return dict(self.blocks.items())

    def frame_map(self) -> FrameMap:
        return self.config.frame_map()

    def output_lengths(self, input_lengths):
        """Output frames for input frames (int or tensor): ``ceil(T / total stride)``."""
        return self.frame_map().output_length(self.layer_names[-1], input_lengths)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, F, T) -> logits (B, C, T_out)."""
        if features.dim() != 3 or features.shape[1] != self.config.n_features:
            raise ValueError(f"expected features (B, {self.config.n_features}, T), got {tuple(features.shape)}")
        x = features
        for block in self.blocks.values():
            x = block(x)
        return x


# ---------------------------------------------------------------------------
# presets


def _eleven(
    n_features: int, n_classes: int, channels: int, wide: int, batch_norm: bool, dropout: float, name: str
) -> Wav2LetterConfig:
    def hidden(ch: int, k: int, s: int = 1) -> LayerSpec:
        return LayerSpec(ch, k, s, batch_norm=batch_norm, dropout=dropout)

    layers = (
        [hidden(channels, 48, 2)]
        + [hidden(channels, 7) for _ in range(7)]
        + [hidden(wide, 32), hidden(wide, 1), LayerSpec(n_classes, 1, activation="none")]
    )
    return Wav2LetterConfig(n_features, layers, n_classes, preset=name)


PRESETS: dict[str, dict[str, Any]] = {
    "speechless": {"n_features": 128, "channels": 250, "wide": 2000, "batch_norm": False},
    "small": {"n_features": 64, "channels": 160, "wide": 448, "batch_norm": True},
    "tiny": {"n_features": 64, "channels": 16, "wide": 32, "batch_norm": True},
}


def preset(
    name: str, n_classes: int = 29, n_features: int | None = None, dropout: float = 0.0, batch_norm: bool | None = None
) -> Wav2LetterConfig:
    """Config of a named preset ("speechless", "small", "tiny"); see the module docstring.

    ``n_features`` overrides the preset's mel bands, ``batch_norm`` (None: the
    preset's choice) its hidden-layer BatchNorm; ``dropout`` applies to the hidden layers.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    p = dict(PRESETS[name])
    if n_features is not None:
        p["n_features"] = int(n_features)
    if batch_norm is not None:
        p["batch_norm"] = bool(batch_norm)
    return _eleven(p["n_features"], int(n_classes), p["channels"], p["wide"], p["batch_norm"], float(dropout), name)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter elements (BatchNorm running stats excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
