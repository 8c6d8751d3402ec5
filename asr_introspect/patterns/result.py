"""The result of averaging aligned inputs: per-label window sums and their normalizations.

Normalizations (G labels, F bands, W window): ``"none"`` the per-label averages
``A_g``; ``"subtract"`` ``A_g - M`` with ``M`` the average over all windows of
all kept labels; ``"zscore"`` ``(A_g - M) / S`` with ``S`` the pooled standard
deviation per (band, position); ``"balanced"`` ``(A_g - M) / s_f`` with ``s_f``
each band's standard deviation (see :mod:`asr_introspect.patterns`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr_introspect.features import FeatureConfig, mel_frequencies
from asr_introspect.io import load_npz, save_npz
from asr_introspect.patterns.centroids import spectral_centroid

__all__ = ["PatternResult", "NORMALIZATIONS", "label_file_name"]

NORMALIZATIONS = ("none", "subtract", "zscore", "balanced")


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
    freqs = mel_frequencies(feature_config)
    if len(freqs) != n_features:
        raise ValueError(f"feature config has {len(freqs)} mel bands, the patterns {n_features}")
    return freqs


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

    def spectral_centroids(
        self, kind: str = "positive", half_width: int | None = 2, db_std: float = 15.0
    ) -> dict[str, float]:
        """Label -> spectral centroid (Hz) around the aligned frame (see :func:`spectral_centroid`).

        ``kind="positive"`` uses the subtracted patterns, ``"energy"`` the averages.
        Labels without windows get NaN.
        """
        patterns = self.subtracted if kind == "positive" else self.averages
        freqs = self.frequencies_hz
        return {
            name: spectral_centroid(patterns[g], freqs, kind, half_width=half_width, db_std=db_std)
            if self.counts[g] > 0
            else float("nan")
            for g, name in enumerate(self.names)
        }

    # -- combining, saving ----------------------------------------------------------

    def merge(self, other: PatternResult) -> PatternResult:
        """A new result with both results' sums (same labels and window)."""
        if self.names != other.names or self.sums.shape != other.sums.shape:
            raise ValueError("cannot merge pattern results with different labels or window")
        return PatternResult(
            self.by,
            self.names,
            self.label_ids.copy(),
            self.sums + other.sums,
            self.sums_sq + other.sums_sq,
            self.counts + other.counts,
            self.position_counts + other.position_counts,
            self.frame_seconds,
            self.feature_config,
            dict(self.settings),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """npz-ready arrays: the state plus ``averages``, ``subtracted``, ``mean``, axes."""
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
        return save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path) -> PatternResult:
        """Inverse of :meth:`save`."""
        d = load_npz(path)
        config = FeatureConfig.from_dict(json.loads(str(d["feature_config"]))) if "feature_config" in d else None
        return cls(
            str(d["by"]),
            tuple(str(n) for n in d["names"]),
            d["label_ids"],
            d["sums"],
            d["sums_sq"],
            d["counts"],
            d["position_counts"],
            float(d["frame_seconds"]),
            config,
            json.loads(str(d["settings"])),
        )
