"""Spectral centroids of patterns: where in frequency a label's pattern has its energy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from asr_introspect.text import PHONE_CATEGORIES

__all__ = ["spectral_centroid", "vowel_fricative_centroids"]


def spectral_centroid(
    pattern,
    frequencies,
    kind: str = "positive",
    center: int | None = None,
    half_width: int | None = 2,
    db_std: float = 15.0,
) -> float:
    """Spectral centroid (Hz) of a pattern around its aligned frame.

    pattern: (F, W) (or (F,) a single profile); frequencies: (F,) Hz of the bands.
    The profile is the mean of columns ``center - half_width .. center +
    half_width`` (default centre ``W // 2``, the aligned frame; ``half_width=None``:
    all columns; NaN columns ignored). Band weights:

    - ``kind="positive"``: the positive part of the profile; meant for a
      *subtracted* pattern, where it is "the bands this label has more energy
      in than the average label";
    - ``kind="energy"``: the power the profile stands for when read as
      z-normalized log-mel features, ``10 ** (db_std * profile / 10)`` (the
      utterance dB mean cancels in the ratio); meant for an *average* pattern.

    Returns ``sum_f freq_f w_f / sum_f w_f``, NaN when every weight is 0.
    """
    p = np.asarray(pattern, dtype=np.float64)
    freqs = np.asarray(frequencies, dtype=np.float64)
    if p.ndim == 2:
        width = p.shape[1]
        c = width // 2 if center is None else int(center)
        if half_width is None:
            cols = p
        else:
            lo, hi = max(0, c - int(half_width)), min(width, c + int(half_width) + 1)
            if hi <= lo:
                raise ValueError(f"no columns around centre {c} in a window of {width}")
            cols = p[:, lo:hi]
        if np.isnan(cols).all():
            return float("nan")
        with np.errstate(invalid="ignore"):
            profile = np.nanmean(cols, axis=1) if np.isnan(cols).any() else cols.mean(axis=1)
    elif p.ndim == 1:
        profile = p
    else:
        raise ValueError(f"pattern must be (F, W) or (F,), got shape {p.shape}")
    if profile.shape != freqs.shape:
        raise ValueError(f"pattern has {profile.shape[0]} bands, frequencies {freqs.shape}")
    if np.isnan(profile).any():
        return float("nan")
    if kind == "positive":
        weights = np.maximum(profile, 0.0)
    elif kind == "energy":
        weights = 10.0 ** (float(db_std) * (profile - profile.max()) / 10.0)
    else:
        raise ValueError(f"kind must be 'positive' or 'energy', got {kind!r}")
    total = weights.sum()
    if not total > 0:
        return float("nan")
    return float((freqs * weights).sum() / total)


def vowel_fricative_centroids(
    centroids: dict[str, float], fricatives: Sequence[str] = ("s", "sh", "z", "f")
) -> dict[str, Any]:
    """Compare phone centroids: fricatives' minimum vs vowels' maximum and median (Hz)."""
    vowels = {
        p: c for p, c in centroids.items() if p in PHONE_CATEGORIES and PHONE_CATEGORIES[p].vowel and math.isfinite(c)
    }
    fric = {p: centroids.get(p, float("nan")) for p in fricatives}
    finite = [c for c in fric.values() if math.isfinite(c)]
    return {
        "fricatives": fric,
        "vowels": vowels,
        "fricative_min": min(finite) if finite else float("nan"),
        "vowel_max": max(vowels.values()) if vowels else float("nan"),
        "vowel_median": float(np.median(list(vowels.values()))) if vowels else float("nan"),
    }
