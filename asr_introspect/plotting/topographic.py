"""Topographic NAP maps: one small map per group on a shared 2-D layout of a layer's neurons.

:func:`topographic_maps` builds a pyplot-free figure (save it with
:func:`~asr_introspect.plotting.common.save_figure`): a grid of panels, one per
group, each the layout (:func:`asr_introspect.naps.topographic.topographic_layout`)
coloured by that group's profile, either as a smoothed image
(:func:`~asr_introspect.naps.topographic.topographic_images`) or as a scatter
of the neurons. All panels share one diverging colour scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr_introspect.naps.topographic import topographic_images
from asr_introspect.plotting.common import new_figure, symmetric_limits

__all__ = ["topographic_maps"]

STYLES = ("image", "scatter")


def topographic_maps(
    layout: np.ndarray,
    profiles: np.ndarray,
    groups: Sequence[str],
    *,
    title: str | None = None,
    style: str = "image",
    images: np.ndarray | None = None,
    resolution: int = 32,
    columns: int | None = None,
    cmap: str = "RdBu_r",
    panel: float = 1.05,
):
    """Grid of per-group maps. layout: (N, 2) in [0, 1]; profiles: (G, N); groups: G names.

    style: "image" (``images`` (G, R, R) if given, else computed at ``resolution``) or "scatter"
    (one dot per neuron); columns: panels per row (default about sqrt(2 G)); panel: inches per
    panel. Returns a Figure.
    """
    profiles = np.atleast_2d(np.asarray(profiles, dtype=np.float64))
    groups = list(groups)
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if len(groups) != profiles.shape[0]:
        raise ValueError(f"{len(groups)} group names for {profiles.shape[0]} profiles")
    G = len(groups)
    cols = columns or max(1, min(G, int(np.ceil(np.sqrt(2 * G)))))
    rows = int(np.ceil(G / cols))
    if style == "image" and images is None:
        images = topographic_images(layout, profiles, resolution)
    shown = images if style == "image" else profiles
    finite = np.asarray(shown)[np.isfinite(shown)]
    vmin, vmax = symmetric_limits(finite)
    fig = new_figure(panel * cols + 0.9, panel * rows + (0.45 if title else 0.15))
    axes = fig.subplots(rows, cols, squeeze=False)
    mappable = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= G:
            ax.set_axis_off()
            continue
        if style == "image":
            mappable = ax.imshow(
                images[i],
                origin="lower",
                extent=(0, 1, 0, 1),
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                interpolation="bilinear",
            )
        else:
            order = np.argsort(np.abs(profiles[i]))  # strongest on top
            mappable = ax.scatter(
                layout[order, 0], layout[order, 1], c=profiles[i, order], s=6, cmap=cmap, vmin=vmin, vmax=vmax, lw=0
            )
            ax.set_xlim(-0.03, 1.03)
            ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
        ax.set_title(groups[i], fontsize=8, pad=2)
        for spine in ax.spines.values():
            spine.set_linewidth(0.4)
            spine.set_color("#999999")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.6, label="profile")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
