"""Frame geometry of a stack of Conv1d layers: which input frames a layer frame sees.

For every layer the map holds the *cumulative* stride ``S``, receptive field
``RF`` and offset ``O`` (in input frames) so that frame ``t`` of that layer
depends on the input frames ``[O + t*S, O + t*S + RF)`` intersected with the
valid input ``[0, T_in)``. ``O`` is negative when a layer pads on the left.

Each convolution is described by a :class:`ConvSpec` (kernel, stride,
dilation and the zero padding added on each side). With ``k_eff =
dilation*(kernel-1) + 1`` and left padding ``L`` the recursion from layer
``l-1`` (``S, RF, O``; the input has ``1, 1, 0``) to layer ``l`` is::

    S'  = S * stride
    RF' = RF + (k_eff - 1) * S
    O'  = O - L * S

Zero padding of *intermediate* layers contributes nothing, so the exact
support of a frame also depends on the length of every intermediate layer.
:meth:`FrameMap.input_range` with ``T_in`` computes it layer by layer (the
range is clipped to the valid frames of every layer on the way down); without
``T_in`` it returns the unclipped closed form above.

Self-attention (and anything else that mixes the whole utterance) is a
:class:`ConvSpec` with ``context="utterance"`` (:meth:`ConvSpec.utterance`):
it keeps the frame rate, and from that layer on every frame depends on every
valid input frame. Such layers are *global*: :meth:`FrameMap.is_global` says so,
``input_range`` with ``T_in`` returns the whole input, and the geometry keeps
the *local* stride, receptive field and offset (the frame's own position: what
``center`` and ``layer_frame_of_input`` use to put labels on its time axis).

Assumptions: a sequential stack (layer ``l`` consumes exactly the output of
layer ``l-1``; element-wise operations such as ReLU, BatchNorm or dropout in
between do not matter). A range is the convex hull of the contributing frames;
it has no holes as long as, for every layer, ``dilation * S <= RF`` of the layer
below (its taps are no further apart than what each tap sees), which holds for
every Wav2Letter preset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["CONTEXTS", "ConvSpec", "LayerGeometry", "FrameMap"]

#: what a layer mixes beyond its kernel: nothing, or the whole utterance (self-attention)
CONTEXTS = ("local", "utterance")


@dataclass(frozen=True)
class ConvSpec:
    """One Conv1d: kernel, stride, dilation and the zero padding on each side (frames).

    ``context="utterance"`` marks a layer that also mixes every frame of the utterance
    (self-attention); its kernel, stride and padding describe the frame's own position.
    """

    kernel: int
    stride: int = 1
    dilation: int = 1
    pad_left: int = 0
    pad_right: int = 0
    context: str = "local"

    def __post_init__(self) -> None:
        if self.kernel < 1 or self.stride < 1 or self.dilation < 1:
            raise ValueError(f"kernel, stride and dilation must be >= 1: {self}")
        if self.pad_left < 0 or self.pad_right < 0:
            raise ValueError(f"padding must be >= 0: {self}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}: {self}")

    @classmethod
    def utterance(cls) -> ConvSpec:
        """A layer that keeps the frame rate and mixes the whole utterance (self-attention)."""
        return cls(1, context="utterance")

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``context`` only when it is not "local" (so conv stacks serialize as before)."""
        d = asdict(self)
        if self.context == "local":
            del d["context"]
        return d

    @property
    def effective_kernel(self) -> int:
        """Span of the dilated kernel: ``dilation*(kernel-1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    def output_length(self, length):
        """Output frames for ``length`` input frames (int, ndarray or tensor).

        ``floor((length + pad_left + pad_right - effective_kernel) / stride) + 1``,
        never below 0; an empty input gives an empty output.
        """
        n = length + self.pad_left + self.pad_right - self.effective_kernel
        if isinstance(n, torch.Tensor):
            out = (torch.div(n, self.stride, rounding_mode="floor") + 1).clamp_min(0)
            return torch.where(length > 0, out, torch.zeros_like(out))
        if isinstance(n, np.ndarray):
            return np.where(length > 0, np.maximum(np.floor_divide(n, self.stride) + 1, 0), 0)
        return max(int(n) // self.stride + 1, 0) if length > 0 else 0

    @classmethod
    def from_conv(cls, conv: nn.Conv1d, extra_left: int = 0, extra_right: int = 0) -> ConvSpec:
        """Spec of ``conv`` plus explicit padding applied before it (e.g. a ``ConstantPad1d``)."""
        kernel, stride, dilation = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
        if isinstance(conv.padding, str):
            if conv.padding == "valid":
                left = right = 0
            else:  # "same": torch pads total//2 on the left, the rest on the right
                total = dilation * (kernel - 1)
                left, right = total // 2, total - total // 2
        else:
            left = right = int(conv.padding[0])
        return cls(kernel, stride, dilation, left + int(extra_left), right + int(extra_right))


@dataclass(frozen=True)
class LayerGeometry:
    """Cumulative geometry of one layer, in input frames.

    Frame ``t`` of the layer depends on input frames
    ``[offset + t*stride, offset + t*stride + receptive_field)`` (clipped to the
    input). ``start_padding = max(0, -offset)``: how many virtual (padded) input
    frames the receptive field of layer frame 0 reaches before input frame 0.
    ``global_context``: the layer (or one below it) mixes the whole utterance, so
    its frames depend on every input frame; the other fields give the local part.
    """

    stride: int
    receptive_field: int
    offset: int
    start_padding: int
    global_context: bool = False


class FrameMap:
    """Per-layer cumulative stride, receptive field and offset of a Conv1d stack.

    Layers are identified by name (e.g. ``"conv1"`` ... ``"conv11"``); ``"input"``
    names the input itself (stride 1, receptive field 1, offset 0).
    """

    def __init__(self, specs: Sequence[ConvSpec], names: Sequence[str] | None = None) -> None:
        specs = [s if isinstance(s, ConvSpec) else ConvSpec(**s) for s in specs]
        if not specs:
            raise ValueError("a FrameMap needs at least one convolution")
        if names is None:
            names = [f"conv{i + 1}" for i in range(len(specs))]
        names = [str(n) for n in names]
        if len(names) != len(specs):
            raise ValueError(f"{len(names)} names for {len(specs)} convolutions")
        if len(set(names)) != len(names) or "input" in names:
            raise ValueError(f"layer names must be unique and not 'input': {names}")
        self.specs: list[ConvSpec] = specs
        self.names: list[str] = names
        self._index = {n: i for i, n in enumerate(names)}
        self._geometry: list[LayerGeometry] = []
        self._length_cache: dict[int, tuple[int, ...]] = {}
        stride, rf, offset, mixed = 1, 1, 0, False
        for spec in specs:
            offset = offset - spec.pad_left * stride
            rf = rf + (spec.effective_kernel - 1) * stride
            stride = stride * spec.stride
            mixed = mixed or spec.context == "utterance"
            self._geometry.append(LayerGeometry(stride, rf, offset, max(0, -offset), mixed))

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_specs(cls, specs: Iterable[ConvSpec | dict], names: Sequence[str] | None = None) -> FrameMap:
        """Map of the convolutions ``specs`` (in forward order)."""
        return cls(list(specs), names)

    @classmethod
    def from_model(cls, module: nn.Module, names: Sequence[str] | None = None) -> FrameMap:
        """Map of every ``nn.Conv1d`` in ``module``, in registration order.

        A ``nn.ConstantPad1d`` / ``nn.ZeroPad1d`` registered before a convolution
        adds to that convolution's padding (how :class:`Wav2Letter` pads
        asymmetrically). Padding done with ``F.pad`` inside ``forward`` is
        invisible here: use :meth:`from_specs` or ``wrap_conv_model`` then.
        Default names: ``conv1`` ... ``convN``.
        """
        specs: list[ConvSpec] = []
        extra_left = extra_right = 0
        for sub in module.modules():
            if isinstance(sub, nn.ConstantPad1d):
                left, right = sub.padding
                extra_left, extra_right = extra_left + left, extra_right + right
            elif isinstance(sub, nn.Conv1d):
                specs.append(ConvSpec.from_conv(sub, extra_left, extra_right))
                extra_left = extra_right = 0
        if not specs:
            raise ValueError(f"{type(module).__name__} has no nn.Conv1d layers")
        return cls(specs, names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (the specs; the geometry is derived)."""
        return {"layers": [{"name": n, **s.to_dict()} for n, s in zip(self.names, self.specs)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameMap:
        layers = d["layers"]
        names = [layer["name"] for layer in layers]
        specs = [
            ConvSpec(**{k: (str(v) if k == "context" else int(v)) for k, v in layer.items() if k != "name"})
            for layer in layers
        ]
        return cls(specs, names)

    # -- queries ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameMap) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        last = self._geometry[-1]
        field = "the whole utterance" if last.global_context else str(last.receptive_field)
        return (
            f"FrameMap({len(self)} layers, output stride {last.stride}, receptive field {field}, offset {last.offset})"
        )

    def _i(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown layer {name!r}; layers: {self.names}") from None

    def layer(self, name: str) -> LayerGeometry:
        """Cumulative geometry of layer ``name`` ("input" gives the identity)."""
        if name == "input":
            return LayerGeometry(1, 1, 0, 0)
        return self._geometry[self._i(name)]

    def is_global(self, name: str) -> bool:
        """True when frames of ``name`` depend on the whole utterance (self-attention at or below it)."""
        return self.layer(name).global_context

    @property
    def first_global(self) -> str | None:
        """The first layer that mixes the whole utterance, or None for a local (convolutional) stack."""
        return next((n for n, g in zip(self.names, self._geometry) if g.global_context), None)

    def spec(self, name: str) -> ConvSpec:
        """The convolution of layer ``name`` alone."""
        return self.specs[self._i(name)]

    @property
    def output_layer(self) -> str:
        return self.names[-1]

    def output_length(self, name: str, length):
        """Frames of layer ``name`` for ``length`` input frames (int, ndarray or tensor)."""
        if name == "input":
            return length
        if isinstance(length, (int, np.integer)) and not isinstance(length, bool):
            return self._int_lengths(int(length))[self._i(name)]
        if (
            isinstance(length, torch.Tensor)
            and length.dim() == 1
            and length.device.type == "cpu"
            and not length.is_floating_point()
            and len(length) <= 1024
        ):  # a batch's lengths
            i = self._i(name)
            return torch.tensor([self._int_lengths(n)[i] for n in length.tolist()], dtype=length.dtype)
        for spec in self.specs[: self._i(name) + 1]:
            length = spec.output_length(length)
        return length

    def lengths(self, length: int) -> dict[str, int]:
        """Frames of every layer for ``length`` input frames."""
        return dict(zip(self.names, self._int_lengths(int(length))))

    def _int_lengths(self, length: int) -> tuple[int, ...]:
        """Frames of every layer for ``length`` input frames, memoized: label transfers ask for
        them per utterance and layer, and looping over the specs each time took ~8 % of the NAP time."""
        lens = self._length_cache.get(length)
        if lens is None:
            out, n = [], length
            for spec in self.specs:
                n = spec.output_length(n)
                out.append(n)
            if len(self._length_cache) >= 4096:
                self._length_cache.clear()
            lens = self._length_cache[length] = tuple(out)
        return lens

    def input_range(self, name: str, t: int, T_in: int | None = None) -> tuple[int, int]:
        """Input frames ``[start, stop)`` that frame ``t`` of layer ``name`` depends on.

        Without ``T_in``: the closed form ``offset + t*stride`` ... ``+ receptive_field``
        (may reach below 0). With ``T_in``: exact for an input of ``T_in`` frames
        (clipped to the valid frames of every layer; empty -> ``(s, s)``); a global layer
        (:meth:`is_global`) gives ``(0, T_in)`` for every frame it has.
        """
        if name == "input":
            lo, hi = int(t), int(t) + 1
            return (max(lo, 0), min(hi, T_in)) if T_in is not None else (lo, hi)
        i = self._i(name)
        t = int(t)
        if T_in is None:
            g = self._geometry[i]
            start = g.offset + t * g.stride
            return start, start + g.receptive_field
        if self._geometry[i].global_context:
            n = self._int_lengths(int(T_in))[i]
            return (0, int(T_in)) if 0 <= t < n else (0, 0)
        lens = [int(T_in), *self._int_lengths(int(T_in))[:i]]
        lo, hi = t, t + 1  # frames of layer i
        for j in range(i, -1, -1):
            spec = self.specs[j]
            lo, hi = lo * spec.stride - spec.pad_left, (hi - 1) * spec.stride - spec.pad_left + spec.effective_kernel
            lo, hi = max(lo, 0), min(hi, lens[j])
            if hi <= lo:
                return lo, lo
        return lo, hi

    def center(self, name: str, t):
        """Input-frame centre (float) of the receptive field of frame ``t`` of ``name``."""
        g = self.layer(name)
        c = g.offset + np.asarray(t, dtype=np.float64) * g.stride + (g.receptive_field - 1) / 2.0
        return float(c) if c.ndim == 0 else c

    def layer_frame_of_input(self, name: str, input_frame, T_in: int | None = None):
        """Frame of layer ``name`` whose receptive-field centre is nearest ``input_frame``.

        ``input_frame`` may be an int or an array; results are clipped to ``>= 0``
        and, with ``T_in``, to the layer's last frame. Ties go to the later frame.
        """
        g = self.layer(name)
        x = (np.asarray(input_frame, dtype=np.float64) - g.offset - (g.receptive_field - 1) / 2.0) / g.stride
        t = np.floor(x + 0.5).astype(np.int64)
        hi = None
        if T_in is not None:
            hi = max(int(self.output_length(name, int(T_in))) - 1, 0)
        t = np.clip(t, 0, hi)
        return int(t) if np.ndim(t) == 0 else t
