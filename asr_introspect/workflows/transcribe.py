"""Transcription workflow: greedy transcripts of audio files (``asr-introspect transcribe``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from asr_introspect.decoding import greedy_decode
from asr_introspect.errors import AudioError, InputError
from asr_introspect.features import featurize_file


def check_audio_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The paths, after checking that each names an existing file (before anything is transcribed):
    ``AudioError`` names the first that does not."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no audio files given; pass one or more WAV or FLAC files")
    for path in paths:
        if not path.exists():
            raise AudioError(f"{path}: no such audio file")
        if not path.is_file():
            raise AudioError(f"{path}: not a file; pass WAV or FLAC files")
    return paths


@torch.no_grad()
def transcribe_files(model, paths: Sequence[str | Path], progress: bool = False) -> list[str]:
    """Greedy transcripts of audio files, one at a time (no padding effects); ``progress``: a bar over files.

    Every path is checked before the first is transcribed (:func:`check_audio_paths`).
    """
    paths = check_audio_paths(paths)
    texts = []
    for path in tqdm(paths, desc="transcribing", unit="file", disable=not progress):
        features = featurize_file(path, model.feature_config, min_input_frames=model.min_input_frames)[None]
        logits, lengths = model.logits(features, torch.tensor([features.shape[-1]]))
        texts.extend(greedy_decode(logits, lengths, model.alphabet))
    return texts
