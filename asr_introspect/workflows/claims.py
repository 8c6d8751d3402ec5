"""Claims workflow (``asr-introspect claims``): the papers' findings as numbers with nulls and intervals.

Writes under ``out``:

- ``claims.json``: every claim (:meth:`Claim.to_dict`), the settings, notes on claims that could not
  run, the CKA matrices and the layer-trend values per measure and variant;
- ``layer_trend.npz``: per measure ``<measure>@<variant>/value`` (L,) and ``/samples`` (n_boot, L),
  ``<measure>@<variant>/band`` (2, L) (95 % percentile bands), ``layers``, ``cka@model``/``cka@random``;
- ``figures/trend_<measure>.png`` (PNG only: model vs nulls with bands), ``figures/cka.png``, ``figures/claims.png``;
- ``summary.json`` and ``index.html``: a report page with the claims section
  (:func:`asr_introspect.report.claims.claims_section`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asr_introspect.claims.layer_trend import DEFAULT_MIN_COUNT
from asr_introspect.claims.record import percentile_interval
from asr_introspect.claims.run import ClaimsResult, run_claims
from asr_introspect.errors import InputError
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.claims import plot_cka, plot_claims, plot_layer_trend
from asr_introspect.plotting.common import save_figure
from asr_introspect.report import write_report
from asr_introspect.report.claims import claims_section
from asr_introspect.workflows.checks import check_count, check_layers, select_utterances
from asr_introspect.workflows.common import finite, path_str

#: measures drawn as figures (the claims' measures and the probe selectivities)
FIGURE_MEASURES = (
    "phoneme/manner/ward",
    "phoneme/vowel/ward",
    "letter/vowel/ward",
    "phoneme/manner/selectivity",
    "letter/vowel/selectivity",
)


def _bands(samples: np.ndarray) -> np.ndarray:
    return np.array([percentile_interval(samples[:, i]) for i in range(samples.shape[1])]).T


def _trend_arrays(result: ClaimsResult) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"layers": np.array(result.collected.layers, dtype=str)}
    for family in (result.trends, result.probes):
        for measure, variants in family.items():
            for variant, entry in variants.items():
                arrays[f"{measure}@{variant}/value"] = entry["value"]
                arrays[f"{measure}@{variant}/samples"] = entry["samples"]
                arrays[f"{measure}@{variant}/band"] = _bands(entry["samples"])
    for variant, m in result.cka.items():
        arrays[f"cka@{variant}"] = m
    return arrays


def claims(
    model,
    utterances: Sequence,
    out: str | Path,
    *,
    layers: Sequence[str] | None = None,
    n_boot: int = 100,
    seed: int = 0,
    min_count: int = DEFAULT_MIN_COUNT,
    max_frames: int = 8000,
    batch_size: int = 16,
    others: bool = True,
    figures: bool = True,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = False,
) -> tuple[dict, ClaimsResult]:
    """Run the claims on ``model`` and ``utterances``; write the files. Returns (JSON summary, result)."""
    if layers is not None:
        layers = list(layers)
    check_layers(model, layers)
    check_count("--bootstrap", n_boot)
    check_count("--min-count", min_count)
    check_count("--batch-size", batch_size)
    check_count("--max-frames", max_frames, minimum=10)
    if layers is not None and len(layers) < 2:
        raise InputError("--layers: a layer trend needs at least 2 layers")
    utterances = select_utterances(utterances, data_path, what="test the claims on")
    result = run_claims(
        model,
        utterances,
        layers=layers,
        n_boot=n_boot,
        seed=seed,
        min_count=min_count,
        max_frames=max_frames,
        batch_size=batch_size,
        others=others,
        progress=progress,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = result.collected.layers
    report: dict[str, Any] = {
        "claims": [c.to_dict() for c in result.claims],
        "settings": result.settings,
        "notes": result.notes,
        "trends": {
            m: {v: e["value"].tolist() for v, e in variants.items()}
            for family in (result.trends, result.probes)
            for m, variants in family.items()
        },
        "cka": {v: m.tolist() for v, m in result.cka.items()},
    }
    files = [
        str(save_json(out / "claims.json", finite(report))),
        str(save_npz(out / "layer_trend.npz", **_trend_arrays(result))),
    ]
    figure_list: list[tuple[str, str]] = []
    if figures:
        for measure in FIGURE_MEASURES:
            curves = result.trends.get(measure) or result.probes.get(measure)
            if curves is None:
                continue
            rel = f"figures/trend_{measure.replace('/', '_')}.png"
            ylabel = "selectivity (balanced acc. - control)" if measure.endswith("selectivity") else "ARI"
            files += [
                str(p) for p in save_figure(plot_layer_trend(curves, names, measure, ylabel), out / rel, svg=False)
            ]
            figure_list.append((rel, f"{measure} across layers: trained model vs nulls, 95 % bootstrap bands"))
        files += [str(p) for p in save_figure(plot_cka(result.cka, names), out / "figures/cka.png", svg=False)]
        figure_list.append(("figures/cka.png", "linear CKA between layers (same frames, common time base)"))
        if result.claims:
            files += [str(p) for p in save_figure(plot_claims(result.claims), out / "figures/claims.png", svg=False)]
            figure_list.insert(0, ("figures/claims.png", "claims: value (blue) and null (grey) with 95 % intervals"))
        page = {"title": "Claims", "sections": [claims_section(result.claims, figure_list)]}
        files.append(str(save_json(out / "summary.json", finite(page))))
        files.append(str(write_report(out)))
    summary = {
        "model": path_str(model_path),
        "data": path_str(data_path),
        "utterances": result.collected.n_utterances,
        "layers": names,
        "bootstrap": n_boot,
        "seed": seed,
        "claims": {
            c.name: {
                "value": c.value,
                "interval": list(c.interval),
                "null": c.null,
                "null_interval": list(c.null_interval),
                "verdict": c.verdict,
            }
            for c in result.claims
        },
        "notes": result.notes,
        "figures": [{"path": rel, "caption": caption} for rel, caption in figure_list],  # paths relative to out
        "files": files,
    }
    return finite(summary), result
