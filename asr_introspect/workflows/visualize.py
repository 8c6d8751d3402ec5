"""Feature-visualization workflow: the input window that maximizes part of the model
(``asr-introspect visualize``).

For an objective spec writes ``NAME.npz`` (features, trace, response),
``NAME.png``/``.svg`` (window, trace, top letters), ``NAME.wav`` (Griffin-Lim
sonification) and ``NAME.json`` (settings and numbers), NAME derived from the
spec. With ``grid`` also the "optimal inputs" figure (first layer, a middle
layer, the output layer x weakly vs strongly regularized) as
``optimal_inputs.png`` + ``.npz``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from asr_introspect.audio import save_audio
from asr_introspect.errors import InputError
from asr_introspect.features import invert_features
from asr_introspect.featvis import (
    GaussianPrior,
    Result,
    feature_windows,
    fit_prior,
    optimal_inputs,
    parse_objective,
    render,
    window_frames,
)
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.featvis import plot_optimal_inputs, plot_result
from asr_introspect.workflows.common import path_str

#: why a corpus is needed, appended to the error when there is none
PRIOR_NEEDS_CORPUS = (
    "the learned prior (--regularization strong, --param pca) is fitted on real feature "
    "windows: pass --data DIR or use --regularization weak with --param raw|fourier"
)


@dataclass
class VisualizeRun:
    """``summary``: what ``visualize --json`` prints; ``result``: the objective's :class:`Result` (or None);
    ``grid``: {row objective: {"weak"|"strong": Result}} with ``grid=True`` (else None)."""

    summary: dict
    result: Result | None = None
    grid: dict | None = None


def slug(spec: str) -> str:
    """File-name stem of an objective spec: ``conv5:17@40`` -> ``conv5_17_at40``."""
    text = spec.replace("@", "_at").replace("=", "_").replace("*", "x").replace("+", "_plus_")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")
    return text or "objective"


def needs_prior(param: str, regularization: str) -> bool:
    """Whether rendering one objective with these settings needs the learned prior (hence a corpus)."""
    return param == "pca" or regularization == "strong"


class _Priors:
    """Fits one prior per window width on the utterances, on first use."""

    def __init__(self, model, utterances: Sequence | None, max_windows: int, progress: bool) -> None:
        self.model, self.utterances, self.max_windows, self.progress = model, utterances, max_windows, progress
        self.cache: dict[int, GaussianPrior] = {}

    def __call__(self, width: int) -> GaussianPrior:
        if self.utterances is None:
            raise InputError(f"no corpus given; {PRIOR_NEEDS_CORPUS}")
        if width not in self.cache:
            windows = feature_windows(
                self.model, self.utterances, width, max_windows=self.max_windows, progress=self.progress
            )
            self.cache[width] = fit_prior(windows)
        return self.cache[width]


def visualize(
    model,
    out: str | Path,
    *,
    objective: str | None = None,
    grid: bool = False,
    utterances: Sequence | None = None,
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    param: str = "fourier",
    regularization: str = "weak",
    width: int | None = None,
    max_windows: int = 1000,
    model_path: str | Path | None = None,
    progress: bool = False,
) -> VisualizeRun:
    """Render ``objective`` (a spec like ``conv11:letter=a``) and/or the optimal-inputs ``grid``.

    ``utterances``: real speech whose feature windows fit the learned prior (needed by
    ``regularization="strong"`` and ``param="pca"``; the grid's strong column uses it when given).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    priors = _Priors(model, utterances, max_windows, progress)
    summary: dict = {"model": path_str(model_path), "out": str(out)}
    run = VisualizeRun(summary)

    if objective is not None:
        parsed = parse_objective(objective, model)
        frames = width if width is not None else window_frames(model, parsed)
        prior = priors(frames) if needs_prior(param, regularization) else None
        bar = tqdm(total=steps, desc="visualize", unit="step", disable=not progress)

        def step_done(step: int, value: float) -> None:
            bar.update(1)
            bar.set_postfix(objective=f"{value:.3g}", refresh=False)

        result = render(
            model,
            parsed,
            param=param,
            regularizers=regularization,
            steps=steps,
            lr=lr,
            seed=seed,
            width=frames,
            prior=prior,
            progress=step_done,
        )
        bar.close()
        stem = out / slug(objective)
        npz = save_npz(stem.with_suffix(".npz"), **result.arrays())
        figures = save_figure(plot_result(result, model.feature_config, title=objective), stem.with_suffix(".png"))
        audio = invert_features(result.features, model.feature_config, seed=seed)
        wav = save_audio(stem.with_suffix(".wav"), audio, model.feature_config.sample_rate)
        numbers = {
            "objective": objective,
            "value": round(result.objective, 6),
            "trace_first": round(float(result.trace[0]), 6),
            "trace_last": round(float(result.trace[-1]), 6),
            "top_letters": [[s, round(p, 4)] for s, p in result.top_letters(5)],
            "width": int(result.features.shape[-1]),
            "settings": result.settings,
        }
        if prior is not None:
            numbers["prior_distance"] = round(float(prior.normalized_distance(result.features)), 4)
        json_path = save_json(stem.with_suffix(".json"), {**numbers, "model": path_str(model_path)})
        summary.update(numbers)
        summary.pop("settings")
        summary["files"] = {"npz": str(npz), "png": str(figures[0]), "wav": str(wav), "json": str(json_path)}
        run.result = result

    if grid:
        bar = tqdm(desc="optimal inputs", unit="step", disable=not progress)
        cells = optimal_inputs(
            model,
            param=param,
            steps=steps,
            lr=lr,
            seed=seed,
            prior_for=priors if utterances is not None else None,
            progress=lambda *_: bar.update(1),
        )
        bar.close()
        figures = save_figure(
            plot_optimal_inputs(cells, model.feature_config, title="optimal inputs"), out / "optimal_inputs.png"
        )
        arrays = {}
        for row, cols in cells.items():
            for col, result in cols.items():
                arrays[f"{slug(row)}__{col}"] = result.features
        npz = save_npz(out / "optimal_inputs.npz", **arrays)
        summary["grid"] = {
            "png": str(figures[0]),
            "npz": str(npz),
            "objectives": {row: {col: round(r.objective, 4) for col, r in cols.items()} for row, cols in cells.items()},
        }
        run.grid = cells
    return run
