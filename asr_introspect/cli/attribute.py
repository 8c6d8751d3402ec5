"""``asr-introspect attribute``: relevance of the input features for output frames of one audio file.

Writes ``DIR/relevance.npz``, a figure per requested frame (the first
``--figures``), ``overview.png`` and ``attribution.json``: see
:mod:`asr_introspect.workflows.attribute`. ``--method wam-*`` explains the frames in the
wavelet domain of the waveform (``--wavelet``, ``--levels``; ``docs/wavelets.md``). Long
audio streams in blocks (bounded memory); a selection whose relevance would exceed
``--max-output-gib`` is refused before computing, with the estimate and a ``--frames``
range that fits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._choices import ATTRIBUTION_METHODS
from asr_introspect.cli._common import add_common, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, finite_float, int_range

#: copies of workflows.attribute's limits (that module imports torch; --help must not)
DEFAULT_MAX_OUTPUT_GIB = 2.0
MAX_FIGURES = 500
MAX_CHUNK_SIZE = 4096
#: copies of attribution.wavelets' defaults (the paper's Haar with three levels)
DEFAULT_WAVELET = "haar"
DEFAULT_LEVELS = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers,
        "attribute",
        help="per-frame relevance maps (LRP, sensitivity, WAM, ...) for an audio file",
        description="Relevance of the input features for output frames of one audio file. Memory stays "
        "bounded for any length (frames are explained in blocks and streamed into relevance.npz); "
        "a selection whose relevance exceeds --max-output-gib is refused before computing.",
    )
    add_common(parser, model=True, out="required")
    parser.add_argument("audio", type=Path, help="WAV or FLAC file")
    parser.add_argument(
        "--method",
        default="lrp-epsilon-plus",
        help=f"attribution method: {', '.join(ATTRIBUTION_METHODS)}; LAYER is a layer of the model "
        "(e.g. grad-cam:conv9)",
    )
    parser.add_argument(
        "--frames",
        default="all",
        help="output frames (from 0): 'all', N, a list N,M,... or a range A:B (frames A..B-1), or a mixture "
        "like 0,10:20; frames beyond the audio are an error",
    )
    parser.add_argument(
        "--target",
        default="predicted",
        choices=("predicted", "predicted-letter", "forced"),
        help="class explained at each frame: the arg-max (often blank), the best letter, "
        "or the forced alignment of --transcript",
    )
    parser.add_argument("--transcript", default=None, help="transcript for --target forced")
    parser.add_argument(
        "--compare",
        default="auto",
        help="second method drawn beside the first ('auto': sensitivity for LRP methods, "
        "lrp-epsilon-plus otherwise; 'none': off)",
    )
    parser.add_argument(
        "--figures",
        type=int_range(0, MAX_FIGURES),
        default=12,
        help=f"figures for at most this many frames, the first (0..{MAX_FIGURES})",
    )
    parser.add_argument(
        "--chunk-size",
        type=int_range(1, MAX_CHUNK_SIZE),
        default=None,
        help=f"frames per backward batch, 1..{MAX_CHUNK_SIZE} (bounds the backward pass's memory; "
        "default: sized for about 200 MB)",
    )
    parser.add_argument(
        "--max-output-gib",
        type=finite_float(0, lo_open=True),
        default=DEFAULT_MAX_OUTPUT_GIB,
        help="refuse selections whose relevance (frames x mels x receptive field, float32, uncompressed) "
        "exceeds this many GiB; the message gives the estimate and a --frames range that fits",
    )
    parser.add_argument(
        "--wavelet",
        default=DEFAULT_WAVELET,
        help="wam-* methods: an orthogonal PyWavelets wavelet (haar, db2..db38, sym2..sym20, coif1..coif17; "
        "sym4 is a smoother choice)",
    )
    parser.add_argument(
        "--levels",
        type=int_range(1, 16),
        default=DEFAULT_LEVELS,
        help="wam-* methods: wavelet decomposition levels (bands a_J, d_J, ..., d_1)",
    )
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model
    from asr_introspect.workflows.attribute import attribute_audio, check_settings

    # every flag is checked before the model loads; layers, frame ranges and the output size once
    # the model and the audio are known, still before computing
    spec = check_settings(
        method=args.method,
        compare=args.compare,
        frames=args.frames,
        figures=args.figures,
        chunk_size=args.chunk_size,
        max_output_gib=args.max_output_gib,
        target=args.target,
        transcript=args.transcript,
        wavelet=args.wavelet,
        levels=args.levels,
    )
    model, model_path = load_model(args.model)
    return attribute_audio(
        model,
        args.audio,
        args.out,
        method=args.method,
        frames=spec,
        target=args.target,
        transcript=args.transcript,
        compare=args.compare,
        figures=args.figures,
        chunk_size=args.chunk_size,
        max_output_gib=args.max_output_gib,
        model_path=model_path,
        progress=progress_enabled(args),
        wavelet=args.wavelet,
        levels=args.levels,
    ).summary
