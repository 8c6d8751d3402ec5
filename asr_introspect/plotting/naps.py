"""NAP figures: group dendrograms, groups x neurons clustermaps, cluster quality across layers.

:func:`plot_dendrogram` and :func:`plot_quality` build pyplot-free figures
(save them with :func:`~asr_introspect.plotting.common.save_figure`);
:func:`save_clustermap` needs seaborn's clustermap, which creates its figure
through pyplot: it writes the file and closes the figure itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.cluster.hierarchy import dendrogram

from asr_introspect.naps.quality import group_categories
from asr_introspect.plotting.common import new_figure, save_figure

__all__ = ["CATEGORY_COLORS", "plot_dendrogram", "save_clustermap", "plot_quality"]

#: tick-label colours of group names by category ("vowel" kind)
CATEGORY_COLORS = {"vowel": "#c0392b", "consonant": "#1f4e9c", None: "#555555", "silence": "#555555"}


def _color_threshold(Z: np.ndarray, n_clusters: int) -> float | None:
    """A height between the merges that leave ``n_clusters`` and ``n_clusters - 1`` clusters."""
    n = Z.shape[0] + 1
    if not 2 <= n_clusters <= n:
        return None
    low = Z[n - n_clusters - 1, 2] if n_clusters < n else 0.0
    high = Z[n - n_clusters, 2]
    return float(0.5 * (low + high))


def plot_dendrogram(
    clustering, title: str | None = None, by: str | None = None, width: float | None = None, height: float = 3.6
):
    """Dendrogram of a :class:`~asr_introspect.naps.Clustering` (groups as leaves).

    Links are coloured by the clusters at ``clustering.n_clusters``; with ``by``
    ("letter"/"phoneme") leaf labels are coloured vowel/consonant. Returns a Figure.
    """
    groups = list(clustering.groups)
    fig = new_figure(width or max(5.0, 0.22 * len(groups) + 1.5), height)
    ax = fig.add_subplot()
    dendrogram(
        clustering.linkage,
        labels=groups,
        ax=ax,
        leaf_rotation=90 if len(groups) > 12 else 0,
        color_threshold=_color_threshold(clustering.linkage, clustering.n_clusters),
        above_threshold_color="#888888",
    )
    if by in ("letter", "phoneme"):
        cats = dict(zip(groups, group_categories(groups, by, "vowel")))
        for label in ax.get_xticklabels():
            label.set_color(CATEGORY_COLORS.get(cats.get(label.get_text()), "#555555"))
    ax.set_ylabel(f"{clustering.metric} distance")
    ax.set_title(title or f"{clustering.layer}: {clustering.method} linkage, {clustering.normalize} NAPs")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def save_clustermap(
    clustering, path: str | os.PathLike, title: str | None = None, cmap: str = "vlag", svg: bool = False, dpi: int = 110
) -> list[Path]:
    """Write a seaborn clustermap of ``clustering.profiles`` (groups x neurons) to ``path`` (PNG).

    Rows follow the group tree, columns the neuron tree (``clustering.neuron_linkage``;
    unclustered if None). Returns the paths written.
    """
    profiles = np.asarray(clustering.profiles)
    groups = list(clustering.groups)
    n_groups, n_neurons = profiles.shape
    frame = pd.DataFrame(profiles, index=groups)
    lim = float(np.quantile(np.abs(profiles), 0.99)) if profiles.size else 1.0
    lim = lim if lim > 0 else 1.0
    kwargs = dict(
        row_linkage=clustering.linkage if n_groups > 1 else None,
        row_cluster=n_groups > 1,
        col_cluster=clustering.neuron_linkage is not None,
    )
    if clustering.neuron_linkage is not None:
        kwargs["col_linkage"] = clustering.neuron_linkage
    grid = sns.clustermap(
        frame,
        cmap=cmap,
        center=0.0,
        vmin=-lim,
        vmax=lim,
        xticklabels=False,
        yticklabels=True,
        figsize=(min(14.0, 4.0 + 0.01 * n_neurons), 2.0 + 0.2 * n_groups),
        dendrogram_ratio=(0.12, 0.12),
        cbar_pos=(0.01, 0.85, 0.02, 0.12),
        **kwargs,
    )
    try:
        grid.ax_heatmap.set_xlabel(f"{n_neurons} neurons (ordered by their own clustering)")
        grid.ax_heatmap.set_ylabel("")
        grid.figure.suptitle(title or f"{clustering.layer}: {clustering.normalize} NAPs", y=1.0)
        return save_figure(grid.figure, path, svg=svg, dpi=dpi)
    finally:
        plt.close(grid.figure)


_STYLES = {"letter": ("#1f4e9c", "o"), "phoneme": ("#c0392b", "s"), "custom": ("#2e7d32", "^")}


def plot_quality(qualities: Mapping[str, Sequence], title: str | None = None):
    """Cluster quality across layers: ``qualities[by]`` = one LayerQuality per layer.

    Panels: ARI vs categories (hierarchical solid, k-means dashed), category
    silhouette, cophenetic correlation, median specificity (log scale).
    Returns a Figure.
    """
    layers: list[str] = []
    for rows in qualities.values():
        layers += [q.layer for q in rows if q.layer not in layers]
    x_of = {name: i for i, name in enumerate(layers)}
    fig = new_figure(10.0, 6.5)
    axes = fig.subplots(2, 2, sharex=True)
    panels = [
        (axes[0, 0], "ARI with phonetic categories"),
        (axes[0, 1], "silhouette of categories"),
        (axes[1, 0], "cophenetic correlation"),
        (axes[1, 1], "specificity (between / within var.)"),
    ]
    kind_dash = {"vowel": "-", "manner": "-."}
    for by, rows in qualities.items():
        color, marker = _STYLES.get(by, _STYLES["custom"])
        x = np.array([x_of[q.layer] for q in rows])
        kinds = sorted({k for q in rows for k in q.ari}, key=lambda k: (k != "vowel", k))
        for kind in kinds:
            dash = kind_dash.get(kind, ":")
            axes[0, 0].plot(
                x,
                [q.ari.get(kind, np.nan) for q in rows],
                dash,
                color=color,
                marker=marker,
                label=f"{by}s: {kind} (hierarchical)",
            )
            axes[0, 0].plot(
                x,
                [q.ari_kmeans.get(kind, np.nan) for q in rows],
                dash,
                color=color,
                marker=marker,
                alpha=0.35,
                mfc="none",
                label=f"{by}s: {kind} (k-means)",
            )
            axes[0, 1].plot(
                x,
                [q.category_silhouette.get(kind, np.nan) for q in rows],
                dash,
                color=color,
                marker=marker,
                label=f"{by}s: {kind}",
            )
        axes[0, 1].plot(
            x,
            [q.silhouette for q in rows],
            ":",
            color=color,
            marker=marker,
            alpha=0.5,
            label=f"{by}s: clusters (k={rows[0].n_clusters})" if rows else by,
        )
        axes[1, 0].plot(x, [q.cophenetic for q in rows], "-", color=color, marker=marker, label=f"{by}s")
        spec = np.array([q.specificity for q in rows], dtype=float)
        axes[1, 1].plot(x, np.where(spec > 0, spec, np.nan), "-", color=color, marker=marker, label=f"{by}s")
    axes[1, 1].set_yscale("log")
    for ax, name in panels:
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, frameon=False)
    for ax in axes[1]:
        ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 6 else 0)
        ax.set_xlabel("layer")
    axes[0, 0].axhline(0.0, color="#999999", lw=0.8)
    axes[0, 1].axhline(0.0, color="#999999", lw=0.8)
    if title:
        fig.suptitle(title)
    return fig
