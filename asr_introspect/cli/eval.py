"""``asr-introspect eval``: greedy CER/WER of a checkpoint on a corpus."""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="greedy CER/WER of a model on a corpus")
    add_common(parser, model=True, data=True)
    parser.add_argument(
        "--out", default=None, help="optional JSON file with per-speaker error rates and per-utterance transcripts"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--speakers",
        default=None,
        metavar="PATTERNS",
        help="only these speakers: comma-separated globs, e.g. 'flite_slt*,flite_awb*'",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.workflows.eval import evaluate_corpus

    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    return evaluate_corpus(
        model,
        utterances,
        args.out,
        batch_size=args.batch_size,
        speakers=args.speakers,
        limit=args.limit,
        model_path=model_path,
        data_path=data_path,
        progress=progress_enabled(args),
    ).summary
