"""Feature-visualization workflow: the input window that maximizes part of the model
(``asr-introspect visualize``).

For an objective spec writes ``NAME.npz`` (features, trace, response),
``NAME.png``/``.svg`` (window, trace, top letters), ``NAME.wav`` (Griffin-Lim
sonification) and ``NAME.json`` (settings and numbers), NAME derived from the
spec. With ``grid`` also the "optimal inputs" figure (first layer, a middle
layer, the output layer x weakly vs strongly regularized) as
``optimal_inputs.png`` + ``.npz``.

Limits (checked by :func:`check_settings` and :func:`check_objective` before anything is
computed or written; each error names the flag and the valid range):

- ``steps`` 1..:data:`MAX_STEPS`; ``lr`` finite and > 0 (an optimization that diverges
  anyway stops with an error naming ``--lr``); ``seed`` 0..2**32-1; ``max_windows``
  2..:data:`MAX_WINDOWS`.
- **The window is at most** :data:`MAX_WIDTH` **input frames** (32.8 s at 8 ms per frame):
  ``width`` must lie in the model's minimum input..MAX_WIDTH, and an objective read at a
  frame (``conv5:17@N``) must fit a window of at most MAX_WIDTH frames (default width) or
  the given ``width``; the message gives the frames that fit. Time and memory per step
  grow with the window, so the cap bounds both.
- Fitting the learned prior holds ``max_windows`` windows of F x width values (about 24
  bytes per value while fitting): above :data:`PRIOR_MEMORY_LIMIT` bytes the run is
  refused with the estimate and the ``--max-windows`` that fits.
- ``diversity:`` objectives compare a batch of windows; the command line renders one,
  so they are refused (use :func:`asr_introspect.featvis.render` with ``batch``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from asr_introspect.audio import save_audio
from asr_introspect.errors import InputError
from asr_introspect.features import invert_features
from asr_introspect.featvis import (
    OUTPUT,
    GaussianPrior,
    Objective,
    Result,
    feature_windows,
    fit_prior,
    grid_objectives,
    optimal_inputs,
    parse_objective,
    render,
    window_frames,
)
from asr_introspect.featvis.optimize import check_spectrogram_input
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.featvis import plot_optimal_inputs, plot_result
from asr_introspect.workflows.common import path_str

#: why a corpus is needed, appended to the error when there is none
PRIOR_NEEDS_CORPUS = (
    "the learned prior (--regularization strong, --param pca) is fitted on real feature "
    "windows: pass --data DIR or use --regularization weak with --param raw|fourier"
)


#: most input frames in the optimized window (``--width``, and the default width of ``LAYER:C@FRAME``)
MAX_WIDTH = 4096
#: most optimization steps
MAX_STEPS = 20_000
#: most real windows fitting the learned prior
MAX_WINDOWS = 20_000
#: most bytes the prior's fit may take (windows x F x width x ~24 bytes)
PRIOR_MEMORY_LIMIT = 2 << 30
_PRIOR_BYTES_PER_VALUE = 24  # float32 windows + their stack, float64 copy + centred copy
_MAX_SEED = 2**32 - 1


def _shown(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_settings(
    *,
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    width: int | None = None,
    max_windows: int = 1000,
) -> None:
    """The checks that need no model: InputError naming the flag and its valid range (module docstring)."""
    if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"--steps {steps!r}: must be an integer in 1..{MAX_STEPS}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise InputError(f"--lr {lr!r}: the learning rate must be a finite number > 0 (default 0.05)")
    if not _is_int(seed) or not 0 <= seed <= _MAX_SEED:
        raise InputError(f"--seed {seed!r}: must be an integer in 0..{_MAX_SEED}")
    if width is not None and (not _is_int(width) or not 1 <= width <= MAX_WIDTH):
        raise InputError(f"--width {width!r}: the window may have 1..{MAX_WIDTH} input frames (the cap)")
    if not _is_int(max_windows) or not 2 <= max_windows <= MAX_WINDOWS:
        raise InputError(f"--max-windows {max_windows!r}: must be an integer in 2..{MAX_WINDOWS}")


def _fitting_frame(model, layer: str, limit: int) -> int:
    """The last frame of ``layer`` whose receptive field ends within ``limit`` input frames (-1: none)."""
    g = model.frame_map.layer(layer)
    return (limit - g.offset - g.receptive_field) // g.stride


def check_objective(model, objective: str, width: int | None = None) -> tuple[Objective, int]:
    """Parse ``objective`` and the window it gets: ``(objective, width)``; InputError naming
    ``--objective`` / ``--width`` when the window would exceed :data:`MAX_WIDTH`, a frame lies
    outside the given ``width``, or the objective needs a batch."""
    check_spectrogram_input(model)
    parsed = parse_objective(objective, model, name="--objective")
    if parsed.needs_batch:
        raise InputError(
            f"--objective {_shown(objective)}: diversity compares a batch of windows and the command line "
            "renders one; add it to another objective in Python (featvis.render(..., batch=N))"
        )
    if width is not None and width < model.min_input_frames:
        raise InputError(
            f"--width {width}: the model needs windows of at least {model.min_input_frames} input frames "
            f"(valid: {model.min_input_frames}..{MAX_WIDTH})"
        )
    for target in parsed.targets:
        if target.frame is None:
            continue
        name = model.output_layer if target.layer == OUTPUT else target.layer
        if width is None:
            stop = model.frame_map.input_range(name, target.frame)[1]
            if stop > MAX_WIDTH:
                last = _fitting_frame(model, name, MAX_WIDTH)
                fits = f"choose a frame in 0..{last}" if last >= 0 else "no frame of it fits"
                raise InputError(
                    f"--objective {_shown(objective)}: frame {target.frame} of {name} needs a window of {stop} "
                    f"input frames, over the cap of {MAX_WIDTH}; {fits}"
                )
        else:
            length = int(model.layer_length(name, width))
            if target.frame >= length:
                needed = model.frame_map.input_range(name, target.frame)[1]
                raise InputError(
                    f"--objective {_shown(objective)}: frame {target.frame} of {name} lies outside a --width {width} "
                    f"window ({name} frames 0..{length - 1}); use --width {min(needed, MAX_WIDTH)} or an earlier frame"
                )
    frames = width if width is not None else window_frames(model, parsed)
    if frames > MAX_WIDTH:  # a channel of a layer whose receptive field alone exceeds the cap
        raise InputError(
            f"--objective {_shown(objective)}: needs a window of {frames} input frames, over the cap of {MAX_WIDTH}"
        )
    return parsed, frames


def check_prior_memory(model, width: int, max_windows: int) -> None:
    """InputError with the estimate when fitting the prior on ``max_windows`` windows of ``width``
    frames would take more than :data:`PRIOR_MEMORY_LIMIT` bytes."""
    per_window = model.n_features * width * _PRIOR_BYTES_PER_VALUE
    need = max_windows * per_window
    if need > PRIOR_MEMORY_LIMIT:
        fits = max(2, PRIOR_MEMORY_LIMIT // per_window)
        raise InputError(
            f"--max-windows {max_windows}: fitting the prior on windows of {model.n_features}x{width} needs about "
            f"{need / (1 << 30):.1f} GiB, over the {PRIOR_MEMORY_LIMIT / (1 << 30):g} GiB limit; use --max-windows "
            f"{fits} or fewer, or a narrower --width"
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
    Every setting is checked before anything is computed or written (module docstring).
    """
    check_settings(steps=steps, lr=lr, seed=seed, width=width, max_windows=max_windows)
    if objective is None and not grid:
        raise InputError("pass --objective SPEC (e.g. conv5:17, conv11:letter=a) or --grid")
    parsed, frames = check_objective(model, objective, width) if objective is not None else (None, None)
    if parsed is not None and needs_prior(param, regularization):
        check_prior_memory(model, frames, max_windows)
    if grid and utterances is not None:
        check_prior_memory(model, max(window_frames(model, o) for o in grid_objectives(model).values()), max_windows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    priors = _Priors(model, utterances, max_windows, progress)
    summary: dict = {"model": path_str(model_path), "out": str(out)}
    run = VisualizeRun(summary)

    if parsed is not None:
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
