"""``asr-introspect demo``: every figure family on the shipped model and corpus, plus the HTML report.

Writes under ``--out`` one folder per family (``a_attribution`` ...), example
audio, ``summary.json`` (what the report shows) and ``index.html``: see
:mod:`asr_introspect.workflows.demo`. The model and corpus are loaded once.
"""

from __future__ import annotations

import argparse

from asr_introspect.cli._choices import FIGURE_FAMILIES
from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, letters_from, nonnegative_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "demo", help="run every analysis on the shipped model and write an HTML report")
    add_common(parser, model=True, data=True, out="out/demo")
    parser.add_argument(
        "--only",
        type=letters_from(FIGURE_FAMILIES, "figure family"),
        default=FIGURE_FAMILIES,
        help="figure families to run: a attribution, b optimal inputs, c CTC alignment, d patterns, e NAPs, "
        "f network dissection, g wavelet attribution, h concept dictionaries",
    )
    parser.add_argument(
        "--examples", type=nonnegative_int, default=4, help="example utterances with audio players in the report"
    )
    parser.add_argument(
        "--fast", action="store_true", help="small settings (few optimization steps, no sonification): a smoke test"
    )
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.workflows.demo import demo

    model, utterances, model_path, data_path = load_inputs(args)
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
