"""Topographic maps of a layer: neurons laid out in 2-D by the similarity of their NAP columns.

A layer's NAPs ``P`` (G groups x N neurons) describe neuron ``n`` by its column
``P[:, n]``: how it responds to every group. Laying the neurons out so that
neurons with similar columns sit close together turns one group's profile
``P[g]`` into an image (the SNAP paper's topographic activation maps): one small
map per group, all on the same layout, shows which regions of the layer a
letter or phone drives.

- :func:`topographic_layout`: ``(G, N)`` profiles -> ``(N, 2)`` positions in the
  unit square. Each column is first standardized over the groups (mean 0, std
  1; a constant column becomes 0), so position reflects the *pattern* of a
  neuron's response, not its scale, and euclidean distance between columns is
  ``sqrt(2 G (1 - r))`` with ``r`` their correlation. Methods:

  - ``"pca"`` (default, fast, no randomness): the first two principal
    components of the standardized columns, signs fixed so that each axis's
    largest coordinate is positive;
  - ``"mds"``: metric MDS of the euclidean distances (SMACOF from
    scikit-learn), started from classical (Torgerson) MDS, so deterministic;
  - ``"umap"``: UMAP, only when the optional ``umap-learn`` package is
    installed (``seed`` fixes it).

  Identical columns get exactly the same position (the layout is computed on
  the distinct columns and copied back). Positions are centred and scaled by
  one factor into ``[0, 1]^2`` (the aspect ratio is kept).
- :func:`topographic_images`: per group, the neurons' values smoothed onto an
  ``R x R`` grid (a Gaussian-weighted mean of the neurons near each pixel;
  pixels farther than three bandwidths from every neuron are NaN).

Figures: :func:`asr_introspect.plotting.topographic.topographic_maps`.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from scipy.spatial.distance import pdist, squareform

from asr_introspect.errors import InputError

__all__ = ["LAYOUTS", "available_layouts", "standardize_columns", "topographic_layout", "topographic_images"]

#: layout methods; "umap" needs the optional umap-learn package
LAYOUTS = ("pca", "mds", "umap")


def available_layouts() -> tuple[str, ...]:
    """The layout methods that run here ("umap" only with umap-learn installed)."""
    has_umap = importlib.util.find_spec("umap") is not None
    return tuple(m for m in LAYOUTS if m != "umap" or has_umap)


def standardize_columns(profiles: np.ndarray) -> np.ndarray:
    """(G, N) profiles -> (N, G): each neuron's column over the groups with mean 0 and std 1 (constant: 0)."""
    p = np.asarray(profiles, dtype=np.float64)
    centred = p - p.mean(axis=0, keepdims=True)
    std = centred.std(axis=0, keepdims=True)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12 * (1 + np.abs(p).max(initial=0))).T


def _pca(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((len(x), 2))
    k = min(2, len(s))
    coords[:, :k] = u[:, :k] * s[:k]
    for j in range(2):  # sign: the coordinate of largest magnitude is positive
        i = np.argmax(np.abs(coords[:, j]))
        if coords[i, j] < 0:
            coords[:, j] *= -1
    return coords


def _classical_mds(d: np.ndarray) -> np.ndarray:
    n = len(d)
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d**2) @ j
    w, v = np.linalg.eigh(b)
    order = np.argsort(w)[::-1][:2]
    coords = np.zeros((n, 2))
    coords[:, : len(order)] = v[:, order] * np.sqrt(np.maximum(w[order], 0.0))
    return coords


def _mds(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import smacof

    d = squareform(pdist(x))
    init = _classical_mds(d)
    if not np.any(d):
        return init
    coords, _ = smacof(d, metric=True, n_components=2, init=init, n_init=1, random_state=seed, normalized_stress="auto")
    return _pca(coords)  # rotate to principal axes: a reproducible orientation


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap  # optional

    neighbours = max(2, min(15, len(x) - 1))
    return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed).fit_transform(x)


def _unit_square(coords: np.ndarray) -> np.ndarray:
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    scale = float((hi - lo).max())
    if scale <= 0:
        return np.full_like(coords, 0.5)
    return (coords - 0.5 * (lo + hi)) / scale + 0.5


def topographic_layout(profiles: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D positions of the neurons of a layer from its NAPs: profiles (G, N) -> (N, 2) in [0, 1].

    method: "pca", "mds" or "umap" (module docstring); ``seed`` is used by "umap" only (the other two
    are deterministic without one). Neurons with identical (standardized) columns share a position.
    """
    p = np.asarray(profiles, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise InputError(f"profiles must be (groups, neurons) with at least one neuron, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise InputError("profiles contain NaN or inf (leave out groups without frames, e.g. NAPs.profiles)")
    if method not in LAYOUTS:
        raise InputError(f"layout method must be one of {LAYOUTS}, got {method!r}")
    if method not in available_layouts():
        raise InputError("layout 'umap' needs the umap-learn package; use 'pca' or 'mds'")
    x = standardize_columns(p)
    unique, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    if len(unique) < 3 or method == "pca":
        coords = _pca(unique)
    elif method == "mds":
        coords = _mds(unique, seed)
    else:
        coords = _umap(unique, seed)
    return _unit_square(np.asarray(coords, dtype=np.float64))[inverse]


def default_bandwidth(layout: np.ndarray, resolution: int) -> float:
    """Smoothing width for :func:`topographic_images`: 1.5 x the median distance from a neuron position to
    its nearest other position (distinct positions), at least one pixel."""
    pts = np.unique(np.asarray(layout, dtype=np.float64), axis=0)
    pixel = 1.0 / resolution
    if len(pts) < 2:
        return pixel
    d = squareform(pdist(pts))
    np.fill_diagonal(d, np.inf)
    return max(1.5 * float(np.median(d.min(axis=1))), pixel)


def topographic_images(
    layout: np.ndarray, values: np.ndarray, resolution: int = 32, bandwidth: float | None = None
) -> np.ndarray:
    """Per group, the neurons' values on an image of the layout: (G, R, R), row 0 at y = 0.

    layout: (N, 2) in [0, 1]; values: (G, N) (e.g. the profiles the layout came from). Pixel
    ``(i, j)`` at ``(x, y) = ((j + 0.5) / R, (i + 0.5) / R)`` is ``sum_n w_n v_n / sum_n w_n`` with
    ``w_n = exp(-|pos_n - (x, y)|^2 / (2 h^2))``, ``h`` = ``bandwidth`` (default
    :func:`default_bandwidth`); NaN where every neuron is farther than ``3 h``.
    """
    layout = np.asarray(layout, dtype=np.float64)
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if layout.ndim != 2 or layout.shape[1] != 2 or values.shape[1] != layout.shape[0]:
        raise InputError(f"layout must be (N, 2) and values (G, N); got {layout.shape} and {values.shape}")
    if resolution < 2:
        raise InputError(f"resolution must be >= 2, got {resolution}")
    h = float(bandwidth) if bandwidth is not None else default_bandwidth(layout, resolution)
    centres = (np.arange(resolution) + 0.5) / resolution
    gx, gy = np.meshgrid(centres, centres)  # gy varies along rows
    pixels = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (R*R, 2)
    d2 = ((pixels[:, None, :] - layout[None, :, :]) ** 2).sum(axis=-1)  # (R*R, N)
    w = np.exp(-0.5 * (d2 - d2.min(axis=1, keepdims=True)) / h**2)  # shifted for stability; cancels in the ratio
    images = (values @ w.T) / w.sum(axis=1)[None, :]  # (G, R*R)
    images[:, d2.min(axis=1) > (3 * h) ** 2] = np.nan
    return images.reshape(len(values), resolution, resolution)
