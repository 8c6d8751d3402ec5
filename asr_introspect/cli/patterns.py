"""``asr-introspect patterns``: letter- or phoneme-averaged input windows, before and after subtraction.

Writes ``patterns_<by>.npz``, ``patterns_<by>.json``, figures and (unless
``--no-audio``) WAV sonifications to ``--out``: see
:mod:`asr_introspect.workflows.patterns`.
"""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, positive_int, shift_correction


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers, "patterns", help="letter/phoneme-averaged spectrogram windows and the average-subtracted patterns"
    )
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument(
        "--by",
        choices=("letter", "phoneme"),
        required=True,
        help="group windows by letters (model's CTC path) or phonemes (phone segments)",
    )
    parser.add_argument(
        "--source",
        choices=("predicted", "forced"),
        default="predicted",
        help="letters from the greedy prediction or the forced alignment of the transcript",
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        default=None,
        help="window length in input frames (default: the model's receptive field)",
    )
    parser.add_argument(
        "--frames",
        choices=("all", "centers"),
        default="all",
        help="one window per labelled frame, or per letter span / phone segment centre",
    )
    parser.add_argument(
        "--shift-correction",
        type=shift_correction,
        default="none",
        metavar="auto|none|N",
        help="move letter labels N output frames earlier; 'auto' estimates N from the "
        "corpus' phone segments (alignment.estimate_shift)",
    )
    parser.add_argument("--no-audio", action="store_true", help="skip the WAV sonifications")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="utterances per forward pass")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N utterances (default: all)")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.workflows.patterns import patterns

    model, utterances, model_path, data_path = load_inputs(args)
    return patterns(
        model,
        utterances,
        args.out,
        by=args.by,
        source=args.source,
        window=args.window,
        frames=args.frames,
        shift_correction=args.shift_correction,
        audio=not args.no_audio,
        batch_size=args.batch_size,
        limit=args.limit,
        model_path=model_path,
        data_path=data_path,
        progress=progress_enabled(args),
    ).summary
