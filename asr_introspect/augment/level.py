"""Level changes: gain and hard clipping."""

from __future__ import annotations

import numpy as np

__all__ = ["apply_gain", "clip"]


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """``audio * 10**(gain_db / 20)``."""
    return (audio * 10.0 ** (gain_db / 20.0)).astype(audio.dtype)


def clip(audio: np.ndarray, fraction: float) -> np.ndarray:
    """Hard clipping at ``fraction`` of the clip's peak (0 < fraction <= 1): an overdriven input."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"clip fraction must be in (0, 1], got {fraction}")
    level = fraction * float(np.max(np.abs(audio))) if audio.size else 0.0
    return np.clip(audio, -level, level).astype(audio.dtype)
