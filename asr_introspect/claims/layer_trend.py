"""Layer-trend measures of NAP clustering that rare groups cannot dominate.

Per layer and labelling, from the group means (NAPs) and frame counts:

1. groups with fewer than ``min_count`` frames are left out (default 50: a
   letter like "q" with 8 frames has a mean too noisy to place), and so are
   groups without a category (the apostrophe, silence);
2. the remaining NAPs are z-scored per neuron across groups
   (:func:`~asr_introspect.naps.normalize_profiles`, "zscore");
3. they are clustered hierarchically and the tree is cut into as many clusters
   as there are categories ``K``; the score is the adjusted Rand index (ARI)
   between clusters and categories (1: the tree splits exactly by category,
   about 0: unrelated, can be negative).

Linkages (:data:`LINKAGES`): ``"ward"`` (Euclidean, minimum within-cluster
variance: it forms compact clusters of comparable size, so one far-out group
cannot take a cluster of its own while everything else merges into one),
``"average-cosine"`` and ``"average-correlation"`` (average linkage on
1 - cosine similarity / 1 - Pearson correlation, blind to a profile's overall
magnitude). Category kinds (:data:`KINDS`): phonemes by ``"vowel"``
(vowel/consonant) and ``"manner"`` (stop, fricative, affricate, nasal, liquid,
glide, vowel), letters by ``"vowel"`` (a e i o u / the other letters a-z).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist

from asr_introspect.naps.normalize import normalize_profiles
from asr_introspect.naps.quality import group_categories

__all__ = [
    "DEFAULT_MIN_COUNT",
    "KINDS",
    "LINKAGES",
    "adjusted_rand",
    "category_ari",
    "cut_into",
    "layer_at_depth",
    "trend_scores",
]

try:  # scipy's kernel behind linkage(method="ward" | "average"), see _linkage
    from scipy.cluster._hierarchy import nn_chain as _nn_chain
except ImportError:  # pragma: no cover - a scipy without it: the public wrapper
    _nn_chain = None

_METHOD_CODES = {"average": 2, "ward": 5}  # scipy.cluster.hierarchy._LINKAGE_METHODS
DEFAULT_MIN_COUNT = 50
#: name -> (scipy linkage method, distance metric)
LINKAGES = {
    "ward": ("ward", "euclidean"),
    "average-cosine": ("average", "cosine"),
    "average-correlation": ("average", "correlation"),
}
#: labelling -> category kinds scored
KINDS = {"phoneme": ("vowel", "manner"), "letter": ("vowel",)}


def adjusted_rand(truth, clusters) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) of two labellings of the same items (any hashables).

    Equals ``sklearn.metrics.adjusted_rand_score``; written out so that thousands of bootstrap
    replicates pay no per-call overhead. 1.0 when both labellings are one cluster or all singletons.
    """
    _, a = np.unique(np.asarray(truth), return_inverse=True)
    _, b = np.unique(np.asarray(clusters), return_inverse=True)
    return _ari_codes(a.ravel(), b.ravel())


def _ari_codes(a: np.ndarray, b: np.ndarray) -> float:
    """ARI of two labellings given as codes 0..ka-1 and 0..kb-1."""
    n = a.size
    if n < 2:
        return 1.0
    kb = int(b.max()) + 1
    table = np.bincount(a * kb + b, minlength=(int(a.max()) + 1) * kb).astype(np.float64)

    def pairs(x):
        return float((x * (x - 1)).sum() / 2.0)

    table = table.reshape(-1, kb)
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    total = n * (n - 1) / 2.0
    expected = rows * cols / total
    maximum = (rows + cols) / 2.0
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def cut_into(Z: np.ndarray, k: int) -> np.ndarray:
    """(n,) cluster codes 0..k-1 of the n leaves of linkage ``Z`` (n-1, 4) cut into exactly ``k``
    clusters: the first n-k merges are kept, the last k-1 undone (ties broken by merge order)."""
    n = Z.shape[0] + 1
    parent = list(range(2 * n - 1))
    for i, (a, b) in enumerate(Z[: n - max(1, min(k, n)), :2].astype(np.int64).tolist()):
        parent[a] = parent[b] = n + i
    roots = []
    for leaf in range(n):
        r = leaf
        while parent[r] != r:
            r = parent[r]
        roots.append(r)
    return np.unique(np.asarray(roots), return_inverse=True)[1].ravel()


def _linkage(profiles: np.ndarray, method: str, metric: str) -> np.ndarray:
    """scipy's linkage of ``profiles`` (G, N); distances as :func:`naps.cluster.pairwise_distances`
    (undefined cosine/correlation distances set to 1). Calls scipy's nearest-neighbour-chain kernel
    directly when it is there (the public wrapper's validation costs more than the clustering of a
    few dozen groups, and the bootstrap clusters thousands of times); the result is the same."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = pdist(np.asarray(profiles, dtype=np.float64), metric=metric)
    d[~np.isfinite(d)] = 1.0
    np.maximum(d, 0.0, out=d)
    n = profiles.shape[0]
    if _nn_chain is not None:
        return _nn_chain(d, n, _METHOD_CODES[method])
    return linkage(d, method=method)


def category_ari(profiles: np.ndarray, categories: Sequence[str], linkage_name: str = "ward") -> float:
    """ARI between the categories and the tree of ``profiles: (G, N)`` (already normalized) cut into
    as many clusters as categories. NaN with fewer than two categories or no more groups than categories."""
    method, metric = LINKAGES[linkage_name]
    names, codes = np.unique(np.asarray(categories), return_inverse=True)
    k = names.size
    if k < 2 or len(categories) <= k:
        return float("nan")
    return _ari_codes(codes.ravel(), cut_into(_linkage(profiles, method, metric), k))


def trend_scores(
    means: np.ndarray,
    counts: np.ndarray,
    groups: Sequence[str],
    by: str,
    min_count: int = DEFAULT_MIN_COUNT,
    linkages: Sequence[str] = tuple(LINKAGES),
) -> dict[str, float]:
    """Scores of one layer: ``{"<kind>/<linkage>": ARI}`` for the kinds of ``by`` ("phoneme"/"letter").

    means: (G, N) NAPs (NaN rows allowed for empty groups); counts: (G,) frames per group. Groups with
    fewer than ``min_count`` frames or without a category are left out before z-scoring.
    """
    counts = np.asarray(counts)
    out: dict[str, float] = {}
    for kind in KINDS[by]:
        cats = group_categories(groups, by, kind)
        keep = [i for i, c in enumerate(cats) if c is not None and counts[i] >= max(1, min_count)]
        names = [cats[i] for i in keep]
        profiles = normalize_profiles(np.asarray(means)[keep], "zscore") if keep else np.zeros((0, 0))
        for name in linkages:
            out[f"{kind}/{name}"] = category_ari(profiles, names, name) if keep else float("nan")
    return out


def layer_at_depth(layer_names: Sequence[str], layer: int, of: int = 11) -> str:
    """The layer at the relative depth of layer ``layer`` (1-based) of an ``of``-layer stack:
    ``layer_names[round(layer / of * L) - 1]`` (conv9 of 11 layers is conv9; of 24 layers the 20th)."""
    n = len(layer_names)
    index = min(max(int(round(layer / of * n)) - 1, 0), n - 1)
    return list(layer_names)[index]
