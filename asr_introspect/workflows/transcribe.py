"""Transcription workflow: greedy transcripts of audio files (``asr-introspect transcribe``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from asr_introspect.audio import load_audio
from asr_introspect.decoding import greedy_decode
from asr_introspect.features import compute_features


@torch.no_grad()
def transcribe_files(model, paths: Sequence[str | Path]) -> list[str]:
    """Greedy transcripts of audio files, one at a time (no padding effects)."""
    texts = []
    for path in paths:
        audio = load_audio(
            path,
            sample_rate=model.feature_config.sample_rate,
            min_duration=model.min_input_frames * model.feature_config.frame_seconds,
        )
        features = compute_features(audio, model.feature_config)[None]
        logits, lengths = model.logits(features, torch.tensor([features.shape[-1]]))
        texts.extend(greedy_decode(logits, lengths, model.alphabet))
    return texts
