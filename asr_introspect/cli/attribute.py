"""``asr-introspect attribute``: relevance of the input features for output frames of one audio file.

Writes ``DIR/relevance.npz``, a figure per requested frame (the first
``--figures``), ``overview.png`` and ``attribution.json``: see
:mod:`asr_introspect.workflows.attribute`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._choices import ATTRIBUTION_METHODS
from asr_introspect.cli._common import add_common, progress_enabled, set_runner
from asr_introspect.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attribute", help="per-frame relevance maps (LRP, sensitivity, ...) for an audio file"
    )
    add_common(parser, model=True, out="required")
    parser.add_argument("audio", type=Path, help="WAV or FLAC file")
    parser.add_argument(
        "--method",
        default="lrp-epsilon-plus",
        help=f"attribution method: {', '.join(ATTRIBUTION_METHODS)} (default: lrp-epsilon-plus)",
    )
    parser.add_argument(
        "--frames", default="all", help="output frames: 'all', a list 'N,M,...' or a range 'A:B' (default: all)"
    )
    parser.add_argument(
        "--target",
        default="predicted",
        choices=("predicted", "predicted-letter", "forced"),
        help="class explained at each frame: the arg-max (often blank), the best letter, "
        "or the forced alignment of --transcript (default: predicted)",
    )
    parser.add_argument("--transcript", default=None, help="transcript for --target forced")
    parser.add_argument(
        "--compare",
        default="auto",
        help="second method drawn beside the first ('auto': sensitivity for LRP methods, "
        "lrp-epsilon-plus otherwise; 'none': off)",
    )
    parser.add_argument("--figures", type=int, default=12, help="figures for at most this many frames (default 12)")
    parser.add_argument("--chunk-size", type=int, default=None, help="frames per backward batch (memory bound)")
    set_runner(parser, run)


def parse_frames(text: str):
    """'all' | 'N,M,...' | 'A:B' -> "all" or a list of ints (InputError otherwise)."""
    text = text.strip()
    if text == "all":
        return "all"
    frames: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if ":" in part:
                a, b = part.split(":", 1)
                frames.extend(range(int(a), int(b)))
            elif part:
                frames.append(int(part))
    except ValueError:
        raise InputError(f"--frames {text!r}: use 'all', 'N,M,...' or 'A:B'") from None
    if not frames:
        raise InputError(f"--frames {text!r} selects no frames")
    return frames


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model
    from asr_introspect.workflows.attribute import attribute_audio, check_method, compare_method

    check_method(args.method)
    compare = compare_method(args.method, args.compare)
    if compare is not None:
        check_method(compare)
    if args.figures < 0:
        raise InputError("--figures must be >= 0")
    if args.target == "forced" and not args.transcript:
        raise InputError("--target forced needs --transcript TEXT")
    frames = parse_frames(args.frames)
    model, model_path = load_model(args.model)
    return attribute_audio(
        model,
        args.audio,
        args.out,
        method=args.method,
        frames=frames,
        target=args.target,
        transcript=args.transcript,
        compare=args.compare,
        figures=args.figures,
        chunk_size=args.chunk_size,
        model_path=model_path,
        progress=progress_enabled(args),
    ).summary
