"""``asr-introspect transcribe``: greedy transcripts of audio files."""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._common import add_common, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("transcribe", help="transcribe audio files (greedy CTC)")
    add_common(parser, model=True)
    parser.add_argument("audio", nargs="+", type=Path, help="WAV or FLAC files")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model
    from asr_introspect.workflows.transcribe import transcribe_files

    model, model_path = load_model(args.model)
    texts = transcribe_files(model, args.audio)
    if not args.json:
        for path, text in zip(args.audio, texts):
            print(f"{path}\t{text}")
        return {}
    return {"model": str(model_path), "transcripts": [{"audio": str(p), "text": t} for p, t in zip(args.audio, texts)]}
