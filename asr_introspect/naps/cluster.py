"""Clustering NAPs: hierarchical (scipy) over groups and neurons, k-means for comparison.

Distances (``metric``): "euclidean", "correlation" (1 - Pearson r between two
profiles) or "cosine" (1 - cosine similarity). A profile without variance
(correlation) or of zero norm (cosine) has no defined distance; it is set to
1 (as for uncorrelated / orthogonal profiles) instead of NaN. ``method``:
"average", "complete", "single" or "ward" (ward needs "euclidean").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import cophenet, fcluster, leaves_list, linkage
from scipy.spatial.distance import pdist
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

__all__ = [
    "LINKAGES",
    "METRICS",
    "Clustering",
    "pairwise_distances",
    "linkage_matrix",
    "cut_tree",
    "cluster_groups",
    "kmeans_groups",
    "cophenetic_correlation",
    "cluster_naps",
    "default_n_clusters",
]

LINKAGES = ("average", "complete", "ward", "single")
METRICS = ("euclidean", "correlation", "cosine")


def _check(method: str, metric: str) -> None:
    if method not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {method!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if method == "ward" and metric != "euclidean":
        raise ValueError("ward linkage needs metric='euclidean'")


def pairwise_distances(profiles, metric: str = "euclidean") -> np.ndarray:
    """Condensed distances between the rows of ``profiles: (G, N)``: (G*(G-1)/2,) float64."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    x = np.asarray(profiles, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"profiles must be (G, N), got shape {x.shape}")
    if x.shape[0] < 2:
        return np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = pdist(x, metric=metric)
    d[~np.isfinite(d)] = 1.0
    return np.maximum(d, 0.0)


def linkage_matrix(profiles, method: str = "average", metric: str = "euclidean") -> np.ndarray:
    """Agglomerative clustering of the rows of ``profiles: (G, N)``; scipy linkage (G-1, 4)."""
    _check(method, metric)
    d = pairwise_distances(profiles, metric)
    if d.size == 0:
        return np.zeros((0, 4))
    return linkage(d, method=method)


def cut_tree(Z: np.ndarray, n_clusters: int) -> np.ndarray:
    """Cluster index (0-based, in order of first appearance) of each leaf when ``Z`` is cut
    into ``n_clusters`` clusters (fewer only when merge heights tie): (G,) int64."""
    n = Z.shape[0] + 1
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    labels = fcluster(Z, t=max(1, min(int(n_clusters), n)), criterion="maxclust")
    return _relabel(labels)


def _relabel(labels) -> np.ndarray:
    """Renumber cluster ids 0, 1, ... in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def cluster_groups(profiles, n_clusters: int, method: str = "average", metric: str = "euclidean") -> np.ndarray:
    """Hierarchical clusters of the rows of ``profiles: (G, N)``: (G,) int64."""
    return cut_tree(linkage_matrix(profiles, method, metric), n_clusters)


def kmeans_groups(profiles, n_clusters: int, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means (scikit-learn, Euclidean) clusters of the rows of ``profiles: (G, N)``: (G,) int64."""
    x = np.asarray(profiles, dtype=np.float64)
    k = max(1, min(int(n_clusters), x.shape[0]))
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # a few dozen groups: one thread is faster than waking a pool (much faster on busy cores)
    with threadpool_limits(limits=1):
        labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return _relabel(labels)


def cophenetic_correlation(Z: np.ndarray, profiles, metric: str = "euclidean") -> float:
    """Pearson correlation between the tree's cophenetic distances and the original distances."""
    d = pairwise_distances(profiles, metric)
    if d.size < 2 or np.ptp(d) == 0:
        return float("nan")
    c, _ = cophenet(Z, d)
    return float(c)


def default_n_clusters(n_groups: int) -> int:
    """``max(2, round(sqrt(G)))``, capped at G (5 for 27 letters, 6 for 39 phones)."""
    return int(min(n_groups, max(2, round(np.sqrt(n_groups)))))


@dataclass
class Clustering:
    """Groups of one layer clustered by their NAPs.

    groups: names (G'); profiles: normalized (G', N); linkage: (G'-1, 4) over
    groups; labels: (G',) hierarchical clusters at ``n_clusters``;
    kmeans_labels: (G',); leaves: (G',) dendrogram order of the groups;
    neuron_linkage: (N-1, 4) over neurons (clustermap columns) or None.
    """

    layer: str
    groups: list[str]
    profiles: np.ndarray
    linkage: np.ndarray
    labels: np.ndarray
    kmeans_labels: np.ndarray
    leaves: np.ndarray
    n_clusters: int
    method: str
    metric: str
    normalize: str
    neuron_linkage: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def clusters(self, kmeans: bool = False) -> list[list[str]]:
        """Group names per cluster (cluster 0 first)."""
        labels = self.kmeans_labels if kmeans else self.labels
        return (
            [[g for g, c in zip(self.groups, labels) if c == k] for k in range(int(labels.max()) + 1)]
            if len(labels)
            else []
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: groups, cluster ids, clusters as name lists, dendrogram order, settings."""
        return {
            "layer": self.layer,
            "groups": self.groups,
            "n_clusters": self.n_clusters,
            "linkage_method": self.method,
            "metric": self.metric,
            "normalize": self.normalize,
            "hierarchical": [int(x) for x in self.labels],
            "kmeans": [int(x) for x in self.kmeans_labels],
            "hierarchical_clusters": self.clusters(),
            "kmeans_clusters": self.clusters(kmeans=True),
            "dendrogram_order": [self.groups[i] for i in self.leaves],
        }


def cluster_naps(
    naps,
    layer: str,
    normalize: str = "zscore",
    method: str = "average",
    metric: str = "euclidean",
    n_clusters: int | None = None,
    min_count: int = 1,
    seed: int = 0,
    neurons: bool = True,
) -> Clustering:
    """Cluster the groups of ``naps`` (a :class:`~asr_introspect.naps.NAPs`) at ``layer``.

    Groups with fewer than ``min_count`` frames are left out; ``n_clusters``
    defaults to :func:`default_n_clusters`; ``neurons``: also cluster the
    neurons (columns) with the same method and metric, for the clustermap.
    """
    profiles, groups = naps.profiles(layer, normalize, min_count)
    if len(groups) < 2:
        raise ValueError(
            f"layer {layer}: {len(groups)} group(s) with >= {min_count} frames; clustering needs at least 2"
        )
    k = default_n_clusters(len(groups)) if n_clusters is None else int(n_clusters)
    Z = linkage_matrix(profiles, method, metric)
    neuron_Z = None
    if neurons and profiles.shape[1] >= 2:
        neuron_Z = linkage_matrix(profiles.T, method, metric)
    return Clustering(
        layer,
        groups,
        profiles,
        Z,
        cut_tree(Z, k),
        kmeans_groups(profiles, k, seed),
        leaves_list(Z).astype(np.int64),
        k,
        method,
        metric,
        normalize,
        neuron_Z,
        {"min_count": min_count, "seed": seed},
    )
