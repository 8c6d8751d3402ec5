"""Figures for wavelet attribution (WAM): per-scale maps under the spectrogram and the letter spikes,
and insertion/deletion curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from asr_introspect.plotting.attribution import symbol_label
from asr_introspect.plotting.common import new_figure, show_features

__all__ = ["band_labels", "plot_scale_maps", "plot_wavelet_overview", "plot_faith_curves", "plot_band_shares"]


def band_labels(names: Sequence[str], frequencies: Sequence[tuple[float, float]]) -> list[str]:
    """ "d1 4-8 kHz"-style labels of the bands."""

    def khz(f: float) -> str:
        return f"{f / 1000:.2g}" if f else "0"

    return [f"{name} {khz(lo)}-{khz(hi)} kHz" for name, (lo, hi) in zip(names, frequencies)]


def _spikes(ax, path: np.ndarray, times_ms: np.ndarray, alphabet, highlight: Sequence[int] = ()) -> None:
    """Letter spikes of a CTC path (T_out,) at their output-frame times; ``highlight`` frames in red."""
    previous = None
    for t, token in enumerate(np.asarray(path).tolist()):
        if token != alphabet.blank and token != previous:
            color = "tab:red" if t in highlight else "black"
            ax.text(
                times_ms[t],
                0.5,
                symbol_label(alphabet, token),
                ha="center",
                va="center",
                fontsize=9,
                color=color,
                clip_on=True,
            )
        previous = token
    for t in highlight:
        ax.axvline(times_ms[t], color="tab:red", lw=0.8, alpha=0.6)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_ylabel("CTC", rotation=0, ha="right", va="center")


def plot_scale_maps(
    features,
    maps: Mapping[str, np.ndarray],
    labels: Sequence[str],
    feature_config,
    alphabet,
    path: np.ndarray,
    output_times_ms: np.ndarray,
    highlight: Sequence[int] = (),
    field: tuple[int, int] | None = None,
    title: str | None = None,
    start: int = 0,
    cmap: str = "magma",
) -> Figure:
    """The spectrogram, the letter spikes of ``path`` and one band x time map per entry of ``maps``,
    on one time axis.

    features: (F, T_in); maps: name -> (n_bands, T_in) relevance per band and input frame (e.g.
    :meth:`~asr_introspect.attribution.wavelets.WaveletMap.scalogram` with the feature hop);
    labels: one per band (coarse at the bottom as listed first); path: (T_out,) class per output
    frame at ``output_times_ms``; highlight: the explained output frames; field: the input frames
    ``[lo, hi)`` of the explained frame's receptive field, marked; start: the input frame of column 0
    of ``features`` and the maps (to draw a window of a long utterance).
    """
    features = np.asarray(features)
    step_ms = feature_config.frame_seconds * 1000.0
    n_frames = features.shape[1]
    t0 = start * step_ms
    heights = [2.2, 0.35] + [1.3] * len(maps)
    fig = new_figure(10.0, sum(heights) + 1.0)
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    ax = fig.add_subplot(grid[0])
    show_features(ax, features, feature_config, start_ms=t0, cmap="magma")
    ax.set_xlabel("")
    if title:
        ax.set_title(title)
    axes = [ax]
    ax = fig.add_subplot(grid[1], sharex=axes[0])
    _spikes(ax, path, output_times_ms, alphabet, highlight)
    axes.append(ax)
    extent = (t0 - step_ms / 2, t0 + (n_frames - 0.5) * step_ms, -0.5, len(labels) - 0.5)
    for row, (name, values) in enumerate(maps.items()):
        ax = fig.add_subplot(grid[2 + row], sharex=axes[0])
        values = np.asarray(values, dtype=np.float64)[:, :n_frames]
        peak = float(np.quantile(np.abs(values), 0.999)) if values.size else 1.0
        image = ax.imshow(
            values,
            origin="lower",
            aspect="auto",
            cmap=cmap,
            vmin=0.0,
            vmax=peak if peak > 0 else 1.0,
            extent=extent,
            interpolation="nearest",
        )
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(name, fontsize=9, loc="left")
        fig.colorbar(image, ax=ax, shrink=0.9, pad=0.01, label="|relevance|")
        axes.append(ax)
    for ax in axes:
        if field is not None:
            for edge in field:
                ax.axvline(edge * step_ms - step_ms / 2, color="cyan", lw=1.0)
        if ax is not axes[-1]:
            ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("time (ms)")
    axes[0].set_xlim(t0 - step_ms / 2, t0 + (n_frames - 0.5) * step_ms)
    return fig


def plot_faith_curves(curves: Mapping[str, object], labels: Mapping[str, str] | None = None) -> Figure:
    """Mean insertion (left) and deletion (right) curves per method
    (:class:`~asr_introspect.attribution.wam_faithfulness.FaithCurves`); wavelet methods solid, log-mel dashed."""
    labels = labels or {}
    fig = new_figure(10.0, 4.2)
    axes = [fig.add_subplot(1, 2, k + 1) for k in range(2)]
    palette = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                    "tab:olive", "tab:cyan", "navy", "gold", "black"])  # fmt: skip
    for name, c in curves.items():
        style = "-" if c.domain == "wavelet" else "--"
        color = "0.6" if name.startswith("random") else next(palette, None)
        label = labels.get(name, name)
        axes[0].plot(c.fractions, c.insertion.mean(0), style, color=color, label=f"{label} ({c.ins:.2f})")
        axes[1].plot(c.fractions, c.deletion.mean(0), style, color=color, label=f"{label} ({c.dele:.2f})")
    for ax, what in zip(axes, ("insertion: units restored", "deletion: units removed")):
        ax.set_xlabel(f"fraction of units ({what.split(': ')[1]})")
        ax.set_ylabel("target probability")
        ax.set_title(f"{what.split(':')[0]} (AUC in the legend)")
        ax.set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=7, loc="upper right")
    return fig


def plot_wavelet_overview(
    rows: np.ndarray, frames: np.ndarray, targets: np.ndarray, feature_config, alphabet=None, title: str = ""
) -> Figure:
    """|relevance| summed over the bands: one row per attributed frame (rows (N, T_in)) over the input time."""
    rows = np.asarray(rows, dtype=np.float64)
    step_ms = feature_config.frame_seconds * 1000.0
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    n = len(frames)
    contiguous = n > 0 and np.array_equal(frames, np.arange(frames[0], frames[0] + n))
    first = int(frames[0]) if contiguous else 0
    peak = float(np.quantile(rows, 0.995)) if rows.size else 1.0
    image = ax.imshow(
        rows,
        aspect="auto",
        origin="lower",
        cmap="magma",
        vmin=0.0,
        vmax=peak if peak > 0 else 1.0,
        interpolation="nearest",
        extent=(-step_ms / 2, (rows.shape[1] - 0.5) * step_ms, first - 0.5, first + n - 0.5),
    )
    fig.colorbar(image, ax=ax, shrink=0.85, label="|relevance| summed over the bands")
    ax.set_xlabel("input time (ms)")
    ax.set_ylabel("output frame" if contiguous else "attributed frame (row)")
    if n <= 40:
        ax.set_yticks(
            first + np.arange(n), [f"{f} {symbol_label(alphabet, t)}" for f, t in zip(frames, targets)], fontsize=7
        )
    ax.set_title(title, fontsize=9)
    return fig


def plot_band_shares(shares: Mapping[str, Mapping[str, float]], bands: Sequence[str], title: str = "") -> Figure:
    """Stacked bars: the fraction of |relevance| in each band (``bands``, coarse first) per group
    (``shares``: group -> band -> fraction)."""
    fig = new_figure(max(6.0, 1.3 * len(shares) + 2.0), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    groups = list(shares)
    bottom = np.zeros(len(groups))
    for band in bands:
        values = np.array([shares[g].get(band, 0.0) for g in groups])
        ax.bar(groups, values, bottom=bottom, label=band)
        bottom += values
    ax.set_ylabel("share of |relevance|")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", labelsize=7, labelrotation=20)
    ax.legend(fontsize=8, ncol=len(bands), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.set_title(title, fontsize=9)
    return fig
