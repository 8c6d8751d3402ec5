"""Stability of a concept dictionary across seeds: Hungarian matching on cosine similarity.

Two dictionaries ``A: (K, C)`` and ``B: (K', C)`` fitted with different seeds
are matched one-to-one by maximizing the summed cosine similarity of the
paired atoms (:func:`scipy.optimize.linear_sum_assignment`). A concept of
``A`` is *stable* when its partner's cosine exceeds ``threshold`` (0.7, as
AudioSAE reports: more than half of its features are stable across seeds).

The null: the same matching against *shuffled* atoms (each atom's entries
permuted independently), which keep the value distribution of every atom,
including its sign and sparsity, but no structure shared with the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.optimize import linear_sum_assignment

from asr_introspect.errors import InputError

__all__ = ["match_concepts", "Stability", "concept_stability"]


def _unit_rows(atoms) -> np.ndarray:
    a = np.asarray(atoms, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"a dictionary must be (K, C), got shape {a.shape}")
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def match_concepts(first, second) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of the atoms of ``first: (K, C)`` and ``second: (K', C)`` maximizing the total
    cosine similarity: (rows (M,), cols (M,), cosines (M,)), M = min(K, K'), sorted by row."""
    a, b = _unit_rows(first), _unit_rows(second)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"dictionaries of {a.shape[1]} and {b.shape[1]} channels cannot be matched")
    cosine = a @ b.T
    rows, cols = linear_sum_assignment(-cosine)
    return rows, cols, cosine[rows, cols]


@dataclass
class Stability:
    """Matched cosines of every pair of seeds: ``cosines`` (pairs, M), ``pairs`` [(i, j)], ``threshold``;
    ``null_cosines`` (pairs, M) against shuffled atoms."""

    threshold: float
    pairs: list[tuple[int, int]]
    cosines: np.ndarray
    null_cosines: np.ndarray
    settings: dict = field(default_factory=dict)

    @property
    def share_stable(self) -> float:
        """Share of matched concepts with cosine > threshold, averaged over pairs of seeds."""
        return float((self.cosines > self.threshold).mean()) if self.cosines.size else float("nan")

    @property
    def null_share(self) -> float:
        return float((self.null_cosines > self.threshold).mean()) if self.null_cosines.size else float("nan")

    def summary(self) -> dict:
        return {
            "threshold": self.threshold,
            "seeds": len({s for pair in self.pairs for s in pair}),
            "share_stable": self.share_stable,
            "median_cosine": float(np.median(self.cosines)) if self.cosines.size else None,
            "null_share_stable": self.null_share,
            "null_median_cosine": float(np.median(self.null_cosines)) if self.null_cosines.size else None,
        }


def concept_stability(dictionaries: Sequence, threshold: float = 0.7, seed: int = 0) -> Stability:
    """Match every pair of ``dictionaries`` (each (K, C), one per seed) and the null (module docstring)."""
    atoms = [_unit_rows(d) for d in dictionaries]
    if len(atoms) < 2:
        raise InputError(f"stability needs dictionaries of at least 2 seeds, got {len(atoms)}")
    if not -1.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be a cosine in [-1, 1], got {threshold!r}")
    rng = np.random.default_rng(seed)
    pairs, cosines, null = [], [], []
    for i, j in combinations(range(len(atoms)), 2):
        cosines.append(match_concepts(atoms[i], atoms[j])[2])
        shuffled = rng.permuted(atoms[j], axis=1)
        null.append(match_concepts(atoms[i], shuffled)[2])
        pairs.append((i, j))
    return Stability(float(threshold), pairs, np.stack(cosines), np.stack(null))
