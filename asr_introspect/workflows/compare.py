"""Compare architectures: the NAP layer trend and letter patterns of several models side by side
(``experiments/compare_architectures.py``).

For each model, one streamed pass fits letter and phoneme NAPs on every named layer
(:class:`~asr_introspect.naps.NAPEstimator`) and letter-averaged input patterns
(:class:`~asr_introspect.patterns.PatternAverager`, forced letters, ``window`` input
frames, because a layer that sees the whole utterance has no receptive field to
bound the window). The layer trend puts layers on a common axis, their relative depth
``index / (layers - 1)``, so a 12-layer conv stack and a 30-layer Conformer can share
a figure. Writes ``compare.json`` (per model and layer: specificity, silhouette and
the ARI with the phonetic categories) and ``layer_trend.png``/``.svg``, and per model
``patterns_<name>.npz``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from asr_introspect.errors import InputError  # noqa: E402
from asr_introspect.io import save_json, save_npz  # noqa: E402
from asr_introspect.naps import NAPEstimator, layer_quality  # noqa: E402
from asr_introspect.patterns import PatternAverager  # noqa: E402
from asr_introspect.plotting.common import save_figure  # noqa: E402
from asr_introspect.stream import fit_estimators  # noqa: E402

#: the quality numbers drawn per layer: (key in the JSON, axis label)
TREND = (("specificity", "median specificity"), ("ari_vowel", "ARI with vowel/consonant"))


def _trend(naps, min_count: int) -> list[dict]:
    rows = []
    n = len(naps.layers)
    for i, layer in enumerate(naps.layers):
        q = layer_quality(naps, layer, min_count=min_count)
        rows.append(
            {
                "layer": layer,
                "depth": i / max(n - 1, 1),
                "specificity": q.specificity,
                "silhouette": q.silhouette,
                "ari_vowel": q.ari.get("vowel", float("nan")),
                "groups": q.n_groups,
            }
        )
    return rows


def compare_architectures(
    models: Mapping[str, object],
    utterances: Sequence,
    out: str | Path,
    *,
    layers: Mapping[str, Sequence[str]] | None = None,
    window: int = 64,
    min_count: int = 20,
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """Fit NAPs (letters, phonemes) and letter patterns for every model; write the side-by-side trend.

    models: name -> ASRModel (each with a CTC head, or an ``aligner`` for its letters); layers:
    name -> layers to profile (default: every named layer but the output); window: pattern
    width in input frames; min_count: groups with fewer frames are left out of the quality numbers.
    """
    if len(models) < 1:
        raise InputError("compare needs at least one model")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"models": {}, "window": window, "min_count": min_count}
    for name, model in models.items():
        chosen = list((layers or {}).get(name) or [n for n in model.layer_names if n != model.output_layer])
        letters, phones = NAPEstimator("letter", chosen), NAPEstimator("phoneme", chosen)
        estimators = [letters, phones]
        patterns = None
        if model.has_ctc_head and model.feature_config.kind != "waveform":
            patterns = PatternAverager("letter", source="forced", window=window)
            estimators.append(patterns)
        fit_estimators(model, utterances, estimators, batch_size=batch_size, progress=progress)
        entry = {
            "architecture": model.model_config.get("architecture"),
            "parameters": int(sum(p.numel() for p in model.module.parameters())),
            "letter": _trend(letters.result(), min_count),
            "phoneme": _trend(phones.result(), min_count),
        }
        if patterns is not None:
            result = patterns.result()
            save_npz(out / f"patterns_{name}.npz", **result.to_arrays())
            entry["patterns_windows"] = int(np.asarray(result.counts).sum())
        report["models"][name] = entry
    fig, axes = plt.subplots(2, len(TREND), figsize=(5 * len(TREND), 6.5), squeeze=False, sharex=True)
    for row, by in enumerate(("letter", "phoneme")):
        for col, (key, label) in enumerate(TREND):
            ax = axes[row, col]
            for name, entry in report["models"].items():
                depth = [r["depth"] for r in entry[by]]
                ax.plot(depth, [r[key] for r in entry[by]], marker="o", label=f"{name} ({entry['architecture']})")
            ax.set_title(f"{by}s: {label}")
            ax.set_xlabel("relative depth (layer index / last)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    report["figure"] = [str(p) for p in save_figure(fig, out / "layer_trend.png")]
    plt.close(fig)
    save_json(out / "compare.json", report)
    return report
