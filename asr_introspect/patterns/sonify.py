"""Listen to patterns: Griffin-Lim audio of a pattern read as log-mel features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asr_introspect.audio import save_audio
from asr_introspect.features import invert_features
from asr_introspect.patterns.result import PatternResult, label_file_name

__all__ = ["sonify_pattern", "save_sonifications"]


def sonify_pattern(pattern, feature_config, gain: float | str = "auto", n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Audio for a pattern ``(F, W)`` via :func:`features.invert_features` (Griffin-Lim).

    A pattern is read as z-normalized log-mel features (NaN -> 0). ``gain="auto"``
    scales it to unit standard deviation first, so a subtracted pattern (small
    values around 0) becomes audible; a number multiplies it instead. Returns
    ``audio: ((W - 1) * hop,)`` float32, peak 0.9.
    """
    p = np.nan_to_num(np.asarray(pattern, dtype=np.float64), nan=0.0)
    if gain == "auto":
        std = float(p.std())
        p = (p - p.mean()) / std if std > 0 else p * 0.0
    else:
        p = p * float(gain)
    return invert_features(p, feature_config, n_iter=n_iter, seed=seed)


def save_sonifications(
    result: PatternResult,
    directory,
    normalization: str = "subtract",
    labels: Sequence[str] | None = None,
    prefix: str | None = None,
    n_iter: int = 32,
) -> list[Path]:
    """Write one WAV per label with windows: ``DIR/<prefix><label>.wav``; returns the paths.

    ``prefix`` defaults to ``"<by>_<normalization>_"``.
    """
    if result.feature_config is None:
        raise ValueError("sonification needs the feature config (fit with a model)")
    directory = Path(directory)
    prefix = f"{result.by}_{normalization}_" if prefix is None else prefix
    patterns = result.normalized(normalization)
    names = labels if labels is not None else [n for g, n in enumerate(result.names) if result.counts[g] > 0]
    paths = []
    for name in names:
        g = result.index(name)
        audio = sonify_pattern(patterns[g], result.feature_config, n_iter=n_iter)
        paths.append(
            save_audio(directory / f"{prefix}{label_file_name(name)}.wav", audio, result.feature_config.sample_rate)
        )
    return paths
