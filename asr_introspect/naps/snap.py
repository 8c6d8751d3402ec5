"""Saliency-adjusted NAPs (SNAPs): every labelled occurrence aligned at its saliency peak, then averaged.

A NAP averages a layer's activation over the frames a label covers
(:mod:`.profiles`). Labels are often not where the evidence is: a CTC letter
spike may come several frames after the sound that caused it, so the hidden
frames under the spike respond to something else. A SNAP (the SNAP paper's
saliency-peak alignment) moves each labelled *occurrence* to the input frame
the prediction depends on most, then averages as NAPs do:

1. **occurrences** (per utterance): for ``by="letter"`` one per CTC emission
   of the letter path (``source``; a run of one token in the path, extended
   over the following blanks in ``letter_mode="span"``, moved ``shift`` output
   frames like the labels); for ``by="phoneme"`` one per phone segment.
2. **saliency** of occurrence ``k`` with output frames ``O_k`` and classes
   ``c_o``: ``s_k(t) = sum_f |d (sum_{o in O_k} logit[c_o, o]) / d x[f, t]|``
   over input frames ``t``, with ``c_o`` the letter itself (letters) or the
   best non-blank class at ``o`` (phones: the letter the model hears there).
   Phone segment ``k`` owns the output frames whose centre lies inside it (the
   nearest output frame if none does). The peak is ``p_k = argmax_t s_k(t)``.
3. **alignment**: on each layer ``L`` the occurrence's labelled frames ``J_k``
   (the same frames a NAP uses) move rigidly so that their centre
   ``(min J_k + max J_k) // 2`` lands on the ``L`` frame whose receptive-field
   centre is nearest ``p_k``; frames moved past either end of the utterance
   are dropped. Frames in no group ("rest") stay where they are, so the frame
   statistics for ``normalize="standardize"`` cover the same frames as a NAP's.
4. **averaging**: the moved frames go into the same mergeable
   :class:`~asr_introspect.aggregate.GroupStats` (one per layer, ``G + 1``
   rows) as NAPs: the result is a :class:`~.profiles.NAPs` whose settings say
   ``align="saliency-peak"``, plus the mean and spread of the peak offsets
   ``p_k - (label centre of k)`` in input frames.

Cost: per utterance of a stream batch, one forward pass and one batched backward
pass over the output frames of all its occurrences, through the receptive-field
crop engine of :mod:`asr_introspect.attribution.crops` (each frame's backward pass
runs on its receptive field only, so the wide top layers cost a few frames, not
the utterance). Models the crop engine cannot run (self-attention, residual
blocks) go through :func:`~asr_introspect.attribution.dense.frame_gradients`.
Only occurrences of a group are differentiated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from asr_introspect.aggregate import torch_distributed
from asr_introspect.alignment import frame_times, shift_labels, transfer_index
from asr_introspect.attribution.crops import CropGeometry
from asr_introspect.attribution.dense import frame_gradients, needs_dense
from asr_introspect.attribution.gradients import gradient_crops
from asr_introspect.attribution.stack import conv_stack
from asr_introspect.errors import InputError
from asr_introspect.naps.profiles import NAPEstimator, NAPs
from asr_introspect.stream import DEFAULT_SOURCE, StreamBatch
from asr_introspect.text import PHONE_TO_INDEX

__all__ = [
    "ALIGNMENTS",
    "SNAPEstimator",
    "compute_snaps",
    "letter_occurrences",
    "segment_index",
    "saliency_curves",
    "gradient_stack",
]

#: how a group's frames are placed: where the labels are, or at each occurrence's saliency peak
ALIGNMENTS = ("label", "saliency-peak")


# ---------------------------------------------------------------------------
# occurrences


def letter_occurrences(path: np.ndarray, blank: int, letter_mode: str = "spike", shift: int = 0) -> np.ndarray:
    """Occurrence id of every output frame of one CTC path: (T_out,) int64, -1 for none.

    An occurrence is one emission: a run of one non-blank token in ``path`` (T_out,) (two equal
    letters are two emissions, since CTC puts a blank between them). ``letter_mode="span"``
    extends it over the blanks that follow; ``shift`` moves the ids like
    :meth:`~asr_introspect.stream.StreamBatch.letter_labels` moves the labels.
    """
    path = np.asarray(path, dtype=np.int64)
    starts = (path != blank) & np.concatenate([[True], path[1:] != path[:-1]])
    ids = np.cumsum(starts) - 1
    if letter_mode == "spike":
        ids = np.where(path != blank, ids, -1)
    return shift_labels(ids, int(shift), fill=-1) if shift else ids


def segment_index(starts: np.ndarray, ends: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the segment ``[start, end)`` covering each time (sorted segments, seconds): (T,) int64, -1 if none."""
    times = np.asarray(times, dtype=np.float64)
    out = np.full(times.shape, -1, dtype=np.int64)
    if len(starts) == 0:
        return out
    index = np.searchsorted(starts, times, side="right") - 1
    inside = (index >= 0) & (times < np.asarray(ends)[np.maximum(index, 0)])
    out[inside] = index[inside]
    return out


# ---------------------------------------------------------------------------
# saliency


def _input_gradients(model, x: torch.Tensor, frames: np.ndarray, targets: np.ndarray, stack) -> tuple:
    """d logit[targets_n, frames_n] / d x for x (F, T_in): (gradients (N, F, W), first input frame (N,)),
    W the receptive field (crops of a conv stack, offsets may be negative) or T_in (offsets 0)."""
    if stack is not None:
        x = x.to(device=stack.device, dtype=stack.dtype)
        geometry = CropGeometry(stack, x.shape[1])
        crops = gradient_crops(stack, stack.forward_cache(x), geometry, frames, targets, "sensitivity")
        return crops, geometry.offsets(frames)
    dtype = next(model.module.parameters()).dtype
    _, grads = frame_gradients(model, x.to(device=model.device, dtype=dtype), frames, targets)
    return grads.detach().cpu().numpy(), np.zeros(len(frames), dtype=np.int64)


def gradient_stack(model):
    """The model as a :class:`~asr_introspect.attribution.stack.ConvStack` for the crop engine, or None
    when it is not a plain convolution stack (the dense engine takes over)."""
    if needs_dense(model):
        return None
    try:
        return conv_stack(model)
    except ValueError:
        return None


def saliency_curves(
    model,
    features,
    frames: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    stack="auto",
) -> np.ndarray:
    """Saliency of each occurrence over the input frames: (K, T_in) float64.

    features: (F, T_in) of one utterance; frames[k], targets[k]: (m_k,) output frames and classes of
    occurrence k. ``curve[k, t] = sum_f |d (sum_i logit[targets[k][i], frames[k][i]]) / d x[f, t]|``.
    All occurrences' frames go through one batched backward pass (per chunk). ``stack``: "auto" (build
    :func:`gradient_stack`), a prepared one, or None (the dense engine).
    """
    x = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    x = x.detach()
    if isinstance(stack, str):
        stack = gradient_stack(model)
    T_in = int(x.shape[1])
    K = len(frames)
    curves = np.zeros((K, T_in), dtype=np.float64)
    if K == 0:
        return curves
    sizes = np.array([len(f) for f in frames], dtype=np.int64)
    all_frames = np.concatenate([np.asarray(f, dtype=np.int64) for f in frames])
    all_targets = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
    grads, offsets = _input_gradients(model, x, all_frames, all_targets, stack)
    width = grads.shape[-1]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(K):
        rows = slice(bounds[k], bounds[k + 1])
        if bounds[k] == bounds[k + 1]:
            continue
        lo = int(offsets[rows].min())
        span = np.zeros((x.shape[0], int(offsets[rows].max()) - lo + width), dtype=np.float64)
        for g, o in zip(grads[rows], offsets[rows]):
            span[:, o - lo : o - lo + width] += g
        a, b = max(lo, 0), min(lo + span.shape[1], T_in)
        curves[k, a:b] = np.abs(span[:, a - lo : b - lo]).sum(axis=0)
    return curves


# ---------------------------------------------------------------------------
# the estimator


class SNAPEstimator(NAPEstimator):
    """Streaming SNAP accumulator: NAPs whose occurrences are aligned at their saliency peak.

    Same settings, state, ``merge``/``all_reduce`` and result (:class:`~.profiles.NAPs`) as
    :class:`~.profiles.NAPEstimator`; ``by`` is "letter" or "phoneme" (a labelling function has
    no occurrences to align) and the model needs a CTC head (its logits are differentiated).
    Extra fitted state: ``n_occurrences_``, ``offset_sum_`` and ``offset_sq_sum_`` (peak minus
    label centre, input frames), summed over occurrences.
    """

    def __init__(
        self,
        by: str = "letter",
        layers: Sequence[str] | None = None,
        *,
        groups: Sequence[str] | None = None,
        source: str = DEFAULT_SOURCE,
        letter_mode: str = "spike",
        shift: int = 0,
        weighting: str | None = None,
        skip_errors: bool = True,
        batch_size: int = 16,
    ) -> None:
        if callable(by) or by not in ("letter", "phoneme"):
            raise InputError(f"saliency-peak alignment needs by='letter' or 'phoneme', got {by!r}")
        super().__init__(
            by,
            layers,
            groups=groups,
            source=source,
            letter_mode=letter_mode,
            shift=shift,
            weighting=weighting,
            skip_errors=skip_errors,
            batch_size=batch_size,
        )

    def reset(self) -> SNAPEstimator:
        super().reset()
        self.n_occurrences_ = 0
        self.offset_sum_ = 0.0
        self.offset_sq_sum_ = 0.0
        self._frame_seconds: float | None = None
        self._stack_model: tuple | None = None
        return self

    def _bind(self, model, channels: dict[str, int]) -> None:
        model.require_ctc("saliency-peak alignment")
        blank = model.alphabet.symbols[model.alphabet.blank]
        if self.by == "letter" and self.groups is not None and blank in self.groups:
            raise InputError(f"saliency-peak alignment: the blank {blank!r} has no occurrences to align; leave it out")
        super()._bind(model, channels)
        self._frame_seconds = float(model.feature_config.frame_seconds)

    def _stack(self, model):
        if self._stack_model is None or self._stack_model[0] is not model:
            self._stack_model = (model, gradient_stack(model))
        return self._stack_model[1]

    # -- occurrences of one batch ----------------------------------------------------------

    def _occurrences(self, batch: StreamBatch) -> tuple[Callable[[str], np.ndarray], list, list]:
        """(occurrence ids per layer: fn(layer) -> (B, T_layer) int64 batch-wide ids or -1, and per
        utterance the output frames and classes of each of its occurrences; empty for occurrences
        outside every group, which are not aligned)."""
        model = batch.model
        out_layer = model.output_layer
        n_out = batch.layer_lengths(out_layer)
        G = len(self.groups_)
        frames: list[list[np.ndarray]] = []
        targets: list[list[np.ndarray]] = []
        groups: list[np.ndarray] = []
        if self.by == "letter":
            blank = model.alphabet.blank
            paths = batch.output_paths(self.source)
            ids_out = []
            for b, path in enumerate(paths):
                if path is None:
                    ids_out.append(np.full(int(n_out[b]), -1, dtype=np.int64))
                    frames.append([])
                    targets.append([])
                    groups.append(np.zeros(0, dtype=np.int64))
                    continue
                ids = letter_occurrences(path, blank, self.letter_mode, self.shift)
                labels = batch.letter_labels(out_layer, self.source, self.letter_mode, self.shift)[b, : len(ids)]
                n_k = int(ids.max()) + 1 if ids.size else 0
                letter = np.full(n_k, blank, dtype=np.int64)
                letter[ids[ids >= 0]] = labels[ids >= 0]
                f_k = [np.flatnonzero(ids == k) for k in range(n_k)]
                frames.append(f_k)
                targets.append([np.full(len(f), letter[k], dtype=np.int64) for k, f in enumerate(f_k)])
                groups.append(self._map[letter])
                ids_out.append(ids)

            def local(layer: str) -> np.ndarray:
                width = batch.width(layer)
                index = (
                    np.arange(width) if layer == out_layer else transfer_index(model.frame_map, out_layer, layer, width)
                )
                out = np.full((len(batch), width), -1, dtype=np.int64)
                for b, ids in enumerate(ids_out):
                    if len(ids):
                        out[b] = ids[np.minimum(index, len(ids) - 1)]
                return out

        else:
            logits = batch.logits
            blank = model.alphabet.blank
            timelines = []
            for b, utt in enumerate(batch.utterances):
                segments = utt.phones or ()
                starts = np.array([s.start for s in segments], dtype=np.float64)
                ends = np.array([s.end for s in segments], dtype=np.float64)
                timelines.append((starts, ends))
                phone_ids = [PHONE_TO_INDEX[s.phone] for s in segments]
                g = self._map[np.array(phone_ids, dtype=np.int64)] if segments else np.zeros(0, dtype=np.int64)
                n = int(n_out[b])
                times = frame_times(model.frame_map, out_layer, n, model.feature_config)
                seg = segment_index(starts, ends, times)
                masked = logits[b, :, :n].clone()
                masked[blank] = -torch.inf
                best = masked.argmax(dim=0).cpu().numpy().astype(np.int64)
                f_k = []
                for k in range(len(segments)):
                    f = np.flatnonzero(seg == k)
                    if not f.size:  # shorter than an output frame: the frame nearest its middle
                        mid = 0.5 * (starts[k] + ends[k]) / model.feature_config.frame_seconds
                        n_in = int(batch.feature_lengths[b])
                        f = np.array([model.frame_map.layer_frame_of_input(out_layer, mid, n_in)], dtype=np.int64)
                    f_k.append(f)
                frames.append(f_k)
                targets.append([best[f] for f in f_k])
                groups.append(g)

            def local(layer: str) -> np.ndarray:
                width = batch.width(layer)
                times = frame_times(model.frame_map, layer, width, model.feature_config)
                return np.stack([segment_index(s, e, times) for s, e in timelines])

        # batch-wide ids: utterance b's occurrence k is offsets[b] + k
        counts = np.array([len(f) for f in frames], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])

        def occurrence_ids(layer: str) -> np.ndarray:
            ids = local(layer)
            return np.where((ids >= 0) & batch.mask(layer), ids + offsets[:, None], -1)

        # occurrences outside every group are not aligned: drop their frames from the saliency pass
        for b in range(len(batch)):
            keep = groups[b] < G
            frames[b] = [f if k else f[:0] for f, k in zip(frames[b], keep)]
            targets[b] = [t if k else t[:0] for t, k in zip(targets[b], keep)]
        return occurrence_ids, frames, targets

    def _peaks(self, batch: StreamBatch, frames: list, targets: list) -> tuple[np.ndarray, np.ndarray]:
        """(peak input frame, label centre in input frames) of every occurrence of the batch (batch-wide
        ids); -1 / NaN for occurrences without frames."""
        model = batch.model
        stack = self._stack(model)
        peaks, centres = [], []
        for b in range(len(batch)):
            n_in = int(batch.feature_lengths[b])
            x = batch.features[b, :, :n_in]
            curves = saliency_curves(model, x, frames[b], targets[b], stack)
            has = np.array([len(f) > 0 for f in frames[b]], dtype=bool)
            peaks.append(np.where(has, curves.argmax(axis=1) if curves.size else -1, -1))
            centre = [
                float(np.mean(model.frame_map.center(model.output_layer, f))) if len(f) else np.nan for f in frames[b]
            ]
            centres.append(np.array(centre, dtype=np.float64))
        if not peaks:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.concatenate(peaks).astype(np.int64), np.concatenate(centres)

    # -- accumulation --------------------------------------------------------------------

    def partial_fit(self, batch: StreamBatch) -> SNAPEstimator:
        """Add one stream batch (it must carry logits; with ``weighting``, streamed with that weighting)."""
        if self.weighting is not None and batch.weighting != self.weighting:
            raise InputError(
                f"weighting={self.weighting!r} needs a stream with weighting={self.weighting!r}, "
                f"got {batch.weighting!r}"
            )
        if batch.logits is None:
            raise InputError("saliency-peak alignment needs the model's logits: stream with forward=True")
        if self.stats_ is None:
            self._bind(batch.model, self.require_layers(batch, self.stream_layers(batch.model)))
        self.require_layers(batch, self.layers_)
        labels = self._group_labels(batch)
        occurrence_ids, frames, targets = self._occurrences(batch)
        peaks, centres = self._peaks(batch, frames, targets)
        aligned = peaks >= 0
        offset = peaks[aligned] - centres[aligned]
        self.n_occurrences_ += int(aligned.sum())
        self.offset_sum_ += float(offset.sum())
        self.offset_sq_sum_ += float((offset**2).sum())
        G = len(self.groups_)
        for name in self.layers_:
            label = labels[name]
            B, T = label.shape
            ids = occurrence_ids(name)
            lengths = batch.layer_lengths(name)
            moving = (label >= 0) & (label < G)
            b_idx, t_idx = np.nonzero(moving)
            k = ids[b_idx, t_idx]
            if (k < 0).any() or (peaks[k] < 0).any():  # every grouped frame belongs to an aligned occurrence
                raise RuntimeError(f"layer {name}: grouped frames without an aligned occurrence")
            first = np.full(len(peaks), np.iinfo(np.int64).max, dtype=np.int64)
            last = np.full(len(peaks), -1, dtype=np.int64)
            np.minimum.at(first, k, t_idx)
            np.maximum.at(last, k, t_idx)
            at_peak = np.asarray(batch.model.frame_map.layer_frame_of_input(name, peaks[k]), dtype=np.int64)
            target = np.minimum(at_peak.reshape(-1), np.maximum(lengths[b_idx] - 1, 0))
            moved = t_idx + target - (first[k] + last[k]) // 2
            inside = (moved >= 0) & (moved < lengths[b_idx])
            rest_b, rest_t = np.nonzero(label == G)
            rows = np.concatenate([b_idx[inside] * T + moved[inside], rest_b * T + rest_t])
            groups = np.concatenate([label[b_idx[inside], t_idx[inside]], np.full(len(rest_b), G, dtype=np.int64)])
            w = None
            if self.weighting is not None:
                w = batch.weights[name].detach().to("cpu", torch.float64).numpy().reshape(-1)[rows]
            self.stats_[name].update(batch.padded_frames(name)[rows], groups, w)
        return self

    def merge(self, other: SNAPEstimator) -> SNAPEstimator:
        """Add ``other``'s frames and occurrence offsets (same layers and groups); returns self."""
        super().merge(other)
        self.n_occurrences_ += other.n_occurrences_
        self.offset_sum_ += other.offset_sum_
        self.offset_sq_sum_ += other.offset_sq_sum_
        return self

    def all_reduce(self, group=None) -> SNAPEstimator:
        """Sum the state (and the occurrence offsets) over all torch.distributed processes."""
        super().all_reduce(group)
        dist = torch_distributed()
        if dist is not None:
            t = torch.tensor([self.n_occurrences_, self.offset_sum_, self.offset_sq_sum_], dtype=torch.float64)
            dist.all_reduce(t, group=group)
            self.n_occurrences_, self.offset_sum_, self.offset_sq_sum_ = int(t[0]), float(t[1]), float(t[2])
        return self

    def result(self) -> NAPs:
        """The SNAPs so far: :class:`NAPs` with settings ``align="saliency-peak"``, ``occurrences`` and
        ``peak_offset`` (mean and std over occurrences of peak minus label centre, input frames and ms)."""
        naps = super().result()
        n = self.n_occurrences_
        mean = self.offset_sum_ / n if n else float("nan")
        std = float(np.sqrt(max(self.offset_sq_sum_ / n - mean**2, 0.0))) if n else float("nan")
        ms = 1000.0 * self._frame_seconds if self._frame_seconds else float("nan")
        naps.settings.update(
            align="saliency-peak",
            occurrences=n,
            peak_offset={"mean_input_frames": mean, "std_input_frames": std, "mean_ms": mean * ms, "std_ms": std * ms},
        )
        return naps


def compute_snaps(
    model,
    utterances: Sequence,
    by: str = "letter",
    layers: Sequence[str] | None = None,
    *,
    progress: bool = False,
    distributed: bool | None = None,
    **settings,
) -> NAPs:
    """SNAPs of ``layers`` (default all) over a corpus: ``SNAPEstimator(by, layers, **settings).fit(model,
    utterances)``. Returns :class:`NAPs` (``means(layer)``: (G, N_l)) with ``settings["align"] ==
    "saliency-peak"``."""
    estimator = SNAPEstimator(by, layers, **settings)
    return estimator.fit(model, utterances, progress=progress, distributed=distributed).result()
