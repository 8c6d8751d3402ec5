"""Figures for per-frame attribution: one output frame's maps, all frames at once, evaluation curves."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from asr_introspect.plotting.common import new_figure, show_features, symmetric_limits

__all__ = ["symbol_label", "plot_frame_attribution", "plot_relevance_overview", "plot_curves", "plot_randomization"]


def symbol_label(alphabet, index: int) -> str:
    """Printable name of class ``index``: blank as "<b>", space as "␣"."""
    if alphabet is None:
        return str(int(index))
    symbol = alphabet.symbols[int(index)]
    if int(index) == alphabet.blank:
        return "<b>"
    return "␣" if symbol == " " else symbol


def plot_frame_attribution(
    features, attribution, frame: int, feature_config, alphabet=None, compare=None, cmap: str = "RdBu_r"
) -> Figure:
    """One output frame: the utterance with the frame's receptive field marked and its predicted
    letter (top); the features of the receptive field and the relevance maps of ``attribution``
    and ``compare`` (another Attribution of the same frame, e.g. sensitivity) side by side.

    features: (F, T_in).
    """
    features = np.asarray(features)
    i = attribution.index(frame)
    start, stop = int(attribution.offsets[i]), int(attribution.offsets[i]) + attribution.receptive_field
    lo, hi = attribution.input_range(i)
    step_ms = feature_config.frame_seconds * 1000.0
    predicted = int(np.argmax(attribution.logits[:, frame]))
    target = int(attribution.targets[i])
    maps = [(attribution.method, attribution.crops()[i])]
    if compare is not None:
        maps.insert(0, (compare.method, compare.crops()[compare.index(frame)]))
    n_cols = 1 + len(maps)
    fig = new_figure(4.0 * n_cols, 6.5)
    grid = fig.add_gridspec(2, n_cols, height_ratios=[1.0, 1.4])

    fmin, fmax = float(features.min()), float(features.max())

    def outside(ax) -> None:  # grey out receptive-field frames beyond the utterance
        for a, b in ((start, lo), (hi, stop)):
            if b > a:
                ax.axvspan(a * step_ms - step_ms / 2, b * step_ms - step_ms / 2, color="0.6", alpha=0.5, lw=0)

    ax = fig.add_subplot(grid[0, :])
    show_features(ax, features, feature_config, cmap="magma", vmin=fmin, vmax=fmax)
    ax.axvspan(start * step_ms, stop * step_ms, color="cyan", alpha=0.18, lw=0)
    for edge in (lo, hi):
        ax.axvline(edge * step_ms - step_ms / 2, color="cyan", lw=1.0)
    center = float(attribution.centers[i]) * step_ms
    ax.axvline(center, color="white", lw=1.0, ls="--")
    ax.set_xlim(-step_ms / 2, (features.shape[1] - 0.5) * step_ms)
    text = f"frame {frame}: predicted '{symbol_label(alphabet, predicted)}'"
    if target != predicted:
        text += f", explaining '{symbol_label(alphabet, target)}'"
    ax.set_title(text + f" (logit {attribution.logits[target, frame]:.2f}); receptive field marked")

    crop = np.full((features.shape[0], attribution.receptive_field), np.nan, dtype=np.float32)
    if hi > lo:
        crop[:, lo - start : hi - start] = features[:, lo:hi]
    ax = fig.add_subplot(grid[1, 0])
    show_features(
        ax,
        crop,
        feature_config,
        start_ms=start * step_ms,
        cmap="magma",
        vmin=fmin,
        vmax=fmax,
        title="input (receptive field)",
    )
    ax.axvline(center, color="white", lw=0.8, ls="--")
    outside(ax)
    for col, (name, relevance) in enumerate(maps, start=1):
        ax = fig.add_subplot(grid[1, col])
        vmin, vmax = symmetric_limits(relevance)
        show_features(
            ax,
            relevance,
            feature_config,
            start_ms=start * step_ms,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            colorbar=True,
            title=name,
        )
        ax.axvline(center, color="black", lw=0.8, ls="--")
        outside(ax)
        ax.set_ylabel("")
    return fig


def plot_relevance_overview(attribution, feature_config, alphabet=None, cmap: str = "RdBu_r") -> Figure:
    """Relevance summed over frequency: one row per attributed frame over the input time axis."""
    dense = attribution.dense().sum(axis=1)  # (N, T_in)
    step_ms = feature_config.frame_seconds * 1000.0
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    vmin, vmax = symmetric_limits(dense)
    n = len(attribution.frames)
    frames = np.asarray(attribution.frames)
    contiguous = n > 0 and np.array_equal(frames, np.arange(frames[0], frames[0] + n))
    first = int(frames[0]) if contiguous else 0  # rows are frame numbers when contiguous, else indices
    image = ax.imshow(
        dense,
        aspect="auto",
        origin="lower",
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        extent=(-step_ms / 2, (dense.shape[1] - 0.5) * step_ms, first - 0.5, first + n - 0.5),
    )
    fig.colorbar(image, ax=ax, shrink=0.85, label="relevance (summed over frequency)")
    ax.set_xlabel("input time (ms)")
    ax.set_ylabel("output frame" if contiguous else "attributed frame (row)")
    if n <= 40:
        ax.set_yticks(
            first + np.arange(n),
            [f"{f} {symbol_label(alphabet, t)}" for f, t in zip(attribution.frames, attribution.targets)],
            fontsize=7,
        )
    ax.set_title(f"{attribution.method}: relevance of every input frame for each output frame")
    return fig


def plot_curves(results: Mapping[str, object], title: str | None = None) -> Figure:
    """Mean deletion/insertion curves (:class:`~asr_introspect.attribution.evaluation.CurveResult`) per method,
    with the random-order reference of the first."""
    fig = new_figure(5.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    first = None
    for name, result in results.items():
        first = first or result
        ax.plot(result.fractions, result.curves.mean(0), label=f"{name} (AUC {result.auc:.2f})")
    if first is not None:
        ax.plot(
            first.fractions, first.random.mean(0), color="gray", ls="--", label=f"random (AUC {first.random_auc:.2f})"
        )
        ax.set_xlabel(f"fraction of {first.unit}s {'removed' if first.mode == 'deletion' else 'restored'}")
        ax.set_title(title or f"{first.mode} curves")
    ax.set_ylabel("target log-probability")
    ax.legend(fontsize=8)
    return fig


def plot_randomization(result, absolute: bool = False) -> Figure:
    """Mean Spearman correlation to the original maps after randomizing layers top-down."""
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    values = result.spearman_abs if absolute else result.spearman
    x = np.arange(len(result.steps))
    for m, name in enumerate(result.methods):
        ax.plot(x, np.nanmean(values[m], axis=-1), marker="o", label=name)
    ax.set_xticks(x, result.steps, rotation=45)
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xlabel("randomized down to layer")
    ax.set_ylabel("Spearman to original" + (" (|relevance|)" if absolute else ""))
    ax.set_title("cascading parameter randomization")
    ax.legend(fontsize=8)
    return fig
