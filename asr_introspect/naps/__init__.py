"""Neuron activation profiles (NAPs) over letters and phonemes: compute, normalize, cluster, score.

- :mod:`.profiles`: :func:`compute_naps`, :class:`NAPEstimator` (``partial_fit`` on
  :mod:`asr_introspect.stream` batches; several labellings in one pass with
  :func:`~asr_introspect.stream.fit_estimators`), the :class:`NAPs` result
  (``means(layer)``: (G, N_l), counts, variance, frame statistics, save/load).
- :mod:`.normalize`: :func:`normalize_profiles` ("none", "center", "zscore", "standardize").
- :mod:`.cluster`: hierarchical clustering of groups and neurons, k-means, :func:`cluster_naps`.
- :mod:`.quality`: ARI against phonetic categories, silhouette, cophenetic
  correlation and specificity per layer (:func:`naps_quality`).
- :mod:`.snap`: SNAPs, each occurrence aligned at its saliency peak before averaging
  (:class:`SNAPEstimator`, :func:`compute_snaps`; the same :class:`NAPs` result).
- :mod:`.topographic`: 2-D layouts of a layer's neurons by their NAP columns
  (:func:`topographic_layout`) and per-group maps on them (:func:`topographic_images`).

Figures: :mod:`asr_introspect.plotting.naps`, :mod:`asr_introspect.plotting.topographic`.
Command line: ``asr-introspect naps`` (``--align saliency-peak``, ``--topographic``).

Example::

    naps = compute_naps(model, utterances, by="phoneme", layers=["conv9", "conv10", "conv11"])
    clustering = cluster_naps(naps, "conv10")          # z-scored, average linkage, euclidean
    scores = naps_quality(naps)                        # one LayerQuality per layer
    snaps = compute_snaps(model, utterances, by="letter", layers=["conv3"])  # aligned at saliency peaks
    layout = topographic_layout(snaps.profiles("conv3")[0])  # (N, 2): one point per neuron
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
from asr_introspect.naps.snap import ALIGNMENTS, SNAPEstimator, compute_snaps, saliency_curves
from asr_introspect.naps.topographic import LAYOUTS, available_layouts, topographic_images, topographic_layout

__all__ = [
    "ALIGNMENTS",
    "CATEGORY_KINDS",
    "Clustering",
    "LayerQuality",
    "LAYOUTS",
    "LINKAGES",
    "METRICS",
    "NAPEstimator",
    "NAPs",
    "NORMALIZATIONS",
    "SNAPEstimator",
    "VOWEL_LETTERS",
    "WEIGHTINGS",
    "available_layouts",
    "cluster_groups",
    "cluster_naps",
    "compute_naps",
    "compute_snaps",
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
    "saliency_curves",
    "topographic_images",
    "topographic_layout",
]
