"""``asr-introspect claims``: the papers' findings as numbers, each with a null, a bootstrap interval
and a verdict (see :mod:`asr_introspect.workflows.claims` for the files written under ``--out``)."""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, comma_list, nonnegative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers, "claims", help="test the papers' findings: numbers with nulls, 95 %% intervals and verdicts"
    )
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument(
        "--bootstrap", type=positive_int, default=100, help="bootstrap replicates over utterances (default 100)"
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the nulls, the resampling and the probes"
    )
    parser.add_argument(
        "--min-count",
        type=positive_int,
        default=50,
        help="leave out groups with fewer frames from the NAP clustering (default 50)",
    )
    parser.add_argument(
        "--layers", type=comma_list, default=None, help="comma-separated layers for the trends (default: all)"
    )
    parser.add_argument(
        "--max-frames", type=positive_int, default=8000, help="frames sampled for the probes and CKA (default 8000)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="utterances per forward pass")
    parser.add_argument(
        "--layer-claims-only",
        action="store_true",
        help="skip the letter-pattern, spectral-centroid and LRP claims",
    )
    parser.add_argument("--no-figures", action="store_true", help="write claims.json and layer_trend.npz only")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.workflows.claims import claims

    model, utterances, model_path, data_path = load_inputs(args)
    summary, _ = claims(
        model,
        utterances,
        args.out,
        layers=args.layers,
        n_boot=args.bootstrap,
        seed=args.seed,
        min_count=args.min_count,
        max_frames=args.max_frames,
        batch_size=args.batch_size,
        others=not args.layer_claims_only,
        figures=not args.no_figures,
        model_path=model_path,
        data_path=data_path,
        progress=progress_enabled(args),
    )
    return summary
