"""The gradient family, per output frame: sensitivity, gradient x input, deconvnet, guided backprop,
Grad-CAM, guided Grad-CAM, SmoothGrad and integrated gradients.

All run through the receptive-field crop engine of :mod:`.crops` (one
forward pass per utterance, or per noise sample / integration step, then a
batched explicit backward over the layers), so the model is never modified.
The three ReLU backward rules (``f`` the ReLU's forward input, ``R`` the
signal from above) are:

- ``"gradient"`` (backpropagation): ``(f > 0) * R``;
- ``"deconvnet"``: ``(R > 0) * R``;
- ``"guided"`` (guided backpropagation): ``(f > 0) * (R > 0) * R``.

:func:`relu_backward` applies the same rules to ordinary autograd on any
module (a context manager that restores the module on exit).

Grad-CAM for layer ``K`` and output frame ``t``: ``alpha_k`` is the mean over
the layer-K frames inside ``t``'s receptive field of ``d logit / d A_k``; the
map ``ReLU(sum_k alpha_k A_k)`` lives on those layer frames, and each input
frame takes the value of the layer frame whose receptive-field centre is
nearest (as :meth:`FrameMap.layer_frame_of_input`); the map is constant over
the feature (frequency) axis. Layer frames outside the receptive field do not
influence the frame and are left at 0.

SmoothGrad averages the gradient over ``n_samples`` noisy copies of the whole
utterance (Gaussian, std ``noise_level * (max - min)`` of the features).
Integrated gradients: ``(x - x0) * mean_k grad(x0 + a_k (x - x0))`` with the
midpoint rule ``a_k = (k + 0.5) / steps``; the default baseline 0 is the
utterance mean of z-normalized features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from asr_introspect.attribution.crops import CropGeometry, propagate
from asr_introspect.attribution.stack import ConvStack, ForwardCache

__all__ = [
    "RELU_RULES",
    "GradientBackend",
    "relu_backward",
    "gradient_crops",
    "grad_cam_crops",
    "smoothgrad_crops",
    "integrated_gradients_crops",
    "default_cam_layer",
]

RELU_RULES = ("gradient", "deconvnet", "guided")
_VARIANT_RULE = {
    "sensitivity": "gradient",
    "sensitivity-squared": "gradient",
    "gradient-x-input": "gradient",
    "deconvnet": "deconvnet",
    "guided-backprop": "guided",
}


class GradientBackend:
    """d logit / d level-l crops, layer by layer, with a ReLU backward rule from :data:`RELU_RULES`."""

    def __init__(self, stack: ConvStack, cache: ForwardCache, geometry: CropGeometry, relu_rule: str = "gradient"):
        if relu_rule not in RELU_RULES:
            raise ValueError(f"relu_rule must be one of {RELU_RULES}, got {relu_rule!r}")
        self.stack, self.rule = stack, relu_rule
        self.masks = [
            geometry.source(l + 1, (cache.pre[l] > 0).to(stack.dtype))
            if layer.relu and relu_rule != "deconvnet"
            else None
            for l, layer in enumerate(stack.layers)
        ]
        self.valid = [geometry.valid_source(level) for level in range(len(stack) + 1)]

    def backward(self, l: int, grad: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Gradient at level l+1 crops (N, C_out, n) -> level l crops (N, C_in, n_l)."""
        layer = self.stack.layers[l]
        if layer.relu:
            if self.rule == "gradient":
                grad = grad * self.masks[l].take(frames)
            elif self.rule == "deconvnet":
                grad = grad.clamp(min=0)
            else:
                grad = grad.clamp(min=0) * self.masks[l].take(frames)
        return layer.conv_transpose(grad, layer.weight) * self.valid[l].take(frames)


def gradient_crops(
    stack: ConvStack,
    cache: ForwardCache,
    geometry: CropGeometry,
    frames: np.ndarray,
    targets: np.ndarray,
    variant: str = "sensitivity",
    chunk_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(N, F, RF) for "sensitivity", "sensitivity-squared", "gradient-x-input", "deconvnet", "guided-backprop"."""
    if variant not in _VARIANT_RULE:
        raise ValueError(f"unknown gradient variant {variant!r}; choose one of {sorted(_VARIANT_RULE)}")
    backend = GradientBackend(stack, cache, geometry, _VARIANT_RULE[variant])
    finish = None
    if variant == "sensitivity-squared":

        def finish(g, f):
            return g * g
    elif variant == "gradient-x-input":
        inputs = geometry.source(0, cache.activations[0])

        def finish(g, f):
            return g * inputs.take(f)

    return propagate(backend, geometry, frames, targets, chunk_size=chunk_size, finish=finish, progress=progress)


def default_cam_layer(stack: ConvStack) -> str:
    """The last ReLU layer with a kernel wider than 1 (``conv9`` in Wav2Letter)."""
    for layer in reversed(stack.layers[:-1]):
        if layer.relu and layer.kernel > 1:
            return layer.name
    return stack.layers[-2].name if len(stack) > 1 else stack.layers[0].name


def _cam_index(stack: ConvStack, geometry: CropGeometry, k: int) -> np.ndarray:
    """For each input-crop column, the level-(k+1) crop column whose receptive-field centre is nearest (-1: none)."""
    S, offset, rf = 1, 0, 1
    for layer in stack.layers[: k + 1]:
        offset -= layer.pad_left * S
        rf += (layer.effective_kernel - 1) * S
        S *= layer.stride
    i = np.arange(geometry.receptive_field)
    j = np.floor((geometry.start[0] + i - offset - (rf - 1) / 2.0) / S + 0.5).astype(np.int64) - geometry.start[k + 1]
    return np.where((j >= 0) & (j < geometry.length[k + 1]), j, -1)


def grad_cam_crops(
    stack: ConvStack,
    cache: ForwardCache,
    geometry: CropGeometry,
    frames: np.ndarray,
    targets: np.ndarray,
    layer: str | None = None,
    guided: bool = False,
    chunk_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(N, F, RF) Grad-CAM of ``layer`` (default :func:`default_cam_layer`), times guided backprop if ``guided``."""
    name = layer or default_cam_layer(stack)
    k = stack.index(name)
    level = k + 1
    activation = geometry.source(level, cache.activations[level])
    valid = geometry.valid_source(level)
    index = torch.as_tensor(_cam_index(stack, geometry, k), device=stack.device)
    keep = (index >= 0).to(stack.dtype)
    index = index.clamp(min=0)
    n_features = stack.n_features

    def finish(grad: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        mask = valid.take(f)  # (n, 1, len)
        alpha = (grad * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # (n, C)
        cam = torch.relu((alpha[:, :, None] * activation.take(f)).sum(1)) * mask[:, 0]  # (n, len)
        mapped = cam[:, index] * keep  # (n, RF)
        return mapped[:, None, :].expand(-1, n_features, -1)

    backend = GradientBackend(stack, cache, geometry, "gradient")
    cam = propagate(
        backend, geometry, frames, targets, chunk_size=chunk_size, stop_level=level, finish=finish, progress=progress
    )
    if guided:
        cam = cam * gradient_crops(stack, cache, geometry, frames, targets, "guided-backprop", chunk_size, progress)
    return cam


def smoothgrad_crops(
    stack: ConvStack,
    features: torch.Tensor,
    geometry: CropGeometry,
    frames: np.ndarray,
    targets: np.ndarray,
    n_samples: int = 16,
    noise_level: float = 0.1,
    seed: int = 0,
    chunk_size: int | None = None,
    progress: bool = False,
    span: tuple[int, int] | None = None,
) -> np.ndarray:
    """(N, F, RF) mean gradient over noisy copies of the utterance (see module docstring).

    ``span=(lo, hi)``: ``features`` is the whole utterance, but the passes run on its input
    frames ``[lo, hi)`` only (``geometry`` and ``frames`` are those of the span). The noise
    is still drawn for the whole utterance and its scale taken from the whole utterance, so
    a frame gets the same map as without ``span`` (how :func:`~.frames.iter_crops` streams
    long utterances in blocks).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    x = features.to(device=stack.device, dtype=stack.dtype)
    sigma = float(noise_level) * float(x.max() - x.min())
    lo, hi = span if span is not None else (0, x.shape[1])
    gen = torch.Generator().manual_seed(int(seed))
    total = None
    for _ in range(int(n_samples)):
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)[:, lo:hi]
        noisy = x[:, lo:hi] + sigma * noise.to(x)
        backend = GradientBackend(stack, stack.forward_cache(noisy), geometry, "gradient")
        g = propagate(backend, geometry, frames, targets, chunk_size=chunk_size, progress=progress)
        if total is None:
            total = g
        else:
            total += g
    total /= n_samples
    return total


def integrated_gradients_crops(
    stack: ConvStack,
    features: torch.Tensor,
    geometry: CropGeometry,
    frames: np.ndarray,
    targets: np.ndarray,
    steps: int = 32,
    baseline=0.0,
    chunk_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(N, F, RF) integrated gradients from ``baseline`` (float, (F,) or (F, T_in)) to the features."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = features.to(device=stack.device, dtype=stack.dtype)
    x0 = torch.as_tensor(np.asarray(baseline, dtype=np.float64)).to(x)
    if x0.ndim == 1:
        x0 = x0[:, None]
    x0 = x0.expand_as(x)
    total = None
    for k in range(int(steps)):
        a = (k + 0.5) / steps
        backend = GradientBackend(stack, stack.forward_cache(x0 + a * (x - x0)), geometry, "gradient")
        g = propagate(backend, geometry, frames, targets, chunk_size=chunk_size, progress=progress)
        if total is None:
            total = g
        else:
            total += g
    diff = geometry.source(0, (x - x0).contiguous()).take(torch.as_tensor(frames, device=stack.device))
    total *= diff.cpu().numpy()
    total /= steps
    return total


@contextlib.contextmanager
def relu_backward(module: nn.Module, rule: str = "guided") -> Iterator[nn.Module]:
    """Within the block, autograd through every ``nn.ReLU`` of ``module`` follows ``rule`` (:data:`RELU_RULES`).

    In-place ReLUs are made out-of-place for the duration; hooks and flags are restored on exit.
    """
    if rule not in RELU_RULES:
        raise ValueError(f"rule must be one of {RELU_RULES}, got {rule!r}")
    if rule == "gradient":
        yield module
        return

    def hook(mod, grad_input, grad_output):
        if rule == "deconvnet":
            return (grad_output[0].clamp(min=0),)
        return (grad_input[0].clamp(min=0),)  # (f > 0) * R, then (R > 0)

    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
    saved = [(m, m.inplace, m.__dict__.get("_is_full_backward_hook", None)) for m in relus]
    handles = []
    try:
        for m in relus:
            m.inplace = False
            handles.append(m.register_full_backward_hook(hook))
        yield module
    finally:
        for h in handles:
            h.remove()
        for m, inplace, flag in saved:
            m.inplace = inplace
            m._is_full_backward_hook = flag
