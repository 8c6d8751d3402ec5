"""``asr-introspect align``: frame labels (letters, phones) on any layer axis + the shift report."""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("align", help="forced-align letters, label phones, measure the CTC shift")
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument(
        "--layers",
        default=None,
        help="comma-separated layer axes to label besides the output layer "
        "(e.g. input,conv1,conv9); default: output layer only",
    )
    parser.add_argument(
        "--mode",
        choices=("spike", "span"),
        default="spike",
        help="letter labels: CTC spikes only, or spans up to the next letter",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.workflows.align import align

    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    layers = [name.strip() for name in args.layers.split(",") if name.strip()] if args.layers else None
    return align(
        model,
        utterances,
        args.out,
        layers=layers,
        letter_mode=args.mode,
        batch_size=args.batch_size,
        model_path=model_path,
        data_path=data_path,
        progress=progress_enabled(args),
    ).summary
