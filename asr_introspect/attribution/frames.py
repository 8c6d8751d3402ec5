"""Per-frame attribution: one relevance map over the input features for every requested output frame.

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

Methods (``method=``): the LRP composites ``lrp-epsilon``, ``lrp-epsilon-plus``,
``lrp-epsilon-plus-flat``, ``lrp-alpha2beta1``, ``lrp-alpha1beta0``,
``lrp-epsilon-gamma-box`` (or any :class:`~.lrp.Composite` instance) and the
gradient family ``sensitivity``, ``sensitivity-squared``, ``gradient-x-input``,
``deconvnet``, ``guided-backprop``, ``grad-cam:LAYER``, ``guided-grad-cam:LAYER``,
``smoothgrad``, ``integrated-gradients`` (see :mod:`.gradients`).

Targets: the class whose logit is explained at each frame: ``"predicted"``
(argmax, often the CTC blank), ``"predicted-letter"`` (best non-blank class),
``"forced"`` (the CTC forced alignment of ``transcript``; blank between
letter spikes), an int for every frame, or one class per selected frame.
LRP starts from the target logit (relevance sums to it when conserved);
gradient methods from 1 (the gradient of the logit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from asr_introspect.attribution.lrp import COMPOSITES, Composite, ConvStack, ForwardCache, conv_stack
from asr_introspect.errors import InputError

__all__ = [
    "Attribution", "attribute", "compute_crops", "CropGeometry", "WindowSource", "crop_logits",
    "propagate", "select_frames", "select_targets", "METHODS", "LRP_METHODS", "method_name",
]

#: LRP method name -> composite name in :data:`.lrp.COMPOSITES`
LRP_METHODS = {
    "lrp-epsilon": "epsilon",
    "lrp-epsilon-plus": "epsilon-plus",
    "lrp-epsilon-plus-flat": "epsilon-plus-flat",
    "lrp-alpha2beta1": "epsilon-alpha2-beta1",
    "lrp-alpha1beta0": "epsilon-alpha1-beta0",
    "lrp-epsilon-gamma-box": "epsilon-gamma-box",
}
GRADIENT_METHODS = ("sensitivity", "sensitivity-squared", "gradient-x-input", "deconvnet", "guided-backprop",
                    "smoothgrad", "integrated-gradients")
#: every method name (grad-cam variants take ":LAYER", default the layer before the last dense layers)
METHODS = tuple(LRP_METHODS) + GRADIENT_METHODS + ("grad-cam:LAYER", "guided-grad-cam:LAYER")


# ---------------------------------------------------------------------------
# crops


class WindowSource:
    """Crops of a full-utterance tensor for any set of frames: ``take(frames) -> (N, C, n)``."""

    def __init__(self, padded: torch.Tensor, base: int, step: int, length: int, n_windows: int) -> None:
        self.padded = padded.contiguous()
        C, Lp = self.padded.shape
        if base < 0 or base + (n_windows - 1) * step + length > Lp:
            raise AssertionError("window source too short")
        self._windows = self.padded.as_strided((n_windows, C, length), (step, Lp, 1),
                                               self.padded.storage_offset() + base)

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


def propagate(backend, geometry: CropGeometry, frames: np.ndarray, targets: np.ndarray,
              start: np.ndarray | None = None, chunk_size: int | None = None, stop_level: int = 0,
              finish: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
              progress: bool = False) -> np.ndarray:
    """Run ``backend.backward`` from the output down to ``stop_level`` for every (frame, target).

    The output signal is one-hot at the target class, scaled by ``start`` (N,) (default 1).
    ``finish(signal (n, C, len), frames)`` maps each chunk's result (default: identity).
    Returns the stacked chunk results as a NumPy array (N, ...).
    """
    stack = geometry.stack
    frames = np.asarray(frames, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    n = len(frames)
    chunk = chunk_size or default_chunk_size(stack, geometry)
    # equal chunks (the last one padded with repeats): one tensor shape per layer, so the
    # convolution backends set up their kernels once
    n_chunks = max(1, -(-n // chunk))
    chunk = max(1, -(-n // n_chunks))
    device, dtype = stack.device, stack.dtype
    out: np.ndarray | None = None
    starts = range(0, n, chunk)
    if progress:
        from tqdm.auto import tqdm

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


def default_chunk_size(stack: ConvStack, geometry: CropGeometry, budget_bytes: int = 192 << 20) -> int:
    """Targets per backward batch so that the largest per-chunk tensors stay near ``budget_bytes``."""
    itemsize = torch.tensor([], dtype=stack.dtype).element_size()
    widest = max(layer.in_channels * geometry.length[l] for l, layer in enumerate(stack.layers))
    per_target = widest * itemsize * 12  # a few terms, their crops and temporaries
    return int(min(256, max(1, budget_bytes // per_target)))


def _np_dtype(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


# ---------------------------------------------------------------------------
# frames and targets


def select_frames(frames, n_frames: int) -> np.ndarray:
    """"all", an int or a sequence of output frames -> (N,) int64 (negative ints count from the end)."""
    if isinstance(frames, str):
        if frames != "all":
            raise InputError(f"frames must be 'all', an int or a list of ints, got {frames!r}")
        return np.arange(n_frames, dtype=np.int64)
    arr = np.atleast_1d(np.asarray(frames))
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"frames must be 'all', an int or a list of ints, got {frames!r}")
    arr = arr.astype(np.int64)
    arr = np.where(arr < 0, arr + n_frames, arr)
    bad = arr[(arr < 0) | (arr >= n_frames)]
    if bad.size:
        raise InputError(f"output frame(s) {bad.tolist()} out of range: the utterance has {n_frames} output frames")
    return arr


def select_targets(logits: torch.Tensor, frames: np.ndarray, target="predicted", transcript: str | None = None,
                   alphabet=None) -> np.ndarray:
    """Class per selected frame. logits: (C, T_out); see the module docstring. Returns (N,) int64."""
    n_classes = logits.shape[0]
    if isinstance(target, str):
        if target == "predicted":
            return logits[:, frames].argmax(dim=0).cpu().numpy().astype(np.int64)
        if target in ("predicted-letter", "nonblank"):
            blank = alphabet.blank if alphabet is not None else 0
            masked = logits[:, frames].clone()
            masked[blank] = -torch.inf
            return masked.argmax(dim=0).cpu().numpy().astype(np.int64)
        if target == "forced":
            if transcript is None or alphabet is None:
                raise InputError("target='forced' needs a transcript (and the model's alphabet)")
            from asr_introspect.alignment import forced_align

            log_probs = torch.log_softmax(logits.double(), dim=0).T.contiguous()
            path = forced_align(log_probs, alphabet.encode(transcript), blank=alphabet.blank)
            return path[frames].astype(np.int64)
        raise InputError(f"target must be 'predicted', 'predicted-letter', 'forced', an int or an array, "
                         f"got {target!r}")
    arr = np.atleast_1d(np.asarray(target))
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"target classes must be integers, got dtype {arr.dtype}")
    if arr.size == 1:
        arr = np.full(len(frames), int(arr[0]), dtype=np.int64)
    elif arr.shape == (logits.shape[1],) and len(frames) != logits.shape[1]:
        arr = arr[frames]
    if arr.shape != (len(frames),):
        raise InputError(f"target has {arr.size} classes for {len(frames)} selected frames")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise InputError(f"target classes must be in [0, {n_classes}), got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64)


# ---------------------------------------------------------------------------
# results


@dataclass
class Attribution:
    """Relevance of the input features for selected output frames.

    relevance: (N, F, RF) crops when ``cropped`` (column j is input frame
    ``offsets[i] + j``; frames outside the utterance are 0) else (N, F, T_in);
    frames, targets, offsets: (N,) int64; logits: (C, T_out) of the utterance.
    """

    method: str
    relevance: np.ndarray
    frames: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    logits: np.ndarray
    n_input_frames: int
    receptive_field: int
    cropped: bool

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def scores(self) -> np.ndarray:
        """(N,) the target logit of every selected frame."""
        return self.logits[self.targets, self.frames]

    def input_range(self, i: int) -> tuple[int, int]:
        """Valid input frames ``[start, stop)`` of selected frame ``i``'s receptive field."""
        start = int(self.offsets[i])
        return max(start, 0), min(start + self.receptive_field, self.n_input_frames)

    def dense(self) -> np.ndarray:
        """(N, F, T_in) relevance (a view if not cropped)."""
        if not self.cropped:
            return self.relevance
        n, f, rf = self.relevance.shape
        out = np.zeros((n, f, self.n_input_frames), dtype=self.relevance.dtype)
        for i in range(n):
            lo, hi = self.input_range(i)
            if hi > lo:
                s = int(self.offsets[i])
                out[i, :, lo:hi] = self.relevance[i, :, lo - s:hi - s]
        return out

    def crops(self) -> np.ndarray:
        """(N, F, RF) relevance on each frame's receptive field (a view if cropped)."""
        if self.cropped:
            return self.relevance
        n, f, _ = self.relevance.shape
        out = np.zeros((n, f, self.receptive_field), dtype=self.relevance.dtype)
        for i in range(n):
            lo, hi = self.input_range(i)
            if hi > lo:
                s = int(self.offsets[i])
                out[i, :, lo - s:hi - s] = self.relevance[i, :, lo:hi]
        return out

    def index(self, frame: int) -> int:
        """Position of output ``frame`` among the selected frames."""
        hits = np.flatnonzero(self.frames == frame)
        if not hits.size:
            raise KeyError(f"output frame {frame} was not attributed")
        return int(hits[0])

    def frame(self, frame: int) -> np.ndarray:
        """(F, T_in) relevance map of output ``frame``."""
        i = self.index(frame)
        if not self.cropped:
            return self.relevance[i]
        one = Attribution(self.method, self.relevance[i:i + 1], self.frames[i:i + 1], self.targets[i:i + 1],
                          self.offsets[i:i + 1], self.logits, self.n_input_frames, self.receptive_field, True)
        return one.dense()[0]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for :func:`asr_introspect.io.save_npz` (relevance, frames, targets, offsets, logits, ...)."""
        return {"relevance": self.relevance, "frames": self.frames, "targets": self.targets,
                "offsets": self.offsets, "logits": self.logits, "scores": self.scores,
                "n_input_frames": np.int64(self.n_input_frames), "receptive_field": np.int64(self.receptive_field),
                "cropped": np.bool_(self.cropped), "method": np.str_(self.method)}


# ---------------------------------------------------------------------------
# methods


def method_name(method) -> str:
    """Canonical name of a method string or composite."""
    if isinstance(method, Composite):
        return f"lrp-{method.name}"
    return str(method)


def _features_tensor(model, features) -> torch.Tensor:
    x = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if x.dim() != 2 or x.shape[0] != model.n_features:
        raise InputError(f"features must be (F={model.n_features}, T), got {tuple(x.shape)}")
    if x.shape[1] < model.min_input_frames:
        raise InputError(f"input of {x.shape[1]} frames is too short: the model needs at least "
                         f"{model.min_input_frames}")
    if not torch.isfinite(x).all():
        raise InputError("features contain NaN or inf values")
    return x.detach()


def _composite_for(name: str, x: torch.Tensor, options: dict[str, Any]) -> Composite:
    cls = COMPOSITES[LRP_METHODS[name]]
    allowed = {"epsilon", "stabilizer", "layer_rules"}
    if name == "lrp-epsilon":
        allowed = {"epsilon", "layer_rules"}
    if name == "lrp-epsilon-gamma-box":
        allowed |= {"gamma", "low", "high"}
        options = dict(options)
        options.setdefault("low", float(x.min()))
        options.setdefault("high", float(x.max()))
    _check_options(name, options, allowed)
    return cls(**options)


def _check_options(name: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"method {name!r} takes no option(s) {unknown}; allowed: {sorted(allowed)}")


def compute_crops(stack: ConvStack, features: torch.Tensor, frames: np.ndarray, targets: np.ndarray,
                  method="lrp-epsilon-plus", cache: ForwardCache | None = None, chunk_size: int | None = None,
                  progress: bool = False, **options) -> np.ndarray:
    """Relevance crops (N, F, RF) of ``method`` for (frames, targets); the engine behind :func:`attribute`.

    features: (F, T_in) tensor. ``cache`` (the stack's forward pass on ``features``) is reused if given.
    """
    from asr_introspect.attribution import gradients as G
    from asr_introspect.attribution.lrp import LRPBackend

    x = features.to(device=stack.device, dtype=stack.dtype)
    geometry = CropGeometry(stack, x.shape[1])
    cache = cache if cache is not None else stack.forward_cache(x)
    run = dict(chunk_size=chunk_size, progress=progress)
    if isinstance(method, Composite) or method in LRP_METHODS:
        composite = method if isinstance(method, Composite) else _composite_for(method, x, options)
        if isinstance(method, Composite):
            _check_options(method_name(method), options, set())
        backend = LRPBackend(stack, cache, geometry, composite)
        start = cache.logits[targets, frames].cpu().numpy() if len(frames) else np.zeros(0)
        return propagate(backend, geometry, frames, targets, start=start, **run)
    name, _, layer = str(method).partition(":")
    if name in ("sensitivity", "sensitivity-squared", "gradient-x-input", "deconvnet", "guided-backprop"):
        _check_options(name, options, set())
        return G.gradient_crops(stack, cache, geometry, frames, targets, variant=name, **run)
    if name in ("grad-cam", "guided-grad-cam"):
        _check_options(name, options, set())
        return G.grad_cam_crops(stack, cache, geometry, frames, targets, layer=layer or None,
                                guided=name == "guided-grad-cam", **run)
    if name == "smoothgrad":
        _check_options(name, options, {"n_samples", "noise_level", "seed"})
        return G.smoothgrad_crops(stack, x, geometry, frames, targets, **options, **run)
    if name == "integrated-gradients":
        _check_options(name, options, {"steps", "baseline"})
        return G.integrated_gradients_crops(stack, x, geometry, frames, targets, **options, **run)
    raise InputError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")


def attribute(model, features, method="lrp-epsilon-plus", frames="all", target="predicted",
              transcript: str | None = None, crop: bool = False, chunk_size: int | None = None,
              dtype: torch.dtype | None = None, progress: bool = False, **options) -> Attribution:
    """Relevance of ``features`` (F, T_in) for the target class of each selected output frame.

    method: a name from :data:`METHODS` or a :class:`~.lrp.Composite`; frames: "all", an int
    or a list; target: see the module docstring; crop: return (N, F, RF) crops with
    ``offsets`` instead of (N, F, T_in) maps; chunk_size: targets per backward batch
    (memory bound; default from a ~200 MB budget); dtype: compute precision (default the
    model's). Options go to the method (``epsilon``, ``gamma``, ``low``/``high``,
    ``n_samples``/``noise_level``/``seed``, ``steps``/``baseline``). The model is not modified.
    Dense maps of all frames are big (N * F * T_in values: 200 MB for 10 s at 64 mels in
    float32); prefer ``crop=True`` (N * F * RF) for long utterances.
    """
    x = _features_tensor(model, features)
    stack = conv_stack(model, dtype=dtype)
    x = x.to(device=stack.device, dtype=stack.dtype)
    cache = stack.forward_cache(x)
    logits = cache.logits
    frames_arr = select_frames(frames, logits.shape[1])
    targets = select_targets(logits, frames_arr, target, transcript, getattr(model, "alphabet", None))
    crops = compute_crops(stack, x, frames_arr, targets, method, cache=cache, chunk_size=chunk_size,
                          progress=progress, **options)
    geometry = CropGeometry(stack, x.shape[1])
    result = Attribution(method_name(method), crops, frames_arr, targets, geometry.offsets(frames_arr),
                         logits.cpu().numpy(), int(x.shape[1]), geometry.receptive_field, True)
    if not crop:
        result = Attribution(result.method, result.dense(), frames_arr, targets, result.offsets, result.logits,
                             result.n_input_frames, result.receptive_field, False)
    return result
