"""``asr-introspect demo``: every figure family on the shipped model and corpus, plus the HTML report.

Writes under ``--out`` one folder per family (``a_attribution`` ...), example
audio, ``summary.json`` (what the report shows) and ``index.html``: see
:mod:`asr_introspect.workflows.demo`. The model and corpus are loaded once.
"""

from __future__ import annotations

import argparse

from asr_introspect.cli._choices import FIGURE_FAMILIES
from asr_introspect.cli._common import add_common, progress_enabled, set_runner
from asr_introspect.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run every analysis on the shipped model and write an HTML report")
    add_common(parser, model=True, data=True, out="out/demo")
    parser.add_argument("--only", default="abcde", help="figure families to run (default: abcde)")
    parser.add_argument("--examples", type=int, default=4, help="example utterances with audio players")
    parser.add_argument(
        "--fast", action="store_true", help="small settings (few optimization steps, no sonification): a smoke test"
    )
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.workflows.demo import demo

    for family in args.only:
        if family not in FIGURE_FAMILIES:
            raise InputError(f"--only: unknown figure family {family!r}; choose from {FIGURE_FAMILIES}")
    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    return demo(
        model,
        utterances,
        args.out,
        model_path=model_path,
        data_path=data_path,
        only=args.only,
        examples=args.examples,
        fast=args.fast,
        progress=progress_enabled(args),
    ).summary
