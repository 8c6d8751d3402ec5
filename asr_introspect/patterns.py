"""Letter- and phoneme-averaged input windows ("normalized averaging of aligned inputs").

For every labelled frame of a corpus take the input feature window centred on
the frame's input position and average the windows per label (METHODS.md,
"Normalized averaging of aligned inputs"). The per-label averages look alike;
subtracting the average over all windows of all labels leaves the
label-specific patterns.

Labels and positions:

- letters come from the model's CTC path on the output axis (``source``:
  ``"predicted"`` greedy path or ``"forced"`` alignment of the transcript, as
  :func:`asr_introspect.alignment.align_corpus` computes them; see
  :func:`aligned_features`); phonemes from the utterance's
  phone segments (:func:`asr_introspect.alignment.phone_labels`) on the input
  axis (default) or the output axis.
- a labelled frame ``t`` of the output axis sits at input position
  ``round(frame_map.center(output_layer, t))`` (halves round up); an input-axis
  frame sits at itself. With the default window (the receptive field ``R``,
  even for every Wav2Letter preset) the window ``[c - R//2, c - R//2 + R)`` is
  then exactly the receptive field of output frame ``t`` (whose exact centre
  lies half an input frame before column ``R//2``, the "aligned frame").
- ``frames="all"``: one window per labelled frame; ``frames="centers"``: one
  window per run of equal labels (a letter span, a phone segment), at the
  run's middle ``(first + last) / 2`` (rounded up). Two touching segments of
  the same phone form one run.
- windows reaching past the utterance are kept (``border="pad"``): only their
  valid columns count (``position_counts``); ``border="skip"`` drops them. An
  output frame whose input position lies outside ``[0, T_in)`` (the last
  frames of some utterances) is dropped and counted in ``n_dropped_``.

Normalizations of a :class:`PatternResult` (G labels, F bands, W window):

- ``"none"``: the per-label averages ``A_g``;
- ``"subtract"`` (default): ``A_g - M`` with ``M`` the average over all
  windows of all kept labels, weighted by window (frequent labels weigh more);
- ``"zscore"``: ``(A_g - M) / S`` with ``S`` the pooled standard deviation of
  all windows at each (band, position): a standardized effect size per pixel
  (``standard_error=True`` divides by ``S / sqrt(n_g)`` instead: a z-statistic
  that assumes independent windows, which overlapping windows are not);
- ``"balanced"``: frequency-balanced averaging: every mel band is standardized
  by its mean and standard deviation over all windows (all positions) before
  averaging, then ``M`` is subtracted: ``(A_g - M) / s_f``. Because the
  standardization is affine per band, standardizing before averaging equals
  standardizing the averages, so it is exact for streamed data. It keeps
  high-variance bands from dominating the picture.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr_introspect.aggregate import WindowStats
from asr_introspect.text import PHONES

__all__ = [
    "PatternAverager",
    "PatternResult",
    "NORMALIZATIONS",
    "spectral_centroid",
    "sonify_pattern",
    "save_sonifications",
    "label_file_name",
    "label_runs",
    "aligned_features",
    "vowel_fricative_centroids",
]

NORMALIZATIONS = ("none", "subtract", "zscore", "balanced")
_BY = ("letter", "phoneme")
_SOURCES = ("predicted", "forced")
_FRAMES = ("all", "centers")
_AXES = ("input", "output")
_DEFAULT_EXCLUDE = {"letter": ("blank", "space"), "phoneme": ("sil",)}


# ---------------------------------------------------------------------------
# helpers


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


def label_file_name(name: str) -> str:
    """A file-name-safe version of a label (``"'"`` -> ``"apostrophe"``)."""
    special = {"'": "apostrophe", " ": "space", "<blank>": "blank"}
    if name in special:
        return special[name]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return safe or "label"


def _mel_frequencies(feature_config, n_features: int) -> np.ndarray:
    if feature_config is None:
        raise ValueError("frequencies need a feature_config (fit with a model, or pass one)")
    from asr_introspect.features import mel_frequencies

    freqs = mel_frequencies(feature_config)
    if len(freqs) != n_features:
        raise ValueError(f"feature config has {len(freqs)} mel bands, the patterns {n_features}")
    return freqs


# ---------------------------------------------------------------------------
# spectral centroid


def spectral_centroid(pattern, frequencies, kind: str = "positive", center: int | None = None,
                      half_width: int | None = 2, db_std: float = 15.0) -> float:
    """Spectral centroid (Hz) of a pattern around its aligned frame.

    pattern: (F, W) (or (F,) a single profile); frequencies: (F,) Hz of the bands.
    The profile is the mean of columns ``center - half_width .. center +
    half_width`` (default centre ``W // 2``, the aligned frame; ``half_width=None``:
    all columns; NaN columns ignored). Band weights:

    - ``kind="positive"``: the positive part of the profile; meant for a
      *subtracted* pattern, where it is "the bands this label has more energy
      in than the average label";
    - ``kind="energy"``: the power the profile stands for when read as
      z-normalized log-mel features, ``10 ** (db_std * profile / 10)`` (the
      utterance dB mean cancels in the ratio); meant for an *average* pattern.

    Returns ``sum_f freq_f w_f / sum_f w_f``, NaN when every weight is 0.
    """
    p = np.asarray(pattern, dtype=np.float64)
    freqs = np.asarray(frequencies, dtype=np.float64)
    if p.ndim == 2:
        width = p.shape[1]
        c = width // 2 if center is None else int(center)
        if half_width is None:
            cols = p
        else:
            lo, hi = max(0, c - int(half_width)), min(width, c + int(half_width) + 1)
            if hi <= lo:
                raise ValueError(f"no columns around centre {c} in a window of {width}")
            cols = p[:, lo:hi]
        if np.isnan(cols).all():
            return float("nan")
        with np.errstate(invalid="ignore"):
            profile = np.nanmean(cols, axis=1) if np.isnan(cols).any() else cols.mean(axis=1)
    elif p.ndim == 1:
        profile = p
    else:
        raise ValueError(f"pattern must be (F, W) or (F,), got shape {p.shape}")
    if profile.shape != freqs.shape:
        raise ValueError(f"pattern has {profile.shape[0]} bands, frequencies {freqs.shape}")
    if np.isnan(profile).any():
        return float("nan")
    if kind == "positive":
        weights = np.maximum(profile, 0.0)
    elif kind == "energy":
        weights = 10.0 ** (float(db_std) * (profile - profile.max()) / 10.0)
    else:
        raise ValueError(f"kind must be 'positive' or 'energy', got {kind!r}")
    total = weights.sum()
    if not total > 0:
        return float("nan")
    return float((freqs * weights).sum() / total)


# ---------------------------------------------------------------------------
# result


@dataclass
class PatternResult:
    """Per-label window sums over a corpus and everything derived from them.

    G kept labels, F bands, W window positions. State: ``sums``, ``sums_sq``
    (G, F, W) float64, ``counts`` (G,) windows, ``position_counts`` (G, W)
    windows covering each position. ``names`` (G,) label names, ``label_ids``
    (G,) indices into the alphabet or ``text.PHONES``. Column ``W // 2`` is the
    aligned frame; ``times_ms`` gives each column's offset from it.
    """

    by: str
    names: tuple[str, ...]
    label_ids: np.ndarray
    sums: np.ndarray
    sums_sq: np.ndarray
    counts: np.ndarray
    position_counts: np.ndarray
    frame_seconds: float
    feature_config: Any = None
    settings: dict = field(default_factory=dict)

    # -- shapes and axes ----------------------------------------------------------

    @property
    def window(self) -> int:
        return int(self.sums.shape[2])

    @property
    def n_features(self) -> int:
        return int(self.sums.shape[1])

    @property
    def center(self) -> int:
        """Column of the aligned frame (``W // 2``)."""
        return self.window // 2

    @property
    def times_ms(self) -> np.ndarray:
        """(W,) ms of each column relative to the aligned frame."""
        return (np.arange(self.window) - self.center) * self.frame_seconds * 1000.0

    @property
    def labels(self) -> tuple[str, ...]:
        """(G,) label names (same as ``names``)."""
        return self.names

    @property
    def frequencies_hz(self) -> np.ndarray:
        """(F,) centre frequency (Hz) of each mel band."""
        return _mel_frequencies(self.feature_config, self.n_features)

    def index(self, name: str) -> int:
        """Row of label ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown label {name!r}; labels: {list(self.names)}") from None

    # -- statistics ---------------------------------------------------------------

    @staticmethod
    def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = num / den
        return np.where(den > 0, out, np.nan)

    @property
    def averages(self) -> np.ndarray:
        """(G, F, W) per-label mean window; NaN where no window covered a position."""
        return self._divide(self.sums, self.position_counts[:, None, :].astype(np.float64))

    @property
    def mean(self) -> np.ndarray:
        """(F, W) average over all windows of all labels (weighted by window)."""
        return self._divide(self.sums.sum(axis=0), self.position_counts.sum(axis=0)[None, :].astype(np.float64))

    @property
    def pooled_std(self) -> np.ndarray:
        """(F, W) standard deviation of all windows of all labels at each (band, position)."""
        n = self.position_counts.sum(axis=0)[None, :].astype(np.float64)
        second = self._divide(self.sums_sq.sum(axis=0), n)
        return np.sqrt(np.maximum(second - self.mean**2, 0.0))

    @property
    def band_mean(self) -> np.ndarray:
        """(F,) mean of each band over all windows and positions."""
        n = float(self.position_counts.sum())
        return self.sums.sum(axis=(0, 2)) / n if n > 0 else np.full(self.n_features, np.nan)

    @property
    def band_std(self) -> np.ndarray:
        """(F,) standard deviation of each band over all windows and positions."""
        n = float(self.position_counts.sum())
        if n <= 0:
            return np.full(self.n_features, np.nan)
        second = self.sums_sq.sum(axis=(0, 2)) / n
        return np.sqrt(np.maximum(second - self.band_mean**2, 0.0))

    @property
    def subtracted(self) -> np.ndarray:
        """(G, F, W) averages minus the overall mean: the label-specific patterns."""
        return self.averages - self.mean[None]

    def zscores(self, standard_error: bool = False) -> np.ndarray:
        """(G, F, W) ``(A_g - M) / S`` (or ``/ (S / sqrt(n_g))`` with ``standard_error``)."""
        scale = np.broadcast_to(self.pooled_std[None], self.sums.shape)
        if standard_error:
            n = self.position_counts[:, None, :].astype(np.float64)
            scale = self._divide(scale, np.sqrt(n))
        return self._divide(self.subtracted, scale)

    def balanced(self) -> np.ndarray:
        """(G, F, W) frequency-balanced patterns ``(A_g - M) / s_f`` (module docstring)."""
        return self._divide(self.subtracted, self.band_std[None, :, None])

    def normalized(self, kind: str = "subtract") -> np.ndarray:
        """(G, F, W) patterns under normalization ``kind`` (one of :data:`NORMALIZATIONS`)."""
        if kind == "none":
            return self.averages
        if kind == "subtract":
            return self.subtracted
        if kind == "zscore":
            return self.zscores()
        if kind == "balanced":
            return self.balanced()
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")

    def spectral_centroids(self, kind: str = "positive", half_width: int | None = 2,
                           db_std: float = 15.0) -> dict[str, float]:
        """Label -> spectral centroid (Hz) around the aligned frame (see :func:`spectral_centroid`).

        ``kind="positive"`` uses the subtracted patterns, ``"energy"`` the averages.
        Labels without windows get NaN.
        """
        patterns = self.subtracted if kind == "positive" else self.averages
        freqs = self.frequencies_hz
        return {name: spectral_centroid(patterns[g], freqs, kind, half_width=half_width, db_std=db_std)
                if self.counts[g] > 0 else float("nan") for g, name in enumerate(self.names)}

    # -- combining, saving ----------------------------------------------------------

    def merge(self, other: "PatternResult") -> "PatternResult":
        """A new result with both results' sums (same labels and window)."""
        if self.names != other.names or self.sums.shape != other.sums.shape:
            raise ValueError("cannot merge pattern results with different labels or window")
        return PatternResult(self.by, self.names, self.label_ids.copy(), self.sums + other.sums,
                             self.sums_sq + other.sums_sq, self.counts + other.counts,
                             self.position_counts + other.position_counts, self.frame_seconds,
                             self.feature_config, dict(self.settings))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """npz-ready arrays: the state plus ``averages``, ``subtracted``, ``mean``, axes."""
        import json

        arrays = {
            "names": np.array(self.names, dtype=str),
            "label_ids": np.asarray(self.label_ids, dtype=np.int64),
            "averages": self.averages,
            "subtracted": self.subtracted,
            "mean": self.mean,
            "counts": self.counts,
            "position_counts": self.position_counts,
            "sums": self.sums,
            "sums_sq": self.sums_sq,
            "times_ms": self.times_ms,
            "frame_seconds": np.float64(self.frame_seconds),
            "by": np.array(self.by),
            "settings": np.array(json.dumps(self.settings, default=str)),
        }
        if self.feature_config is not None:
            arrays["frequencies_hz"] = self.frequencies_hz
            arrays["feature_config"] = np.array(json.dumps(self.feature_config.to_dict()))
        return arrays

    def save(self, path) -> Path:
        """Write :meth:`to_arrays` to ``path`` (.npz, atomic)."""
        from asr_introspect.io import save_npz

        return save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path) -> "PatternResult":
        """Inverse of :meth:`save`."""
        import json

        from asr_introspect.features import FeatureConfig
        from asr_introspect.io import load_npz

        d = load_npz(path)
        config = FeatureConfig.from_dict(json.loads(str(d["feature_config"]))) if "feature_config" in d else None
        return cls(str(d["by"]), tuple(str(n) for n in d["names"]), d["label_ids"], d["sums"], d["sums_sq"],
                   d["counts"], d["position_counts"], float(d["frame_seconds"]), config,
                   json.loads(str(d["settings"])))


# ---------------------------------------------------------------------------
# the accumulator


class PatternAverager:
    """Streaming per-label average of input windows over a corpus (scikit-learn style).

    by: ``"letter"`` or ``"phoneme"``; source: ``"predicted"`` (greedy path) or
    ``"forced"`` (letters only); window: input frames (default: the model's
    receptive field); frames: ``"all"`` or ``"centers"``; exclude: label names
    left out (default ``("blank", "space")`` for letters, ``("sil",)`` for
    phonemes; ``"blank"``/``"space"`` name the alphabet's blank and space);
    shift_correction: output frames to move letter labels *earlier* (e.g.
    ``alignment.ShiftReport.correction_frames``); axis: where labels live
    (default: ``"output"`` for letters, ``"input"`` for phonemes);
    letter_mode: ``"spike"`` or ``"span"`` (:func:`alignment.letter_labels`);
    border: ``"pad"`` or ``"skip"`` (:class:`aggregate.WindowStats`).

    Use :meth:`fit` on a model and utterances, or :meth:`partial_fit` chunk by
    chunk; :meth:`result` gives a :class:`PatternResult`. Fitted attributes end
    in ``_``: ``stats_``/``squares_`` (WindowStats of features and their
    squares over all G labels), ``window_``, ``names_``, ``n_utterances_``,
    ``skipped_`` (utterance ids without labels), ``n_dropped_``.
    """

    def __init__(self, by: str = "letter", source: str = "predicted", window: int | None = None,
                 frames: str = "all", exclude: Sequence[str] | None = None, shift_correction: int = 0,
                 axis: str | None = None, letter_mode: str = "spike", border: str = "pad",
                 batch_size: int = 16):
        if by not in _BY:
            raise ValueError(f"by must be one of {_BY}, got {by!r}")
        if source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
        if frames not in _FRAMES:
            raise ValueError(f"frames must be one of {_FRAMES}, got {frames!r}")
        if axis is not None and axis not in _AXES:
            raise ValueError(f"axis must be one of {_AXES}, got {axis!r}")
        if letter_mode not in ("spike", "span"):
            raise ValueError(f"letter_mode must be 'spike' or 'span', got {letter_mode!r}")
        if border not in ("pad", "skip"):
            raise ValueError(f"border must be 'pad' or 'skip', got {border!r}")
        if window is not None and (isinstance(window, bool) or int(window) != window or window < 1):
            raise ValueError(f"window must be a positive integer or None, got {window!r}")
        if int(shift_correction) != shift_correction:
            raise ValueError(f"shift_correction must be an integer (output frames), got {shift_correction!r}")
        if by == "phoneme" and shift_correction:
            raise ValueError("shift_correction moves letter labels (the CTC lag); phone segments need none")
        self.by = by
        self.source = source
        self.window = None if window is None else int(window)
        self.frames = frames
        self.exclude = tuple(_DEFAULT_EXCLUDE[by] if exclude is None else exclude)
        self.shift_correction = int(shift_correction)
        self.axis = axis if axis is not None else ("output" if by == "letter" else "input")
        self.letter_mode = letter_mode
        self.border = border
        self.batch_size = int(batch_size)
        self.reset()

    def __repr__(self) -> str:
        return (f"PatternAverager(by={self.by!r}, source={self.source!r}, window={self.window}, "
                f"frames={self.frames!r}, exclude={self.exclude}, shift_correction={self.shift_correction}, "
                f"axis={self.axis!r})")

    def get_params(self) -> dict[str, Any]:
        return {"by": self.by, "source": self.source, "window": self.window, "frames": self.frames,
                "exclude": list(self.exclude), "shift_correction": self.shift_correction, "axis": self.axis,
                "letter_mode": self.letter_mode, "border": self.border}

    def reset(self) -> "PatternAverager":
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
        from asr_introspect.models import FrameMap
        from asr_introspect.text import Alphabet

        if model is not None and self.frame_map_ is None:
            if isinstance(model, FrameMap):
                self.frame_map_, self.output_layer_ = model, model.output_layer
            else:
                self.frame_map_, self.output_layer_ = model.frame_map, model.output_layer
                self.feature_config_ = model.feature_config
                self.alphabet_ = model.alphabet
        if self.stats_ is not None:
            if n_features != self.stats_.n_features:
                raise ValueError(f"features have {n_features} bands, earlier chunks {self.stats_.n_features}")
            return
        if self.axis == "output" and self.frame_map_ is None:
            raise ValueError("labels on the output axis need the model's frame map: pass model= "
                             "(an ASRModel or FrameMap) to partial_fit, or use axis='input'")
        window = self.window
        if window is None:
            if self.frame_map_ is None:
                raise ValueError("window=None means the receptive field: pass model= or set window")
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
                raise ValueError(f"exclude: unknown {self.by} {name!r}; known: {list(names)} "
                                 f"{'and blank, space' if special else ''}")
            keep[index] = False
        self.window_ = int(window)
        self.names_ = names
        self.keep_ = keep
        self.stats_ = WindowStats(len(names), n_features, self.window_, border=self.border)
        self.squares_ = WindowStats(len(names), n_features, self.window_, border=self.border)

    # -- labels -------------------------------------------------------------------------

    def _input_length_of(self, n_input: int) -> int:
        """Frames of the label axis for ``n_input`` input frames."""
        if self.axis == "input":
            return int(n_input)
        return int(self.frame_map_.output_length(self.output_layer_, int(n_input)))

    def frame_labels(self, item, n_input_frames: int | None = None) -> np.ndarray | None:
        """Labels (T_axis,) of one utterance on ``self.axis``; None if it has none.

        item: an :class:`alignment.UtteranceAlignment` (letters or phonemes) or an
        ``Utterance`` (phonemes; then ``n_input_frames`` is required). Applies
        ``shift_correction`` to letters.
        """
        from asr_introspect.alignment import frame_times, phone_labels, shift_labels, transfer_labels

        is_alignment = hasattr(item, "frame_tokens")
        utterance = item.utterance if is_alignment else item
        n_in = int(item.n_input_frames) if is_alignment else n_input_frames
        if n_in is None:
            raise ValueError("n_input_frames is needed to label an Utterance")
        if self.by == "letter":
            if not is_alignment:
                raise ValueError("letter labels come from an UtteranceAlignment (alignment.align_corpus)")
            labels = item.letters(self.source, self.letter_mode)
            if self.shift_correction:
                labels = shift_labels(labels, -self.shift_correction, fill=-1)
            if self.axis == "input":
                labels = transfer_labels(labels, self.frame_map_, self.output_layer_, "input", n_in)
            return labels
        if not getattr(utterance, "phones", None):
            return None
        frame_seconds = self._frame_seconds()
        if self.axis == "input":
            times = np.arange(n_in) * frame_seconds
        else:
            n_out = self._input_length_of(n_in)
            times = frame_times(self.frame_map_, self.output_layer_, n_out, self.feature_config_)
        return phone_labels(utterance.phones, times)

    def _frame_seconds(self) -> float:
        if self.feature_config_ is None:
            raise ValueError("phone times need the model's feature config: fit with an ASRModel")
        return float(self.feature_config_.frame_seconds)

    def _windows(self, labels: np.ndarray, n_input: int) -> tuple[np.ndarray, np.ndarray]:
        """Input centres (K,) and label ids (K,) of the windows of one utterance."""
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
        g = len(self.names_)
        if labels.size and (labels.min() < -1 or labels.max() >= g):
            raise ValueError(f"labels must lie in [-1, {g}) (-1 = none), got {labels.min()}..{labels.max()}")
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

    # -- fitting ------------------------------------------------------------------------

    def _add(self, features: np.ndarray, labels: np.ndarray) -> None:
        n_input = features.shape[1]
        centers, ids = self._windows(labels, n_input)
        self.n_utterances_ += 1
        if centers.size == 0:
            return
        self.stats_.update(features, centers, ids)
        self.squares_.update(np.square(features, dtype=np.float64), centers, ids)

    def partial_fit(self, features, labels, lengths=None, model=None) -> "PatternAverager":
        """Add utterances.

        features: (F, T_in) one utterance or (B, F, T_in) a padded batch (with
        ``lengths`` (B,) valid input frames). labels: (T_axis,) / (B, T_axis)
        ints on ``self.axis`` (alphabet or ``text.PHONES`` indices, -1 none), or
        an ``UtteranceAlignment`` / ``Utterance`` (a list of them for a batch),
        turned into labels by :meth:`frame_labels`. model: an ASRModel or
        FrameMap, needed on first use for the output axis and the default
        window (remembered afterwards).
        """
        x = _to_numpy(features)
        batched = x.ndim == 3
        if x.ndim == 2:
            x = x[None]
            labels = [labels]
            lengths = None if lengths is None else np.asarray(lengths).reshape(1)
        if x.ndim != 3:
            raise ValueError(f"features must be (F, T) or (B, F, T), got shape {x.shape}")
        n_batch = x.shape[0]
        if not isinstance(labels, (list, tuple)):
            labels = list(_to_numpy(labels)) if _to_numpy(labels).ndim == 2 else [labels]
        if len(labels) != n_batch:
            raise ValueError(f"{len(labels)} label arrays for {n_batch} utterances")
        lengths = np.full(n_batch, x.shape[2]) if lengths is None else _to_numpy(lengths).astype(np.int64)
        self._bind(model, x.shape[1])
        for b in range(n_batch):
            n_in = int(lengths[b])
            feats = np.ascontiguousarray(x[b, :, :n_in], dtype=np.float32)
            lab = labels[b]
            if hasattr(lab, "frame_tokens") or hasattr(lab, "audio_path"):
                utterance = lab.utterance if hasattr(lab, "frame_tokens") else lab
                if hasattr(lab, "frame_tokens") and int(lab.n_input_frames) != n_in:
                    raise ValueError(f"utt {getattr(utterance, 'id', '?')}: the alignment has "
                                     f"{lab.n_input_frames} input frames, the features {n_in}")
                lab = self.frame_labels(lab, n_in)
                if lab is None:
                    self.skipped_.append(getattr(utterance, "id", "?"))
                    continue
            lab = _to_numpy(lab)
            n_axis = self._input_length_of(n_in)
            if lab.ndim != 1 or lab.shape[0] < n_axis or (not batched and lab.shape[0] != n_axis):
                raise ValueError(f"labels have shape {lab.shape}, the {self.axis} axis of a "
                                 f"{n_in}-frame utterance has {n_axis} frames")
            self._add(feats, lab[:n_axis])
        return self

    def fit(self, model, utterances: Sequence, alignments: Iterable | None = None,
            progress: bool = False) -> "PatternAverager":
        """Reset, then average over ``utterances`` run through ``model`` (an ASRModel).

        Letters: each utterance is aligned by :func:`aligned_features` (the
        alignments of :func:`alignment.align_corpus`, plus the features);
        utterances that cannot be aligned are skipped. Pass ``alignments``
        (e.g. from ``align_corpus``, or kept from a shift estimate) to reuse them. Phonemes:
        the model is not run; utterances without phone segments are skipped.
        Memory: one batch of features at a time.
        """
        self.reset()
        utterances = list(utterances)
        self._bind(model, model.n_features)
        if self.by == "phoneme":
            usable = [u for u in utterances if getattr(u, "phones", None)]
            self.skipped_.extend(u.id for u in utterances if not getattr(u, "phones", None))
            for utt, feats in _utterance_features(usable, model, self.batch_size, progress):
                self._add(feats, self.frame_labels(utt, feats.shape[1]))
            return self
        if alignments is None:
            pairs = aligned_features(model, utterances, batch_size=self.batch_size, progress=progress)
        else:
            alignments = list(alignments)
            wanted = {a.utterance.id for a in alignments}
            stream = _utterance_features([u for u in utterances if u.id in wanted], model,
                                         self.batch_size, progress)
            pairs = _match(alignments, stream)
        aligned = set()
        for alignment, feats in pairs:
            utt = alignment.utterance
            if feats.shape[1] != alignment.n_input_frames:
                raise ValueError(f"utt {utt.id}: alignment has {alignment.n_input_frames} input frames, "
                                 f"features {feats.shape[1]}")
            aligned.add(utt.id)
            self._add(feats, self.frame_labels(alignment))
        self.skipped_.extend(u.id for u in utterances if u.id not in aligned)
        return self

    # -- combining, results -------------------------------------------------------------

    def merge(self, other: "PatternAverager") -> "PatternAverager":
        """Add another averager's sums (same settings) into this one."""
        if other.stats_ is None:
            return self
        if self.stats_ is None:
            raise ValueError("merge into a fitted averager (call partial_fit first)")
        if self.names_ != other.names_ or not np.array_equal(self.keep_, other.keep_):
            raise ValueError("cannot merge averagers with different label sets")
        self.stats_.merge(other.stats_)
        self.squares_.merge(other.squares_)
        self.n_utterances_ += other.n_utterances_
        self.n_dropped_ += other.n_dropped_
        self.skipped_.extend(other.skipped_)
        return self

    def all_reduce(self, group=None) -> "PatternAverager":
        """Sum the sums over all torch.distributed processes (no-op without a process group)."""
        self._fitted()
        self.stats_.all_reduce(group)
        self.squares_.all_reduce(group)
        return self

    def _fitted(self) -> None:
        if self.stats_ is None:
            raise ValueError("the averager has seen no data yet (call fit or partial_fit)")

    def result(self) -> PatternResult:
        """The :class:`PatternResult` of everything added so far (kept labels only)."""
        self._fitted()
        rows = np.flatnonzero(self.keep_)
        settings = {**self.get_params(), "window": self.window_, "n_utterances": self.n_utterances_,
                    "n_dropped": self.n_dropped_, "n_skipped": len(self.skipped_)}
        if self.feature_config_ is not None:
            frame_seconds = float(self.feature_config_.frame_seconds)
        else:  # no model bound: assume the default front end's hop (8 ms)
            from asr_introspect.features import FeatureConfig

            frame_seconds = FeatureConfig().frame_seconds
            settings["frame_seconds_assumed"] = True
        return PatternResult(self.by, tuple(self.names_[i] for i in rows), rows.astype(np.int64),
                             self.stats_.sums[rows].copy(), self.squares_.sums[rows].copy(),
                             self.stats_.counts[rows].copy(), self.stats_.position_counts[rows].copy(),
                             frame_seconds, self.feature_config_, settings)


# ---------------------------------------------------------------------------
# corpus streaming


def _utterance_features(utterances: Sequence, model, batch_size: int, progress: bool
                        ) -> Iterator[tuple[Any, np.ndarray]]:
    """(utterance, features (F, T_valid) float32) in corpus order, one batch in memory."""
    from tqdm.auto import tqdm

    from asr_introspect.corpus import iterate_batches

    bar = tqdm(total=len(utterances), desc="features", unit="utt", disable=not progress)
    for batch in iterate_batches(utterances, model.feature_config, model.alphabet, batch_size=batch_size,
                                 bucket=False):
        feats = batch.features.numpy()
        for b, utt in enumerate(batch.utterances):
            yield utt, np.ascontiguousarray(feats[b, :, : int(batch.feature_lengths[b])])
        bar.update(len(batch.utterances))
    bar.close()


def _match(alignments: Iterable, stream: Iterator) -> Iterator[tuple[Any, np.ndarray]]:
    """Pair alignments with the features of the same utterance (both in corpus order)."""
    for alignment in alignments:
        target = alignment.utterance.id
        for utt, feats in stream:
            if utt.id == target:
                yield alignment, feats
                break
        else:
            raise ValueError(f"utt {target}: alignments are not in corpus order")


def aligned_features(model, utterances: Sequence, batch_size: int = 16, progress: bool = False,
                     skip_errors: bool = True) -> Iterator[tuple[Any, np.ndarray]]:
    """Yield ``(UtteranceAlignment, features (F, T_in) float32)`` per utterance, in corpus order.

    The same alignments as :func:`alignment.align_corpus` (forced CTC path of the
    transcript, greedy path, spans; padding-exact batches), plus the features
    the model saw, so the corpus is read and featurized once. Utterances whose
    transcript cannot be aligned are skipped (``skip_errors``) or raise
    :class:`errors.AlignmentError`.
    """
    from asr_introspect.alignment import align_corpus

    for alignment in align_corpus(model, list(utterances), batch_size=batch_size, progress=progress,
                                  skip_errors=skip_errors, keep_features=True):
        yield alignment, alignment.features


# ---------------------------------------------------------------------------
# listening


def sonify_pattern(pattern, feature_config, gain: float | str = "auto", n_iter: int = 32,
                   seed: int = 0) -> np.ndarray:
    """Audio for a pattern ``(F, W)`` via :func:`features.invert_features` (Griffin-Lim).

    A pattern is read as z-normalized log-mel features (NaN -> 0). ``gain="auto"``
    scales it to unit standard deviation first, so a subtracted pattern (small
    values around 0) becomes audible; a number multiplies it instead. Returns
    ``audio: ((W - 1) * hop,)`` float32, peak 0.9.
    """
    from asr_introspect.features import invert_features

    p = np.nan_to_num(np.asarray(pattern, dtype=np.float64), nan=0.0)
    if gain == "auto":
        std = float(p.std())
        p = (p - p.mean()) / std if std > 0 else p * 0.0
    else:
        p = p * float(gain)
    return invert_features(p, feature_config, n_iter=n_iter, seed=seed)


def save_sonifications(result: PatternResult, directory, normalization: str = "subtract",
                       labels: Sequence[str] | None = None, prefix: str | None = None,
                       n_iter: int = 32) -> list[Path]:
    """Write one WAV per label with windows: ``DIR/<prefix><label>.wav``; returns the paths.

    ``prefix`` defaults to ``"<by>_<normalization>_"``.
    """
    from asr_introspect.audio import save_audio

    if result.feature_config is None:
        raise ValueError("sonification needs the feature config (fit with a model)")
    directory = Path(directory)
    prefix = f"{result.by}_{normalization}_" if prefix is None else prefix
    patterns = result.normalized(normalization)
    names = labels if labels is not None else [n for g, n in enumerate(result.names) if result.counts[g] > 0]
    paths = []
    for name in names:
        g = result.index(name)
        audio = sonify_pattern(patterns[g], result.feature_config, n_iter=n_iter)
        paths.append(save_audio(directory / f"{prefix}{label_file_name(name)}.wav", audio,
                                result.feature_config.sample_rate))
    return paths


def vowel_fricative_centroids(centroids: dict[str, float], fricatives: Sequence[str] = ("s", "sh", "z", "f")
                              ) -> dict[str, Any]:
    """Compare phone centroids: fricatives' minimum vs vowels' maximum and median (Hz)."""
    from asr_introspect.text import PHONE_CATEGORIES

    vowels = {p: c for p, c in centroids.items() if p in PHONE_CATEGORIES and PHONE_CATEGORIES[p].vowel
              and math.isfinite(c)}
    fric = {p: centroids.get(p, float("nan")) for p in fricatives}
    finite = [c for c in fric.values() if math.isfinite(c)]
    return {
        "fricatives": fric,
        "vowels": vowels,
        "fricative_min": min(finite) if finite else float("nan"),
        "vowel_max": max(vowels.values()) if vowels else float("nan"),
        "vowel_median": float(np.median(list(vowels.values()))) if vowels else float("nan"),
    }
