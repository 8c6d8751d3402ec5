"""``manifest.jsonl``: one JSON object per utterance, for fast corpus reloads.

Each line: ``{"id", "speaker", "audio", "text", "duration", "phones"}`` where
``audio`` is relative to the manifest's directory (POSIX separators),
``duration`` is seconds (or null) and ``phones`` is ``[[phone, start, end], ...]``
(seconds) or null. Writing is atomic.

Reading (:func:`load_manifest`) runs the corpus validation pass of
:mod:`.validation`, the same as for the LibriSpeech layout: transcripts are
normalized by the same policy (a hand-written ``"café 42!"`` becomes
``"cafe forty two"`` and is listed in the report), and duplicate ids, missing
audio files, transcripts outside the alphabet and bad phone segments are
skipped with reasons naming the manifest's line. A line that is not a JSON
object with the required keys is an error (the file is not a manifest, or a
damaged one): regenerate it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from asr_introspect.errors import CorpusError
from asr_introspect.io import write_text_atomic
from asr_introspect.text import Alphabet

from .textgrid import END_TOLERANCE
from .utterance import PhoneSegment, Utterance
from .validation import Candidate, Corpus, CorpusReport, finish, validate

__all__ = ["save_manifest", "load_manifest", "utterance_to_dict", "utterance_from_dict"]


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).resolve().as_posix()


def utterance_to_dict(utt: Utterance, base: str | os.PathLike | None = None) -> dict:
    """JSON-ready dict of ``utt``; ``audio`` relative to ``base`` when given."""
    audio = _relative(utt.audio_path, Path(base)) if base is not None else Path(utt.audio_path).as_posix()
    return {
        "id": utt.id,
        "speaker": utt.speaker,
        "audio": audio,
        "text": utt.text,
        "duration": None if utt.duration is None else float(utt.duration),
        "phones": None if utt.phones is None else [[s.phone, float(s.start), float(s.end)] for s in utt.phones],
    }


def utterance_from_dict(d: dict, base: str | os.PathLike | None = None, source: str = "manifest") -> Utterance:
    """Inverse of :func:`utterance_to_dict`; relative ``audio`` resolved against ``base``."""
    try:
        audio = Path(d["audio"])
        if base is not None and not audio.is_absolute():
            audio = Path(os.path.normpath(Path(base) / audio))
        phones = d.get("phones")
        return Utterance(
            id=str(d["id"]),
            speaker=str(d["speaker"]),
            audio_path=audio,
            text=str(d["text"]),
            phones=None if phones is None else tuple(PhoneSegment(str(p), float(s), float(e)) for p, s, e in phones),
            duration=None if d.get("duration") is None else float(d["duration"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorpusError(
            f"{source}: malformed utterance record ({type(exc).__name__}: {exc}); regenerate the manifest"
        ) from exc


def save_manifest(utterances: Iterable[Utterance], path: str | os.PathLike) -> Path:
    """Write ``utterances`` to ``path`` (``manifest.jsonl``) atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent
    lines = [json.dumps(utterance_to_dict(u, base), ensure_ascii=False) for u in utterances]
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def load_manifest(
    path: str | os.PathLike,
    strict: bool = False,
    alphabet: Alphabet | None = None,
    end_tolerance: float = END_TOLERANCE,
) -> Corpus:
    """Validated utterances of a manifest file (audio paths made absolute against its directory).

    Returns a :class:`~.validation.Corpus` (a list, in file order) with
    ``.report``; see the module docstring. ``CorpusError`` names the file and
    line for an unreadable file or a malformed line, names the first skipped
    item's file and line with ``strict=True``, and names the file when no
    usable utterance is left (e.g. an empty manifest).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot read manifest ({exc})") from exc
    base = path.parent.resolve()
    candidates = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path} line {number}: not JSON ({exc.msg}); regenerate the manifest") from exc
        if not isinstance(record, dict):
            raise CorpusError(f"{path} line {number}: expected a JSON object per line")
        utt = utterance_from_dict(record, base, source=f"{path} line {number}")
        candidates.append(
            Candidate(utt.id, utt.speaker, utt.audio_path, utt.text, path, number, utt.phones, utt.duration)
        )
    report = CorpusReport(path)
    utterances = validate(candidates, report, alphabet=alphabet, end_tolerance=end_tolerance)
    return finish(
        utterances, report, strict=strict, hint=" (expected one JSON object per utterance and line, see save_manifest)"
    )
