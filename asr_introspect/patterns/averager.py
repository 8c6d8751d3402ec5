"""The streaming accumulator of aligned input windows (see :mod:`asr_introspect.patterns`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from asr_introspect.aggregate import WindowStats, torch_distributed
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.models import FrameMap
from asr_introspect.patterns.result import PatternResult
from asr_introspect.stream import DEFAULT_SOURCE, StreamBatch, StreamEstimator, check_letter_settings
from asr_introspect.text import PHONES, Alphabet

__all__ = ["PatternAverager", "label_runs"]

_BY = ("letter", "phoneme")
_FRAMES = ("all", "centers")
_AXES = ("input", "output")
_DEFAULT_EXCLUDE = {"letter": ("blank", "space"), "phoneme": ("sil",)}


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def label_runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal labels >= 0: ``(starts, stops, labels)``, each (K,); frames ``[start, stop)``."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    change = np.flatnonzero(np.diff(labels) != 0) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    keep = labels[starts] >= 0
    return starts[keep], stops[keep], labels[starts][keep]


class PatternAverager(StreamEstimator):
    """Streaming per-label average of input windows over a corpus.

    by: ``"letter"`` or ``"phoneme"``; source / letter_mode / shift: letter labels as
    :meth:`StreamBatch.letter_labels` makes them (``shift``: output frames later, negative:
    earlier, e.g. ``-ShiftReport.correction_frames`` to undo the CTC lag); window: input frames
    (default: the model's receptive field); frames: ``"all"`` or ``"centers"``; exclude: label
    names left out (default ``("blank", "space")`` for letters, ``("sil",)`` for phonemes;
    ``"blank"``/``"space"`` name the alphabet's blank and space); axis: where labels live
    (default ``"output"`` for letters, ``"input"`` for phonemes); border: ``"pad"`` or
    ``"skip"`` (:class:`aggregate.WindowStats`); batch_size: of the stream :meth:`fit` runs.

    :meth:`partial_fit` takes corpus-stream batches, :meth:`add` one utterance's arrays.
    Fitted attributes end in ``_``: ``stats_``/``squares_`` (WindowStats of features and their
    squares over all labels), ``window_``, ``names_``, ``n_utterances_``, ``skipped_`` (ids
    without labels), ``n_dropped_`` (windows whose centre lies outside the input).
    """

    def __init__(
        self,
        by: str = "letter",
        *,
        source: str = DEFAULT_SOURCE,
        letter_mode: str = "spike",
        shift: int = 0,
        window: int | None = None,
        frames: str = "all",
        exclude: Sequence[str] | None = None,
        axis: str | None = None,
        border: str = "pad",
        batch_size: int = 16,
    ):
        if by not in _BY:
            raise InputError(f"by must be one of {_BY}, got {by!r}")
        shift = check_letter_settings(source, letter_mode, shift)
        if frames not in _FRAMES:
            raise InputError(f"frames must be one of {_FRAMES}, got {frames!r}")
        if axis is not None and axis not in _AXES:
            raise InputError(f"axis must be one of {_AXES}, got {axis!r}")
        if border not in ("pad", "skip"):
            raise InputError(f"border must be 'pad' or 'skip', got {border!r}")
        if window is not None and (isinstance(window, bool) or int(window) != window or window < 1):
            raise InputError(f"window must be a positive integer or None, got {window!r}")
        if by == "phoneme" and shift:
            raise InputError("shift moves letter labels (the CTC lag); phone segments need none")
        self.by = by
        self.source = source
        self.letter_mode = letter_mode
        self.shift = shift
        self.window = None if window is None else int(window)
        self.frames = frames
        self.exclude = tuple(_DEFAULT_EXCLUDE[by] if exclude is None else exclude)
        self.axis = axis if axis is not None else ("output" if by == "letter" else "input")
        self.border = border
        self.batch_size = int(batch_size)
        self.reset()

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"PatternAverager({params})"

    def get_params(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "source": self.source,
            "letter_mode": self.letter_mode,
            "shift": self.shift,
            "window": self.window,
            "frames": self.frames,
            "exclude": list(self.exclude),
            "axis": self.axis,
            "border": self.border,
        }

    def reset(self) -> PatternAverager:
        """Forget everything fitted."""
        self.stats_: WindowStats | None = None
        self.squares_: WindowStats | None = None
        self.window_: int | None = None
        self.names_: tuple[str, ...] | None = None
        self.keep_: np.ndarray | None = None
        self.frame_map_ = None
        self.output_layer_: str | None = None
        self.feature_config_ = None
        self.alphabet_ = None
        self.n_utterances_ = 0
        self.n_dropped_ = 0
        self.skipped_: list[str] = []
        return self

    # -- binding a model ----------------------------------------------------------------

    def _bind(self, model, n_features: int) -> None:
        """Take geometry (frame map, output layer, feature config, alphabet) from ``model``."""
        if model is not None and self.frame_map_ is None:
            if isinstance(model, FrameMap):
                self.frame_map_, self.output_layer_ = model, model.output_layer
            else:
                if model.feature_config.kind == "waveform":
                    raise InputError(
                        "patterns average the model's input spectrogram around each label, but this model takes "
                        "the raw waveform: average its layers instead (NAPs), or study a log-mel model"
                    )
                if self.by == "letter":
                    model.require_ctc("letter patterns (labels on the output axis)")
                self.frame_map_, self.output_layer_ = model.frame_map, model.output_layer
                self.feature_config_ = model.feature_config
                self.alphabet_ = model.alphabet
        if self.stats_ is not None:
            if n_features != self.stats_.n_features:
                raise InputError(f"features have {n_features} bands, earlier chunks {self.stats_.n_features}")
            return
        if self.axis == "output" and self.frame_map_ is None:
            raise InputError(
                "labels on the output axis need the model's frame map: pass model= "
                "(an ASRModel or FrameMap), or use axis='input'"
            )
        window = self.window
        if window is None:
            if self.frame_map_ is None:
                raise InputError("window=None means the receptive field: pass model= or set window")
            if self.frame_map_.is_global(self.output_layer_):
                raise InputError(
                    "window=None means the receptive field, but this model's output sees the whole utterance "
                    "(self-attention): set window (input frames), e.g. --window 64"
                )
            window = self.frame_map_.layer(self.output_layer_).receptive_field
        if self.by == "letter":
            self.alphabet_ = self.alphabet_ or Alphabet.default()
            names = tuple(self.alphabet_.symbols)
            special = {"blank": self.alphabet_.blank, "space": self.alphabet_.space}
        else:
            names = tuple(PHONES)
            special = {}
        lookup = {n: i for i, n in enumerate(names)}
        keep = np.ones(len(names), dtype=bool)
        for name in self.exclude:
            index = special.get(name, lookup.get(name))
            if index is None:
                raise InputError(
                    f"exclude: unknown {self.by} {name!r}; known: {list(names)} {'and blank, space' if special else ''}"
                )
            keep[index] = False
        self.window_ = int(window)
        self.names_ = names
        self.keep_ = keep
        self.stats_ = WindowStats(len(names), n_features, self.window_, border=self.border)
        self.squares_ = WindowStats(len(names), n_features, self.window_, border=self.border)

    def _axis_length(self, n_input: int) -> int:
        """Frames of the label axis for ``n_input`` input frames."""
        if self.axis == "input":
            return int(n_input)
        return int(self.frame_map_.output_length(self.output_layer_, int(n_input)))

    def stream_forward(self) -> bool:
        """Letters come from the model's output; phone segments need only the features."""
        return self.by == "letter"

    # -- windows -------------------------------------------------------------------------

    def _windows(self, labels: np.ndarray, n_input: int) -> tuple[np.ndarray, np.ndarray]:
        """Input centres (K,) and label ids (K,) of the windows of one utterance."""
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise InputError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
        g = len(self.names_)
        if labels.size and (labels.min() < -1 or labels.max() >= g):
            raise InputError(f"labels must lie in [-1, {g}) (-1 = none), got {labels.min()}..{labels.max()}")
        valid = labels >= 0
        kept = valid.copy()
        kept[valid] = self.keep_[labels[valid]]
        labels = np.where(kept, labels, -1)
        if self.frames == "all":
            positions = np.flatnonzero(labels >= 0).astype(np.float64)
            ids = labels[labels >= 0]
        else:
            starts, stops, ids = label_runs(labels)
            positions = (starts + stops - 1) / 2.0
        if self.axis == "output":
            positions = np.asarray(self.frame_map_.center(self.output_layer_, positions), dtype=np.float64)
        centers = _round_half_up(positions.reshape(-1))
        inside = (centers >= 0) & (centers < n_input)
        self.n_dropped_ += int((~inside).sum())
        return centers[inside], ids[inside]

    def _add(self, features: np.ndarray, labels: np.ndarray) -> None:
        centers, ids = self._windows(labels, features.shape[1])
        self.n_utterances_ += 1
        if centers.size == 0:
            return
        self.stats_.update(features, centers, ids)
        self.squares_.update(np.square(features, dtype=np.float64), centers, ids)

    # -- fitting ------------------------------------------------------------------------

    def partial_fit(self, batch: StreamBatch) -> PatternAverager:
        """Add one :class:`~asr_introspect.stream.StreamBatch`: each utterance's features with its
        labels on ``self.axis``; utterances without labels are listed in ``skipped_``."""
        model = batch.model
        self._bind(model, int(batch.features.shape[1]))
        layer = "input" if self.axis == "input" else model.output_layer
        if self.by == "letter":
            labels = batch.letter_labels(layer, self.source, self.letter_mode, self.shift)
            rows = batch.letter_rows(self.source)
        else:
            labels = batch.phone_labels(layer)
            rows = batch.phone_rows()
        lengths = batch.layer_lengths(layer)
        for b, utt in enumerate(batch.utterances):
            if not rows[b]:
                self.skipped_.append(utt.id)
                continue
            self._add(batch.utterance_features(b), labels[b, : lengths[b]])
        return self

    def add(self, features, labels, lengths=None, model=None) -> PatternAverager:
        """Add utterances given as arrays (labels from elsewhere).

        features: (F, T_in) one utterance or (B, F, T_in) a padded batch (with ``lengths`` (B,)
        valid input frames). labels: (T_axis,) / (B, T_axis) ints on ``self.axis`` (alphabet or
        ``text.PHONES`` indices, -1 none). model: an ASRModel or FrameMap, needed on first use for
        the output axis and the default window (remembered afterwards).
        """
        x = _to_numpy(features)
        batched = x.ndim == 3
        if x.ndim == 2:
            x = x[None]
            labels = [labels]
            lengths = None if lengths is None else np.asarray(lengths).reshape(1)
        if x.ndim != 3:
            raise InputError(f"features must be (F, T) or (B, F, T), got shape {x.shape}")
        n_batch = x.shape[0]
        if not isinstance(labels, (list, tuple)):
            labels = list(_to_numpy(labels)) if _to_numpy(labels).ndim == 2 else [labels]
        if len(labels) != n_batch:
            raise InputError(f"{len(labels)} label arrays for {n_batch} utterances")
        lengths = np.full(n_batch, x.shape[2]) if lengths is None else _to_numpy(lengths).astype(np.int64)
        self._bind(model, x.shape[1])
        for b in range(n_batch):
            n_in = int(lengths[b])
            lab = _to_numpy(labels[b])
            n_axis = self._axis_length(n_in)
            if lab.ndim != 1 or lab.shape[0] < n_axis or (not batched and lab.shape[0] != n_axis):
                raise InputError(
                    f"labels have shape {lab.shape}, the {self.axis} axis of a "
                    f"{n_in}-frame utterance has {n_axis} frames"
                )
            self._add(np.ascontiguousarray(x[b, :, :n_in], dtype=np.float32), lab[:n_axis])
        return self

    # -- combining, results -------------------------------------------------------------

    def merge(self, other: PatternAverager) -> PatternAverager:
        """Add another averager's sums (same settings) into this one."""
        if other.stats_ is None:
            return self
        if self.stats_ is None:
            raise InputError("merge into a fitted averager (call partial_fit first)")
        if self.names_ != other.names_ or not np.array_equal(self.keep_, other.keep_):
            raise InputError("cannot merge averagers with different label sets")
        self.stats_.merge(other.stats_)
        self.squares_.merge(other.squares_)
        self.n_utterances_ += other.n_utterances_
        self.n_dropped_ += other.n_dropped_
        self.skipped_.extend(other.skipped_)
        return self

    def prepare(self, model) -> None:
        """Size the state for ``model`` (window, bands, labels) before any batch."""
        self._bind(model, int(model.n_features))

    def all_reduce(self, group=None) -> PatternAverager:
        """Sum the state over all torch.distributed processes (no-op without a process group)."""
        self._fitted()
        self.stats_.all_reduce(group)
        self.squares_.all_reduce(group)
        dist = torch_distributed()
        if dist is not None:
            counts = torch.tensor([self.n_utterances_, self.n_dropped_], dtype=torch.int64)
            dist.all_reduce(counts, group=group)
            self.n_utterances_, self.n_dropped_ = (int(c) for c in counts)
            gathered: list = [None] * dist.get_world_size(group)
            dist.all_gather_object(gathered, self.skipped_, group=group)
            self.skipped_ = [sid for part in gathered for sid in part]
        return self

    def _fitted(self) -> None:
        if self.stats_ is None:
            raise InputError("the averager has seen no data yet (call fit or partial_fit)")

    def result(self) -> PatternResult:
        """The :class:`PatternResult` of everything added so far (kept labels only)."""
        self._fitted()
        rows = np.flatnonzero(self.keep_)
        settings = {
            **self.get_params(),
            "window": self.window_,
            "n_utterances": self.n_utterances_,
            "n_dropped": self.n_dropped_,
            "n_skipped": len(self.skipped_),
        }
        if self.feature_config_ is not None:
            frame_seconds = float(self.feature_config_.frame_seconds)
        else:  # no model bound: assume the default front end's hop (8 ms)
            frame_seconds = FeatureConfig().frame_seconds
            settings["frame_seconds_assumed"] = True
        return PatternResult(
            self.by,
            tuple(self.names_[i] for i in rows),
            rows.astype(np.int64),
            self.stats_.sums[rows].copy(),
            self.squares_.sums[rows].copy(),
            self.stats_.counts[rows].copy(),
            self.stats_.position_counts[rows].copy(),
            frame_seconds,
            self.feature_config_,
            settings,
        )
