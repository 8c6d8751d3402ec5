"""Input checks for the aggregation kernels (Python side, before any kernel runs)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "BORDERS",
    "as_numpy",
    "float_array",
    "int_array",
    "check_n_groups",
    "check_labels",
    "check_border",
    "check_window",
]

#: border handling of :func:`~asr_introspect.aggregate.windowed_sums`
BORDERS = ("skip", "pad")


def as_numpy(x: Any) -> np.ndarray:
    """NumPy view of an array-like or a (CPU or not) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def float_array(x: Any, ndim: int, name: str) -> np.ndarray:
    """C-contiguous float32/float64 array (other dtypes become float64)."""
    a = as_numpy(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def int_array(x: Any, length: int, name: str) -> np.ndarray:
    a = as_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.shape[0] != length:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {length}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def check_n_groups(n_groups: Any) -> int:
    if isinstance(n_groups, (bool, np.bool_)) or int(n_groups) != n_groups or n_groups < 0:
        raise ValueError(f"n_groups must be a non-negative integer, got {n_groups!r}")
    return int(n_groups)


def check_labels(labels: np.ndarray, n_groups: int) -> None:
    """Labels must lie in [-1, n_groups); -1 means "ignore this frame"."""
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < -1 or hi >= n_groups:
        bad = lo if lo < -1 else hi
        index = int(np.flatnonzero(labels == bad)[0])
        raise ValueError(
            f"labels must lie in [-1, n_groups) = [-1, {n_groups}) (-1 = ignore); "
            f"found {bad} at index {index} (pass a larger n_groups or relabel)"
        )


def check_border(border: str) -> str:
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    return border


def check_window(window: Any) -> int:
    if isinstance(window, (bool, np.bool_)) or int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    return int(window)
