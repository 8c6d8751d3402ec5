"""Linear centered kernel alignment (CKA, Kornblith et al. 2019) between layers.

For two representations of the same n frames, X (n, d1) and Y (n, d2), each
centered over frames,

    CKA(X, Y) = ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F),

the feature-space form of HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with
linear kernels K = XX', L = YY'. It lies in [0, 1], is invariant to orthogonal
transforms and isotropic scaling of either representation, and not to
arbitrary invertible linear maps (so it does not call any two full-rank
layers identical). The toolkit computes it on frames that share a time base:
the same output frames, each layer's frame nearest in time to them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["cka_matrix", "linear_cka"]


def _centered(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"representations must be (n_frames, features), got shape {x.shape}")
    return x - x.mean(0)


def linear_cka(X, Y) -> float:
    """Linear CKA of X (n, d1) and Y (n, d2) (same frames); NaN when either is constant."""
    X, Y = _centered(X), _centered(Y)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"CKA needs the same frames: {X.shape[0]} vs {Y.shape[0]}")
    xx, yy = np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    if xx == 0 or yy == 0:
        return float("nan")
    return float(np.linalg.norm(Y.T @ X) ** 2 / (xx * yy))


def cka_matrix(representations: Sequence[np.ndarray]) -> np.ndarray:
    """(L, L) linear CKA between every pair of representations (each (n, d_l), same frames)."""
    reps = [_centered(r) for r in representations]
    norms = [np.linalg.norm(r.T @ r) for r in reps]
    L = len(reps)
    out = np.eye(L)
    for i in range(L):
        for j in range(i + 1, L):
            denom = norms[i] * norms[j]
            value = np.linalg.norm(reps[j].T @ reps[i]) ** 2 / denom if denom > 0 else np.nan
            out[i, j] = out[j, i] = value
        if norms[i] == 0:
            out[i, i] = np.nan
    return out
