"""Receptive-field crops: the engine that runs a backward pass for many output frames at once.

How it is fast and exact: output frame ``t`` depends only on its receptive
field, input frames ``[t*S + O, t*S + O + RF)`` (``S`` the output stride, ``O``
the frame map's offset, ``RF`` the receptive field). The model runs *once*
over the whole utterance (:meth:`ConvStack.forward_cache`); every quantity a
backward rule needs (LRP denominators, ReLU masks, layer inputs) is a function
of that forward pass, not of the target. The backward pass then runs for a
batch of targets at once, each on its own receptive-field crop of every layer
(the output layer: 1 frame; the first layer: ``RF`` input frames). Crops are
windows of the full-utterance tensors, and positions outside a layer's valid
frames are zero, exactly what that layer's zero padding contributes in the
full utterance. So a crop gives the full-utterance value at borders too, and
the cost per target is that of one receptive field, not of the utterance.
Memory is bounded by ``chunk_size`` targets per backward batch.

:func:`crop_logits` runs the forward pass on crops the same way (used by the
deletion/insertion curves, which perturb only a frame's receptive field).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from asr_introspect.attribution.stack import ConvStack
from asr_introspect.errors import InputError

__all__ = [
    "WindowSource",
    "CropGeometry",
    "crop_logits",
    "propagate",
    "default_chunk_size",
    "check_chunk_size",
    "MAX_CHUNK_SIZE",
]

#: most targets per backward batch: beyond this a batch only adds memory (the default picks <= 256)
MAX_CHUNK_SIZE = 4096


class WindowSource:
    """Crops of a full-utterance tensor for any set of frames: ``take(frames) -> (N, C, n)``."""

    def __init__(self, padded: torch.Tensor, base: int, step: int, length: int, n_windows: int) -> None:
        self.padded = padded.contiguous()
        C, Lp = self.padded.shape
        if base < 0 or base + (n_windows - 1) * step + length > Lp:
            raise AssertionError("window source too short")
        self._windows = self.padded.as_strided(
            (n_windows, C, length), (step, Lp, 1), self.padded.storage_offset() + base
        )

    def take(self, frames: torch.Tensor) -> torch.Tensor:
        return self._windows.index_select(0, frames)


class CropGeometry:
    """Receptive-field crops of every level of ``stack`` for an input of ``n_input_frames``.

    Level 0 is the input, level l the output of layer l-1. Output frame t's crop at
    level l covers that level's frames ``[t*step[l] + start[l], ... + length[l])``;
    ``lengths[l]`` is the level's number of valid frames.
    """

    def __init__(self, stack: ConvStack, n_input_frames: int) -> None:
        L = len(stack)
        self.stack = stack
        lengths = [int(n_input_frames)]
        for layer in stack.layers:
            n = lengths[-1] + layer.pad_left + layer.pad_right - layer.effective_kernel
            lengths.append(max(n // layer.stride + 1, 0) if lengths[-1] > 0 else 0)
        self.lengths = lengths
        self.n_frames = lengths[-1]
        step, start, length = [1] * (L + 1), [0] * (L + 1), [1] * (L + 1)
        for l in reversed(range(L)):
            layer = stack.layers[l]
            step[l] = step[l + 1] * layer.stride
            start[l] = start[l + 1] * layer.stride - layer.pad_left
            length[l] = (length[l + 1] - 1) * layer.stride + layer.effective_kernel
        self.step, self.start, self.length = step, start, length
        self._valid: dict[int, WindowSource] = {}

    @property
    def receptive_field(self) -> int:
        return self.length[0]

    def offsets(self, frames) -> np.ndarray:
        """First input frame of each frame's crop (may be negative). (N,) int64."""
        return np.asarray(frames, dtype=np.int64) * self.step[0] + self.start[0]

    def source(self, level: int, tensor: torch.Tensor, origin: int = 0) -> WindowSource:
        """Window source of ``tensor`` (C, L) whose column 0 is frame ``origin`` of ``level``; zeros outside."""
        n, step, first = self.length[level], self.step[level], self.start[level]
        last_end = (self.n_frames - 1) * step + first + n  # one past the last needed frame
        left = max(0, origin - first)
        right = max(0, last_end - (origin + tensor.shape[1]))
        padded = torch.nn.functional.pad(tensor, (left, right))
        return WindowSource(padded, first - origin + left, step, n, self.n_frames)

    def valid_source(self, level: int) -> WindowSource:
        """Crops of a (1, T_level) mask: 1 on the level's valid frames, 0 on padding."""
        if level not in self._valid:
            ones = torch.ones(1, self.lengths[level], dtype=self.stack.dtype, device=self.stack.device)
            self._valid[level] = self.source(level, ones)
        return self._valid[level]


def crop_logits(stack: ConvStack, geometry: CropGeometry, crops: torch.Tensor, frames) -> torch.Tensor:
    """Logits of each frame from its input crop alone.

    crops: (N, F, RF) input windows (column 0 is input frame ``offsets[i]``; values
    outside the utterance are ignored); frames: (N,) output frames.
    Returns (N, C): equal to the full-utterance logits at those frames for unmodified crops.
    """
    frames = torch.as_tensor(np.asarray(frames), dtype=torch.long, device=stack.device)
    x = crops.to(device=stack.device, dtype=stack.dtype) * geometry.valid_source(0).take(frames)
    with torch.no_grad():
        for l, layer in enumerate(stack.layers):
            x = layer.conv(x, layer.weight, layer.bias)
            if layer.relu:
                x = torch.relu(x)
            x = x * geometry.valid_source(l + 1).take(frames)
    return x[:, :, 0]


def propagate(
    backend,
    geometry: CropGeometry,
    frames: np.ndarray,
    targets: np.ndarray,
    start: np.ndarray | None = None,
    chunk_size: int | None = None,
    stop_level: int = 0,
    finish: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Run ``backend.backward`` from the output down to ``stop_level`` for every (frame, target).

    The output signal is one-hot at the target class, scaled by ``start`` (N,) (default 1).
    ``finish(signal (n, C, len), frames)`` maps each chunk's result (default: identity).
    Returns the stacked chunk results as a NumPy array (N, ...).
    """
    stack = geometry.stack
    frames = np.asarray(frames, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    n = len(frames)
    chunk = check_chunk_size(chunk_size) or default_chunk_size(stack, geometry)
    # equal chunks (the last one padded with repeats): one tensor shape per layer, so the
    # convolution backends set up their kernels once
    n_chunks = max(1, -(-n // chunk))
    chunk = max(1, -(-n // n_chunks))
    device, dtype = stack.device, stack.dtype
    out: np.ndarray | None = None
    starts = range(0, n, chunk)
    if progress:
        starts = tqdm(starts, total=n_chunks, unit="chunk", leave=False)
    with torch.no_grad():
        for i0 in starts:
            i1 = min(i0 + chunk, n)
            idx = np.arange(i0, i0 + chunk) if n > chunk else np.arange(i0, i1)
            idx = np.minimum(idx, n - 1)
            f = torch.as_tensor(frames[idx], device=device)
            signal = torch.zeros(len(idx), stack.n_classes, 1, device=device, dtype=dtype)
            value = 1.0 if start is None else torch.as_tensor(np.asarray(start)[idx], device=device, dtype=dtype)
            signal[torch.arange(len(idx), device=device), torch.as_tensor(targets[idx], device=device), 0] = value
            for l in range(len(stack) - 1, stop_level - 1, -1):
                signal = backend.backward(l, signal, f)
            result = finish(signal, f) if finish is not None else signal
            result = result[: i1 - i0].cpu().numpy()
            if out is None:
                out = np.empty((n,) + result.shape[1:], dtype=result.dtype)
            out[i0:i1] = result
    if out is None:
        out = np.zeros((0, stack.n_features, geometry.receptive_field), dtype=_np_dtype(stack.dtype))
    return out


def check_chunk_size(chunk_size: int | None) -> int | None:
    """``chunk_size`` if None or an int in ``1..MAX_CHUNK_SIZE``; InputError otherwise (0 is not "default")."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise InputError(f"chunk_size must be an integer in 1..{MAX_CHUNK_SIZE} or None, got {chunk_size!r}")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise InputError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE} targets per backward batch, got {chunk_size}")
    return int(chunk_size)


def default_chunk_size(stack: ConvStack, geometry: CropGeometry, budget_bytes: int = 192 << 20) -> int:
    """Targets per backward batch so that the largest per-chunk tensors stay near ``budget_bytes``."""
    itemsize = torch.tensor([], dtype=stack.dtype).element_size()
    widest = max(layer.in_channels * geometry.length[l] for l, layer in enumerate(stack.layers))
    per_target = widest * itemsize * 12  # a few terms, their crops and temporaries
    return int(min(256, max(1, budget_bytes // per_target)))


def _np_dtype(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32
