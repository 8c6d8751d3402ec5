"""``asr-introspect align``: frame labels (letters, phones) on any layer axis + the shift report."""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("align", help="forced-align letters, label phones, measure the CTC shift")
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layer axes to label besides the output layer "
                             "(e.g. input,conv1,conv9); default: output layer only")
    parser.add_argument("--mode", choices=("spike", "span"), default="spike",
                        help="letter labels: CTC spikes only, or spans up to the next letter")
    parser.add_argument("--batch-size", type=int, default=16)
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    from asr_introspect.alignment import align_corpus_labels

    from asr_introspect.loading import load_model_and_corpus

    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    layers = [model.output_layer]
    if args.layers:
        extra = [name.strip() for name in args.layers.split(",") if name.strip()]
        unknown = [n for n in extra if n != "input" and n not in model.layer_names]
        if unknown:
            from asr_introspect.errors import InputError

            raise InputError(f"unknown layer(s) {', '.join(unknown)}; the model has input, "
                             f"{', '.join(model.layer_names)}")
        layers += [n for n in extra if n not in layers]
    result = align_corpus_labels(model, utterances, args.out, layers=layers, mode=args.mode,
                                 batch_size=args.batch_size, progress=progress_enabled(args))
    return {"model": str(model_path), "data": str(data_path), **result}
