"""Normalizing NAPs before comparing groups.

All methods act per neuron (column) of ``means: (G, N)``:

- ``"none"``: the raw mean activations;
- ``"center"``: subtract the neuron's mean over groups (contrastive NAPs: what
  is left once the response common to all groups is removed);
- ``"zscore"`` (default): subtract the mean over groups and divide by the
  standard deviation over groups. Neurons differ in scale by orders of
  magnitude (some ReLUs barely fire, a few fire strongly), so without it the
  Euclidean distance between two groups is dominated by a few high-magnitude
  neurons and the clustering reflects them alone. After z-scoring every neuron
  has the same say and distances count in how many neurons, and how clearly,
  two groups differ; the common "being a letter at all" part is removed too.
- ``"standardize"``: ``(means - mu) / sigma`` with the neuron's mean and
  standard deviation over *all* valid frames of the corpus (``NAPs.frame_stats``):
  keeps how far each group sits from the neuron's typical activation in units
  of its overall spread, rather than of its spread across group means.

A neuron whose divisor is (numerically) zero, e.g. a dead ReLU, gets zeros.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NORMALIZATIONS", "normalize_profiles"]

NORMALIZATIONS = ("none", "center", "zscore", "standardize")


def _safe_divide(x: np.ndarray, scale: np.ndarray, size: np.ndarray, eps: float) -> np.ndarray:
    """x / scale per column; 0 where scale <= eps * max(1, size) (relative to the values' size)."""
    scale = np.asarray(scale, dtype=np.float64)
    ok = scale > eps * np.maximum(1.0, size)
    out = np.zeros_like(x)
    np.divide(x, scale, out=out, where=np.broadcast_to(ok, x.shape))
    return out


def normalize_profiles(means, method: str = "zscore", frame_mean=None, frame_std=None, eps: float = 1e-9) -> np.ndarray:
    """Normalize NAPs ``means: (G, N)`` (no empty groups) per neuron; returns (G, N) float64.

    ``frame_mean``, ``frame_std``: (N,) over all frames, needed for "standardize".
    ``eps``: a divisor at or below ``eps * max(1, |values|)`` counts as zero (the neuron gets zeros).
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {method!r}")
    m = np.asarray(means, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"means must be (G, N), got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("means contain NaN (empty groups): leave them out first (NAPs.profiles does)")
    if method == "none":
        return m.copy()
    if method == "standardize":
        if frame_mean is None or frame_std is None:
            raise ValueError("normalize='standardize' needs frame_mean and frame_std (NAPs.frame_stats)")
        mu = np.asarray(frame_mean, dtype=np.float64)
        sd = np.asarray(frame_std, dtype=np.float64)
        if mu.shape != (m.shape[1],) or sd.shape != (m.shape[1],):
            raise ValueError(f"frame_mean and frame_std must have shape ({m.shape[1]},)")
        return _safe_divide(m - mu, sd, np.abs(mu), eps)
    if m.shape[0] == 0:
        return m.copy()
    centered = m - m.mean(axis=0, keepdims=True)
    if method == "center":
        return centered
    return _safe_divide(centered, m.std(axis=0), np.abs(m).max(axis=0), eps)
