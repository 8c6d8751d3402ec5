"""Figures of where CTC puts letters relative to their sound."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from asr_introspect.plotting.common import new_figure, show_features


def predictions_vs_spectrogram(
    features,
    feature_config,
    phones,
    spans,
    frame_times,
    alphabet,
    correction_seconds: float = 0.0,
    predicted_spans=None,
    title: str | None = None,
) -> Figure:
    """Spectrogram with phone segments and the CTC letter spikes, raw and shift-corrected.

    features: (F, T_in); phones: PhoneSegments (s); spans: forced TokenSpans on the
    output axis; frame_times: (T_out,) seconds; correction_seconds: the measured
    median lag (letters are drawn that much earlier in the corrected row).
    """
    fig = new_figure(11, 5.2)
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1.6])
    ax = fig.add_subplot(grid[0])
    show_features(ax, features, feature_config, cmap="magma")
    top = features.shape[0] - 0.5
    for seg in phones or ():
        ax.axvline(seg.start * 1000, color="white", lw=0.5, alpha=0.6)
        if seg.phone != "sil":
            ax.text((seg.start + seg.end) * 500, top - 2, seg.phone, color="white", ha="center", va="top", fontsize=7)
    ax.set_xlabel("")
    ax.set_title(title or "phone segments (white) over the input features")
    low = fig.add_subplot(grid[1], sharex=ax)
    rows = [("CTC (forced)", spans, 0.0, "tab:red"), ("corrected", spans, correction_seconds, "tab:green")]
    if predicted_spans is not None:
        rows.insert(1, ("CTC (greedy)", predicted_spans, 0.0, "tab:orange"))
    for row, (_name, row_spans, shift, color) in enumerate(rows):
        for span in row_spans:
            symbol = alphabet.symbols[span.token]
            if symbol == " ":
                continue
            t = float(np.mean(frame_times[span.start : span.end])) - shift
            low.text(t * 1000, row, symbol, color=color, ha="center", va="center", fontsize=9, fontweight="bold")
    for seg in phones or ():
        low.axvline(seg.start * 1000, color="0.8", lw=0.5)
    low.set_yticks(range(len(rows)), [r[0] for r in rows])
    low.set_ylim(-0.7, len(rows) - 0.3)
    low.invert_yaxis()
    low.set_xlabel("time (ms)")
    return fig


def shift_histogram(center_shifts, onset_shifts, output_frame_seconds: float) -> Figure:
    """Distributions of (CTC emission - acoustic position) per word, in ms."""
    fig = new_figure(7, 3.4)
    ax = fig.add_subplot()
    values = [np.asarray(center_shifts) * 1000, np.asarray(onset_shifts) * 1000]
    finite = np.concatenate([v for v in values if len(v)]) if any(len(v) for v in values) else np.zeros(1)
    bins = np.arange(
        np.floor(finite.min() / 16) * 16 - 8, np.ceil(finite.max() / 16) * 16 + 24, 1000 * output_frame_seconds
    )
    for v, label, color in zip(values, ("word centre", "word onset"), ("tab:red", "tab:blue")):
        if len(v):
            ax.hist(v, bins=bins, alpha=0.55, label=f"{label} (median {np.median(v):.0f} ms)", color=color)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("CTC emission time - acoustic time (ms); > 0: the letter comes later than its sound")
    ax.set_ylabel("words")
    ax.legend(frameon=False)
    return fig
