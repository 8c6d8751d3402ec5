"""``asr-introspect visualize``: the input window that maximizes part of the model.

Writes ``NAME.npz`` (features, trace, response), ``NAME.png``/``.svg`` (window,
trace, top letters), ``NAME.wav`` (Griffin-Lim sonification) and ``NAME.json``
(settings and numbers), NAME derived from the objective spec. With ``--grid``
also the "optimal inputs" figure (first layer, a middle layer, the output layer
x weakly vs strongly regularized) as ``optimal_inputs.png`` + ``.npz``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("visualize", help="feature visualization: optimize an input window "
                                                     "to maximize a neuron, channel, layer or letter")
    add_common(parser, model=True, out="required")
    parser.add_argument("--objective", default=None,
                        help="conv5:17 (channel), conv5:17@40 (neuron at frame 40), conv11:letter=a (logit), "
                             "conv11:prob=a (probability), layer:conv3 (DeepDream); terms may be joined "
                             "with '+' and scaled ('0.5*layer:conv5'). Required unless --grid")
    parser.add_argument("--data", type=Path, default=None,
                        help="corpus whose feature windows fit the learned prior (used by "
                             "--regularization strong and --param pca); default: the shipped corpus")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", choices=("raw", "fourier", "pca"), default="fourier",
                        help="parameterization of the window (default: fourier)")
    parser.add_argument("--regularization", choices=("none", "weak", "strong"), default="weak")
    parser.add_argument("--width", type=int, default=None,
                        help="window frames (default: the objective's receptive field)")
    parser.add_argument("--max-windows", type=int, default=1000,
                        help="real windows used to fit the prior (default 1000)")
    parser.add_argument("--grid", action="store_true",
                        help="also render the optimal-inputs grid (first, middle, output layer x weak, strong)")
    set_runner(parser, run)


def slug(spec: str) -> str:
    """File-name stem of an objective spec: ``conv5:17@40`` -> ``conv5_17_at40``."""
    text = spec.replace("@", "_at").replace("=", "_").replace("*", "x").replace("+", "_plus_")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")
    return text or "objective"


class _Priors:
    """Fits one prior per window width on the corpus, on first use."""

    def __init__(self, model, data, max_windows: int, progress: bool) -> None:
        self.model, self.data, self.max_windows, self.progress = model, data, max_windows, progress
        self.utterances = None
        self.path = None
        self.cache: dict[int, object] = {}

    def __call__(self, width: int):
        from asr_introspect.errors import InputError
        from asr_introspect.featvis import feature_windows, fit_prior
        from asr_introspect.loading import load_corpus_or_default

        if width not in self.cache:
            if self.utterances is None:
                try:
                    self.utterances, self.path = load_corpus_or_default(self.data)
                except InputError as exc:
                    raise InputError(f"{exc}; the learned prior (--regularization strong, --param pca) "
                                     f"is fitted on real feature windows: pass --data DIR or use "
                                     f"--regularization weak with --param raw|fourier") from None
            windows = feature_windows(self.model, self.utterances, width, max_windows=self.max_windows,
                                      progress=self.progress)
            self.cache[width] = fit_prior(windows)
        return self.cache[width]


def run(args: argparse.Namespace) -> dict:
    from tqdm.auto import tqdm

    from asr_introspect.audio import save_audio
    from asr_introspect.errors import InputError
    from asr_introspect.featvis import optimal_inputs, parse_objective, render, window_frames
    from asr_introspect.features import invert_features
    from asr_introspect.io import save_json, save_npz
    from asr_introspect.loading import load_model
    from asr_introspect.plotting.common import save_figure
    from asr_introspect.plotting.featvis import plot_optimal_inputs, plot_result

    if args.objective is None and not args.grid:
        raise InputError("pass --objective SPEC (e.g. conv5:17, conv11:letter=a) or --grid")
    if args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    model, model_path = load_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    show = progress_enabled(args)
    priors = _Priors(model, args.data, args.max_windows, show)
    summary: dict = {"model": str(model_path), "out": str(out)}

    if args.objective is not None:
        objective = parse_objective(args.objective, model)
        width = args.width if args.width is not None else window_frames(model, objective)
        needs_prior = args.param == "pca" or args.regularization == "strong"
        prior = priors(width) if needs_prior else None
        bar = tqdm(total=args.steps, desc="visualize", unit="step", disable=not show)

        def progress(step: int, value: float) -> None:
            bar.update(1)
            bar.set_postfix(objective=f"{value:.3g}", refresh=False)

        result = render(model, objective, param=args.param, regularizers=args.regularization, steps=args.steps,
                        lr=args.lr, seed=args.seed, width=width, prior=prior, progress=progress)
        bar.close()
        stem = out / slug(args.objective)
        npz = save_npz(stem.with_suffix(".npz"), **result.arrays())
        figures = save_figure(plot_result(result, model.feature_config, title=args.objective),
                              stem.with_suffix(".png"))
        audio = invert_features(result.features, model.feature_config, seed=args.seed)
        wav = save_audio(stem.with_suffix(".wav"), audio, model.feature_config.sample_rate)
        numbers = {
            "objective": args.objective,
            "value": round(result.objective, 6),
            "trace_first": round(float(result.trace[0]), 6),
            "trace_last": round(float(result.trace[-1]), 6),
            "top_letters": [[s, round(p, 4)] for s, p in result.top_letters(5)],
            "width": int(result.features.shape[-1]),
            "settings": result.settings,
        }
        if prior is not None:
            numbers["prior_distance"] = round(float(prior.normalized_distance(result.features)), 4)
        json_path = save_json(stem.with_suffix(".json"), {**numbers, "model": str(model_path)})
        summary.update(numbers)
        summary.pop("settings")
        summary["files"] = {"npz": str(npz), "png": str(figures[0]), "wav": str(wav), "json": str(json_path)}

    if args.grid:
        bar = tqdm(desc="optimal inputs", unit="step", disable=not show)
        grid = optimal_inputs(model, param=args.param, steps=args.steps, lr=args.lr, seed=args.seed,
                              prior_for=priors if args.data is not None or _corpus_available() else None,
                              progress=lambda *_: bar.update(1))
        bar.close()
        figures = save_figure(plot_optimal_inputs(grid, model.feature_config, title="optimal inputs"),
                              out / "optimal_inputs.png")
        arrays = {}
        for row, cols in grid.items():
            for col, result in cols.items():
                arrays[f"{slug(row)}__{col}"] = result.features
        npz = save_npz(out / "optimal_inputs.npz", **arrays)
        summary["grid"] = {"png": str(figures[0]), "npz": str(npz),
                           "objectives": {row: {col: round(r.objective, 4) for col, r in cols.items()}
                                          for row, cols in grid.items()}}
    return summary


def _corpus_available() -> bool:
    from asr_introspect.defaults import DEFAULT_CORPUS

    return DEFAULT_CORPUS.is_dir()
