"""A sequential Conv1d model read as a :class:`ConvStack` of folded layers, the input of every backward rule.

One :class:`ConvLayer` per convolution (zero padding -> Conv1d -> BatchNorm
folded into the conv -> ReLU or nothing). The stack holds *copies* of the
(folded) weights; the model is never modified, hooked or run in training
mode, so in-place ReLUs and BatchNorm are safe. Attribution always uses
eval-mode semantics (BatchNorm running statistics, no dropout).
:meth:`ConvStack.forward_cache` runs one utterance and keeps every level
(:class:`ForwardCache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_introspect.models.wav2letter import Wav2Letter

__all__ = ["ConvLayer", "ConvStack", "ForwardCache", "conv_stack", "fold_batchnorm"]


@dataclass
class ConvLayer:
    """One layer: zero padding, Conv1d with BatchNorm folded in, optional ReLU.

    weight: (C_out, C_in / groups, k); bias: (C_out,).
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    pad_left: int = 0
    pad_right: int = 0
    relu: bool = False

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])

    @property
    def effective_kernel(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def conv(
        self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Valid convolution (no padding) of x (B, C_in, T) with this layer's geometry."""
        return F.conv1d(
            x,
            self.weight if weight is None else weight,
            bias,
            stride=self.stride,
            dilation=self.dilation,
            groups=self.groups,
        )

    def conv_transpose(self, g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Gradient of :meth:`conv` w.r.t. its input: g (B, C_out', n) -> (B, C_in', (n-1)*stride + k_eff)."""
        if g.shape[-1] == 1 and self.dilation == 1 and self.groups == 1:  # one frame: a matrix product
            return (g[:, :, 0] @ weight.reshape(weight.shape[0], -1)).reshape(g.shape[0], weight.shape[1], -1)
        return F.conv_transpose1d(g, weight, stride=self.stride, dilation=self.dilation, groups=self.groups)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C_in, T) -> (pre-activation, activation), each (B, C_out, T_out)."""
        pre = self.conv(F.pad(x, (self.pad_left, self.pad_right)), self.weight, self.bias)
        return pre, (F.relu(pre) if self.relu else pre)


@dataclass
class ForwardCache:
    """One utterance through the stack.

    ``activations[l]``: (C_l, T_l) for levels 0..L (0: the features, l: output of
    layer l-1 after its activation, L: the logits); ``pre[l]``: (C, T) pre-activation
    of layer l (BatchNorm applied).
    """

    activations: list[torch.Tensor]
    pre: list[torch.Tensor]

    @property
    def logits(self) -> torch.Tensor:
        return self.activations[-1]


class ConvStack:
    """A sequential Conv1d stack with BatchNorm folded in; copies of the weights (see module docstring)."""

    def __init__(self, layers: Sequence[ConvLayer], names: Sequence[str] | None = None) -> None:
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("a ConvStack needs at least one layer")
        self.names = list(names) if names is not None else [layer.name for layer in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def n_features(self) -> int:
        return self.layers[0].in_channels

    @property
    def n_classes(self) -> int:
        return self.layers[-1].out_channels

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown layer {name!r}; layers: {self.names}") from None

    def to(self, dtype: torch.dtype | None = None, device=None) -> ConvStack:
        """A copy with weights in ``dtype`` / on ``device``."""
        layers = [
            ConvLayer(
                l.name,
                l.weight.to(device=device, dtype=dtype),
                l.bias.to(device=device, dtype=dtype),
                l.stride,
                l.dilation,
                l.groups,
                l.pad_left,
                l.pad_right,
                l.relu,
            )
            for l in self.layers
        ]
        return ConvStack(layers, self.names)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """features (B, F, T) -> logits (B, C, T_out) (each utterance zero-padded as if alone)."""
        x = x.to(self.dtype)
        for layer in self.layers:
            _, x = layer.forward(x)
        return x

    @torch.no_grad()
    def forward_cache(self, features: torch.Tensor) -> ForwardCache:
        """features (F, T_in) -> :class:`ForwardCache` of every level."""
        x = features.to(device=self.device, dtype=self.dtype)[None]
        activations, pre = [x[0]], []
        for layer in self.layers:
            p, x = layer.forward(x)
            pre.append(p[0])
            activations.append(x[0])
        return ForwardCache(activations, pre)


def fold_batchnorm(
    conv_weight: torch.Tensor, conv_bias: torch.Tensor | None, bn: nn.BatchNorm1d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (C_out, C_in/g, k) and bias (C_out,) of conv followed by ``bn`` in eval mode (new tensors)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded (track_running_stats=False)")
    mean, var = bn.running_mean.detach(), bn.running_var.detach()
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / (var + bn.eps) ** 0.5
    bias = conv_bias.detach() if conv_bias is not None else torch.zeros_like(mean)
    return conv_weight.detach() * scale[:, None, None], (bias - mean) * scale + beta


_PASS_THROUGH = (nn.Identity, nn.Dropout)
_SUPPORTED = "ConstantPad1d/ZeroPad1d (value 0), Conv1d, BatchNorm1d after a Conv1d, ReLU, Identity, Dropout"


def _leaf_calls(
    module: nn.Module, n_features: int, n_frames: int, device, dtype
) -> tuple[list, torch.Tensor, torch.Tensor]:
    """Run ``module`` on zeros in eval mode; the leaf-module calls in order: (module, input, output)."""
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    records: list[tuple[nn.Module, Any, Any]] = []

    def hook(mod, inputs, output):
        records.append((mod, inputs[0] if inputs else None, output))

    modes = [(m, m.training) for m in module.modules()]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        module.eval()
        x = torch.zeros(1, n_features, n_frames, device=device, dtype=dtype)
        with torch.no_grad():
            out = module(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return records, x, out


def conv_stack(model, dtype: torch.dtype | None = None, verify: bool = True) -> ConvStack:
    """Read an ASRModel's module as a :class:`ConvStack` (weights copied, BatchNorm folded).

    Supported modules, in forward order: {supported}. Raises ``ValueError`` for
    anything else (skip connections, pooling, functional calls that change the
    output: checked by comparing the stack's logits with the module's on random
    input when ``verify``).
    """
    module = model.module
    try:
        ref = next(module.parameters())
        device, model_dtype = ref.device, ref.dtype
    except StopIteration:
        device, model_dtype = torch.device("cpu"), torch.float32
    known = type(module) is Wav2Letter  # its forward is the blocks in order: no trace, no check needed
    if known:
        leaves = [
            m
            for block in module.blocks.values()
            for m in (block.pad, block.conv, block.bn, block.act, block.dropout)
            if m is not None
        ]
        records = [(m, None, None) for m in leaves]
        x0 = out = None
    else:
        n_frames = max(int(model.min_input_frames), 8) + 5
        records, x0, out = _leaf_calls(module, model.n_features, n_frames, device, model_dtype)

    layers: list[dict[str, Any]] = []
    pad_left = pad_right = 0
    current = x0
    for mod, inp, output in records:
        if inp is not current:
            raise ValueError(
                f"{type(module).__name__} is not a sequential stack: {type(mod).__name__} does not "
                f"consume the previous module's output (skip connection or functional call?)"
            )
        if isinstance(mod, nn.ConstantPad1d):
            if float(mod.value) != 0.0:
                raise ValueError(f"ConstantPad1d with value {mod.value}: only zero padding is supported")
            left, right = mod.padding
            pad_left, pad_right = pad_left + int(left), pad_right + int(right)
        elif isinstance(mod, nn.Conv1d):
            if mod.padding_mode != "zeros":
                raise ValueError(f"Conv1d with padding_mode={mod.padding_mode!r}: only zero padding is supported")
            if isinstance(mod.padding, str):
                total = mod.dilation[0] * (mod.kernel_size[0] - 1) if mod.padding == "same" else 0
                own = (total // 2, total - total // 2)
            else:
                own = (int(mod.padding[0]), int(mod.padding[0]))
            layers.append({"conv": mod, "bn": None, "relu": False, "pad": (pad_left + own[0], pad_right + own[1])})
            pad_left = pad_right = 0
        elif isinstance(mod, nn.BatchNorm1d):
            if not layers or layers[-1]["relu"] or layers[-1]["bn"] is not None:
                raise ValueError("BatchNorm1d must directly follow a Conv1d to be folded")
            layers[-1]["bn"] = mod
        elif isinstance(mod, nn.ReLU):
            if not layers or layers[-1]["relu"]:
                raise ValueError("a ReLU must follow a Conv1d (or its BatchNorm)")
            layers[-1]["relu"] = True
        elif isinstance(mod, _PASS_THROUGH):
            pass
        else:
            raise ValueError(
                f"{type(mod).__name__} in {type(module).__name__} is not supported by the explicit "
                f"LRP/gradient backward (supported: {_SUPPORTED})"
            )
        current = output
    if current is not out:
        raise ValueError(
            f"{type(module).__name__}'s output is not the last module's output (functional call after the last layer?)"
        )
    if pad_left or pad_right:
        raise ValueError("padding after the last Conv1d is not supported")

    names = (
        list(model.layer_names)
        if len(model.layer_names) == len(layers)
        else [f"conv{i + 1}" for i in range(len(layers))]
    )
    stack_layers = []
    for name, spec in zip(names, layers):
        conv = spec["conv"]
        weight, bias = conv.weight.detach(), conv.bias.detach() if conv.bias is not None else None
        if spec["bn"] is not None:
            weight, bias = fold_batchnorm(weight, bias, spec["bn"])
        else:
            weight = weight.clone()
            bias = bias.clone() if bias is not None else torch.zeros(weight.shape[0], device=device, dtype=weight.dtype)
        stack_layers.append(
            ConvLayer(
                name,
                weight,
                bias,
                conv.stride[0],
                conv.dilation[0],
                conv.groups,
                spec["pad"][0],
                spec["pad"][1],
                spec["relu"],
            )
        )
    stack = ConvStack(stack_layers, names)

    for layer, spec in zip(stack.layers, model.frame_map.specs):
        if (layer.kernel, layer.stride, layer.dilation, layer.pad_left, layer.pad_right) != (
            spec.kernel,
            spec.stride,
            spec.dilation,
            spec.pad_left,
            spec.pad_right,
        ):
            raise ValueError(f"layer {layer.name}: the module's convolution does not match the model's frame map")
    if len(stack) != len(model.frame_map):
        raise ValueError(f"the module has {len(stack)} convolutions, the frame map {len(model.frame_map)}")
    if verify and not known:
        _verify(model, stack, device, model_dtype)
    if dtype is not None and dtype != stack.dtype:
        stack = stack.to(dtype=dtype)
    return stack


conv_stack.__doc__ = conv_stack.__doc__.format(supported=_SUPPORTED)


def _verify(model, stack: ConvStack, device, dtype) -> None:
    """The stack's logits must equal the module's (eval mode) on a random input."""
    n = max(int(model.min_input_frames), 8) + 7
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(1, model.n_features, n, generator=gen).to(device=device, dtype=dtype)
    modes = [(m, m.training) for m in model.module.modules()]
    try:
        model.module.eval()
        with torch.no_grad():
            ref = model.module(x)
    finally:
        for m, mode in modes:
            m.training = mode
    got = stack.forward(x)
    scale = float(ref.abs().max()) + 1e-12
    if got.shape != ref.shape or float((got - ref).abs().max()) > 1e-3 * scale:
        raise ValueError(
            f"{type(model.module).__name__}: the explicit layer stack does not reproduce the module's "
            "output (functional operations between the layers?); only " + _SUPPORTED + " are supported"
        )
