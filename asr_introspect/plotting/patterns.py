"""Figures of letter/phoneme-averaged patterns (:mod:`asr_introspect.patterns`).

Every panel shows one pattern ``(F, W)``: frequency in Hz on a mel axis, time
in ms relative to the aligned frame (column ``W // 2``). Panels of one set
share one colour scale and one colour bar: a sequential map for averages, a
diverging map centred on 0 for subtracted / standardized patterns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch

from asr_introspect.plotting.common import new_figure, show_features, symmetric_limits
from asr_introspect.text import PHONE_CATEGORIES

__all__ = ["pattern_grid", "before_after", "centroid_chart", "draw_pattern_set"]

_TITLES = {
    "none": "per-label averages",
    "subtract": "averages minus the mean over all labels",
    "zscore": "standardized difference from the mean (z)",
    "balanced": "frequency-balanced difference from the mean",
}


def _shown(result, labels: Sequence[str] | None) -> list[int]:
    """Rows to draw: ``labels`` in order, or every label with at least one window."""
    if labels is None:
        return [g for g in range(len(result.names)) if result.counts[g] > 0]
    return [result.index(name) for name in labels]


def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = ncols or max(1, min(n, 7 if n > 16 else 4 if n > 6 else n))
    return max(1, math.ceil(n / ncols)), ncols


def _sequential_limits(*arrays, quantile: float = 0.005) -> tuple[float, float]:
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.quantile(values, [quantile, 1 - quantile])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 1, float(lo) + 1)


def _draw(ax, pattern, result, cmap, vmin, vmax):
    start_ms = -result.center * result.frame_seconds * 1000.0
    if result.feature_config is not None:
        return show_features(ax, pattern, result.feature_config, start_ms=start_ms, cmap=cmap, vmin=vmin, vmax=vmax)
    step = result.frame_seconds * 1000.0
    extent = (start_ms - step / 2, start_ms + (pattern.shape[1] - 0.5) * step, -0.5, pattern.shape[0] - 0.5)
    image = ax.imshow(
        pattern, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest"
    )
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("mel band")
    return image


def draw_pattern_set(
    fig: Figure | SubFigure,
    patterns,
    titles: Sequence[str],
    result,
    cmap: str,
    vmin: float,
    vmax: float,
    ncols: int | None = None,
    title: str | None = None,
    colorbar_label: str | None = None,
):
    """Draw ``patterns (K, F, W)`` as a grid on ``fig`` with one shared scale; returns the axes (K,)."""
    n = len(patterns)
    nrows, ncols = _grid_shape(n, ncols)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False))
    image = None
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_visible(False)
            continue
        image = _draw(ax, patterns[k], result, cmap, vmin, vmax)
        ax.axvline(0.0, color="white" if cmap == "magma" else "0.3", lw=0.5, ls=":")
        ax.set_title(titles[k], fontsize=8, pad=2)
        ax.tick_params(labelsize=6)
        row, col = divmod(k, ncols)
        if col:
            ax.set_ylabel("")
        if row < nrows - 1 and k + ncols < n:
            ax.set_xlabel("")
        ax.xaxis.label.set_size(7)
        ax.yaxis.label.set_size(7)
    if title:
        fig.suptitle(title, fontsize=10)
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, aspect=30)
        bar.ax.tick_params(labelsize=7)
        if colorbar_label:
            bar.set_label(colorbar_label, fontsize=7)
    return axes.ravel()[:n]


def pattern_grid(
    result,
    normalization: str = "subtract",
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    cmap: str | None = None,
    limits: tuple[float, float] | None = None,
    title: str | None = None,
    panel_size: tuple[float, float] = (1.7, 1.35),
) -> Figure:
    """One panel per label of ``result.normalized(normalization)`` with a shared colour scale.

    labels: names to draw (default: every label with windows). ``limits``
    overrides the shared ``(vmin, vmax)``.
    """
    rows = _shown(result, labels)
    patterns = result.normalized(normalization)[rows]
    diverging = normalization != "none"
    if limits is None:
        limits = symmetric_limits(np.nan_to_num(patterns)) if diverging else _sequential_limits(patterns)
    cmap = cmap or ("RdBu_r" if diverging else "magma")
    nrows, ncols = _grid_shape(max(len(rows), 1), ncols)
    fig = new_figure(panel_size[0] * ncols + 1.0, panel_size[1] * nrows + 0.6)
    if not rows:
        fig.suptitle("no labelled windows")
        return fig
    titles = [f"{result.names[g]}  (n={int(result.counts[g])})" for g in rows]
    draw_pattern_set(
        fig,
        patterns,
        titles,
        result,
        cmap,
        *limits,
        ncols=ncols,
        title=title or f"{result.by}s: {_TITLES[normalization]}",
        colorbar_label="normalized log-mel" if normalization in ("none", "subtract") else "z",
    )
    return fig


def before_after(
    result,
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    normalization: str = "subtract",
    panel_size: tuple[float, float] = (1.7, 1.35),
) -> Figure:
    """Per-label averages (plus the overall mean) above, the same after ``normalization`` below.

    Each half has its own shared colour scale: sequential for the averages,
    diverging around 0 for the normalized patterns.
    """
    rows = _shown(result, labels)
    averages = result.averages[rows]
    after = result.normalized(normalization)[rows]
    mean = result.mean
    n_top = len(rows) + 1
    top_rows, ncols = _grid_shape(n_top, ncols)
    bottom_rows = max(1, math.ceil(len(rows) / ncols))
    fig = new_figure(panel_size[0] * ncols + 1.0, panel_size[1] * (top_rows + bottom_rows) + 1.2)
    if not rows:
        fig.suptitle("no labelled windows")
        return fig
    top, bottom = fig.subfigures(2, 1, height_ratios=[top_rows + 0.3, bottom_rows + 0.3])
    titles = [f"{result.names[g]}  (n={int(result.counts[g])})" for g in rows]
    total = int(result.counts.sum())
    draw_pattern_set(
        top,
        np.concatenate([mean[None], averages]),
        [f"all (n={total})"] + titles,
        result,
        "magma",
        *_sequential_limits(averages, mean),
        ncols=ncols,
        title=f"{result.by}s: per-label averages (first panel: the mean over all labels)",
        colorbar_label="normalized log-mel",
    )
    draw_pattern_set(
        bottom,
        after,
        titles,
        result,
        "RdBu_r",
        *symmetric_limits(np.nan_to_num(after)),
        ncols=ncols,
        title=f"{result.by}s: {_TITLES[normalization]}",
        colorbar_label="difference" if normalization == "subtract" else "z",
    )
    return fig


def _category(by: str, name: str) -> str:
    if by == "letter":
        return "vowel letter" if name in "aeiou" else "consonant letter"
    cat = PHONE_CATEGORIES.get(name)
    if cat is None:
        return "other"
    return "vowel" if cat.vowel else cat.manner


def centroid_chart(
    result, centroids: dict[str, float] | None = None, kind: str = "positive", title: str | None = None
) -> Figure:
    """Horizontal bars: spectral centroid (Hz) per label, sorted, coloured by phonetic class."""
    centroids = centroids if centroids is not None else result.spectral_centroids(kind)
    items = sorted(((c, n) for n, c in centroids.items() if np.isfinite(c)))
    fig = new_figure(5.0, 0.18 * max(len(items), 4) + 1.2)
    ax = fig.add_subplot()
    if not items:
        ax.set_title("no centroids")
        return fig
    classes = sorted({_category(result.by, n) for _, n in items})
    palette = matplotlib.colormaps["tab10"]
    colors = {c: palette(i % 10) for i, c in enumerate(classes)}
    values = [c for c, _ in items]
    names = [n for _, n in items]
    ax.barh(np.arange(len(items)), values, color=[colors[_category(result.by, n)] for n in names])
    ax.set_yticks(np.arange(len(items)), names, fontsize=7)
    ax.set_xlabel("spectral centroid (Hz)")
    ax.legend(handles=[Patch(color=colors[c], label=c) for c in classes], fontsize=7, loc="lower right")
    what = "positive part of the subtracted pattern" if kind == "positive" else "energy of the average"
    ax.set_title(title or f"{result.by}s: spectral centroid at the aligned frame\n({what})", fontsize=9)
    return fig
