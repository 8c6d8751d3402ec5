"""Network dissection figures: labels and polysemanticity by layer, a neuron's top clips, concept ablation.

All figures are pyplot-free (save them with :func:`~asr_introspect.plotting.common.save_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from asr_introspect.plotting.common import new_figure, show_features

__all__ = ["FAMILY_COLORS", "plot_polysemanticity", "plot_label_families", "plot_top_clips", "plot_ablation"]

#: colour of each concept family (and of unlabelled neurons)
FAMILY_COLORS = {
    "letters": "#8e44ad",
    "phones": "#c0392b",
    "features": "#e67e22",
    "silence": "#7f8c8d",
    "position": "#16a085",
    "voice": "#2980b9",
    "f0": "#27ae60",
    "energy": "#f1c40f",
    "centroid": "#34495e",
    "unlabelled": "#dddddd",
}
_POLY_COLORS = ("#dddddd", "#1f4e9c", "#5b8bd0", "#e67e22", "#c0392b")


def plot_polysemanticity(summaries: Mapping[str, dict], best_iou: Mapping[str, np.ndarray], min_iou: float):
    """Two panels by layer: (a) the share of neurons with 0 (unlabelled), 1, 2, 3 and 4+ distinct concepts,
    with the mean among labelled neurons above each bar; (b) the distribution of each neuron's best IoU,
    with the label threshold ``min_iou``.

    summaries: {layer: :meth:`Dissection.layer_summary`}; best_iou: {layer: (N,) best IoU per neuron}.
    """
    layers = list(summaries)
    fig = new_figure(max(6.0, 0.7 * len(layers) + 2.5), 6.2)
    ax, bx = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(layers))
    bottom = np.zeros(len(layers))
    for i, key in enumerate(("0", "1", "2", "3", "4+")):
        share = np.array([summaries[n]["polysemanticity"][key] / max(summaries[n]["neurons"], 1) for n in layers])
        label = "unlabelled" if key == "0" else f"{key} concept{'s' if key != '1' else ''}"
        ax.bar(x, share, bottom=bottom, color=_POLY_COLORS[i], label=label, width=0.7)
        bottom += share
    for i, n in enumerate(layers):
        mean = summaries[n]["mean_polysemanticity_labelled"]
        if summaries[n]["labelled"]:
            ax.text(i, 1.01, f"{mean:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of neurons")
    ax.set_title("(a) distinct concepts per neuron (numbers: mean among labelled neurons)", fontsize=9, loc="left")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.02), frameon=False)
    data = [np.nan_to_num(np.asarray(best_iou[n], dtype=np.float64), nan=0.0) for n in layers]
    bx.boxplot(data, positions=x, widths=0.6, showfliers=False)
    for i, values in enumerate(data):
        jitter = np.random.default_rng(i).uniform(-0.25, 0.25, len(values))
        bx.scatter(i + jitter, values, s=2, alpha=0.25, color="#1f4e9c", linewidths=0)
    bx.axhline(min_iou, color="#c0392b", lw=1, ls="--", label=f"label threshold (IoU {min_iou:g})")
    bx.set_ylabel("best IoU of each neuron")
    bx.set_title("(b) how well the best concept fits each neuron", fontsize=9, loc="left")
    bx.legend(fontsize=7, loc="upper left", frameon=False)
    bx.set_xticks(x, layers, rotation=45 if len(layers) > 6 else 0)
    return fig


def plot_label_families(summaries: Mapping[str, dict], families: Sequence[str]):
    """By layer, the share of neurons whose best label belongs to each concept family (grey: unlabelled)."""
    layers = list(summaries)
    fig = new_figure(max(6.0, 0.7 * len(layers) + 3.0), 3.6)
    ax = fig.subplots()
    x = np.arange(len(layers))
    bottom = np.zeros(len(layers))
    for family in [*families, "unlabelled"]:
        if family == "unlabelled":
            counts = np.array([summaries[n]["neurons"] - summaries[n]["labelled"] for n in layers])
        else:
            counts = np.array([summaries[n]["best_label_family"].get(family, 0) for n in layers])
        share = counts / np.maximum([summaries[n]["neurons"] for n in layers], 1)
        if not share.any():
            continue
        ax.bar(x, share, bottom=bottom, color=FAMILY_COLORS.get(family, "#999999"), label=family, width=0.7)
        bottom += share
    ax.set_xticks(x, layers, rotation=45 if len(layers) > 6 else 0)
    ax.set_ylabel("share of neurons")
    ax.set_ylim(0, 1)
    ax.set_title("Family of each neuron's best label", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def plot_top_clips(
    crops: Sequence[np.ndarray], titles: Sequence[str], feature_config, clip_seconds: float, suptitle: str = ""
):
    """A neuron's top clips as spectrogram crops (each (F, W), centred on the peak: dashed line), in a grid."""
    n = len(crops)
    cols = min(5, max(n, 1))
    rows = max(1, int(np.ceil(n / cols)))
    fig = new_figure(2.3 * cols + 0.4, 2.1 * rows + (0.4 if suptitle else 0.0))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    finite = [c for c in crops if c.size]
    lim = float(np.quantile(np.abs(np.concatenate([c.ravel() for c in finite])), 0.99)) if finite else 1.0
    half_ms = 500.0 * clip_seconds
    for ax, crop, title in zip(axes, crops, titles):
        show_features(ax, crop, feature_config, start_ms=-half_ms, cmap="magma", vmin=-lim, vmax=lim)
        ax.axvline(0.0, color="white", lw=0.8, ls="--")
        ax.set_title(title, fontsize=6.5)
        ax.tick_params(labelsize=6)
        ax.xaxis.label.set_size(7)
        ax.yaxis.label.set_size(7)
    for ax in axes[n:]:
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return fig


def plot_ablation(result: dict):
    """dA - dR (log-probability drop of the concept's tokens minus that of the rest, nats per token) by layer,
    for the labelled neurons, random neurons (mean and standard deviation over seeds) and the
    highest-mean-activation neurons. ``result``: :func:`dissection.ablation.concept_ablation`."""
    rows = [r for r in result["rows"] if r["neurons"]]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig = new_figure(max(4.5, 1.2 * len(layers) + 2.0), 3.2)
    ax = fig.subplots()
    width = 0.26
    colors = {"concept": "#c0392b", "random": "#7f8c8d", "top-mean": "#1f4e9c"}
    for k, method in enumerate(("concept", "random", "top-mean")):
        values, errors = [], []
        for layer in layers:
            row = next((r for r in rows if r["layer"] == layer and r["method"] == method), None)
            values.append(np.nan if row is None or row["d_a_minus_d_r"] is None else row["d_a_minus_d_r"])
            errors.append(row.get("d_a_minus_d_r_std", 0.0) if row is not None else 0.0)
        ax.bar(
            np.arange(len(layers)) + (k - 1) * width,
            values,
            width,
            yerr=errors if method == "random" else None,
            color=colors[method],
            label=method,
            capsize=2,
        )
    ax.axhline(0.0, color="black", lw=0.6)
    labels = [f"{layer}\n({next(r['neurons'] for r in rows if r['layer'] == layer)} neurons)" for layer in layers]
    ax.set_xticks(np.arange(len(layers)), labels, fontsize=8)
    ax.set_ylabel("dA - dR (nats / token)")
    ax.set_title(f"Ablating '{result['concept']}' neurons", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig
