"""Figures of feature visualization: one optimized window, the "optimal inputs" grid, and
the objective-vs-naturalness comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from asr_introspect.plotting.common import new_figure, show_features

__all__ = ["plot_result", "plot_optimal_inputs", "plot_naturalness"]


def _limits(features: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(features, [0.005, 0.995])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 1.0, float(hi) + 1.0)


def _start_ms(result, features: np.ndarray, feature_config) -> float:
    """Time axis with 0 ms at the centre of the objective's (first) frame (default: the window centre)."""
    centre = result.settings.get("target_input_frame", (features.shape[-1] - 1) / 2.0)
    return -float(centre) * feature_config.frame_seconds * 1000.0


def plot_result(result, feature_config, title: str | None = None, top: int = 8):
    """One :class:`~asr_introspect.featvis.Result`: the window (F, W) (0 ms and the dotted line at
    the objective's frame), the objective trace and the top letters at the centre output frame."""
    features = result.features if result.features.ndim == 2 else result.features[0]
    fig = new_figure(10.0, 4.2)
    grid = fig.add_gridspec(2, 2, width_ratios=(2.4, 1.0))
    ax = fig.add_subplot(grid[:, 0])
    lo, hi = _limits(features)
    show_features(
        ax,
        features,
        feature_config,
        start_ms=_start_ms(result, features, feature_config),
        vmin=lo,
        vmax=hi,
        colorbar=True,
        title=title or result.settings.get("objective", ""),
    )
    ax.axvline(0.0, color="w", lw=0.6, ls=":")
    ax_trace = fig.add_subplot(grid[0, 1])
    ax_trace.plot(np.arange(1, len(result.trace) + 1), result.trace, lw=1.2)
    ax_trace.set_xlabel("step")
    ax_trace.set_ylabel("objective")
    ax_trace.set_title(f"final {result.objective:.3g}", fontsize=9)
    ax_bar = fig.add_subplot(grid[1, 1])
    letters = result.top_letters(top)
    names = [_symbol(s) for s, _ in letters]
    ax_bar.barh(np.arange(len(letters))[::-1], [p for _, p in letters], color="tab:blue")
    ax_bar.set_yticks(np.arange(len(letters))[::-1], names)
    ax_bar.set_xlim(0, 1)
    ax_bar.set_xlabel("p(letter) at centre frame")
    return fig


def _symbol(symbol: str) -> str:
    return {" ": "␣", "<blank>": "∅"}.get(symbol, symbol)


def plot_optimal_inputs(
    grid: Mapping[str, Mapping[str, Any]],
    feature_config,
    title: str | None = None,
    column_labels: Mapping[str, str] | None = None,
):
    """The "optimal inputs" figure: rows = objectives (e.g. first layer, a middle layer, the
    output layer), columns = regularization sets (e.g. weak, strong); ``grid[row][col]`` is a
    :class:`~asr_introspect.featvis.Result` (as :func:`asr_introspect.featvis.optimal_inputs`
    returns). Each panel has its own colour scale; titles give the objective reached and
    the top letter at the centre output frame."""
    rows = list(grid)
    cols: list[str] = []
    for row in rows:
        cols.extend(c for c in grid[row] if c not in cols)
    fig = new_figure(3.6 * len(cols) + 0.6, 2.6 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            result = grid[row].get(col)
            if result is None:
                ax.set_axis_off()
                continue
            features = result.features if result.features.ndim == 2 else result.features[0]
            lo, hi = _limits(features)
            letter, p = result.top_letters(1)[0]
            show_features(
                ax,
                features,
                feature_config,
                start_ms=_start_ms(result, features, feature_config),
                vmin=lo,
                vmax=hi,
                colorbar=True,
                title=f"{row} | {(column_labels or {}).get(col, col)}\n"
                f"objective {result.objective:.3g}, top '{_symbol(letter)}' {p:.2f}",
            )
            ax.title.set_fontsize(8)
            if i < len(rows) - 1:
                ax.set_xlabel("")
            if j > 0:
                ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig


def plot_naturalness(
    runs: Sequence[Mapping[str, Any]], reference: Mapping[str, Any] | None = None, title: str | None = None
):
    """Objective reached vs naturalness, one point per run.

    ``runs``: dicts with ``set`` (regularization name), ``target`` (a label),
    ``objective``, ``distance`` (normalized Mahalanobis distance to real windows)
    and optionally ``probability`` (of the target letter). ``reference``: the
    same keys for real windows (drawn as a band / line). Left: objective vs
    distance; right: p(target) per set (mean over targets).
    """
    fig = new_figure(10.0, 4.0)
    ax, ax_p = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1.4, 1.0)})
    sets = list(dict.fromkeys(r["set"] for r in runs))
    colors = {s: f"C{i % 10}" for i, s in enumerate(sets)}
    targets = list(dict.fromkeys(str(r.get("target", "")) for r in runs))
    markers = {t: "osD^vP*Xh"[i % 9] for i, t in enumerate(targets)}
    for s in sets:
        for t in targets:
            pts = [r for r in runs if r["set"] == s and str(r.get("target", "")) == t]
            ax.scatter(
                [r["distance"] for r in pts],
                [r["objective"] for r in pts],
                color=colors[s],
                s=28,
                marker=markers[t],
                label=s if t == targets[0] else None,
            )
    if len(targets) > 1:
        ax.text(
            0.01,
            0.99,
            "markers: " + ", ".join(f"{markers[t]} {t}" for t in targets),
            transform=ax.transAxes,
            va="top",
            fontsize=7,
        )
    if reference is not None and reference.get("distance") is not None:
        ax.axvline(reference["distance"], color="k", ls="--", lw=1, label="real windows")
        if reference.get("objective") is not None:
            ax.axhline(reference["objective"], color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("Mahalanobis distance to real windows (per dimension, log)")
    ax.set_ylabel("objective reached")
    ax.legend(fontsize=7, loc="best")
    probs = [
        np.mean([r["probability"] for r in runs if r["set"] == s and r.get("probability") is not None] or [np.nan])
        for s in sets
    ]
    ax_p.bar(np.arange(len(sets)), probs, color=[colors[s] for s in sets])
    if reference is not None and reference.get("probability") is not None:
        ax_p.axhline(reference["probability"], color="k", ls="--", lw=1, label="real windows")
        ax_p.legend(fontsize=7)
    ax_p.set_xticks(np.arange(len(sets)), sets, rotation=45, ha="right", fontsize=8)
    ax_p.set_ylim(0, 1)
    ax_p.set_ylabel("p(target letter) at centre frame")
    if title:
        fig.suptitle(title)
    return fig
