"""Utterance records and phone segments, plus the reader for flite's ``-psdur`` output.

An :class:`Utterance` is the one record every analysis consumes: id, speaker,
audio path, normalized transcript, optional phone segments (seconds, phones
from ``text.PHONES``) and optional duration (seconds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.errors import CorpusError
from asr_introspect.text import PHONES, phone_from_flite

__all__ = [
    "PhoneSegment",
    "Utterance",
    "parse_flite_segments",
    "merge_silences",
    "check_segments",
    "fit_segments_to_duration",
]


@dataclass(frozen=True)
class PhoneSegment:
    """One phone: ``phone`` (a ``text.PHONES`` name, e.g. ``"ah"`` or ``"sil"``), ``start``/``end`` in seconds."""

    phone: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        """``end - start`` in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class Utterance:
    """One utterance: ``id``, ``speaker``, ``audio_path``, normalized ``text``.

    ``phones``: phone segments in time order (``None`` when the corpus has no
    alignment; gaps between segments are unlabeled time, e.g. MFA's ``spn``);
    ``duration``: seconds of audio (``None`` when not known yet).
    """

    id: str
    speaker: str
    audio_path: Path
    text: str
    phones: tuple[PhoneSegment, ...] | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.audio_path, Path):
            object.__setattr__(self, "audio_path", Path(self.audio_path))
        if self.phones is not None and not isinstance(self.phones, tuple):
            object.__setattr__(self, "phones", tuple(self.phones))


_FLITE_ITEM = re.compile(r"^([A-Za-z][A-Za-z0-9_]*):(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")


def parse_flite_segments(text: str, source: str = "flite output") -> list[PhoneSegment]:
    """Phone segments from flite's ``-psdur`` stdout (``"pau:0.184 dh:0.236 ..."``).

    Each number is the segment's END time in seconds (verified against the
    audio: the onset of speech follows the end of the first ``pau``); a
    segment starts where the previous one ended, the first at 0. Phone names
    go through ``text.phone_from_flite`` (``pau`` -> ``sil``, ``ax`` -> ``ah``).
    Several lines (flite prints one per utterance, times keep running) are
    concatenated. Raises ``CorpusError`` naming ``source`` for a malformed
    item or decreasing times.
    """
    segments: list[PhoneSegment] = []
    start = 0.0
    for item in text.split():
        match = _FLITE_ITEM.match(item)
        if match is None:
            raise CorpusError(f"{source}: cannot parse flite segment {item!r} (expected NAME:END_SECONDS)")
        name, end = match.group(1), float(match.group(2))
        if end < start - 1e-9:
            raise CorpusError(
                f"{source}: flite segment {item!r} ends at {end:.3f} s, before its start "
                f"{start:.3f} s (times must not decrease)"
            )
        try:
            phone = phone_from_flite(name)
        except (KeyError, ValueError) as exc:
            raise CorpusError(f"{source}: unknown flite phone {name!r} ({exc})") from exc
        segments.append(PhoneSegment(phone, start, end))
        start = end
    return segments


def merge_silences(segments: Iterable[PhoneSegment], silence: str = "sil") -> list[PhoneSegment]:
    """Merge adjacent (touching) ``silence`` segments into one; drop zero-length segments."""
    out: list[PhoneSegment] = []
    for seg in segments:
        if seg.end <= seg.start:
            continue
        if out and seg.phone == silence and out[-1].phone == silence and abs(out[-1].end - seg.start) < 1e-9:
            out[-1] = PhoneSegment(silence, out[-1].start, seg.end)
        else:
            out.append(seg)
    return out


def check_segments(
    segments: Sequence[PhoneSegment], source: str, duration: float | None = None, tolerance: float = 0.02
) -> None:
    """Raise ``CorpusError`` naming ``source`` unless segments are ordered, non-overlapping,
    of known phones, and (with ``duration``) end within ``tolerance`` s of it."""
    known = set(PHONES)
    previous_end = 0.0
    for i, seg in enumerate(segments):
        if seg.phone not in known:
            raise CorpusError(f"{source}: segment {i} has unknown phone {seg.phone!r}")
        if not seg.end > seg.start:
            raise CorpusError(
                f"{source}: segment {i} ({seg.phone}) is empty or reversed: {seg.start:.3f}-{seg.end:.3f} s"
            )
        if seg.start < previous_end - 1e-6:
            raise CorpusError(
                f"{source}: segment {i} ({seg.phone}) starts at {seg.start:.3f} s, "
                f"before the previous segment ends ({previous_end:.3f} s)"
            )
        previous_end = seg.end
    if duration is not None and segments and segments[-1].end > duration + tolerance:
        raise CorpusError(
            f"{source}: phone segments end at {segments[-1].end:.3f} s, after the audio ends ({duration:.3f} s)"
        )


def fit_segments_to_duration(
    segments: Sequence[PhoneSegment], duration: float, source: str, max_adjust: float = 0.25, silence: str = "sil"
) -> list[PhoneSegment]:
    """Make the last segment end exactly at ``duration`` (seconds).

    flite's diphone voices (kal, kal16) render only about half of the final
    pause, so their audio ends ~0.11 s before the last ``pau`` segment does;
    the clustergen voices end within ~5 ms. The final segment must be silence
    when the change exceeds 20 ms, and no change may exceed ``max_adjust``
    seconds; otherwise ``CorpusError``. Segments that would lie entirely
    after ``duration`` are an error too.
    """
    segments = list(segments)
    if not segments:
        return segments
    last = segments[-1]
    change = abs(last.end - duration)
    if change > max_adjust or last.start >= duration:
        raise CorpusError(
            f"{source}: phone segments end at {last.end:.3f} s but the audio lasts "
            f"{duration:.3f} s (difference too large to be the final pause)"
        )
    if change > 0.02 and last.phone != silence:
        raise CorpusError(
            f"{source}: phone segments end at {last.end:.3f} s in {last.phone!r}, but the audio lasts {duration:.3f} s"
        )
    segments[-1] = PhoneSegment(last.phone, last.start, float(duration))
    return segments
