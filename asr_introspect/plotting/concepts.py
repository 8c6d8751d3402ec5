"""Concept figures: concept-grams under the spectrogram and transcript, grounding heat maps, average input
patterns, stability curves, the letters single-concept ablations hurt, L2I components and interpretations.

Every function returns a pyplot-free :class:`~matplotlib.figure.Figure`; save it with
:func:`~asr_introspect.plotting.common.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from asr_introspect.plotting.common import mel_axis, new_figure, show_features, symmetric_limits

__all__ = [
    "plot_concept_gram",
    "plot_grounding",
    "plot_patterns",
    "plot_stability",
    "plot_letter_damage",
    "plot_spectral_components",
    "plot_interpretation",
]


def plot_concept_gram(
    gram,
    feature_config,
    concepts: Sequence[int],
    *,
    concept_labels: Sequence[str] | None = None,
    letters: Sequence[tuple[float, str]] = (),
    title: str | None = None,
):
    """Spectrogram (top), the activations of ``concepts`` over time (middle, one row each, scaled per row
    to its maximum) and the transcript (bottom: ``letters`` as (time in seconds, symbol), e.g. where the
    forced alignment emits them). ``gram``: a :class:`~asr_introspect.concepts.ConceptGram`."""
    concepts = list(concepts)
    codes = np.asarray(gram.codes)[concepts]
    peak = codes.max(axis=1, keepdims=True)
    scaled = np.divide(codes, peak, out=np.zeros_like(codes), where=peak > 0)
    duration_ms = gram.features.shape[1] * feature_config.frame_seconds * 1000.0
    fig = new_figure(max(7.0, min(16.0, duration_ms / 350.0)), 2.4 + 0.22 * len(concepts))
    axes = fig.subplots(3, 1, sharex=True, height_ratios=[3.0, max(1.5, 0.22 * len(concepts)), 0.5])
    show_features(axes[0], gram.features, feature_config)
    axes[0].set_xlabel("")
    times_ms = np.asarray(gram.times) * 1000.0
    step = float(np.median(np.diff(times_ms))) if len(times_ms) > 1 else feature_config.frame_seconds * 1000.0
    extent = (times_ms[0] - step / 2, times_ms[-1] + step / 2, len(concepts) - 0.5, -0.5)
    axes[1].imshow(scaled, aspect="auto", cmap="viridis", extent=extent, interpolation="nearest", vmin=0, vmax=1)
    labels = list(concept_labels) if concept_labels is not None else [f"c{k}" for k in concepts]
    axes[1].set_yticks(range(len(concepts)), labels, fontsize=7)
    axes[1].set_ylabel("concept")
    ax = axes[2]
    for time, symbol in letters:
        ax.text(time * 1000.0, 0.5, "␣" if symbol == " " else symbol, ha="center", va="center", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (ms)")
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_grounding(
    lift: np.ndarray,
    label_names: Sequence[str],
    concepts: Sequence[int],
    *,
    concept_labels: Sequence[str] | None = None,
    title: str = "",
):
    """Heat map of ``log2(lift)`` (concepts x labels): how much more of a concept's activation falls on a
    label's frames than the label's share of frames (red: preferred, blue: avoided)."""
    concepts = list(concepts)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log2(np.asarray(lift, dtype=np.float64)[concepts])
    values = np.where(np.isfinite(values), values, np.nan)
    low, high = symmetric_limits(np.nan_to_num(values), quantile=0.99)
    fig = new_figure(max(6.0, 0.19 * len(label_names) + 1.8), max(2.5, 0.2 * len(concepts) + 1.2))
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=low, vmax=high, interpolation="nearest")
    ax.set_xticks(range(len(label_names)), ["␣" if n == " " else n for n in label_names], fontsize=7, rotation=90)
    labels = list(concept_labels) if concept_labels is not None else [f"c{k}" for k in concepts]
    ax.set_yticks(range(len(concepts)), labels, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8, label="log2 lift")
    ax.set_title(title, fontsize=10)
    return fig


def plot_patterns(patterns: np.ndarray, feature_config, titles: Sequence[str], *, columns: int = 4, title: str = ""):
    """A grid of average input patterns ``(n, F, W)`` (e.g. contrast patterns of concepts), one colour scale."""
    patterns = np.asarray(patterns)
    n = len(patterns)
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns)) if n else 1
    fig = new_figure(2.4 * columns + 0.6, 2.0 * rows + 0.5)
    low, high = symmetric_limits(np.nan_to_num(patterns)) if n else (-1.0, 1.0)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).reshape(-1)
    image = None
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        width = patterns[i].shape[1]
        start = -(width // 2) * feature_config.frame_seconds * 1000.0
        image = show_features(ax, np.nan_to_num(patterns[i]), feature_config, start_ms=start, cmap="RdBu_r")
        image.set_clim(low, high)
        ax.set_title(titles[i], fontsize=8)
        if i % columns:
            ax.set_ylabel("")
            ax.set_yticklabels([])
        if i < n - columns:
            ax.set_xlabel("")
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.7, label="feature - corpus mean")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_stability(cosines: Mapping[str, np.ndarray], nulls: Mapping[str, np.ndarray], threshold: float = 0.7):
    """Sorted cosine of the matched concepts across seeds, per method (solid), and against shuffled
    atoms (dotted), with the stability threshold."""
    fig = new_figure(5.5, 3.4)
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(cosines.items()):
        color = f"C{i}"
        values = np.sort(np.asarray(values).reshape(-1))[::-1]
        share = float((values > threshold).mean()) if values.size else float("nan")
        ax.plot(np.linspace(0, 1, len(values)), values, color=color, label=f"{name}: {share:.0%} > {threshold}")
        if name in nulls:
            null = np.sort(np.asarray(nulls[name]).reshape(-1))[::-1]
            ax.plot(np.linspace(0, 1, len(null)), null, color=color, linestyle=":", label=f"{name}: shuffled atoms")
    ax.axhline(threshold, color="#888888", linewidth=0.8)
    ax.set_xlabel("matched concepts (sorted)")
    ax.set_ylabel("cosine across seeds")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_letter_damage(drops: np.ndarray, letters: Sequence[str], concept_labels: Sequence[str], title: str = ""):
    """Heat map (ablated concepts x letters) of the mean drop in a letter's log posterior at its frames."""
    drops = np.asarray(drops, dtype=np.float64)
    fig = new_figure(max(6.0, 0.22 * len(letters) + 1.8), max(2.2, 0.26 * len(concept_labels) + 1.2))
    ax = fig.add_subplot()
    low, high = symmetric_limits(np.nan_to_num(drops), quantile=0.99)
    image = ax.imshow(drops, aspect="auto", cmap="RdBu_r", vmin=low, vmax=high, interpolation="nearest")
    ax.set_xticks(range(len(letters)), ["␣" if s == " " else s for s in letters], fontsize=8)
    ax.set_yticks(range(len(concept_labels)), concept_labels, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8, label="log-posterior drop (nats)")
    ax.set_xlabel("letter (at its forced-alignment frames)")
    ax.set_title(title, fontsize=10)
    return fig


def plot_spectral_components(spectra: np.ndarray, feature_config, title: str = "L2I spectral components"):
    """The spectral NMF dictionary ``(K, F)``: one column per component, frequency up."""
    spectra = np.asarray(spectra, dtype=np.float64)
    fig = new_figure(max(5.0, 0.16 * len(spectra) + 1.5), 3.2)
    ax = fig.add_subplot()
    ax.imshow(spectra.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    mel_axis(ax, feature_config)
    ax.set_xlabel("component")
    ax.set_title(title, fontsize=10)
    return fig


def plot_interpretation(interpretation, original: np.ndarray, feature_config):
    """An L2I interpretation: the input window (left), what the relevant components keep (middle) and
    the window without them (right); ``original``: (F, W) the input features of the window."""
    fig = new_figure(9.0, 2.8)
    axes = fig.subplots(1, 3, sharey=True)
    start_ms = interpretation.frames[0] * feature_config.frame_seconds * 1000.0
    low = float(np.min(original))
    high = float(np.max(original))
    components = ", ".join(str(k) for k in interpretation.components) or "none"
    for ax, features, name in zip(
        axes,
        (original, interpretation.features, interpretation.removed),
        ("input", f"components {components}", "without them"),
    ):
        show_features(ax, features, feature_config, start_ms=start_ms, vmin=low, vmax=high, title=name)
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.suptitle(interpretation.what, fontsize=10)
    return fig
