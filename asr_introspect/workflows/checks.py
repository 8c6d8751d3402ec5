"""Checks the workflows run before computing: settings, the utterances to use, layer names.

Each raises :class:`~asr_introspect.errors.InputError` (a
:class:`~asr_introspect.errors.CorpusError` for the corpus) with a one-line
message naming the flag or the corpus and what to do. The command line checks
what it can without the model or corpus (``cli/_flags.py``); these are the
checks that need them, and they also guard the workflows called from Python.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path

from asr_introspect.corpus import filter_speakers
from asr_introspect.errors import CorpusError, InputError

#: longest list of names (layers, speakers) spelled out in a message
MAX_NAMES_CHARS = 160


def name_list(names: Sequence[str], max_chars: int = MAX_NAMES_CHARS) -> str:
    """``"a, b, c"``; a long list keeps its first and last names: ``"a, b, ..., z (40 in all)"``."""
    names = [str(n) for n in names]
    text = ", ".join(names)
    if len(text) <= max_chars:
        return text
    head, tail = [], names[-1]
    for name in names[:-1]:
        if len(", ".join([*head, name, "...", tail])) > max_chars - 14:
            break
        head.append(name)
    return ", ".join([*head, "...", tail]) + f" ({len(names)} in all)"


def check_count(flag: str, value: int | None, minimum: int = 1) -> int | None:
    """``value`` unless it is an integer below ``minimum`` (None passes: "not given")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{flag} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def corpus_name(data_path: str | Path | None) -> str:
    return "corpus" if data_path is None else str(data_path)


def select_utterances(
    utterances: Sequence,
    data_path: str | Path | None = None,
    *,
    speakers: str | Sequence[str] | None = None,
    limit: int | None = None,
    what: str = "analyse",
) -> list:
    """The utterances to use: those of ``speakers`` (comma-separated shell globs), then the first ``limit``.

    ``CorpusError`` naming the corpus when none is left (an empty corpus or manifest, or no speaker
    matches): an empty selection is an error, never a perfect score. ``what``: the verb for the message.
    """
    check_count("--limit", limit)
    source = corpus_name(data_path)
    utterances = list(utterances)
    if not utterances:
        raise CorpusError(f"{source}: the corpus has no utterances; nothing to {what} (check the path or manifest)")
    if speakers is not None:
        patterns = [p.strip() for p in speakers.split(",")] if isinstance(speakers, str) else list(speakers)
        if not any(patterns) or not all(patterns):
            raise InputError(f"--speakers: expected comma-separated speaker globs, e.g. 'flite_*', got {speakers!r}")
        utterances = filter_speakers(utterances, patterns, source=source)
    if limit is not None:
        utterances = utterances[:limit]
    return utterances


def check_layers(model, layers: Sequence[str] | None, *, allow_input: bool = False, flag: str = "--layers") -> None:
    """InputError unless every name of ``layers`` is a layer of ``model`` (``"input"`` too with
    ``allow_input``); the message lists the valid names. None means "the default layers" and passes."""
    if layers is None:
        return
    layers = list(layers)
    valid = (["input"] if allow_input else []) + list(model.layer_names)
    if not layers:
        raise InputError(f"{flag}: no layer given; the model has {name_list(valid)}")
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise InputError(
            f"{flag}: unknown layer{'s' if len(unknown) > 1 else ''} {name_list(unknown, 60)}; "
            f"the model has {name_list(valid)}"
        )
