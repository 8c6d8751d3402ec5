"""The corpus validation pass: one normalization policy, skips with reasons, a report.

Every corpus reader (the LibriSpeech layout in ``librispeech``, manifests in
``manifest``) turns what it finds into :class:`Candidate` records, each
remembering where it came from (file and line), and hands them to
:func:`validate`. The pass, the same for every layout:

1. **Duplicate ids**: the first record of an id is kept; every later one is
   skipped with a reason naming the first one's file and line.
2. **Transcripts** go through :func:`normalize_text`, i.e.
   ``text.normalize_transcript`` (case folding, accents, numbers to words,
   punctuation; see :mod:`asr_introspect.text`). A change beyond case and
   whitespace (``"Café 42!"`` -> ``"cafe forty two"``) is recorded in the
   report as a :class:`Normalized` entry; plain upper case (LibriSpeech's
   ``"HELLO WORLD"``) is the expected form and is not listed. A transcript
   with characters that do not normalize into the alphabet, or that is empty
   after normalization, is skipped with a reason naming the characters.
3. **Audio**: a missing audio file is skipped (the LibriSpeech reader also
   skips unreadable or truncated files when it reads their headers).
4. **Phones**: segments must be known phones, in order, not overlapping
   (gaps are fine), and end at most ``end_tolerance`` (10 ms) after the
   audio when its duration is known. TextGrids are checked while they are
   read (``textgrid.read_textgrid``), so their reasons name the TextGrid's line.

Each problem becomes a :class:`Skipped` record (``id``, ``path``, ``line``,
``reason``) in the :class:`CorpusReport` that the loaded :class:`Corpus` (a
``list`` of utterances) carries as ``.report``. Nothing is warned about:
the report is the record. ``strict=True`` (:func:`finish`) turns the first
skip into a ``CorpusError`` naming its file and line; a corpus with no usable
utterance is always a ``CorpusError`` naming its path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr_introspect.errors import CorpusError, InputError
from asr_introspect.text import PHONES, Alphabet, normalize_transcript

from .textgrid import END_TOLERANCE
from .utterance import PhoneSegment, Utterance

__all__ = [
    "Candidate",
    "Corpus",
    "CorpusReport",
    "Normalized",
    "Skipped",
    "END_TOLERANCE",
    "finish",
    "normalize_text",
    "segment_problem",
    "validate",
]

_KNOWN_PHONES = frozenset(PHONES)


def _location(path: Path | str | None, line: int | None) -> str:
    where = str(path) if path is not None else "corpus"
    return where if line is None else f"{where} line {line}"


@dataclass(frozen=True)
class Skipped:
    """An utterance (or file) left out of a corpus.

    ``id``: the utterance id (``None`` for a file-level problem); ``path``: the
    file at fault (transcript, manifest, TextGrid or audio); ``line``: 1-based
    line in ``path`` when there is one; ``reason``: ``"kind (detail)"``, e.g.
    ``"duplicate id (also at .../19-198.trans.txt line 1)"``.
    """

    id: str | None
    path: Path
    reason: str
    line: int | None = None

    @property
    def kind(self) -> str:
        """The reason without its detail, e.g. ``"duplicate id"`` (for counts)."""
        return self.reason.split(" (", 1)[0]

    @property
    def message(self) -> str:
        """One line naming file, line and utterance: ``"PATH line N: utt ID: REASON"``."""
        who = f"utt {self.id}: " if self.id is not None else ""
        return f"{_location(self.path, self.line)}: {who}{self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "path", "line", "reason"}`` for JSON reports."""
        return {"id": self.id, "path": str(self.path), "line": self.line, "reason": self.reason}


@dataclass(frozen=True)
class Normalized:
    """A transcript that normalization changed beyond case and whitespace."""

    id: str
    original: str
    normalized: str
    path: Path | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "original", "normalized", "path", "line"}`` for JSON reports."""
        return {
            "id": self.id,
            "original": self.original,
            "normalized": self.normalized,
            "path": None if self.path is None else str(self.path),
            "line": self.line,
        }


@dataclass
class CorpusReport:
    """What loading a corpus left out (``skipped``) and changed (``normalized``), in file order."""

    source: Path | None = None
    skipped: list[Skipped] = field(default_factory=list)
    normalized: list[Normalized] = field(default_factory=list)

    def skip(self, id: str | None, path: Path | str, reason: str, line: int | None = None) -> None:
        """Record one skipped item."""
        self.skipped.append(Skipped(id, Path(path), reason, line))

    def skipped_by_reason(self) -> dict[str, int]:
        """Counts of skipped items per reason kind (``Skipped.kind``)."""
        counts: dict[str, int] = {}
        for item in self.skipped:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        return counts

    def to_dict(self, limit: int | None = 100) -> dict[str, Any]:
        """JSON summary: ``{"source", "skipped", "skipped_by_reason", "skipped_items", "normalized",
        "normalized_items"}``; the item lists hold at most ``limit`` entries (``None``: all)."""
        return {
            "source": None if self.source is None else str(self.source),
            "skipped": len(self.skipped),
            "skipped_by_reason": self.skipped_by_reason(),
            "skipped_items": [s.to_dict() for s in self.skipped[:limit]],
            "normalized": len(self.normalized),
            "normalized_items": [n.to_dict() for n in self.normalized[:limit]],
        }

    def strict_error(self) -> CorpusError | None:
        """The error ``strict=True`` raises: the first skip's message plus the count (None without skips)."""
        if not self.skipped:
            return None
        more = f"; {len(self.skipped) - 1} more problem(s)" if len(self.skipped) > 1 else ""
        return CorpusError(f"{self.skipped[0].message} [strict mode: fix it, or load without strict to skip it{more}]")


class Corpus(list):
    """The utterances of a loaded corpus (a plain ``list`` of :class:`Utterance`) plus ``.report``.

    Slicing or filtering gives plain lists; the report stays with the object
    ``load_corpus`` returned.
    """

    def __init__(self, utterances: Iterable[Utterance] = (), report: CorpusReport | None = None) -> None:
        super().__init__(utterances)
        self.report = report if report is not None else CorpusReport()


@dataclass(frozen=True)
class Candidate:
    """An utterance as a reader found it, before validation.

    ``raw_text``: the transcript as written; ``text_path``/``line``: where it is
    written (trans.txt or manifest, 1-based line); ``phones_path``/``phones_line``:
    where the phone segments come from (TextGrid or manifest), if any.
    """

    id: str
    speaker: str
    audio_path: Path
    raw_text: str
    text_path: Path
    line: int | None = None
    phones: tuple[PhoneSegment, ...] | None = None
    duration: float | None = None
    phones_path: Path | None = None
    phones_line: int | None = None


# lower-case words, apostrophes only inside words, single spaces: a fixed point of normalize_transcript
_NORMAL_FORM = re.compile(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*")
_DEFAULT_LETTERS = frozenset(Alphabet.default().letters)


def _in_alphabet(text: str, alphabet: Alphabet | None) -> bool:
    letters = _DEFAULT_LETTERS if alphabet is None else frozenset(alphabet.letters)
    return set(text) <= letters


def _outside_alphabet(raw: str, alphabet: Alphabet | None) -> list[str]:
    """Characters of ``raw`` that do not normalize into the alphabet, in order of appearance."""
    bad = []
    for c in dict.fromkeys(raw):
        try:
            normalize_transcript(c, alphabet=alphabet)
        except InputError:
            bad.append(c)
    return bad


def normalize_text(raw: str, alphabet: Alphabet | None = None) -> tuple[str | None, str | None]:
    """The one transcript policy of every layout: ``(normalized, None)`` or ``(None, reason)``.

    ``normalized`` is ``text.normalize_transcript(raw, alphabet=alphabet)``;
    ``reason`` (a skip reason) says which characters stay outside the alphabet
    and what to do, or that the transcript is empty.
    """
    if isinstance(raw, str) and _NORMAL_FORM.fullmatch(raw) and _in_alphabet(raw, alphabet):
        return raw, None  # already normalized (a saved manifest): normalize_transcript would return it unchanged
    try:
        text = normalize_transcript(raw, alphabet=alphabet)
    except InputError as exc:
        chars = _outside_alphabet(raw, alphabet) if isinstance(raw, str) else []
        if not chars:
            return None, f"bad transcript ({exc})"
        listed = ", ".join(repr(c) for c in chars)
        return None, (
            f"bad transcript (characters outside the alphabet: {listed}; "
            "spell them out in the transcript or use a model whose alphabet has them)"
        )
    if not text:
        return None, f"empty transcript (nothing left of {raw!r} after normalization; write what is said)"
    return text, None


def _trivial_change(raw: str, text: str) -> bool:
    return " ".join(raw.casefold().split()) == text


def segment_problem(
    segments: Sequence[PhoneSegment], duration: float | None, tolerance: float = END_TOLERANCE
) -> str | None:
    """What is wrong with phone ``segments`` (a skip reason), or None.

    Checks known phone names, forward and non-empty segments, no overlap
    (gaps are fine) and, with ``duration`` (seconds), an end no later than
    ``duration + tolerance``.
    """
    previous_end = None
    for i, seg in enumerate(segments):
        if seg.phone not in _KNOWN_PHONES:
            return f"bad phones (segment {i} has unknown phone {seg.phone!r}; use text.PHONES names)"
        if not seg.end > seg.start:
            return f"bad phones (segment {i} ({seg.phone}) is empty or reversed: {seg.start:g}-{seg.end:g} s)"
        if previous_end is not None and seg.start < previous_end - 1e-6:
            return (
                f"bad phones (segment {i} ({seg.phone}) starts at {seg.start:g} s, before the previous "
                f"segment ends at {previous_end:g} s: segments overlap)"
            )
        previous_end = seg.end
    if duration is not None and segments and segments[-1].end > duration + tolerance:
        return (
            f"phones past the audio's end (segments end at {segments[-1].end:.3f} s, the audio at "
            f"{duration:.3f} s; re-align this recording)"
        )
    return None


def validate(
    candidates: Iterable[Candidate],
    report: CorpusReport,
    alphabet: Alphabet | None = None,
    end_tolerance: float = END_TOLERANCE,
) -> list[Utterance]:
    """The validation pass (module docstring): utterances that pass, in input order.

    Problems are appended to ``report.skipped``, transcript changes to
    ``report.normalized``.
    """
    first_seen: dict[str, str] = {}
    utterances: list[Utterance] = []
    for c in candidates:
        if c.id in first_seen:
            reason = f"duplicate id (also at {first_seen[c.id]}; give each utterance its own id)"
            report.skip(c.id, c.text_path, reason, c.line)
            continue
        first_seen[c.id] = _location(c.text_path, c.line)
        text, reason = normalize_text(c.raw_text, alphabet)
        if text is None:
            report.skip(c.id, c.text_path, reason, c.line)
            continue
        if not Path(c.audio_path).is_file():
            report.skip(
                c.id,
                c.text_path,
                f"missing audio file ({c.audio_path} not found; restore it or remove the utterance)",
                c.line,
            )
            continue
        if c.phones is not None:
            problem = segment_problem(c.phones, c.duration, end_tolerance)
            if problem is not None:
                path = c.phones_path if c.phones_path is not None else c.text_path
                line = c.phones_line if c.phones_path is not None else c.line
                report.skip(c.id, path, problem, line)
                continue
        if not _trivial_change(c.raw_text, text):
            report.normalized.append(Normalized(c.id, c.raw_text, text, c.text_path, c.line))
        utterances.append(Utterance(c.id, c.speaker, c.audio_path, text, c.phones, c.duration))
    return utterances


def finish(utterances: Sequence[Utterance], report: CorpusReport, strict: bool = False, hint: str = "") -> Corpus:
    """The :class:`Corpus` of validated ``utterances``; raises ``CorpusError`` in strict mode
    when anything was skipped, and always when no utterance is left (``hint``: what a
    valid corpus looks like, appended when nothing at all was found)."""
    if strict:
        error = report.strict_error()
        if error is not None:
            raise error
    if not utterances:
        if report.skipped:
            n = len(report.skipped)
            raise CorpusError(
                f"{report.source}: no usable utterances (all {n} item(s) skipped, first: {report.skipped[0].message})"
            )
        raise CorpusError(f"{report.source}: no utterances found{hint}")
    return Corpus(utterances, report)
