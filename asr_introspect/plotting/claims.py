"""Figures of the claims run: layer trends of a measure with 95 % bootstrap bands (model vs nulls),
CKA between layers, and a forest plot of the claims (value and null with their intervals)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from asr_introspect.claims.record import percentile_interval
from asr_introspect.plotting.common import new_figure

__all__ = ["plot_layer_trend", "plot_cka", "plot_claims"]

#: how each variant is drawn and named
STYLES = {
    "model": ("C0", "trained model"),
    "random": ("C3", "random weights"),
    "layer_random": ("C2", "this layer randomized"),
    "shuffled": ("C7", "labels shuffled in utterances"),
}


def plot_layer_trend(curves: dict, layers: Sequence[str], title: str, ylabel: str = "ARI") -> Figure:
    """One measure across layers: per variant its value (line) and 95 % percentile band (shaded).

    curves: {variant: {"value": (L,), "samples": (B, L)}} (from ``layer_trends`` / ``probe_trends``).
    """
    fig = new_figure(7.0, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    for variant, entry in curves.items():
        color, label = STYLES.get(variant, ("k", variant))
        ax.plot(x, entry["value"], marker="o", ms=3, color=color, label=label)
        bands = np.array([percentile_interval(entry["samples"][:, i]) for i in range(len(layers))])
        if np.isfinite(bands).any():
            ax.fill_between(x, bands[:, 0], bands[:, 1], color=color, alpha=0.18, linewidth=0)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(x, list(layers), rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    return fig


def plot_cka(matrices: dict[str, np.ndarray], layers: Sequence[str]) -> Figure:
    """Linear CKA between layers, one heatmap per variant (e.g. trained vs random weights)."""
    fig = new_figure(4.0 * len(matrices), 3.6)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (variant, m) in zip(axes, matrices.items()):
        image = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(layers)), list(layers), rotation=90, fontsize=7)
        ax.set_yticks(range(len(layers)), list(layers), fontsize=7)
        ax.set_title(f"linear CKA: {STYLES.get(variant, (None, variant))[1]}", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    return fig


def plot_claims(claims: Sequence) -> Figure:
    """Forest plot: each claim's value (dot) and 95 % interval (bar) above its null's (grey)."""
    fig = new_figure(7.0, 0.6 + 0.55 * max(len(claims), 1))
    ax = fig.add_subplot()
    for i, claim in enumerate(claims):
        y = len(claims) - 1 - i
        ax.errorbar(
            claim.null, y - 0.15, xerr=_err(claim.null, claim.null_interval), fmt="s", color="0.55", ms=4, capsize=2
        )
        ax.errorbar(claim.value, y + 0.15, xerr=_err(claim.value, claim.interval), fmt="o", color="C0", ms=4, capsize=2)
    ax.set_yticks(range(len(claims)), [f"{c.name}\n({c.verdict})" for c in reversed(claims)], fontsize=7)
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlabel("value (blue) and null (grey), 95 % bootstrap intervals")
    return fig


def _err(value: float, interval) -> np.ndarray:
    lo, hi = interval
    if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(value)):
        return np.zeros((2, 1))
    return np.array([[max(value - lo, 0.0)], [max(hi - value, 0.0)]])
