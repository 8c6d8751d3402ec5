"""Neuron activation profiles (NAPs) over letters and phonemes: compute, normalize, cluster, score.

- :mod:`.profiles`: :func:`compute_naps`, :class:`NAPEstimator` (``partial_fit`` on
  :mod:`asr_introspect.stream` batches; several labellings in one pass with
  :func:`~asr_introspect.stream.fit_estimators`), the :class:`NAPs` result
  (``means(layer)``: (G, N_l), counts, variance, frame statistics, save/load).
- :mod:`.normalize`: :func:`normalize_profiles` ("none", "center", "zscore", "standardize").
- :mod:`.cluster`: hierarchical clustering of groups and neurons, k-means, :func:`cluster_naps`.
- :mod:`.quality`: ARI against phonetic categories, silhouette, cophenetic
  correlation and specificity per layer (:func:`naps_quality`).

Figures: :mod:`asr_introspect.plotting.naps`. Command line: ``asr-introspect naps``.

Example::

    naps = compute_naps(model, utterances, by="phoneme", layers=["conv9", "conv10", "conv11"])
    clustering = cluster_naps(naps, "conv10")          # z-scored, average linkage, euclidean
    scores = naps_quality(naps)                        # one LayerQuality per layer
"""

from asr_introspect.naps.cluster import (
    LINKAGES,
    METRICS,
    Clustering,
    cluster_groups,
    cluster_naps,
    cophenetic_correlation,
    cut_tree,
    default_n_clusters,
    kmeans_groups,
    linkage_matrix,
    pairwise_distances,
)
from asr_introspect.naps.normalize import NORMALIZATIONS, normalize_profiles
from asr_introspect.naps.profiles import (
    WEIGHTINGS,
    NAPEstimator,
    NAPs,
    compute_naps,
    letter_groups,
    phoneme_groups,
)
from asr_introspect.naps.quality import (
    CATEGORY_KINDS,
    VOWEL_LETTERS,
    LayerQuality,
    group_categories,
    layer_quality,
    naps_quality,
)

__all__ = [
    "CATEGORY_KINDS",
    "Clustering",
    "LINKAGES",
    "LayerQuality",
    "METRICS",
    "NAPEstimator",
    "NAPs",
    "NORMALIZATIONS",
    "VOWEL_LETTERS",
    "WEIGHTINGS",
    "cluster_groups",
    "cluster_naps",
    "compute_naps",
    "cophenetic_correlation",
    "cut_tree",
    "default_n_clusters",
    "group_categories",
    "kmeans_groups",
    "layer_quality",
    "letter_groups",
    "linkage_matrix",
    "naps_quality",
    "normalize_profiles",
    "pairwise_distances",
    "phoneme_groups",
]
