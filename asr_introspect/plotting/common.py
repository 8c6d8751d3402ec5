"""Shared plotting helpers: feature images with Hz/ms axes, atomic PNG/SVG saving."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # no display needed; harmless if a backend is already chosen

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from asr_introspect.features import mel_frequencies  # noqa: E402
from asr_introspect.io import atomic_path  # noqa: E402


def new_figure(width: float = 6.0, height: float = 4.0, **kwargs) -> Figure:
    """A pyplot-free figure (safe in threads and without a display)."""
    return Figure(figsize=(width, height), layout="constrained", **kwargs)


def save_figure(fig: Figure, path: str | os.PathLike, svg: bool = True, dpi: int = 110) -> list[Path]:
    """Write ``path`` (PNG) and, with ``svg``, the same name with ``.svg``; atomic. Returns paths."""
    path = Path(path).with_suffix(".png")
    written = []
    engine = fig.get_layout_engine()
    try:
        for target, fmt in [(path, "png")] + ([(path.with_suffix(".svg"), "svg")] if svg else []):
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi)
            written.append(target)
            # the layout is done: the SVG reuses the PNG's axes positions instead of solving the
            # constrained layout again (half the saving time of a 54-panel pattern figure)
            fig.set_layout_engine("none")
    finally:
        fig.set_layout_engine(engine)
    return written


def mel_axis(ax: Axes, feature_config, n_ticks: int = 6, axis: str = "y") -> None:
    """Label a mel-band axis (band index 0..n_mels-1) with the bands' frequencies in Hz."""
    freqs = mel_frequencies(feature_config)
    ticks = np.linspace(0, len(freqs) - 1, n_ticks).round().astype(int)
    labels = [f"{freqs[t] / 1000:.1f}k" if freqs[t] >= 1000 else f"{freqs[t]:.0f}" for t in ticks]
    if axis == "y":
        ax.set_yticks(ticks, labels)
        ax.set_ylabel("frequency (Hz)")
    else:
        ax.set_xticks(ticks, labels)
        ax.set_xlabel("frequency (Hz)")


def show_features(
    ax: Axes,
    features,
    feature_config,
    start_ms: float = 0.0,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = False,
    title: str | None = None,
):
    """Draw features ``(F, T)`` with time in ms (first frame at ``start_ms``) and frequency in Hz."""
    features = np.asarray(features)
    step = feature_config.frame_seconds * 1000.0
    n_frames = features.shape[1]
    extent = (start_ms - step / 2, start_ms + (n_frames - 0.5) * step, -0.5, features.shape[0] - 0.5)
    image = ax.imshow(
        features, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest"
    )
    mel_axis(ax, feature_config)
    ax.set_xlabel("time (ms)")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.85)
    return image


def symmetric_limits(*arrays, quantile: float = 0.995) -> tuple[float, float]:
    """(-m, m) with m the ``quantile`` of |values| over all arrays (for diverging maps)."""
    values = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays])
    m = float(np.quantile(values, quantile)) if values.size else 1.0
    m = m if m > 0 else 1.0
    return -m, m
