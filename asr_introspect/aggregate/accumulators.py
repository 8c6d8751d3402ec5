"""Mergeable accumulators over a whole corpus: :class:`GroupStats` (NAP state) and :class:`WindowStats`
(letter/phoneme-averaged input windows).

``update`` chunk by chunk, ``merge`` two accumulators, ``all_reduce`` across
processes; the state is plain float64/int64 arrays (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from asr_introspect.aggregate.checks import check_border, check_n_groups, check_window
from asr_introspect.aggregate.distributed import all_reduce_arrays
from asr_introspect.aggregate.kernels import group_stats_into, windowed_sums_into
from asr_introspect.aggregate.stats import specificity, variance_decomposition

__all__ = ["GroupStats", "GroupSummary", "WindowStats", "WindowSummary"]


class GroupSummary(NamedTuple):
    """Result of :meth:`GroupStats.result` (G groups, N features)."""

    means: np.ndarray  # (G, N), NaN for empty groups
    variance: np.ndarray  # (G, N), NaN for empty groups
    std: np.ndarray  # (G, N)
    counts: np.ndarray  # (G,) int64 frames
    weight_sums: np.ndarray  # (G,) float64 (== counts when unweighted)


class GroupStats:
    """Mergeable per-group statistics of frames: the state of a NAP.

    State (float64 unless noted): ``sums (G, N)``, ``sums_sq (G, N)``,
    ``counts (G,) int64`` (frames) and ``weight_sums (G,)`` (sum of frame
    weights; an unweighted update gives every frame weight 1). Means are
    ``sums / weight_sums``; the variance is ``sums_sq / weight_sums - mean**2``
    (population variance, clipped at 0; meaningful for non-negative weights).
    """

    def __init__(self, n_groups: int, n_features: int):
        self.n_groups = check_n_groups(n_groups)
        if int(n_features) != n_features or n_features < 0:
            raise ValueError(f"n_features must be a non-negative integer, got {n_features!r}")
        self.n_features = int(n_features)
        self.sums = np.zeros((self.n_groups, self.n_features))
        self.sums_sq = np.zeros((self.n_groups, self.n_features))
        self.counts = np.zeros(self.n_groups, dtype=np.int64)
        self.weight_sums = np.zeros(self.n_groups)

    def __repr__(self) -> str:
        return f"GroupStats(n_groups={self.n_groups}, n_features={self.n_features}, frames={int(self.counts.sum())})"

    def _arrays(self) -> list[np.ndarray]:
        return [self.sums, self.sums_sq, self.counts, self.weight_sums]

    def update(self, values, labels, weights=None) -> GroupStats:
        """Add frames: values (T, N), labels (T,) in [-1, G), weights (T,) or None."""
        group_stats_into(values, labels, weights, self.sums, self.sums_sq, self.counts, self.weight_sums)
        return self

    def merge(self, other: GroupStats) -> GroupStats:
        """Add ``other``'s state into this one (in place); returns self."""
        if not isinstance(other, GroupStats) or (other.n_groups, other.n_features) != (
            self.n_groups,
            self.n_features,
        ):
            raise ValueError(f"cannot merge {other!r} into {self!r}: shapes differ")
        for mine, theirs in zip(self._arrays(), other._arrays()):
            mine += theirs
        return self

    def all_reduce(self, group=None) -> GroupStats:
        """Sum the state over all processes (torch.distributed SUM); no-op if not initialized.

        A collective: every rank must call it once; afterwards every rank
        holds the totals (calling it twice would count everything twice).
        """
        all_reduce_arrays(self._arrays(), group)
        return self

    def copy(self) -> GroupStats:
        return GroupStats.from_dict(self.to_dict())

    @property
    def means(self) -> np.ndarray:
        """(G, N) weighted means; NaN for empty groups."""
        with np.errstate(divide="ignore", invalid="ignore"):
            m = self.sums / self.weight_sums[:, None]
        m[self.weight_sums == 0] = np.nan
        return m

    def variance(self, ddof: int = 0) -> np.ndarray:
        """(G, N) variance per group; ``ddof`` scales by c / (c - ddof) with c = counts."""
        mean = self.means
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.maximum(self.sums_sq / self.weight_sums[:, None] - mean**2, 0.0)
            if ddof:
                c = self.counts.astype(np.float64)
                factor = np.where(c > ddof, c / (c - ddof), np.nan)
                var = var * factor[:, None]
        return var

    def result(self, ddof: int = 0) -> GroupSummary:
        """Means, variance, std (G, N), counts and weight sums (G,)."""
        var = self.variance(ddof)
        return GroupSummary(self.means, var, np.sqrt(var), self.counts.copy(), self.weight_sums.copy())

    def variance_decomposition(self):
        """``(between (N,), within (N,))``: see :func:`variance_decomposition`."""
        return variance_decomposition(self.sums, self.sums_sq, self.weight_sums)

    def specificity(self) -> np.ndarray:
        """Between- over within-group variance per neuron (N,): see :func:`specificity`."""
        return specificity(self.sums, self.sums_sq, self.weight_sums)

    def to_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """State as arrays (keys ``prefix + sums|sums_sq|counts|weight_sums``), npz-friendly."""
        return {
            prefix + "sums": self.sums.copy(),
            prefix + "sums_sq": self.sums_sq.copy(),
            prefix + "counts": self.counts.copy(),
            prefix + "weight_sums": self.weight_sums.copy(),
        }

    @classmethod
    def from_dict(cls, d, prefix: str = "") -> GroupStats:
        """Inverse of :meth:`to_dict` (e.g. the dict returned by ``io.load_npz``)."""
        sums = np.asarray(d[prefix + "sums"], dtype=np.float64)
        if sums.ndim != 2:
            raise ValueError(f"{prefix}sums must be 2-D (G, N), got shape {sums.shape}")
        out = cls(*sums.shape)
        out.sums[...] = sums
        out.sums_sq[...] = np.asarray(d[prefix + "sums_sq"], dtype=np.float64)
        out.counts[...] = np.asarray(d[prefix + "counts"], dtype=np.int64)
        out.weight_sums[...] = np.asarray(d[prefix + "weight_sums"], dtype=np.float64)
        return out


class WindowSummary(NamedTuple):
    """Result of :meth:`WindowStats.result` (G groups, F features, W window)."""

    means: np.ndarray  # (G, F, W), NaN where position_counts == 0
    counts: np.ndarray  # (G,) int64 windows
    position_counts: np.ndarray  # (G, W) int64 valid columns per window position


class WindowStats:
    """Mergeable per-group sums of input windows (letter/phoneme-averaged patterns).

    State: ``sums (G, F, W) float64``, ``counts (G,) int64`` (windows) and
    ``position_counts (G, W) int64`` (windows whose column w was inside the
    input; equal to ``counts`` in every column for border="skip"). The mean
    pattern is ``sums / position_counts[:, None, :]``. Windows are
    ``[c - W//2, c - W//2 + W)`` around each centre c (see :func:`windowed_sums`).
    """

    def __init__(self, n_groups: int, n_features: int, window: int, border: str = "pad"):
        self.n_groups = check_n_groups(n_groups)
        if int(n_features) != n_features or n_features < 0:
            raise ValueError(f"n_features must be a non-negative integer, got {n_features!r}")
        self.n_features = int(n_features)
        self.window = check_window(window)
        self.border = check_border(border)
        self.sums = np.zeros((self.n_groups, self.n_features, self.window))
        self.counts = np.zeros(self.n_groups, dtype=np.int64)
        self.position_counts = np.zeros((self.n_groups, self.window), dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"WindowStats(n_groups={self.n_groups}, n_features={self.n_features}, "
            f"window={self.window}, border={self.border!r}, windows={int(self.counts.sum())})"
        )

    def _arrays(self) -> list[np.ndarray]:
        return [self.sums, self.counts, self.position_counts]

    def update(self, features, centers, labels) -> WindowStats:
        """Add the windows of one utterance: features (F, T), centers (K,), labels (K,)."""
        windowed_sums_into(features, centers, labels, self.border, self.sums, self.counts, self.position_counts)
        return self

    def merge(self, other: WindowStats) -> WindowStats:
        """Add ``other``'s state into this one (in place); returns self."""
        if not isinstance(other, WindowStats) or (
            other.n_groups,
            other.n_features,
            other.window,
            other.border,
        ) != (self.n_groups, self.n_features, self.window, self.border):
            raise ValueError(f"cannot merge {other!r} into {self!r}: settings differ")
        for mine, theirs in zip(self._arrays(), other._arrays()):
            mine += theirs
        return self

    def all_reduce(self, group=None) -> WindowStats:
        """Sum the state over all processes (torch.distributed SUM); no-op if not initialized."""
        all_reduce_arrays(self._arrays(), group)
        return self

    def copy(self) -> WindowStats:
        return WindowStats.from_dict(self.to_dict())

    @property
    def means(self) -> np.ndarray:
        """(G, F, W) mean window; NaN where no window covered a position."""
        denom = self.position_counts[:, None, :].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            m = self.sums / denom
        m[np.broadcast_to(denom == 0, m.shape)] = np.nan
        return m

    def result(self) -> WindowSummary:
        """Means (G, F, W), counts (G,), position_counts (G, W)."""
        return WindowSummary(self.means, self.counts.copy(), self.position_counts.copy())

    def to_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """State as arrays (``sums``, ``counts``, ``position_counts``, ``border``), npz-friendly."""
        return {
            prefix + "sums": self.sums.copy(),
            prefix + "counts": self.counts.copy(),
            prefix + "position_counts": self.position_counts.copy(),
            prefix + "border": np.array(self.border),
        }

    @classmethod
    def from_dict(cls, d, prefix: str = "") -> WindowStats:
        """Inverse of :meth:`to_dict`."""
        sums = np.asarray(d[prefix + "sums"], dtype=np.float64)
        if sums.ndim != 3:
            raise ValueError(f"{prefix}sums must be 3-D (G, F, W), got shape {sums.shape}")
        out = cls(*sums.shape, border=str(np.asarray(d[prefix + "border"])))
        out.sums[...] = sums
        out.counts[...] = np.asarray(d[prefix + "counts"], dtype=np.int64)
        out.position_counts[...] = np.asarray(d[prefix + "position_counts"], dtype=np.int64)
        return out
