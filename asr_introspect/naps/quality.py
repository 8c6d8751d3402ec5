"""How well a layer's NAPs separate phonetic categories: numbers per layer, curves across layers.

Per layer (profiles normalized as for clustering, groups with too few frames left out):

- ``ari[kind]``: adjusted Rand index between the hierarchical clustering of
  the categorized groups, cut into as many clusters as there are categories,
  and the categories themselves (1: the tree splits exactly by category; about
  0: unrelated). ``ari_kmeans[kind]``: the same with k-means. Kinds: for
  letters "vowel" (a e i o u vs the other letters a-z; the apostrophe has no
  category), for phonemes "vowel" (vowel vs consonant) and "manner" (manner of
  articulation, ``text.PHONE_CATEGORIES``); silence is left out. Custom groups
  have no categories.
- ``category_silhouette[kind]``: silhouette score of the categories in the
  profile space (same metric): how distinct the categories are, whatever the
  clustering algorithm does.
- ``silhouette``: silhouette score of the hierarchical clustering of all groups
  at ``n_clusters``.
- ``cophenetic``: cophenetic correlation of the group tree (how faithfully the
  dendrogram keeps the profile distances).
- ``specificity``: median over neurons of between-group over within-group
  variance of the frames (:meth:`NAPs.specificity`, from the sums of squares):
  how much a neuron's response depends on the group relative to its spread
  inside a group. Computed for letter and for phoneme NAPs of the same layer it
  says whether the layer is more letter- or more phoneme-specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score, silhouette_score

from asr_introspect.naps.cluster import (
    cophenetic_correlation,
    cut_tree,
    default_n_clusters,
    kmeans_groups,
    linkage_matrix,
    pairwise_distances,
)
from asr_introspect.text import PHONE_TO_INDEX, SILENCE, category_labels

__all__ = ["LayerQuality", "CATEGORY_KINDS", "VOWEL_LETTERS", "group_categories", "layer_quality", "naps_quality"]

VOWEL_LETTERS = frozenset("aeiou")
CATEGORY_KINDS = {"letter": ("vowel",), "phoneme": ("vowel", "manner"), "custom": ()}


def group_categories(groups: Sequence[str], by: str, kind: str) -> list[str | None]:
    """Category of each group name (None: no category, e.g. "'" or "sil").

    by "letter": kind "vowel" -> "vowel" (a e i o u) / "consonant" (other a-z);
    by "phoneme": kind "vowel", "manner", "place" or "voicing" (``text.category_labels``).
    """
    if by == "letter":
        if kind != "vowel":
            raise ValueError(f"letters have only the 'vowel' category kind, got {kind!r}")
        return [
            "vowel" if g in VOWEL_LETTERS else "consonant" if len(g) == 1 and "a" <= g <= "z" else None for g in groups
        ]
    if by == "phoneme":
        return [None if g == SILENCE or g not in PHONE_TO_INDEX else category_labels([g], kind)[0] for g in groups]
    return [None] * len(groups)


@dataclass
class LayerQuality:
    """Cluster-quality numbers of one layer (see the module docstring); NaN where undefined."""

    layer: str
    by: str
    n_groups: int
    n_clusters: int
    silhouette: float
    cophenetic: float
    specificity: float
    ari: dict[str, float] = field(default_factory=dict)
    ari_kmeans: dict[str, float] = field(default_factory=dict)
    category_silhouette: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _silhouette(distances, labels) -> float:
    labels = np.asarray(labels)
    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= len(labels) - 1:
        return float("nan")
    return float(silhouette_score(squareform(distances), labels, metric="precomputed"))


def layer_quality(
    naps,
    layer: str,
    normalize: str = "zscore",
    method: str = "average",
    metric: str = "euclidean",
    n_clusters: int | None = None,
    min_count: int = 1,
    seed: int = 0,
) -> LayerQuality:
    """:class:`LayerQuality` of ``naps`` (a :class:`~asr_introspect.naps.NAPs`) at ``layer``."""
    profiles, groups = naps.profiles(layer, normalize, min_count)
    nan = float("nan")
    spec = naps.specificity(layer)
    spec = spec[~np.isnan(spec)]
    specificity = float(np.median(spec)) if spec.size else nan
    k = default_n_clusters(len(groups)) if n_clusters is None else int(n_clusters)
    out = LayerQuality(layer, naps.by, len(groups), k, nan, nan, specificity)
    if len(groups) < 2:
        return out
    Z = linkage_matrix(profiles, method, metric)
    d = pairwise_distances(profiles, metric)
    out.silhouette = _silhouette(d, cut_tree(Z, k))
    out.cophenetic = cophenetic_correlation(Z, profiles, metric)
    for kind in CATEGORY_KINDS.get(naps.by, ()):
        cats = group_categories(groups, naps.by, kind)
        idx = [i for i, c in enumerate(cats) if c is not None]
        names = [cats[i] for i in idx]
        n_cat = len(set(names))
        if n_cat < 2 or len(idx) <= n_cat:
            out.ari[kind] = out.ari_kmeans[kind] = out.category_silhouette[kind] = nan
            continue
        sub = profiles[idx]
        hier = cut_tree(linkage_matrix(sub, method, metric), n_cat)
        out.ari[kind] = float(adjusted_rand_score(names, hier))
        out.ari_kmeans[kind] = float(adjusted_rand_score(names, kmeans_groups(sub, n_cat, seed)))
        out.category_silhouette[kind] = _silhouette(pairwise_distances(sub, metric), names)
    return out


def naps_quality(naps, layers: Sequence[str] | None = None, **kwargs) -> list[LayerQuality]:
    """:func:`layer_quality` for each of ``layers`` (default: all layers of ``naps``)."""
    return [layer_quality(naps, layer, **kwargs) for layer in (layers or naps.layers)]
