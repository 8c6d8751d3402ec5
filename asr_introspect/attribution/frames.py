"""Per-frame attribution: one relevance map over the input features for every requested output frame.

The backward passes run on receptive-field crops (:mod:`.crops`): one forward
pass over the utterance, then a batched backward per chunk of targets, exact
at the borders; :func:`~.crops.crop_logits` runs the forward pass on crops.

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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from asr_introspect.alignment import forced_align
from asr_introspect.attribution.crops import CropGeometry, check_chunk_size, propagate
from asr_introspect.attribution.dense import dense_relevance, needs_dense
from asr_introspect.attribution.gradients import (
    default_cam_layer,
    grad_cam_crops,
    gradient_crops,
    integrated_gradients_crops,
    smoothgrad_crops,
)
from asr_introspect.attribution.lrp import COMPOSITES, Composite, LRPBackend
from asr_introspect.attribution.stack import ConvStack, ForwardCache, conv_stack
from asr_introspect.errors import InputError

__all__ = [
    "Attribution",
    "attribute",
    "compute_crops",
    "iter_crops",
    "frame_blocks",
    "input_span",
    "default_block_frames",
    "check_cam_layer",
    "select_frames",
    "select_targets",
    "METHODS",
    "LRP_METHODS",
    "GRADIENT_METHODS",
    "method_name",
    "features_tensor",
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
GRADIENT_METHODS = (
    "sensitivity",
    "sensitivity-squared",
    "gradient-x-input",
    "deconvnet",
    "guided-backprop",
    "smoothgrad",
    "integrated-gradients",
)
#: every method name (grad-cam variants take ":LAYER", default the layer before the last dense layers)
METHODS = tuple(LRP_METHODS) + GRADIENT_METHODS + ("grad-cam:LAYER", "guided-grad-cam:LAYER")


# ---------------------------------------------------------------------------
# frames and targets


def select_frames(frames, n_frames: int) -> np.ndarray:
    """ "all", an int or a sequence of output frames -> (N,) int64 (negative ints count from the end)."""
    if isinstance(frames, str):
        if frames != "all":
            raise InputError(f"frames must be 'all', an int or a list of ints, got {frames!r}")
        return np.arange(n_frames, dtype=np.int64)
    arr = np.atleast_1d(np.asarray(frames))
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"frames must be 'all', an int or a list of ints, got {frames!r}")
    given = arr.astype(np.int64)
    arr = np.where(given < 0, given + n_frames, given)
    bad = (arr < 0) | (arr >= n_frames)
    if bad.any():  # one short line however many frames are out of range
        example = given[bad]
        raise InputError(
            f"{int(bad.sum())} selected output frame(s) out of range ({int(example.min())}..{int(example.max())}): "
            f"the utterance has {n_frames} output frames (0..{n_frames - 1}; negative numbers count from the end)"
        )
    return arr


def select_targets(
    logits: torch.Tensor, frames: np.ndarray, target="predicted", transcript: str | None = None, alphabet=None
) -> np.ndarray:
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
            log_probs = torch.log_softmax(logits.double(), dim=0).T.contiguous()
            path = forced_align(log_probs, alphabet.encode(transcript), blank=alphabet.blank)
            return path[frames].astype(np.int64)
        raise InputError(
            f"target must be 'predicted', 'predicted-letter', 'forced', an int or an array, got {target!r}"
        )
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
    frames, targets, offsets: (N,) int64; logits: (C, T_out) of the utterance;
    centers: (N,) float input-frame position of each frame (its receptive field's centre),
    given where the receptive field is the whole utterance (self-attention), else derived.
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
    centers: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.centers is None:
            self.centers = np.asarray(self.offsets, dtype=np.float64) + (self.receptive_field - 1) / 2.0

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
                out[i, :, lo:hi] = self.relevance[i, :, lo - s : hi - s]
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
                out[i, :, lo - s : hi - s] = self.relevance[i, :, lo:hi]
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
        one = Attribution(
            self.method,
            self.relevance[i : i + 1],
            self.frames[i : i + 1],
            self.targets[i : i + 1],
            self.offsets[i : i + 1],
            self.logits,
            self.n_input_frames,
            self.receptive_field,
            True,
            self.centers[i : i + 1],
        )
        return one.dense()[0]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for :func:`asr_introspect.io.save_npz` (relevance, frames, targets, offsets, logits, ...)."""
        return {
            "relevance": self.relevance,
            "frames": self.frames,
            "targets": self.targets,
            "offsets": self.offsets,
            "logits": self.logits,
            "scores": self.scores,
            "n_input_frames": np.int64(self.n_input_frames),
            "receptive_field": np.int64(self.receptive_field),
            "cropped": np.bool_(self.cropped),
            "centers": self.centers,
            "method": np.str_(self.method),
        }


# ---------------------------------------------------------------------------
# methods


def method_name(method) -> str:
    """Canonical name of a method string or composite."""
    if isinstance(method, Composite):
        return f"lrp-{method.name}"
    return str(method)


def features_tensor(model, features) -> torch.Tensor:
    """One utterance's features (F, T_in) checked against ``model`` (shape, length, finite), detached."""
    x = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if x.dim() != 2 or x.shape[0] != model.n_features:
        raise InputError(f"features must be (F={model.n_features}, T), got {tuple(x.shape)}")
    if x.shape[1] < model.min_input_frames:
        raise InputError(
            f"input of {x.shape[1]} frames is too short: the model needs at least {model.min_input_frames}"
        )
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


def check_cam_layer(stack: ConvStack, method) -> None:
    """InputError unless a ``grad-cam:LAYER`` / ``guided-grad-cam:LAYER`` method names a layer of ``stack``
    (the message lists the layers); other methods pass."""
    name, _, layer = str(method).partition(":")
    if name in ("grad-cam", "guided-grad-cam") and layer and layer not in stack.names:
        raise InputError(
            f"method {method!r}: the model has no layer {layer!r}; {name} takes one of {', '.join(stack.names)} "
            f"(or no ':LAYER' for {default_cam_layer(stack)})"
        )


def compute_crops(
    stack: ConvStack,
    features: torch.Tensor,
    frames: np.ndarray,
    targets: np.ndarray,
    method="lrp-epsilon-plus",
    cache: ForwardCache | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    span: tuple[int, int] | None = None,
    **options,
) -> np.ndarray:
    """Relevance crops (N, F, RF) of ``method`` for (frames, targets); the engine behind :func:`attribute`.

    features: (F, T_in) tensor. ``cache`` (the stack's forward pass on ``features``) is reused if given.
    ``span=(lo, hi)``: run only on the input frames ``[lo, hi)`` of ``features`` (``lo`` a multiple of
    the output stride; see :func:`input_span`), which must hold the receptive fields of ``frames``
    (output frames of the whole utterance); the crops equal those of the whole utterance, at a
    memory and time cost set by the span (:func:`iter_crops`). Settings taken from the whole
    utterance stay so (the ``low``/``high`` bounds of ``lrp-epsilon-gamma-box``, SmoothGrad's noise).
    """
    x = features.to(device=stack.device, dtype=stack.dtype)
    frames = np.asarray(frames, dtype=np.int64)
    check_cam_layer(stack, method)
    whole = x
    if span is not None:
        lo, hi = int(span[0]), int(span[1])
        stride = int(np.prod([layer.stride for layer in stack.layers]))
        if cache is not None or lo % stride or not 0 <= lo < hi <= x.shape[1]:
            raise ValueError(f"span {span} must lie in [0, {x.shape[1]}], start at a multiple of {stride}, no cache")
        x = x[:, lo:hi]
        frames = frames - lo // stride
        baseline = options.get("baseline")
        if baseline is not None and np.ndim(baseline) == 2:
            options = {**options, "baseline": np.asarray(baseline)[:, lo:hi]}
    geometry = CropGeometry(stack, x.shape[1])
    if len(frames) and (frames.min() < 0 or frames.max() >= geometry.n_frames):
        raise ValueError(f"frames outside the span {span}")
    cache = cache if cache is not None else stack.forward_cache(x)
    run = dict(chunk_size=chunk_size, progress=progress)
    if isinstance(method, Composite) or method in LRP_METHODS:
        composite = method if isinstance(method, Composite) else _composite_for(method, whole, options)
        if isinstance(method, Composite):
            _check_options(method_name(method), options, set())
        backend = LRPBackend(stack, cache, geometry, composite)
        start = cache.logits[targets, frames].cpu().numpy() if len(frames) else np.zeros(0)
        return propagate(backend, geometry, frames, targets, start=start, **run)
    name, _, layer = str(method).partition(":")
    if name in ("sensitivity", "sensitivity-squared", "gradient-x-input", "deconvnet", "guided-backprop"):
        _check_options(name, options, set())
        return gradient_crops(stack, cache, geometry, frames, targets, variant=name, **run)
    if name in ("grad-cam", "guided-grad-cam"):
        _check_options(name, options, set())
        return grad_cam_crops(
            stack, cache, geometry, frames, targets, layer=layer or None, guided=name == "guided-grad-cam", **run
        )
    if name == "smoothgrad":
        _check_options(name, options, {"n_samples", "noise_level", "seed"})
        return smoothgrad_crops(stack, whole, geometry, frames, targets, **options, **run, span=span)
    if name == "integrated-gradients":
        _check_options(name, options, {"steps", "baseline"})
        return integrated_gradients_crops(stack, x, geometry, frames, targets, **options, **run)
    raise InputError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")


# ---------------------------------------------------------------------------
# streaming: long utterances in blocks of frames


def input_span(geometry: CropGeometry, frames: np.ndarray) -> tuple[int, int]:
    """Input frames ``[lo, hi)`` holding the receptive fields of output ``frames`` (clipped to the
    utterance; ``lo`` rounded down to a multiple of the output stride, so frame ``t`` of the whole
    utterance is frame ``t - lo // stride`` of the span, with the same crop)."""
    stride, first, rf = geometry.step[0], geometry.start[0], geometry.receptive_field
    lo = max(0, int(np.min(frames)) * stride + first)
    hi = min(geometry.lengths[0], int(np.max(frames)) * stride + first + rf)
    return lo - lo % stride, hi


def default_block_frames(stack: ConvStack, geometry: CropGeometry, budget_bytes: int = 32 << 20) -> int:
    """Frames per block of :func:`iter_crops` so that a block's crops and its span's forward pass (with
    the LRP rules' prepared copies) stay near ``budget_bytes``: 16..4096 frames."""
    itemsize = torch.tensor([], dtype=stack.dtype).element_size()
    crops = stack.n_features * geometry.receptive_field * itemsize
    # every level's activations (pre and post) and a few prepared copies, per output frame of the span
    levels = sum(layer.out_channels * geometry.step[l + 1] for l, layer in enumerate(stack.layers))
    levels += stack.n_features * geometry.step[0]
    per_frame = crops + 8 * levels * itemsize
    return int(min(4096, max(16, budget_bytes // per_frame)))


def frame_blocks(frames: np.ndarray, block_frames: int) -> list[tuple[int, int]]:
    """Consecutive pieces ``[i0, i1)`` of ``frames`` (in the given order): at most ``block_frames``
    entries each, whose output frames lie within ``2 * block_frames`` of each other (so a block's
    input span stays short however the frames are spread)."""
    frames = np.asarray(frames, dtype=np.int64)
    blocks: list[tuple[int, int]] = []
    i0, low, high = 0, None, None
    for i, f in enumerate(frames.tolist()):
        if low is not None:
            new_low, new_high = min(low, f), max(high, f)
            if i - i0 >= block_frames or new_high - new_low >= 2 * block_frames:
                blocks.append((i0, i))
                i0, low, high = i, f, f
                continue
            low, high = new_low, new_high
        else:
            low = high = f
    if len(frames):
        blocks.append((i0, len(frames)))
    return blocks


def iter_crops(
    stack: ConvStack,
    features: torch.Tensor,
    frames: np.ndarray,
    targets: np.ndarray,
    method="lrp-epsilon-plus",
    block_frames: int | None = None,
    chunk_size: int | None = None,
    **options,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Relevance crops of output ``frames`` (N,) for ``targets`` (N,) in blocks: yields
    ``(i0, i1, crops)`` with ``crops`` (i1 - i0, F, RF) for ``frames[i0:i1]``, in order.

    Each block (:func:`frame_blocks`, ``block_frames`` default :func:`default_block_frames`) runs
    :func:`compute_crops` on the input span its frames need (:func:`input_span`), so memory is
    set by the block, not by the utterance: a 10-minute file streams in constant memory.
    The crops equal :func:`attribute`'s (``crop=True``) up to float rounding; SmoothGrad draws
    the same noise as for the whole utterance.
    features: (F, T_in) tensor of the whole utterance (see :func:`features_tensor`).
    """
    x = features.to(device=stack.device, dtype=stack.dtype)
    frames = np.asarray(frames, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    geometry = CropGeometry(stack, x.shape[1])
    check_cam_layer(stack, method)
    check_chunk_size(chunk_size)
    if method == "lrp-epsilon-gamma-box":  # the box bounds of the whole utterance, as attribute() takes them
        options = {"low": float(x.min()), "high": float(x.max()), **options}
    block = int(block_frames) if block_frames is not None else default_block_frames(stack, geometry)
    if block < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    for i0, i1 in frame_blocks(frames, block):
        span = input_span(geometry, frames[i0:i1])
        crops = compute_crops(
            stack, x, frames[i0:i1], targets[i0:i1], method, chunk_size=chunk_size, span=span, **options
        )
        yield i0, i1, crops


def attribute(
    model,
    features,
    method="lrp-epsilon-plus",
    frames="all",
    target="predicted",
    transcript: str | None = None,
    crop: bool = False,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    **options,
) -> Attribution:
    """Relevance of ``features`` (F, T_in) for the target class of each selected output frame.

    method: a name from :data:`METHODS` or a :class:`~.lrp.Composite`; frames: "all", an int
    or a list; target: see the module docstring; crop: return (N, F, RF) crops with
    ``offsets`` instead of (N, F, T_in) maps; chunk_size: targets per backward batch
    (memory bound; default from a ~200 MB budget); dtype: compute precision (default the
    model's). Options go to the method (``epsilon``, ``gamma``, ``low``/``high``,
    ``n_samples``/``noise_level``/``seed``, ``steps``/``baseline``). The model is not modified.
    Dense maps of all frames are big (N * F * T_in values: 200 MB for 10 s at 64 mels in
    float32); prefer ``crop=True`` (N * F * RF) for long utterances. Models with self-attention or
    residual blocks run through :mod:`.dense` (the gradient family; dense maps, every frame's
    receptive field is the whole utterance; ``crop`` does not apply).
    """
    x = features_tensor(model, features)
    if needs_dense(model):
        return _attribute_dense(model, x, method, frames, target, transcript, chunk_size, dtype, **options)
    stack = conv_stack(model, dtype=dtype)
    x = x.to(device=stack.device, dtype=stack.dtype)
    cache = stack.forward_cache(x)
    logits = cache.logits
    frames_arr = select_frames(frames, logits.shape[1])
    targets = select_targets(logits, frames_arr, target, transcript, getattr(model, "alphabet", None))
    crops = compute_crops(
        stack, x, frames_arr, targets, method, cache=cache, chunk_size=chunk_size, progress=progress, **options
    )
    geometry = CropGeometry(stack, x.shape[1])
    result = Attribution(
        method_name(method),
        crops,
        frames_arr,
        targets,
        geometry.offsets(frames_arr),
        logits.cpu().numpy(),
        int(x.shape[1]),
        geometry.receptive_field,
        True,
    )
    if not crop:
        result = Attribution(
            result.method,
            result.dense(),
            frames_arr,
            targets,
            result.offsets,
            result.logits,
            result.n_input_frames,
            result.receptive_field,
            False,
        )
    return result


def _attribute_dense(model, x, method, frames, target, transcript, chunk_size, dtype, **options) -> Attribution:
    """:func:`attribute` for models the conv-stack engine cannot run (see :mod:`.dense`): dense maps."""
    model.require_ctc("attribution of output frames")
    name = method_name(method)
    x = x.to(device=model.device, dtype=dtype or next(model.module.parameters()).dtype)
    with torch.no_grad():
        logits = model.logits(x[None])[0][0]
    frames_arr = select_frames(frames, logits.shape[1])
    targets = select_targets(logits, frames_arr, target, transcript, model.alphabet)
    _, relevance = dense_relevance(model, x, frames_arr, targets, name, chunk_size=chunk_size, **options)
    n_in = int(x.shape[1])
    return Attribution(
        name,
        relevance,
        frames_arr,
        targets,
        np.zeros(len(frames_arr), dtype=np.int64),
        logits.cpu().numpy(),
        n_in,
        n_in,
        False,
        # the receptive field is the whole utterance; mark each frame where its local part is centred
        np.asarray(model.frame_map.center(model.frame_map.output_layer, frames_arr), dtype=np.float64).reshape(-1),
    )
