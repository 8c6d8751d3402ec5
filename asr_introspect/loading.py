"""Resolve a model and a corpus from user arguments, falling back to the shipped defaults.

The command line and the ``experiments/`` scripts load here once and hand the
loaded objects to :mod:`asr_introspect.workflows`.
"""

from __future__ import annotations

from pathlib import Path

from asr_introspect.corpus import load_corpus
from asr_introspect.defaults import default_corpus_path, default_model_path
from asr_introspect.models import load_checkpoint


def load_model(path: str | Path | None = None):
    """(ASRModel in eval mode, path) for ``path`` or the shipped default."""
    path = Path(path) if path is not None else default_model_path()
    model, _ = load_checkpoint(path)
    model.module.eval()
    return model, path


def load_corpus_or_default(path: str | Path | None = None, strict: bool = False):
    """(utterances, path) for ``path`` or the shipped evaluation corpus; the utterances carry the
    validation report (``.report``); ``strict``: the first problem is an error instead of a skip."""
    path = Path(path) if path is not None else default_corpus_path()
    return load_corpus(path, strict=strict), path


def load_model_and_corpus(model_path=None, data_path=None, strict: bool = False):
    """(model, utterances, model path, data path)."""
    model, model_path = load_model(model_path)
    utterances, data_path = load_corpus_or_default(data_path, strict=strict)
    return model, utterances, model_path, data_path
