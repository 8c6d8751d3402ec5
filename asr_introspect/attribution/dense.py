"""The gradient family for every output frame of any differentiable model: transformers, Conformers,
residual networks (the conv-stack engine in :mod:`.crops` needs a plain convolution stack).

The expensive part of a per-frame loop is running the whole model again for every frame. Here
the model runs once, and the input gradient of every frame is assembled from two Jacobians
split at ``L``, the last layer before the first one that mixes the whole utterance
(:attr:`FrameMap.first_global`):

1. **global part**: ``G[n] = d logit[target_n, frame_n] / d a_L``, ``(N, C_L, T_L)``: the part
   above ``L`` runs on a batch of copies of ``a_L``, one per frame, and one backward pass of that
   batch gives every frame's row;
2. **local part**: ``J[j] = d a_L[:, j] / d x``, ``(C_L, F, RF)`` for every frame ``j`` of ``L``,
   on its receptive field. Frames ``m = ceil(RF / stride)`` apart see disjoint inputs, so
   ``C_L * m`` backward passes give all of them;
3. ``d logit_n / d x = sum_j G[n, :, j] . J[j]``, added up over the overlapping receptive fields.

Both are exact (no approximation: the chain rule split in two). ``L`` is the local layer at the
global part's frame rate whose ``J`` takes the fewest backward passes (``C_L * m``); the split
is used when that is fewer than the frames asked for. Otherwise (a wide local layer, few frames,
a model that mixes the whole utterance from its input on, or ``J`` too big for memory) the input
gradients come from one backward pass per frame, batched (same results).

Methods: ``sensitivity`` (the gradient), ``sensitivity-squared``, ``gradient-x-input``,
``smoothgrad``, ``integrated-gradients`` (as in :mod:`.gradients`: noise over the whole
utterance, midpoint rule) and ``grad-cam:LAYER`` (``ReLU(sum_k alpha_k A_k)`` with ``alpha_k``
the mean over the layer's frames of ``d logit / d A_k``: after self-attention every frame is in
the receptive field; each input frame takes the value of the nearest layer frame). LRP and the
ReLU rules (deconvnet, guided backprop) assume a ReLU convolution stack: they are refused here
with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from asr_introspect.errors import InputError

__all__ = ["DENSE_METHODS", "dense_relevance", "frame_gradients", "layer_gradients", "needs_dense"]

DENSE_METHODS = (
    "sensitivity",
    "sensitivity-squared",
    "gradient-x-input",
    "smoothgrad",
    "integrated-gradients",
    "grad-cam",
)
#: the largest local Jacobian (values) built before falling back to per-frame backward passes
MAX_JACOBIAN_VALUES = 64 << 20


def needs_dense(model) -> bool:
    """True when the conv-stack engine cannot run ``model``: self-attention, or a module that masks
    padding itself (residual and transformer models)."""
    return model.frame_map.first_global is not None or model.takes_lengths


def _refusal(method: str, model) -> InputError:
    arch = model.model_config.get("architecture", "model")
    if method.startswith("lrp"):
        why = (
            "LRP rules are defined here for ReLU convolution stacks; this model has self-attention or residual "
            "blocks they do not cover"
        )
    else:
        why = f"{method} changes the backward pass of ReLUs in a convolution stack"
    choices = ", ".join(m if m != "grad-cam" else "grad-cam:LAYER" for m in DENSE_METHODS)
    return InputError(f"method {method!r} on this {arch}: {why}; use one of {choices}")


def _forward(model, x: torch.Tensor, layer: str | None):
    """One forward pass on ``x (1, F, T)``: (logits (C, T_out), the activation of ``layer`` or None)."""
    captured: dict[str, torch.Tensor] = {}
    handle = None
    if layer is not None:
        handle = model.layer_module(layer).register_forward_hook(lambda m, i, output: captured.update(a=output))
    try:
        logits, _ = model.logits(x)
    finally:
        if handle is not None:
            handle.remove()
    return logits[0], captured.get("a")


def _onehots(shape, frames: np.ndarray, targets: np.ndarray, dtype, device) -> torch.Tensor:
    """(N, C, T_out) with a 1 at (target_n, frame_n)."""
    out = torch.zeros(len(frames), *shape, dtype=dtype, device=device)
    out[torch.arange(len(frames)), torch.as_tensor(targets), torch.as_tensor(frames)] = 1
    return out


def _vjps(output: torch.Tensor, inputs: torch.Tensor, cotangents: torch.Tensor) -> torch.Tensor:
    """(N, *inputs.shape): one vector-Jacobian product per cotangent (a plain loop: on the CPU it beats
    ``is_grads_batched``, whose vmapped convolution and attention backward passes are slower)."""
    return torch.stack([torch.autograd.grad(output, inputs, c, retain_graph=True)[0] for c in cotangents])


def layer_gradients(
    model, x: torch.Tensor, layer: str, frames: np.ndarray, targets: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (C, T_out), A (C_L, T_L), dA (N, C_L, T_L)): the layer's activation and the gradient of each
    target logit with respect to it (the part above the layer run on copies of A). x: (F, T_in)."""
    with torch.no_grad():
        logits, A = _forward(model, x[None], layer)
    A = A.detach()
    dA = _replicated_grads(model, x[None].detach(), layer, A, frames, targets) if len(frames) else A[:0]
    return logits.detach(), A[0], dA


def _local_split(model) -> tuple[str, int] | None:
    """(L, backward passes for J) or None: among the local layers at the frame rate of the first global
    one, the one whose Jacobian needs the fewest backward passes (``channels * ceil(RF / stride)``)."""
    from asr_introspect.stream import layer_channels

    fm = model.frame_map
    first = fm.first_global
    if first is None or model.layer_names.index(first) == 0:
        return None
    local = model.layer_names[: model.layer_names.index(first)]
    candidates = [n for n in local if fm.layer(n).stride == fm.layer(first).stride]
    if not candidates:
        return None
    channels = layer_channels(model, candidates)
    costs = {n: channels[n] * math.ceil(fm.layer(n).receptive_field / fm.layer(n).stride) for n in candidates}
    best = min(candidates, key=lambda n: (costs[n], -candidates.index(n)))
    return best, costs[best]


def _local_jacobian(model, x: torch.Tensor, a: torch.Tensor, layer: str) -> tuple[torch.Tensor, np.ndarray]:
    """(J (T_L, C_L, F, RF), starts (T_L,)): d a_L[:, j] / d x on each frame's receptive field."""
    C, T_L = a.shape[1], a.shape[2]
    geometry = model.frame_map.layer(layer)
    rf, stride = geometry.receptive_field, geometry.stride
    m = max(1, math.ceil(rf / stride))
    F, T_in = x.shape[1], x.shape[2]
    cot = torch.zeros(m, C, C, T_L, dtype=a.dtype, device=a.device)
    for r in range(m):
        cot[r, torch.arange(C), torch.arange(C), r::m] = 1
    grads = _vjps(a[0], x, cot.reshape(m * C, C, T_L)).reshape(m, C, F, T_in)
    starts = geometry.offset + np.arange(T_L) * stride
    J = torch.zeros(T_L, C, F, rf, dtype=a.dtype, device=a.device)
    for j in range(T_L):
        lo, hi = max(int(starts[j]), 0), min(int(starts[j]) + rf, T_in)
        J[j, :, :, lo - starts[j] : hi - starts[j]] = grads[j % m, :, :, lo:hi]
    return J, starts


def frame_gradients(
    model, x: torch.Tensor, frames: np.ndarray, targets: np.ndarray, chunk_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (C, T_out), gradients (N, F, T_in)) of each target logit with respect to ``x (F, T_in)``."""
    split = _local_split(model)
    # the split pays one backward pass of the local part per Jacobian column instead of one per frame
    layer = split[0] if split is not None and split[1] < len(frames) else None
    x = x.detach()[None].requires_grad_(True)
    with torch.enable_grad():
        logits, a = _forward(model, x, layer)
        if layer is not None:
            C, T_L = a.shape[1], a.shape[2]
            rf = model.frame_map.layer(layer).receptive_field
            if T_L * C * x.shape[1] * rf <= MAX_JACOBIAN_VALUES:
                J, starts = _local_jacobian(model, x, a, layer)
                G = _replicated_grads(model, x.detach(), layer, a.detach(), frames, targets)
                return logits.detach(), _assemble(G, J, starts, x.shape[1], x.shape[2], len(frames))
        # no bounded local prefix: one backward pass per frame, from the input
        grads = [
            _vjps(
                logits,
                x,
                _onehots(
                    logits.shape, frames[i : i + chunk_size], targets[i : i + chunk_size], logits.dtype, logits.device
                ),
            )[:, 0]
            for i in range(0, len(frames), chunk_size)
        ]
    empty = torch.zeros(0, x.shape[1], x.shape[2], dtype=x.dtype)
    return logits.detach(), torch.cat(grads) if grads else empty


#: values of one copy's (T_L x T_L) attention map times copies per pass: bounds the memory of a pass
REPLICA_BUDGET = 8 << 20


def _replicated_grads(model, x: torch.Tensor, layer: str, value: torch.Tensor, frames, targets) -> torch.Tensor:
    """(N, C_L, T_L): d logit[target_n, frame_n] / d a_L, the part above ``L`` run on copies of ``a_L``.

    A forward hook puts ``n`` copies of the activation (1, C_L, T_L) in place of the layer's output,
    so the global part runs as one batch of ``n`` (batched matrix products, no per-frame Python
    loop) and copy ``i`` receives the gradient of frame ``i`` alone. x: (1, F, T_in), detached.
    """
    T_L = value.shape[-1]
    per_pass = max(1, REPLICA_BUDGET // max(T_L * T_L, 1))
    grads = []
    for i in range(0, len(frames), per_pass):
        f = torch.as_tensor(frames[i : i + per_pass])
        t = torch.as_tensor(targets[i : i + per_pass])
        copies = value.expand(len(f), -1, -1).clone().requires_grad_(True)
        handle = model.layer_module(layer).register_forward_hook(lambda module, inputs, output, c=copies: c)
        try:
            logits, _ = model.logits(x)  # (n, C, T_out): the local part runs once, on x
        finally:
            handle.remove()
        (g,) = torch.autograd.grad(logits[torch.arange(len(f)), t, f].sum(), copies)
        grads.append(g)
    return torch.cat(grads)


def _assemble(G, J: torch.Tensor, starts: np.ndarray, F: int, T_in: int, n: int) -> torch.Tensor:
    """sum_j G[n, :, j] . J[j] on each receptive field, overlap-added: (N, F, T_in)."""
    out = torch.zeros(n, F, T_in, dtype=J.dtype, device=J.device)
    rf = J.shape[-1]
    per_frame = torch.einsum("ncj,jcfr->njfr", G, J)  # (N, T_L, F, RF)
    pad_left = max(0, -int(starts.min()))
    width = max(T_in, int(starts.max()) + rf) + pad_left
    padded = torch.zeros(n, F, width, dtype=J.dtype, device=J.device)
    for j, s in enumerate(starts):
        padded[:, :, s + pad_left : s + pad_left + rf] += per_frame[:, j]
    out += padded[:, :, pad_left : pad_left + T_in]
    return out


def _grad_cam(model, x, frames, targets, layer: str | None, chunk_size: int):
    layer = layer or _default_cam_layer(model)
    model.layer_module(layer)  # KeyError naming the layers
    logits, A, dA = layer_gradients(model, x, layer, frames, targets)
    alpha = dA.mean(dim=2)  # (N, C_L)
    cam = torch.relu(torch.einsum("nc,ct->nt", alpha, A))  # (N, T_L)
    T_in = x.shape[1]
    nearest = model.frame_map.layer_frame_of_input(layer, np.arange(T_in), T_in)
    maps = cam[:, torch.as_tensor(nearest)]  # (N, T_in)
    return logits, maps[:, None, :].expand(-1, x.shape[0], -1).contiguous()


def _default_cam_layer(model) -> str:
    """The layer just before the output: the last block of a transformer."""
    names = [n for n in model.layer_names if n != model.output_layer and "." not in n]
    return names[-1] if names else model.layer_names[-2]


def dense_relevance(
    model,
    x: torch.Tensor,
    frames: np.ndarray,
    targets: np.ndarray,
    method: str,
    chunk_size: int | None = None,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """(logits (C, T_out), relevance (N, F, T_in)) of a gradient-family ``method`` for (frames, targets).

    x: (F, T_in) detached features. Options as in :mod:`.gradients`: ``n_samples``/``noise_level``/``seed``
    (smoothgrad), ``steps``/``baseline`` (integrated-gradients).
    """
    name, _, layer = str(method).partition(":")
    if name not in DENSE_METHODS:
        raise _refusal(name, model)
    allowed = {"smoothgrad": {"n_samples", "noise_level", "seed"}, "integrated-gradients": {"steps", "baseline"}}
    unknown = sorted(set(options) - allowed.get(name, set()))
    if unknown:
        raise TypeError(f"method {name!r} takes no option(s) {unknown}; allowed: {sorted(allowed.get(name, set()))}")
    chunk = int(chunk_size or 64)
    frames = np.asarray(frames, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if name == "grad-cam":
        logits, maps = _grad_cam(model, x, frames, targets, layer or None, chunk)
        return logits.cpu().numpy(), maps.cpu().numpy()
    grad_of: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

    def grad_of(point: torch.Tensor):
        return frame_gradients(model, point, frames, targets, chunk)

    if name in ("sensitivity", "sensitivity-squared", "gradient-x-input"):
        logits, g = grad_of(x)
        relevance = {"sensitivity": g, "sensitivity-squared": g * g, "gradient-x-input": g * x[None]}[name]
    elif name == "smoothgrad":
        n_samples, level = int(options.get("n_samples", 16)), float(options.get("noise_level", 0.1))
        if n_samples < 1:
            raise InputError(f"smoothgrad: n_samples must be >= 1, got {n_samples}")
        gen = torch.Generator().manual_seed(int(options.get("seed", 0)))
        sigma = level * float(x.max() - x.min())
        logits = None
        relevance = torch.zeros(len(frames), *x.shape, dtype=x.dtype)
        for _ in range(n_samples):
            noisy = x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x)
            _, g = grad_of(noisy)
            relevance += g / n_samples
        logits, _ = _plain_logits(model, x)
    else:
        steps = int(options.get("steps", 32))
        if steps < 1:
            raise InputError(f"integrated-gradients: steps must be >= 1, got {steps}")
        x0 = torch.as_tensor(np.asarray(options.get("baseline", 0.0), dtype=np.float64)).to(x)
        x0 = x0[:, None] if x0.dim() == 1 else x0
        total = torch.zeros(len(frames), *x.shape, dtype=x.dtype)
        for k in range(steps):
            _, g = grad_of(x0 + (k + 0.5) / steps * (x - x0))
            total += g
        relevance = (x - x0)[None] * total / steps
        logits, _ = _plain_logits(model, x)
    return logits.cpu().numpy(), relevance.detach().cpu().numpy()


def _plain_logits(model, x: torch.Tensor):
    with torch.no_grad():
        logits, lengths = model.logits(x[None])
    return logits[0], lengths
