"""The corpus stream: one pass of a corpus through a model, batch by batch.

Every corpus-level analysis (NAPs, patterns, evaluation, the feature prior,
dissection, concepts) consumes :func:`stream_corpus`. A :class:`StreamBatch`
carries the padded features, the logits, the activations of the layers asked
for, optional per-frame gradient weights, and *labels on any layer's time
axis*, computed on first use and cached:

- ``letter_labels(layer, source, letter_mode, shift)``: alphabet indices from
  the CTC path on the output axis (forced alignment of the transcript or the
  greedy prediction), carried to ``layer`` (:mod:`asr_introspect.alignment`);
- ``phone_labels(layer)``: indices into :data:`text.PHONES` of the phone
  segment covering each frame's centre.

Labels are ``(B, T_layer)`` int64 with -1 for "no label": padded frames,
utterances without labels (``letter_rows`` / ``phone_rows`` say which have
them, ``skipped`` says why the others have none) and frames outside every
phone segment. ``mask(layer)`` tells padding from unlabelled valid frames.
``layer`` may be ``"input"`` (the feature frames).

Default label source: ``"forced"``. Forced alignment labels frames with what
was said, so an analysis of *the model* is not relabelled by its own errors;
``"predicted"`` (the greedy path, what the original work averaged) is one
argument away.

Padding is exact (:meth:`ASRModel.logits` zeroes every layer beyond each
utterance's length), so batching never changes a valid frame. Under
``torchrun`` each process streams ``utterances[rank::world]``; estimators
sum their state with ``all_reduce`` (:func:`fit_estimators` does both).

Estimator convention (scikit-learn-like): settings in the constructor;
``partial_fit(batch)`` on stream batches; ``fit(model, utterances)`` resets and
streams; ``result()`` returns the result; ``merge`` and ``all_reduce`` combine
states. :class:`StreamEstimator` provides ``fit`` for every estimator that
states what it needs from the stream (``stream_layers``, ``weighting``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from asr_introspect.aggregate import torch_distributed
from asr_introspect.alignment import (
    PhoneTimeline,
    UtteranceAlignment,
    forced_align,
    frame_times,
    greedy_path,
    letter_labels,
    shift_labels,
    token_spans,
    transfer_index,
)
from asr_introspect.audio import load_audio
from asr_introspect.corpus.batching import iterate_batches
from asr_introspect.errors import AlignmentError, InputError
from asr_introspect.features import featurize
from asr_introspect.hooks import ActivationRecorder

__all__ = [
    "StreamBatch",
    "StreamEstimator",
    "stream_corpus",
    "fit_estimators",
    "align_corpus",
    "shard",
    "eval_mode",
    "layer_channels",
    "LETTER_SOURCES",
    "LETTER_MODES",
    "WEIGHTINGS",
    "DEFAULT_SOURCE",
]

LETTER_SOURCES = ("forced", "predicted")
LETTER_MODES = ("spike", "span")
WEIGHTINGS = (None, "gradient", "saliency")
#: the one default letter source of every analysis (module docstring says why)
DEFAULT_SOURCE = "forced"


def check_letter_settings(source: str, letter_mode: str, shift: Any) -> int:
    """Validate letter-label settings (InputError naming the bad one); returns ``shift`` as int."""
    if source not in LETTER_SOURCES:
        raise InputError(f"source must be one of {LETTER_SOURCES}, got {source!r}")
    if letter_mode not in LETTER_MODES:
        raise InputError(f"letter_mode must be one of {LETTER_MODES}, got {letter_mode!r}")
    if isinstance(shift, bool) or int(shift) != shift:
        raise InputError(f"shift must be an integer number of output frames, got {shift!r}")
    return int(shift)


@dataclass
class StreamBatch:
    """One padded batch of the stream.

    features: (B, F, T_in); feature_lengths: (B,); logits: (B, C, T_out) or None
    (``forward=False``); out_lengths: (B,); activations[layer]: (B, channels, T_layer),
    zero beyond each length; lengths[layer]: (B,) valid frames; weights[layer]: (B, T_layer)
    per-frame weights, with ``weighting`` naming their kind, else None. ``model`` gives the geometry.
    """

    model: Any
    utterances: list
    features: torch.Tensor
    feature_lengths: torch.Tensor
    logits: torch.Tensor | None
    out_lengths: torch.Tensor | None
    activations: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor] | None = None
    weighting: str | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.utterances)

    # -- geometry ------------------------------------------------------------------------

    def width(self, layer: str) -> int:
        """Padded frames of ``layer`` in this batch ("input": the feature frames)."""
        if layer in self.activations:
            return int(self.activations[layer].shape[-1])
        if layer == "input":
            return int(self.features.shape[-1])
        if self.logits is not None and layer == self.model.output_layer:
            return int(self.logits.shape[-1])
        return int(self.model.frame_map.output_length(layer, int(self.features.shape[-1])))

    def layer_lengths(self, layer: str) -> np.ndarray:
        """(B,) int64 valid frames of ``layer`` ("input" allowed)."""
        key = ("lengths", layer)
        if key not in self._cache:
            if layer in self.lengths:
                value = self.lengths[layer]
            elif layer == "input":
                value = self.feature_lengths
            else:
                value = self.model.layer_length(layer, self.feature_lengths)
            self._cache[key] = np.asarray(torch.as_tensor(value).cpu(), dtype=np.int64).reshape(-1)
        return self._cache[key]

    def _axis(self, layer: str) -> tuple:
        """What a layer's frame labels depend on: its frame geometry (stride, offset, receptive field),
        padded width and valid lengths. Layers with equal axes (e.g. every block of a transformer) share
        one label array, computed once; treat label arrays as read-only."""
        key = ("axis", layer)
        if key not in self._cache:
            if layer == "input":
                geometry = (1, 0, 1)
            else:
                g = self.model.frame_map.layer(layer)
                geometry = (g.stride, g.offset, g.receptive_field)
            self._cache[key] = (*geometry, self.width(layer), self.layer_lengths(layer).tobytes())
        return self._cache[key]

    def mask(self, layer: str) -> np.ndarray:
        """(B, T_layer) bool: True on valid (non-padded) frames."""
        return np.arange(self.width(layer))[None, :] < self.layer_lengths(layer)[:, None]

    # -- activations -----------------------------------------------------------------------

    def padded_frames(self, layer: str) -> np.ndarray:
        """Every frame of the padded batch, frames-major: (B * T_layer, channels) float32, C-contiguous
        (frame ``b*T + t`` is utterance b, frame t; padding included). Computed once per layer and shared
        by every estimator of the pass; treat it as read-only."""
        key = ("frames", layer)
        if key not in self._cache:
            acts = self.activations[layer].detach().to("cpu", torch.float32).numpy()
            B, C, T = acts.shape
            self._cache[key] = np.ascontiguousarray(acts.transpose(0, 2, 1)).reshape(B * T, C)
        return self._cache[key]

    def valid(self, layer: str, index: int) -> torch.Tensor:
        """Activations of utterance ``index`` without padding: (channels, T_valid)."""
        return self.activations[layer][index, :, : int(self.layer_lengths(layer)[index])]

    def utterance_features(self, index: int) -> np.ndarray:
        """Features of utterance ``index`` without padding: (F, T_valid) float32, C-contiguous."""
        n = int(self.feature_lengths[index])
        return np.ascontiguousarray(self.features[index, :, :n].numpy(), dtype=np.float32)

    # -- letters ---------------------------------------------------------------------------

    def _need_logits(self, what: str) -> None:
        self.model.require_letters(what)
        if self.logits is None and self.model.has_ctc_head:
            raise ValueError(f"{what} need the model's logits: stream with forward=True")

    def output_paths(self, source: str = DEFAULT_SOURCE) -> list[np.ndarray | None]:
        """Per utterance the CTC path on the output axis, (T_out_b,) int64, or None when the transcript
        cannot be forced-aligned (the reason is in :attr:`skipped`)."""
        key = ("paths", source)
        if key not in self._cache:
            self._need_logits("letter labels")
            paths: list[np.ndarray | None] = []
            reasons = self._cache.setdefault(("skipped", source), [])
            labeller = self.model if self.model.has_ctc_head else self.model.aligner
            alphabet = labeller.alphabet
            logits, out_lengths = self._labeller_logits()
            log_probs = F.log_softmax(logits.float(), dim=1) if source == "forced" else None
            for b, utt in enumerate(self.utterances):
                n_out = int(out_lengths[b])
                if source == "predicted":
                    paths.append(greedy_path(logits[b, :, :n_out]))
                    continue
                lp = log_probs[b, :, :n_out].T.contiguous()
                try:
                    targets = alphabet.encode(utt.text, utterance_id=utt.id)
                    paths.append(forced_align(lp, targets, blank=alphabet.blank, utterance_id=utt.id))
                except AlignmentError as exc:
                    paths.append(None)
                    reasons.append((utt.id, str(exc)))
            self._cache[key] = paths
        return self._cache[key]

    def _labeller_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, out_lengths) of the model, or of its aligner (run here, on the same audio) when it
        has no CTC head."""
        if self.model.has_ctc_head:
            return self.logits, self.out_lengths
        if "aligner" not in self._cache:
            aligner = self.model.aligner
            sr = aligner.feature_config.sample_rate
            waves = [load_audio(u.audio_path, sample_rate=sr) for u in self.utterances]
            features, lengths = featurize(waves, aligner.feature_config)
            with eval_mode(aligner), torch.no_grad():
                self._cache["aligner"] = aligner.logits(features, lengths)
        return self._cache["aligner"]

    def forced_scores(self) -> np.ndarray:
        """(B,) log-probability of each forced path (NaN where none)."""
        paths = self.output_paths("forced")
        log_probs = F.log_softmax(self._labeller_logits()[0].float(), dim=1)
        return np.array(
            [
                np.nan if p is None else float(log_probs[b, torch.as_tensor(p), torch.arange(len(p))].sum())
                for b, p in enumerate(paths)
            ]
        )

    def letter_rows(self, source: str = DEFAULT_SOURCE) -> np.ndarray:
        """(B,) bool: utterances that have letter labels from ``source``."""
        return np.array([p is not None for p in self.output_paths(source)], dtype=bool)

    def letter_labels(
        self, layer: str, source: str = DEFAULT_SOURCE, letter_mode: str = "spike", shift: int = 0
    ) -> np.ndarray:
        """(B, T_layer) int64 alphabet indices on ``layer``'s axis, -1 for no label.

        The output-axis path (``source``), as ``letter_mode`` labels (spike / span), moved ``shift``
        output frames later (negative: earlier; vacated frames are blank), then carried to ``layer``:
        each frame takes the output frame nearest its receptive-field centre, clipped to the
        utterance's last output frame (:func:`alignment.transfer_labels`).
        """
        key = ("letters", self._axis(layer), source, letter_mode, int(shift))
        if key in self._cache:
            return self._cache[key]
        model = self.model
        labeller = model if model.has_ctc_head else model.aligner
        width = self.width(layer)
        rows, padded, last = self._output_letters(source, letter_mode, int(shift))
        labels = np.full((len(self.utterances), width), -1, dtype=np.int64)
        if rows:
            if labeller is not model:  # another model's output frames: carried over by time
                index = aligned_index(model, labeller, layer, width)
            elif layer == model.output_layer:
                index = np.arange(width)
            else:
                index = transfer_index(model.frame_map, model.output_layer, layer, width)
            carried = np.take_along_axis(padded, np.minimum(index[None, :], last), axis=1)
            labels[rows] = np.where(self.mask(layer)[rows], carried, -1)
        labels.setflags(write=False)  # shared by every layer on this axis
        self._cache[key] = labels
        return labels

    def _output_letters(self, source: str, letter_mode: str, shift: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Output-axis letter labels shared by every layer: (rows with a path, (R, T_out) labels padded
        with blank, (R, 1) last valid output frame of each)."""
        key = ("output letters", source, letter_mode, shift)
        if key not in self._cache:
            paths = self.output_paths(source)
            labeller = self.model if self.model.has_ctc_head else self.model.aligner
            blank = labeller.alphabet.blank
            rows = [b for b, p in enumerate(paths) if p is not None]
            kept = [letter_labels(paths[b], letter_mode, blank=blank) for b in rows]
            if shift:
                kept = [shift_labels(p, shift, fill=blank) for p in kept]
            padded = np.full((len(rows), max((len(p) for p in kept), default=1) or 1), blank, dtype=np.int64)
            for i, p in enumerate(kept):
                padded[i, : len(p)] = p
            last = np.array([max(len(p) - 1, 0) for p in kept], dtype=np.int64)[:, None]
            self._cache[key] = (rows, padded, last)
        return self._cache[key]

    # -- phones ----------------------------------------------------------------------------

    def phone_rows(self) -> np.ndarray:
        """(B,) bool: utterances with phone segments."""
        return np.array([bool(getattr(u, "phones", None)) for u in self.utterances], dtype=bool)

    def phone_labels(self, layer: str) -> np.ndarray:
        """(B, T_layer) int64 indices into ``text.PHONES`` of the segment covering each frame's centre,
        -1 outside every segment, on padded frames and for utterances without segments."""
        key = ("phones", self._axis(layer))
        if key in self._cache:
            return self._cache[key]
        width = self.width(layer)
        labels = np.full((len(self.utterances), width), -1, dtype=np.int64)
        rows = np.flatnonzero(self.phone_rows())
        if rows.size:
            times = frame_times(self.model.frame_map, layer, width, self.model.feature_config)
            timelines = self._cache.setdefault("phone timelines", {})
            for b in rows:
                if b not in timelines:  # parsed once per utterance, shared by every layer
                    timelines[b] = PhoneTimeline.from_segments(self.utterances[b].phones)
                labels[b] = timelines[b].labels(times)
            labels = np.where(self.mask(layer), labels, -1)
        labels.setflags(write=False)  # shared by every layer on this axis
        self._cache[key] = labels
        return labels

    # -- bookkeeping -------------------------------------------------------------------------

    def skipped(self, labels: str = "letters", source: str = DEFAULT_SOURCE) -> list[tuple[str, str]]:
        """(utterance id, reason) of the utterances without ``labels`` ("letters" or "phones")."""
        if labels == "phones":
            return [(u.id, "no phone segments") for u, ok in zip(self.utterances, self.phone_rows()) if not ok]
        self.output_paths(source)
        return list(self._cache.get(("skipped", source), []))


def aligned_index(model, aligner, layer: str, width: int) -> np.ndarray:
    """For frames ``0 .. width-1`` of ``model``'s ``layer``, the ``aligner`` output frame nearest in time
    (receptive-field centres, in seconds): (width,) int64, >= 0, not clipped above."""
    seconds = frame_times(model.frame_map, layer, width, model.feature_config)
    aligner_frames = seconds / aligner.feature_config.frame_seconds
    return np.asarray(aligner.frame_map.layer_frame_of_input(aligner.output_layer, aligner_frames), dtype=np.int64)


# ---------------------------------------------------------------------------
# the stream


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """Run the module in eval mode (BatchNorm running stats, no dropout); restore every module's mode after."""
    modes = [(m, m.training) for m in model.module.modules()]
    model.module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def shard(utterances: Sequence, distributed: bool | None = None) -> tuple[list, int, int]:
    """(this process's utterances, rank, world). ``distributed``: None = shard when a
    ``torch.distributed`` process group is initialized (``utterances[rank::world]``); False = never;
    True = require one."""
    dist = torch_distributed()
    if distributed is False or dist is None:
        if distributed:
            raise RuntimeError("distributed=True but no torch.distributed process group is initialized")
        return list(utterances), 0, 1
    rank, world = dist.get_rank(), dist.get_world_size()
    return list(utterances)[rank::world], rank, world


def layer_channels(model, layers: Sequence[str]) -> dict[str, int]:
    """Channels of each layer, from one forward pass on zeros (eval mode, no grad)."""
    n_in = max(int(model.min_input_frames), 8)
    dtype = next(model.module.parameters()).dtype
    features = torch.zeros(1, model.n_features, n_in, device=model.device, dtype=dtype)
    with eval_mode(model), torch.no_grad(), ActivationRecorder(model, layers) as recorder:
        recorder.run(features)
        return {name: int(recorder.activations[name].shape[1]) for name in layers}


def _weights(activations: dict[str, torch.Tensor], grads, weighting: str) -> dict[str, torch.Tensor]:
    """Per-frame weights (B, T_l) from activations and their gradients (B, C_l, T_l)."""
    out = {}
    for (name, act), grad in zip(activations.items(), grads):
        if grad is None:
            grad = torch.zeros_like(act)
        w = grad.norm(dim=1) if weighting == "gradient" else (grad * act).abs().sum(dim=1)
        out[name] = w.detach()
    return out


def _forward(model, recorder: ActivationRecorder, batch, weighting: str | None):
    """(logits, out_lengths, activations, weights) of one corpus batch."""
    if weighting is None:
        with torch.no_grad():
            logits, out_lengths = recorder.run(batch.features, batch.feature_lengths)
        return logits, out_lengths, dict(recorder.activations), None
    with torch.enable_grad():
        logits, out_lengths = recorder.run(batch.features, batch.feature_lengths)
        acts = {name: recorder.activations[name] for name in recorder.layers}
        frames = torch.arange(logits.shape[-1], device=logits.device)
        valid = frames[None, :] < out_lengths.to(logits.device)[:, None]
        target = logits.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)  # (B, T_out)
        objective = (target * valid.to(target.dtype)).sum()
        grads = torch.autograd.grad(objective, list(acts.values()), allow_unused=True)
    weights = _weights(acts, grads, weighting)
    return logits.detach(), out_lengths, {k: v.detach() for k, v in acts.items()}, weights


def stream_corpus(
    model,
    utterances: Sequence,
    layers: Sequence[str] = (),
    *,
    weighting: str | None = None,
    batch_size: int = 16,
    bucket: bool = True,
    forward: bool = True,
    progress: bool = False,
    desc: str = "corpus",
) -> Iterator[StreamBatch]:
    """Stream ``utterances`` through ``model`` (eval mode), one :class:`StreamBatch` at a time.

    layers: layers whose activations to record (the model's ``layer_names``); weighting: None,
    "gradient" (``w_t = ||dy/da_t||``) or "saliency" (``w_t = sum_c |dy/da_t[c] a_t[c]|``), with
    ``y`` the sum over valid output frames of the predicted logit (one backward pass per batch);
    bucket: batch utterances of similar length (padding is exact, so only speed changes); a model
    that cannot be batched exactly (``model.exact_batch`` False) runs one utterance at a time;
    forward: False streams features only (no model run). Memory: one batch. Not sharded: see
    :func:`shard` / :func:`fit_estimators`.
    """
    layers = list(dict.fromkeys(layers))
    if weighting not in WEIGHTINGS:
        raise InputError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    utterances = list(utterances)
    if not utterances:
        return
    if not model.exact_batch:
        batch_size = 1
    batches = iterate_batches(utterances, model.feature_config, model.alphabet, batch_size=batch_size, bucket=bucket)
    bar = tqdm(total=len(utterances), desc=desc, unit="utt", disable=not progress)
    recorder = ActivationRecorder(model, layers, detach=weighting is None)
    try:
        with eval_mode(model), recorder:
            for batch in batches:
                logits = out_lengths = weights = None
                acts: dict[str, torch.Tensor] = {}
                if forward:
                    logits, out_lengths, acts, weights = _forward(model, recorder, batch, weighting)
                lengths = {name: torch.as_tensor(model.layer_length(name, batch.feature_lengths)) for name in layers}
                yield StreamBatch(
                    model,
                    list(batch.utterances),
                    batch.features,
                    batch.feature_lengths,
                    logits,
                    out_lengths,
                    acts,
                    lengths,
                    weights,
                    weighting if forward else None,
                )
                bar.update(len(batch.utterances))
    finally:
        bar.close()


class StreamEstimator:
    """Base of the estimators that consume the stream.

    A subclass sets ``weighting`` (None unless it needs gradient weights), implements
    ``stream_layers(model) -> list[str]`` (layers to record), ``reset()``, ``partial_fit(batch)``,
    ``all_reduce()`` and ``result()``; ``fit`` comes from here.
    """

    weighting: str | None = None
    batch_size: int = 16

    def stream_layers(self, model) -> list[str]:
        """Layers whose activations this estimator needs."""
        return []

    def stream_forward(self) -> bool:
        """Whether this estimator needs the model run (logits, activations); False: features suffice."""
        return True

    @staticmethod
    def require_layers(batch: StreamBatch, layers: Sequence[str]) -> dict[str, int]:
        """{layer: channels} of ``layers`` in ``batch``; an :class:`InputError` naming the layers the
        stream did not record (estimators size their state from this on their first batch)."""
        missing = [n for n in layers if n not in batch.activations]
        if missing:
            raise InputError(f"the stream batch has no activations for {missing}: stream these layers")
        return {n: int(batch.activations[n].shape[1]) for n in layers}

    def prepare(self, model) -> None:
        """Size the state for ``model`` before any batch (so a process with an empty shard can still
        all-reduce). Estimators that size themselves on the first batch override this."""

    def fit(
        self, model, utterances: Sequence, *, progress: bool = False, distributed: bool | None = None
    ) -> StreamEstimator:
        """Reset, then stream ``utterances`` through ``model`` (sharded under torchrun); returns self."""
        self.reset()
        fit_estimators(
            model, utterances, [self], batch_size=self.batch_size, progress=progress, distributed=distributed
        )
        return self


def fit_estimators(
    model,
    utterances: Sequence,
    estimators: Sequence[StreamEstimator],
    *,
    batch_size: int = 16,
    progress: bool = False,
    distributed: bool | None = None,
    bucket: bool = True,
) -> list[StreamEstimator]:
    """One stream for several estimators (e.g. letter and phoneme NAPs and patterns in one pass).

    The estimators must share ``weighting``. Under ``torchrun`` each process streams its shard and the
    estimators are all-reduced at the end (every process then holds the totals). Does not reset them.
    """
    estimators = list(estimators)
    weightings = {getattr(e, "weighting", None) for e in estimators}
    if len(weightings) > 1:
        raise InputError(f"estimators in one stream must share the weighting, got {weightings}")
    weighting = weightings.pop() if weightings else None
    layers = list(dict.fromkeys(n for e in estimators for n in e.stream_layers(model)))
    forward = bool(layers) or weighting is not None or any(e.stream_forward() for e in estimators)
    part, rank, world = shard(utterances, distributed)
    for e in estimators:
        e.prepare(model)
    for batch in stream_corpus(
        model,
        part,
        layers,
        weighting=weighting,
        batch_size=batch_size,
        bucket=bucket,
        forward=forward,
        progress=progress and rank == 0,
    ):
        for e in estimators:
            e.partial_fit(batch)
    if world > 1:
        for e in estimators:
            e.all_reduce()
    return estimators


def align_corpus(
    model,
    utterances: Sequence,
    batch_size: int = 16,
    progress: bool = False,
    skip_errors: bool = False,
    keep_features: bool = False,
) -> Iterator[UtteranceAlignment]:
    """Forced-align every utterance's transcript to the model's output frames, in corpus order.

    With ``skip_errors`` an utterance that cannot be aligned is skipped instead of raising
    :class:`~asr_introspect.errors.AlignmentError`; with ``keep_features`` each alignment carries the
    features ``(F, T_in)`` the model saw, so the corpus is featurized once.
    """
    for batch in stream_corpus(
        model, utterances, batch_size=batch_size, bucket=False, progress=progress, desc="aligning"
    ):
        forced = batch.output_paths("forced")
        if not skip_errors and not all(p is not None for p in forced):
            raise AlignmentError(batch.skipped("letters", "forced")[0][1])
        predicted = batch.output_paths("predicted")
        scores = batch.forced_scores()
        for b, utt in enumerate(batch.utterances):
            if forced[b] is None:
                continue
            features = batch.utterance_features(b) if keep_features else None
            yield UtteranceAlignment(
                utt,
                forced[b],
                predicted[b],
                token_spans(forced[b], model.alphabet.blank),
                int(batch.feature_lengths[b]),
                float(scores[b]),
                features,
            )
