"""Concept scores of neurons from counts: IoU, precision, recall, selectivity; labels and polysemanticity.

For neuron ``n`` with threshold ``tau_n`` and concept ``c`` of facet ``f``
(frames ``C``; the facet's universe ``U_f``: the frames where that facet is
known, see :mod:`~asr_introspect.dissection.concepts`), with ``A_n = {t in U_f:
a_n(t) >= tau_n}``:

- ``IoU = |A_n & C| / |A_n | C|`` (Network Dissection);
- ``precision = |A_n & C| / |A_n|``: how much of the neuron's activity is the concept;
- ``recall = |A_n & C| / |C|``: how much of the concept the neuron covers;
- ``selectivity = (mean_C a_n - mean_{U_f \\ C} a_n) / std a_n``: the difference of the neuron's mean
  activation inside and outside the concept, in units of its standard deviation over all frames
  (a standardized mean difference; it needs no threshold).

All of them are ratios of sums that the dissection pass accumulates per *base
label* (one facet value, e.g. phone /s/): counts of active frames and
activation sums per base label and neuron, frames per base label, and
co-occurrences of base labels. A concept is a union of base labels of one
facet, so its counts are sums of rows (:attr:`ConceptVocabulary.derivation`).

A neuron's *labels* are the concepts with ``IoU >= min_iou``, best first.
Its *polysemanticity* counts the distinct things among them: labels are
grouped when one mostly lies inside the other (overlap coefficient
``|C1 & C2| / min(|C1|, |C2|) >= min_overlap``, e.g. /s/ and "fricative", or /s/
and "centroid 4-8 kHz" when most /s/ frames have that centroid), and
polysemanticity is the number of groups (connected components). 0 means no
concept of the vocabulary describes the neuron.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import connected_components

__all__ = ["LayerCounts", "ConceptScores", "concept_scores", "unit_labels", "polysemanticity", "concept_overlap"]


@dataclass
class LayerCounts:
    """What the dissection pass accumulates for one layer (every field a sum over frames).

    active: (K_base, N) int64 active frames with each base label; sums: (K_base, N) float64 activation
    sums per base label; frames: (K_base,) int64 frames per base label; cooccurrence: (K_base, K_base)
    int64 frames with both labels; n_frames: valid frames; n_active, total, total_sq: (N,) active frames,
    sums and sums of squares over all valid frames.
    """

    active: np.ndarray
    sums: np.ndarray
    frames: np.ndarray
    cooccurrence: np.ndarray
    n_frames: np.ndarray
    n_active: np.ndarray
    total: np.ndarray
    total_sq: np.ndarray

    FIELDS = ("active", "sums", "frames", "cooccurrence", "n_frames", "n_active", "total", "total_sq")

    @classmethod
    def zeros(cls, n_base: int, n_neurons: int) -> LayerCounts:
        return cls(
            np.zeros((n_base, n_neurons), dtype=np.int64),
            np.zeros((n_base, n_neurons), dtype=np.float64),
            np.zeros(n_base, dtype=np.int64),
            np.zeros((n_base, n_base), dtype=np.int64),
            np.zeros(1, dtype=np.int64),
            np.zeros(n_neurons, dtype=np.int64),
            np.zeros(n_neurons, dtype=np.float64),
            np.zeros(n_neurons, dtype=np.float64),
        )

    def arrays(self) -> list[np.ndarray]:
        return [getattr(self, name) for name in self.FIELDS]

    def add(self, other: LayerCounts) -> LayerCounts:
        for mine, theirs in zip(self.arrays(), other.arrays()):
            mine += theirs
        return self

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{name}": getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> LayerCounts:
        return cls(*(np.array(arrays[f"{prefix}{name}"]) for name in cls.FIELDS))

    @property
    def mean(self) -> np.ndarray:
        """(N,) mean activation over all valid frames."""
        return self.total / max(int(self.n_frames[0]), 1)

    @property
    def std(self) -> np.ndarray:
        """(N,) standard deviation over all valid frames."""
        n = max(int(self.n_frames[0]), 1)
        return np.sqrt(np.maximum(self.total_sq / n - (self.total / n) ** 2, 0.0))


@dataclass
class ConceptScores:
    """Scores of the N neurons of one layer against K concepts (each (N, K) float64, NaN where undefined).

    Also: ``intersection`` (N, K) active concept frames, ``active`` (N, K) active frames of the concept's
    universe, ``concept_frames`` (K,), ``universe_frames`` (K,), ``active_fraction`` (N,) realized share of
    active frames.
    """

    concepts: list[str]
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    selectivity: np.ndarray
    intersection: np.ndarray
    active: np.ndarray
    concept_frames: np.ndarray
    universe_frames: np.ndarray
    active_fraction: np.ndarray


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def concept_scores(
    counts: LayerCounts, derivation: np.ndarray, concept_facet: np.ndarray, facet_rows: np.ndarray, names
) -> ConceptScores:
    """Scores from one layer's counts.

    derivation: (K, K_base) bool (concept = union of base labels); concept_facet: (K,) facet of each
    concept; facet_rows: (F, K_base) bool base labels of each facet.
    """
    D = np.asarray(derivation, dtype=np.float64)
    U = np.asarray(facet_rows, dtype=np.float64)
    inter = (D @ counts.active).T  # (N, K)
    concept_frames = D @ counts.frames  # (K,)
    universe = (U @ counts.frames)[concept_facet]  # (K,)
    active = (U @ counts.active)[concept_facet].T  # (N, K)
    sums_in = (D @ counts.sums).T
    sums_universe = (U @ counts.sums)[concept_facet].T
    union = active + concept_frames[None, :] - inter
    mean_in = _ratio(sums_in, concept_frames[None, :])
    mean_out = _ratio(sums_universe - sums_in, (universe - concept_frames)[None, :])
    std = counts.std[:, None]
    selectivity = _ratio(mean_in - mean_out, np.where(std > 0, std, 0.0))
    return ConceptScores(
        list(names),
        _ratio(inter, union),
        _ratio(inter, active),
        _ratio(inter, concept_frames[None, :]),
        selectivity,
        inter.round().astype(np.int64),
        active.round().astype(np.int64),
        concept_frames.round().astype(np.int64),
        universe.round().astype(np.int64),
        counts.n_active / max(int(counts.n_frames[0]), 1),
    )


def concept_overlap(counts: LayerCounts, derivation: np.ndarray) -> np.ndarray:
    """(K, K) overlap coefficient of concepts: ``|C1 & C2| / min(|C1|, |C2|)`` (NaN for an empty concept)."""
    D = np.asarray(derivation, dtype=np.float64)
    both = D @ counts.cooccurrence @ D.T
    sizes = D @ counts.frames
    return _ratio(both, np.minimum(sizes[:, None], sizes[None, :]))


def unit_labels(scores: ConceptScores, min_iou: float) -> list[np.ndarray]:
    """Per neuron the indices of its labels: concepts with ``IoU >= min_iou``, best IoU first."""
    iou = np.nan_to_num(scores.iou, nan=-1.0)
    out = []
    for row in iou:
        passing = np.flatnonzero(row >= min_iou)
        out.append(passing[np.argsort(-row[passing], kind="stable")])
    return out


def polysemanticity(labels: list[np.ndarray], overlap: np.ndarray, min_overlap: float = 0.5) -> np.ndarray:
    """(N,) number of groups of each neuron's labels, grouping labels whose overlap coefficient is at least
    ``min_overlap`` (connected components)."""
    linked = np.nan_to_num(overlap, nan=0.0) >= min_overlap
    out = np.zeros(len(labels), dtype=np.int64)
    for n, members in enumerate(labels):
        if len(members):
            graph = linked[np.ix_(members, members)]
            out[n] = connected_components(graph, directed=False)[0]
    return out
