"""Per-group statistics of whole arrays and the variance decomposition (ANOVA) of group sums.

:func:`group_stats` and :func:`windowed_sums` allocate float64 totals and run
the kernels of :mod:`.kernels` once; :func:`variance_decomposition` and
:func:`specificity` turn group sums, sums of squares and weights into
between- and within-group variances per neuron.
"""

from __future__ import annotations

import numpy as np

from asr_introspect.aggregate.checks import check_n_groups, check_window, float_array
from asr_introspect.aggregate.kernels import group_stats_into, windowed_sums_into

__all__ = ["group_stats", "windowed_sums", "variance_decomposition", "specificity"]


def group_stats(values, labels, n_groups: int, weights=None):
    """Per-group sums, sums of squares and counts over frames.

    values: (T, N) float32 (float64 accepted; copied if not C-contiguous);
    labels: (T,) int in [-1, n_groups), -1 = frame ignored;
    weights: optional (T,) per-frame weights w_t (e.g. gradients for GradNAPs), used in
    the dtype of ``values``.

    Returns ``(sums (G, N) float64, sums_sq (G, N) float64, counts (G,) int64)``;
    with ``weights`` also ``weight_sums (G,) float64`` as a 4th element, and
    then ``sums = sum_t w_t x_t`` and ``sums_sq = sum_t w_t x_t**2`` (counts
    stay plain frame counts). ``T = 0`` gives zeros. Raises ``ValueError`` for
    labels outside [-1, n_groups) or mismatched shapes.

    Precision: float64 totals of float32 partial sums over at most 64 frames of a
    group (error at most ``64 * 2**-24`` times the sum of the absolute values
    added); pass float64 ``values`` for float64 throughout (about 2x slower).
    """
    out = _group_stats(values, labels, n_groups, weights)
    return out if weights is not None else out[:3]


def _group_stats(values, labels, n_groups, weights):
    """Always ``(sums, sums_sq, counts, weight_sums)``; unweighted -> weight 1."""
    n_groups = check_n_groups(n_groups)
    values = float_array(values, 2, "values")
    n_feat = values.shape[1]
    out = (np.zeros((n_groups, n_feat)), np.zeros((n_groups, n_feat)), np.zeros(n_groups, np.int64), np.zeros(n_groups))
    group_stats_into(values, labels, weights, *out)
    return out


def _windowed(features, centers, labels, n_groups, window, border):
    """Always ``(sums (G, F, W), counts (G,), position_counts (G, W))``."""
    n_groups = check_n_groups(n_groups)
    window = check_window(window)
    features = float_array(features, 2, "features")
    out = (
        np.zeros((n_groups, features.shape[0], window)),
        np.zeros(n_groups, dtype=np.int64),
        np.zeros((n_groups, window), dtype=np.int64),
    )
    windowed_sums_into(features, centers, labels, border, *out)
    return out


def windowed_sums(features, centers, labels, n_groups: int, window: int, border: str = "pad"):
    """Sum, per label, the input window centred on each labelled frame.

    features: (F, T) float32; centers: (K,) int frames in [0, T);
    labels: (K,) int in [-1, n_groups), -1 = ignored. The window of centre
    ``c`` is the columns ``[c - W//2, c - W//2 + W)`` (for even W the centre
    sits at position W//2, one right of the middle).

    border="skip": windows not entirely inside [0, T) are dropped. Returns
    ``(sums (G, F, W) float64, counts (G,) int64)``; mean = sums / counts.

    border="pad" (default; with a receptive-field-wide window "skip" would drop
    much of every short utterance): every labelled window counts; columns
    outside [0, T) add nothing. Returns ``(sums, counts, position_counts (G, W)
    int64)``, where
    counts[g] is the number of windows of group g and position_counts[g, w]
    the number of them whose column w lies inside [0, T); the mean is
    ``sums / position_counts[:, None, :]`` (a border window contributes only
    its valid columns).

    Sums of squares: call again on ``features ** 2``.
    """
    sums, counts, position_counts = _windowed(features, centers, labels, n_groups, window, border)
    if border == "skip":
        return sums, counts
    return sums, counts, position_counts


# ---------------------------------------------------------------------------
# variance decomposition (ANOVA) from sums


def variance_decomposition(sums, sums_sq, weights):
    """Between- and within-group variance per neuron from group sums.

    sums, sums_sq: (G, N); weights: (G,) counts (or weight sums).
    With W_g the group weights, W = sum W_g, mu_g = sums_g / W_g and
    mu = sum sums_g / W: ``between = sum_g W_g (mu_g - mu)**2 / W`` (variance
    of the group means weighted by counts) and ``within = sum_g (sums_sq_g -
    W_g mu_g**2) / W`` (count-weighted mean of the within-group variances), so
    that between + within = the total variance over all frames. Empty groups
    are left out. Returns ``(between (N,), within (N,))``; NaN when all groups
    are empty.
    """
    sums = np.asarray(sums, dtype=np.float64)
    sums_sq = np.asarray(sums_sq, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if sums.ndim != 2 or sums_sq.shape != sums.shape or weights.shape != sums.shape[:1]:
        raise ValueError(
            f"expected sums (G, N), sums_sq (G, N), weights (G,); got {sums.shape}, {sums_sq.shape}, {weights.shape}"
        )
    keep = weights > 0
    s, q, w = sums[keep], sums_sq[keep], weights[keep]
    total = w.sum()
    if total <= 0:
        nan = np.full(sums.shape[1], np.nan)
        return nan, nan.copy()
    mu_g = s / w[:, None]
    mu = s.sum(axis=0) / total
    between = (w[:, None] * (mu_g - mu) ** 2).sum(axis=0) / total
    within = (q - w[:, None] * mu_g**2).sum(axis=0) / total
    return between, np.maximum(within, 0.0)


def specificity(sums, sums_sq, weights):
    """Between-group over within-group variance per neuron: (N,).

    See :func:`variance_decomposition`. Large values: the neuron's mean
    differs between groups much more than it varies inside a group. ``inf``
    where the within-group variance is 0 and the between-group one is not,
    NaN where both are 0 or all groups are empty.
    """
    between, within = variance_decomposition(sums, sums_sq, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        return between / within
