"""``asr-introspect align``: frame labels (letters, phones) on any layer axis + the shift report."""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, comma_list, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "align", help="forced-align letters, label phones, measure the CTC shift")
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument(
        "--layers",
        type=comma_list,
        default=None,
        help="comma-separated layer axes to label besides the output layer "
        "(e.g. input,conv1,conv9); default: the output layer only",
    )
    parser.add_argument(
        "--mode",
        choices=("spike", "span"),
        default="spike",
        help="letter labels: CTC spikes only, or spans up to the next letter",
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="utterances per forward pass")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.workflows.align import align

    model, utterances, model_path, data_path = load_inputs(args)
    return align(
        model,
        utterances,
        args.out,
        layers=args.layers,
        letter_mode=args.mode,
        batch_size=args.batch_size,
        model_path=model_path,
        data_path=data_path,
        progress=progress_enabled(args),
    ).summary
