"""Bootstrap over utterances from per-utterance group sums: no second pass over the audio.

A NAP is ``sum of activations / number of frames`` per group. Kept per
utterance, the sums and counts of a corpus are a sparse table with one row per
(utterance, group) that occurs: :class:`UtteranceSums`. Resampling utterances
with replacement (multiplicities ``m_u``, drawn once and shared by every
layer, labelling and null so that differences are paired) re-sums the rows:
``NAP_g = sum_u m_u S_ug / sum_u m_u n_ug``. That is exactly the NAP of the
resampled corpus (an utterance drawn twice counts twice), computed with one
matrix product per group instead of a pass over the audio.

Memory: rows x channels x variants x 4 bytes (float32 sums; counts exact).
Sums of squares are not kept: the bootstrapped measures need means only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["UtteranceSums", "bootstrap_multiplicities", "resampled_means"]


def bootstrap_multiplicities(n_utterances: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_utterances) int64: how often each utterance is drawn in each replicate
    (``n_utterances`` draws with replacement, seeded)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_utterances, size=(n_boot, n_utterances))
    out = np.zeros((n_boot, n_utterances), dtype=np.int64)
    np.add.at(out, (np.repeat(np.arange(n_boot), n_utterances), draws.ravel()), 1)
    return out


class UtteranceSums:
    """Per-(utterance, group) sums of one layer's frames, for several variants that share the rows.

    ``n_groups``: G; variants (e.g. "model", "shuffled", "random") are added with the same labels, so
    they share ``utterance (R,)``, ``group (R,)`` and ``counts (R,)``; ``sums[variant]``: (R, N) float32.
    """

    def __init__(self, n_groups: int, n_features: int, variants: Sequence[str]) -> None:
        self.n_groups, self.n_features = int(n_groups), int(n_features)
        self.variants = list(variants)
        self._keys: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._sums: dict[str, list[np.ndarray]] = {v: [] for v in self.variants}
        self._done: tuple | None = None

    def add(self, utterance: np.ndarray, group: np.ndarray, frames: dict[str, np.ndarray]) -> None:
        """Add frames: utterance (F,) global utterance indices, group (F,) in [0, G) (-1: skip),
        frames[variant]: (F, N) activations, one array per variant."""
        keep = np.flatnonzero(np.asarray(group) >= 0)
        if keep.size == 0:
            return
        key = np.asarray(utterance, dtype=np.int64)[keep] * self.n_groups + np.asarray(group)[keep]
        order = np.argsort(key, kind="stable")
        idx = keep[order]
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        self._keys.append(key[starts])
        self._counts.append(np.diff(np.r_[starts, key.size]).astype(np.int64))
        for v in self.variants:
            x = np.asarray(frames[v], dtype=np.float32)[idx]
            self._sums[v].append(np.add.reduceat(x, starts, axis=0))
        self._done = None

    def _finish(self) -> tuple:
        if self._done is None:
            keys = np.concatenate(self._keys) if self._keys else np.zeros(0, dtype=np.int64)
            counts = np.concatenate(self._counts) if self._counts else np.zeros(0, dtype=np.int64)
            sums = {
                v: np.concatenate(parts) if parts else np.zeros((0, self.n_features), np.float32)
                for v, parts in self._sums.items()
            }
            # rows in key order; an utterance split over two batches never happens (batches hold whole
            # utterances), but rows with the same key are merged anyway so the table is canonical
            uniq, inverse = np.unique(keys, return_inverse=True)
            if uniq.size == keys.size:
                order = np.argsort(keys, kind="stable")
                counts = counts[order]
                sums = {v: s[order] for v, s in sums.items()}
            else:
                counts = np.bincount(inverse, weights=counts, minlength=uniq.size).astype(np.int64)
                for v in sums:
                    merged = np.zeros((uniq.size, self.n_features))
                    np.add.at(merged, inverse, sums[v])
                    sums[v] = merged.astype(np.float32)
            self._keys, self._counts = [uniq], [counts]
            self._sums = {v: [s] for v, s in sums.items()}
            self._done = (uniq // self.n_groups, uniq % self.n_groups, counts, sums)
        return self._done

    @property
    def utterance(self) -> np.ndarray:
        return self._finish()[0]

    @property
    def group(self) -> np.ndarray:
        return self._finish()[1]

    @property
    def counts(self) -> np.ndarray:
        return self._finish()[2]

    def sums(self, variant: str) -> np.ndarray:
        return self._finish()[3][variant]

    def totals(self, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """(means (G, N) float64, counts (G,) int64) over all utterances (NaN rows for empty groups)."""
        means, counts = resampled_means(self, variant, None)
        return means[0], counts[0]

    @property
    def nbytes(self) -> int:
        _, _, counts, sums = self._finish()
        return int(counts.nbytes * 3 + sum(s.nbytes for s in sums.values()))


def resampled_means(
    table: UtteranceSums, variant: str, multiplicities: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """NAPs of resampled corpora: (means (B, G, N) float64 with NaN rows for empty groups, counts (B, G)).

    multiplicities: (B, U) draws per utterance (:func:`bootstrap_multiplicities`), or None for the
    corpus itself (B = 1).
    """
    utt, group, counts, sums = table.utterance, table.group, table.counts, table.sums(variant)
    if multiplicities is None:
        multiplicities = np.ones((1, int(utt.max()) + 1 if utt.size else 1), dtype=np.int64)
    m = np.asarray(multiplicities, dtype=np.float64)
    B, G, N = m.shape[0], table.n_groups, table.n_features
    means = np.full((B, G, N), np.nan)
    n = np.zeros((B, G), dtype=np.int64)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        w = m[:, utt[rows]]  # (B, R_g)
        n[:, g] = np.rint(w @ counts[rows]).astype(np.int64)
        s = w @ sums[rows].astype(np.float64)  # (B, N)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[:, g] = s / n[:, g][:, None]
    means[n == 0] = np.nan
    return means, n
