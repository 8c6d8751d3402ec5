"""Feature visualization: objective reached vs naturalness, per regularization set.

For a few target letters, the window that maximizes the letter's logit at the centre
output frame is optimized with no regularization and with each regularizer set
(featvis.REGULARIZATION_SETS, plus the whitened-PCA parameterization). Each result
is scored by

- the objective reached (the logit, or the probability with ``--objective prob``, on
  the final untransformed window);
- naturalness: its Mahalanobis distance to real feature windows of the corpus (a
  Gaussian prior fitted on 80 % of the windows; per dimension, so real windows
  score about 1: far above is unnatural, far below is "too average", near the
  mean), the same metric to the nearest real window, and the model's
  probability of the target letter;

and compared with real windows of the held-out 20 % on which the model predicts the
letter at the centre frame. Writes ``featvis_comparison.json``, the scatter figure
``featvis_comparison.png`` and the optimized windows ``featvis_comparison_inputs.png``.

    python experiments/featvis_comparison.py [--model CKPT] [--data DIR] [--out DIR]

Defaults: the shipped model and evaluation corpus; 1-2 minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from asr_introspect import featvis as fv
from asr_introspect.errors import InputError
from asr_introspect.io import save_json, to_json
from asr_introspect.loading import load_corpus_or_default, load_model
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.featvis import plot_naturalness, plot_optimal_inputs

SETS = ("none", "l2", "tv", "frequency", "robustness", "prior", "weak", "strong")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=None, help="corpus (default: the shipped eval corpus)")
    parser.add_argument("--out", type=Path, default=Path("out/featvis_comparison"))
    parser.add_argument("--letters", default="e,t,a", help="comma-separated target letters")
    parser.add_argument(
        "--sets",
        default=",".join(SETS) + ",pca_param",
        help="regularization sets; 'pca_param' = the whitened PCA parameterization alone",
    )
    parser.add_argument("--param", default="fourier", choices=("raw", "fourier"))
    parser.add_argument(
        "--objective",
        default="logit",
        choices=("logit", "prob"),
        help="maximize the letter's logit (pre-softmax, default) or its probability",
    )
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-windows", type=int, default=800, help="real windows cut from the corpus")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)"
    )
    return parser.parse_args(argv)


class NearestWindow:
    """Per-dimension Mahalanobis distance (the prior's metric) to the nearest of ``windows`` (M, F, W).

    With projections p = U r and residual energies precomputed for the bank, one query
    costs a matrix-vector product: d^2 = sum (dp)^2 / lambda + (|dr|^2 - |dp|^2) / sigma^2.
    """

    def __init__(self, prior: fv.GaussianPrior, windows: np.ndarray) -> None:
        self.prior = prior
        self.comps = torch.as_tensor(prior.components, dtype=torch.float64)
        self.var = torch.as_tensor(prior.variances, dtype=torch.float64)
        self.bank = torch.as_tensor(windows, dtype=torch.float64).flatten(1)
        self.bank_proj = self.bank @ self.comps.T
        self.bank_sq = self.bank.square().sum(1)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        out = []
        for x in torch.as_tensor(np.asarray(features), dtype=torch.float64).reshape(-1, self.bank.shape[1]):
            dr2 = x.square().sum() + self.bank_sq - 2 * self.bank @ x
            dp = x @ self.comps.T - self.bank_proj
            d2 = (dp.square() / self.var).sum(-1) + (dr2 - dp.square().sum(-1)).clamp_min(0) / self.prior.noise_variance
            out.append(float(d2.min().sqrt()) / np.sqrt(self.prior.dim))
        return np.asarray(out)


@torch.no_grad()
def centre_logits(model, windows: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits (N, C) at the centre output frame of each window (N, F, W)."""
    t = fv.objectives.centre_frame(model, model.output_layer, windows.shape[-1])
    out = []
    for start in range(0, len(windows), batch):
        logits, _ = model.logits(torch.as_tensor(windows[start : start + batch]))
        out.append(logits[:, :, t].cpu().numpy())
    return np.concatenate(out)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    model, model_path = load_model(args.model)
    utterances, data_path = load_corpus_or_default(args.data)
    letters = [s.strip() for s in args.letters.split(",") if s.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in fv.REGULARIZATION_SETS and s != "pca_param"]
    if unknown:
        raise InputError(f"unknown set(s) {unknown}; choose from {list(fv.REGULARIZATION_SETS)} and pca_param")
    symbols = list(model.alphabet.symbols)
    for letter in letters:
        model.alphabet.index(letter)  # InputError for an unknown letter

    width = fv.window_frames(model, fv.class_logit(letters[0]))
    windows = fv.feature_windows(model, utterances, width, max_windows=args.max_windows, seed=args.seed)
    order = np.random.default_rng(args.seed).permutation(len(windows))
    n_fit = max(2, int(round(0.8 * len(windows))))
    fit, held = windows[order[:n_fit]], windows[order[n_fit:]]
    if len(held) == 0:
        held = fit
    prior = fv.fit_prior(fit)
    real_distance = np.asarray(prior.normalized_distance(held), dtype=np.float64).reshape(-1)
    real_logits = centre_logits(model, held)
    real_probs = torch.softmax(torch.as_tensor(real_logits), dim=1).numpy()
    predicted = real_logits.argmax(1)

    nearest = NearestWindow(prior, fit)
    real_nearest = nearest(held[:100])
    reference = {
        "distance_median": float(np.median(real_distance)),
        "distance_p95": float(np.quantile(real_distance, 0.95)),
        "nearest_distance_median": float(np.median(real_nearest)),
        "windows_fit": int(len(fit)),
        "windows_held_out": int(len(held)),
        "letters": {},
    }
    for letter in letters:
        k = symbols.index(letter)
        hits = predicted == k
        reference["letters"][letter] = {
            "windows_predicted": int(hits.sum()),
            "logit_mean_where_predicted": float(real_logits[hits, k].mean()) if hits.any() else None,
            "probability_mean_where_predicted": float(real_probs[hits, k].mean()) if hits.any() else None,
            "logit_max_over_real": float(real_logits[:, k].max()),
            "distance_median_where_predicted": float(np.median(real_distance[hits])) if hits.any() else None,
        }

    runs, grid = [], {}
    for letter in letters:
        objective = fv.class_logit(letter) if args.objective == "logit" else fv.class_probability(letter)
        for name in sets:
            if name == "pca_param":
                result = fv.render(
                    model,
                    objective,
                    param="pca",
                    prior=prior,
                    steps=args.steps,
                    lr=args.lr,
                    seed=args.seed,
                    width=width,
                )
            else:
                result = fv.render(
                    model,
                    objective,
                    param=args.param,
                    regularizers=name,
                    prior=prior,
                    steps=args.steps,
                    lr=args.lr,
                    seed=args.seed,
                    width=width,
                )
            grid.setdefault(name, {})[f"'{letter}'"] = result
            runs.append(
                {
                    "set": name,
                    "target": letter,
                    "objective": result.objective,
                    "distance": float(prior.normalized_distance(result.features)),
                    "nearest_distance": float(nearest(result.features)[0]),
                    "probability": result.probability(letter),
                    "top_letter": result.top_letters(1)[0][0],
                    "total_variation": float(fv.total_variation(result.features)),
                    "high_frequency_energy": float(fv.high_frequency_energy(result.features)),
                    "rms": float(np.sqrt(np.mean(result.features.astype(np.float64) ** 2))),
                    "trace_first": float(result.trace[0]),
                    "seconds": result.settings["seconds"],
                }
            )

    summary = {}
    for name in sets:
        rows = [r for r in runs if r["set"] == name]
        summary[name] = {
            key: float(np.mean([r[key] for r in rows]))
            for key in (
                "objective",
                "distance",
                "nearest_distance",
                "probability",
                "total_variation",
                "high_frequency_energy",
                "rms",
            )
        }
        summary[name]["top_is_target"] = float(np.mean([r["top_letter"] == r["target"] for r in rows]))
    probs_where = [
        v["probability_mean_where_predicted"]
        for v in reference["letters"].values()
        if v["probability_mean_where_predicted"] is not None
    ]
    logits_where = [
        v["logit_mean_where_predicted"]
        for v in reference["letters"].values()
        if v["logit_mean_where_predicted"] is not None
    ]
    ref_objective = logits_where if args.objective == "logit" else probs_where
    ref_point = {
        "distance": reference["distance_median"],
        "objective": float(np.mean(ref_objective)) if ref_objective else None,
        "probability": float(np.mean(probs_where)) if probs_where else None,
    }

    args.out.mkdir(parents=True, exist_ok=True)
    figure = save_figure(
        plot_naturalness(runs, ref_point, title=f"objective vs naturalness ({args.param}, {args.steps} steps)"),
        args.out / "featvis_comparison.png",
    )
    inputs = save_figure(
        plot_optimal_inputs(grid, model.feature_config, title=f"letter-{args.objective} optima"),
        args.out / "featvis_comparison_inputs.png",
        svg=False,
    )
    result = {
        "model": str(model_path),
        "data": str(data_path),
        "width": width,
        "letters": letters,
        "sets": sets,
        "settings": {
            "objective": args.objective,
            "param": args.param,
            "steps": args.steps,
            "lr": args.lr,
            "seed": args.seed,
            "max_windows": args.max_windows,
            "prior_components": prior.n_components,
            "set_descriptions": {k: fv.REGULARIZATION_SETS.get(k, "whitened PCA parameterization") for k in sets},
        },
        "reference_real_windows": reference,
        "summary": summary,
        "runs": runs,
        "figures": [str(figure[0]), str(inputs[0])],
        "seconds": round(time.perf_counter() - began, 1),
    }
    save_json(args.out / "featvis_comparison.json", result)
    return result


if __name__ == "__main__":
    try:
        out = main()
    except InputError as exc:
        print(f"featvis_comparison: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(to_json({"summary": out["summary"], "reference": out["reference_real_windows"], "seconds": out["seconds"]}))
