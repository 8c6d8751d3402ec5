"""``asr-introspect visualize``: the input window that maximizes part of the model.

Writes ``NAME.npz``, ``NAME.png``/``.svg``, ``NAME.wav`` and ``NAME.json``
(NAME derived from the objective spec) and with ``--grid`` the "optimal
inputs" figure: see :mod:`asr_introspect.workflows.visualize`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._common import add_common, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, finite_float, int_range
from asr_introspect.defaults import DEFAULT_CORPUS
from asr_introspect.errors import InputError

#: copies of workflows.visualize's limits (that module imports torch; --help must not)
MAX_WIDTH = 4096
MAX_STEPS = 20_000
MAX_WINDOWS = 20_000
MAX_SEED = 2**32 - 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers,
        "visualize",
        help="feature visualization: optimize an input window to maximize a neuron, channel, layer or letter",
        description="Feature visualization: optimize an input window to maximize part of the model. "
        f"The window is at most {MAX_WIDTH} input frames; every flag is checked before anything runs.",
    )
    add_common(parser, model=True, out="required")
    parser.add_argument(
        "--objective",
        default=None,
        help="conv5:17 (channel), conv5:17@40 (neuron at frame 40), conv11:letter=a (logit), "
        "conv11:prob=a (probability), layer:conv3 (DeepDream); terms may be joined "
        "with '+' and scaled ('0.5*layer:conv5'). Required unless --grid. A frame (@N) must fit "
        f"a window of at most {MAX_WIDTH} input frames (or --width)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="corpus whose feature windows fit the learned prior (used by "
        "--regularization strong and --param pca); default: the shipped corpus",
    )
    parser.add_argument(
        "--steps", type=int_range(1, MAX_STEPS), default=256, help=f"optimization steps, 1..{MAX_STEPS}"
    )
    parser.add_argument(
        "--lr", type=finite_float(0, lo_open=True), default=0.05, help="learning rate (Adam), a finite number > 0"
    )
    parser.add_argument(
        "--seed", type=int_range(0, MAX_SEED), default=0, help="random seed (initial window, noise), 0..2**32-1"
    )
    parser.add_argument(
        "--param",
        choices=("raw", "fourier", "pca"),
        default="fourier",
        help="parameterization of the window: raw values, 1/f-scaled Fourier coefficients, or whitened PCA "
        "coordinates of the learned prior",
    )
    parser.add_argument(
        "--regularization",
        choices=("none", "weak", "strong"),
        default="weak",
        help="regularizer set; strong adds the learned prior's penalty (needs a corpus)",
    )
    parser.add_argument(
        "--width",
        type=int_range(1, MAX_WIDTH),
        default=None,
        help=f"window in input frames, the model's minimum..{MAX_WIDTH} (default: the objective's receptive field)",
    )
    parser.add_argument(
        "--max-windows",
        type=int_range(2, MAX_WINDOWS),
        default=1000,
        help=f"real windows used to fit the prior, 2..{MAX_WINDOWS} (and at most about 2 GiB while fitting)",
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="also render the optimal-inputs grid (first, middle, output layer x weak, strong)",
    )
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_corpus_or_default, load_model
    from asr_introspect.workflows.visualize import (
        PRIOR_NEEDS_CORPUS,
        check_objective,
        check_prior_memory,
        check_settings,
        needs_prior,
        visualize,
    )

    if args.objective is None and not args.grid:
        raise InputError("pass --objective SPEC (e.g. conv5:17, conv11:letter=a) or --grid")
    # numbers before the model loads; the objective and its window before the corpus loads
    check_settings(steps=args.steps, lr=args.lr, seed=args.seed, width=args.width, max_windows=args.max_windows)
    model, model_path = load_model(args.model)
    if args.objective is not None:
        _, width = check_objective(model, args.objective, args.width)
        if needs_prior(args.param, args.regularization):
            check_prior_memory(model, width, args.max_windows)
    # the corpus only fits the learned prior: load it when the objective needs the prior, or for the grid's
    # strong column when a corpus was given or is shipped
    utterances = None
    if (args.objective is not None and needs_prior(args.param, args.regularization)) or (
        args.grid and (args.data is not None or DEFAULT_CORPUS.is_dir())
    ):
        try:
            utterances, _ = load_corpus_or_default(args.data)
        except InputError as exc:
            raise InputError(f"{exc}; {PRIOR_NEEDS_CORPUS}") from None
    return visualize(
        model,
        args.out,
        objective=args.objective,
        grid=args.grid,
        utterances=utterances,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        param=args.param,
        regularization=args.regularization,
        width=args.width,
        max_windows=args.max_windows,
        model_path=model_path,
        progress=progress_enabled(args),
    ).summary
