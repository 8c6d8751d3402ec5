"""Resolve a model and a corpus from user arguments, falling back to the shipped defaults.

The command line and the ``experiments/`` scripts load here once and hand the
loaded objects to :mod:`asr_introspect.workflows`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from asr_introspect.corpus import load_corpus
from asr_introspect.defaults import default_corpus_path, default_model_path, shipped_models
from asr_introspect.errors import InputError
from asr_introspect.models import ASRModel, load_checkpoint


def load_model(path: str | Path | None = None):
    """(ASRModel in eval mode, path) for ``path`` or the shipped default.

    ``path``: a toolkit checkpoint (``.safetensors``), a local Hugging Face ``save_pretrained``
    directory (:func:`models.huggingface.load_transformers`; never downloads), or
    ``package.module:function``, a function of no arguments that returns an :class:`ASRModel`,
    or the name of a checkpoint that ships with the package (:func:`defaults.shipped_models`,
    e.g. ``conformer_cpu``) where no such path exists.
    """
    if path is None:
        path = default_model_path()
    text = str(path)
    if _is_factory(text):
        return _from_factory(text), Path(text)
    path = Path(path)
    if not path.exists():
        shipped = shipped_models()
        if text not in shipped:
            raise InputError(
                f"--model {text}: no such checkpoint, transformers directory or shipped model "
                f"(shipped: {', '.join(shipped)}; or package.module:function)"
            )
        path = shipped[text]
    if path.is_dir():
        from asr_introspect.models.huggingface import load_transformers

        model = load_transformers(path)
    else:
        model, _ = load_checkpoint(path)
    model.module.eval()
    return model, path


def _is_factory(text: str) -> bool:
    """``package.module:function`` (and not a Windows drive or an existing path)."""
    module, sep, func = text.partition(":")
    return (
        bool(sep)
        and not Path(text).exists()
        and module.replace(".", "").replace("_", "").isalnum()
        and (func.replace("_", "").isalnum())
    )


def _from_factory(text: str) -> ASRModel:
    module_name, _, func_name = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"--model {text}: cannot import {module_name} ({exc}): is it on PYTHONPATH?") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise InputError(f"--model {text}: {module_name} has no function {func_name}")
    model = factory()
    if not isinstance(model, ASRModel):
        raise InputError(
            f"--model {text}: {func_name}() returned {type(model).__name__}, not an ASRModel "
            "(wrap it with asr_introspect.models.wrap_conv_model or an adapter)"
        )
    return model


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
