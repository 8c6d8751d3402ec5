"""``asr-introspect eval``: greedy CER/WER of a checkpoint on a corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "eval", help="greedy CER/WER of a model on a corpus")
    add_common(parser, model=True, data=True)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write a JSON file with per-speaker error rates and per-utterance transcripts "
        "(default: print the summary only)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="utterances per forward pass")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N utterances (default: all)")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.workflows.eval import evaluate_corpus

    model, utterances, model_path, data_path = load_inputs(args)
    return evaluate_corpus(
        model,
        utterances,
        args.out,
        batch_size=args.batch_size,
        speakers=",".join(args.speakers) if args.speakers else None,
        limit=args.limit,
        model_path=model_path,
        data_path=data_path,
        progress=progress_enabled(args),
    ).summary
