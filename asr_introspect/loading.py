"""Resolve a model and a corpus from user arguments, falling back to the shipped defaults."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from asr_introspect.defaults import default_corpus_path, default_model_path


def load_model(path: str | Path | None = None):
    """(ASRModel in eval mode, path) for ``path`` or the shipped default."""
    from asr_introspect.models import load_checkpoint

    path = Path(path) if path is not None else default_model_path()
    model, _ = load_checkpoint(path)
    model.module.eval()
    return model, path


def load_corpus_or_default(path: str | Path | None = None):
    """(utterances, path) for ``path`` or the shipped evaluation corpus."""
    from asr_introspect.corpus import load_corpus

    path = Path(path) if path is not None else default_corpus_path()
    return load_corpus(path), path


def load_model_and_corpus(model_path=None, data_path=None):
    """(model, utterances, model path, data path)."""
    model, model_path = load_model(model_path)
    utterances, data_path = load_corpus_or_default(data_path)
    return model, utterances, model_path, data_path


@torch.no_grad()
def transcribe_files(model, paths: Sequence[str | Path]) -> list[str]:
    """Greedy transcripts of audio files, one at a time (no padding effects)."""
    from asr_introspect.audio import load_audio
    from asr_introspect.decoding import greedy_decode
    from asr_introspect.features import compute_features

    texts = []
    for path in paths:
        audio = load_audio(path, sample_rate=model.feature_config.sample_rate,
                           min_duration=model.min_input_frames * model.feature_config.frame_seconds)
        features = compute_features(audio, model.feature_config)[None]
        logits, lengths = model.logits(features, torch.tensor([features.shape[-1]]))
        texts.extend(greedy_decode(logits, lengths, model.alphabet))
    return texts
