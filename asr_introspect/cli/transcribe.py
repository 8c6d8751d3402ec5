"""``asr-introspect transcribe``: greedy transcripts of audio files."""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._common import add_common, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "transcribe", help="transcribe audio files (greedy CTC)")
    add_common(parser, model=True)
    parser.add_argument("audio", nargs="+", type=Path, metavar="AUDIO", help="WAV or FLAC files")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model
    from asr_introspect.workflows.transcribe import check_audio_paths, transcribe_files

    check_audio_paths(args.audio)  # every file exists, before the model is loaded
    model, model_path = load_model(args.model)
    texts = transcribe_files(model, args.audio, progress=progress_enabled(args))
    if not args.json:
        for path, text in zip(args.audio, texts):
            print(f"{path}\t{text}")
        return {}
    return {"model": str(model_path), "transcripts": [{"audio": str(p), "text": t} for p, t in zip(args.audio, texts)]}
