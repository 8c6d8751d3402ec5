"""Praat TextGrids (Montreal Forced Aligner style): read long/short text formats, write long.

Reading picks the phone tier: a tier named ``phones`` (case-insensitive; MFA's
multi-speaker ``"SPEAKER - phones"`` too), else the first interval tier whose
labels are all ARPAbet/silence labels. Labels map as follows (the documented rule):

- ``""``, ``sil``, ``sp``, ``pau``, ``silence``, ``<eps>`` -> ``"sil"``
  (adjacent silences are merged into one segment);
- ``spn``, ``nsn``, ``<unk>``, ``unk``, ``[noise]``, ``<noise>``, ``noise``,
  ``laughter`` (spoken noise, unknown words) -> no phone: the segment is
  dropped and its time stays unlabeled (a gap);
- anything else goes through ``text.phone_from_cmudict`` (``"AH0"`` -> ``"ah"``);
  an unknown label raises ``CorpusError`` naming the file.

Validation (:func:`read_textgrid`): the phone tier's intervals must run
forwards (``xmin <= xmax``; zero-length intervals are dropped) and must not
overlap (gaps are fine: unlabeled time); with ``duration`` (seconds of the
audio) no interval may end more than ``tolerance`` (default 10 ms) after the
audio does. A violation raises :class:`TextGridError` naming the file, the
line of the offending interval and what to do.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.errors import CorpusError
from asr_introspect.io import write_text_atomic
from asr_introspect.text import SILENCE, phone_from_cmudict

from .utterance import PhoneSegment, merge_silences

__all__ = [
    "Tier",
    "TextGridError",
    "END_TOLERANCE",
    "parse_textgrid",
    "read_textgrid",
    "write_textgrid",
    "phone_from_label",
    "SILENCE_LABELS",
    "NOISE_LABELS",
]

SILENCE_LABELS = frozenset({"", "sil", "sp", "pau", "silence", "<eps>", "<sil>"})
NOISE_LABELS = frozenset(
    {"spn", "nsn", "<unk>", "unk", "[noise]", "<noise>", "noise", "laughter", "[laughter]", "<spn>"}
)


#: seconds an interval may end after the audio does (rounding in aligners' duration measurements)
END_TOLERANCE = 0.01


class TextGridError(CorpusError):
    """A TextGrid problem at ``source`` (a path), optionally at ``line``; ``detail`` says what and what to do."""

    def __init__(self, source: str, detail: str, line: int | None = None) -> None:
        self.source = str(source)
        self.detail = detail
        self.line = line
        where = self.source if line is None else f"{self.source} line {line}"
        super().__init__(f"{where}: {detail}")


@dataclass(frozen=True)
class Tier:
    """A TextGrid tier: ``name``, ``kind`` (``"IntervalTier"``/``"TextTier"``), ``items``:
    intervals ``(start, end, label)`` or points ``(time, time, label)``; ``lines``: the
    1-based line of the file where each item starts (empty when unknown)."""

    name: str
    kind: str
    items: tuple[tuple[float, float, str], ...]
    lines: tuple[int, ...] = ()


# strings (with "" escapes), bracketed indices (skipped), flags, numbers
_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"|\[[^\]\n]*\]|<(exists|absent)>|(?<![\w.])(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])'
)


def _tokens(text: str) -> tuple[list[object], list[int]]:
    """Tokens and the 1-based line each starts on."""
    tokens: list[object] = []
    lines: list[int] = []
    line, scanned = 1, 0
    for match in _TOKEN.finditer(text):
        string, flag, number = match.group(1), match.group(2), match.group(3)
        if string is None and flag is None and number is None:
            continue  # bracketed indices ("item [1]:") are labels of the long format: skipped
        line += text.count("\n", scanned, match.start())
        scanned = match.start()
        lines.append(line)
        if string is not None:
            tokens.append(string.replace('""', '"'))
        elif flag is not None:
            tokens.append(flag == "exists")
        else:
            tokens.append(float(number))
    return tokens, lines


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_textgrid(text: str, source: str = "TextGrid") -> list[Tier]:
    """All tiers of a TextGrid given as text (Praat long or short text format).

    Both formats carry the same sequence of strings and numbers; the long
    format's ``key =`` labels and ``[i]`` indices are ignored. Raises
    :class:`TextGridError` naming ``source`` (and the line) when the structure
    is not a TextGrid.
    """
    tokens, token_lines = _tokens(text)
    pos = 0

    def take(kind: type, what: str):
        nonlocal pos
        if pos >= len(tokens):
            raise TextGridError(source, f"TextGrid ends early (expected {what})")
        value = tokens[pos]
        if kind is float and isinstance(value, bool) or not isinstance(value, kind):
            raise TextGridError(source, f"not a valid TextGrid (expected {what}, found {value!r})", token_lines[pos])
        pos += 1
        return value

    if take(str, "'ooTextFile'") != "ooTextFile":
        raise TextGridError(source, "not a Praat text file (missing 'File type = \"ooTextFile\"')")
    if take(str, "'TextGrid'") != "TextGrid":
        raise TextGridError(source, 'not a TextGrid (Object class is not "TextGrid")')
    take(float, "xmin")
    take(float, "xmax")
    if not take(bool, "<exists>"):
        return []
    n_tiers = int(take(float, "number of tiers"))
    tiers = []
    for t in range(n_tiers):
        kind = take(str, f"tier {t + 1} class")
        name = take(str, f"tier {t + 1} name")
        take(float, "tier xmin")
        take(float, "tier xmax")
        n_items = int(take(float, f"size of tier {name!r}"))
        items = []
        lines = []
        if kind == "IntervalTier":
            for _ in range(n_items):
                lines.append(token_lines[pos] if pos < len(token_lines) else 0)
                start = take(float, "interval xmin")
                end = take(float, "interval xmax")
                items.append((start, end, take(str, "interval text")))
        elif kind == "TextTier":
            for _ in range(n_items):
                lines.append(token_lines[pos] if pos < len(token_lines) else 0)
                time = take(float, "point time")
                items.append((time, time, take(str, "point mark")))
        else:
            raise TextGridError(source, f"unknown tier class {kind!r} (expected IntervalTier or TextTier)")
        tiers.append(Tier(name, kind, tuple(items), tuple(lines)))
    return tiers


def phone_from_label(label: str, source: str = "TextGrid") -> str | None:
    """Map an aligner label to a ``text.PHONES`` name, ``"sil"``, or ``None`` (noise); see module doc."""
    key = label.strip().lower()
    if key in SILENCE_LABELS:
        return SILENCE
    if key in NOISE_LABELS:
        return None
    try:
        return phone_from_cmudict(label.strip().upper())
    except (KeyError, ValueError) as exc:
        raise TextGridError(
            source,
            f"phone label {label!r} is not an ARPAbet phone "
            "(expected MFA's english_us_arpa labels such as 'AH0', or sil/sp/spn)",
        ) from exc


def _is_phone_tier(tier: Tier) -> bool:
    if tier.kind != "IntervalTier":
        return False
    labelled = 0
    for _, _, label in tier.items:
        key = label.strip().lower()
        if key in SILENCE_LABELS or key in NOISE_LABELS:
            continue
        try:
            phone_from_label(label)
        except CorpusError:
            return False
        labelled += 1
    return labelled > 0


def _phone_tier(tiers: Sequence[Tier], source: str) -> Tier:
    for tier in tiers:
        if tier.kind == "IntervalTier" and tier.name.strip().lower() in ("phones", "phone"):
            return tier
    for tier in tiers:
        if tier.kind == "IntervalTier" and tier.name.strip().lower().endswith("phones"):
            return tier
    for tier in tiers:
        if _is_phone_tier(tier):
            return tier
    names = ", ".join(repr(t.name) for t in tiers) or "none"
    raise TextGridError(source, f"no phone tier (tiers: {names}); name the phone tier 'phones'")


def read_textgrid(
    path: str | os.PathLike, duration: float | None = None, tolerance: float = END_TOLERANCE
) -> list[PhoneSegment]:
    """Phone segments (seconds, ``text.PHONES`` names) of a TextGrid's phone tier.

    Long and short Praat text formats, UTF-8 or UTF-16. Labels are mapped by
    the module's rule; noise intervals are dropped (gaps). ``duration``: the
    audio's length in seconds, to reject intervals that end more than
    ``tolerance`` seconds after it. :class:`TextGridError` (a ``CorpusError``)
    names the file, and the line where there is one, for unreadable files, a
    missing phone tier, unknown labels, reversed or overlapping intervals and
    intervals past the audio's end.
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextGridError(source, f"cannot read TextGrid ({exc.strerror or exc})") from exc
    tier = _phone_tier(parse_textgrid(_decode(data), source=source), source)
    lines = tier.lines or (None,) * len(tier.items)
    segments = []
    previous: tuple[int, float] | None = None  # (interval number, end) of the last interval
    for number, ((start, end, label), line) in enumerate(zip(tier.items, lines), 1):
        if end < start:
            raise TextGridError(
                source,
                f"interval {number} ({label!r}) of tier {tier.name!r} runs backwards: xmin {start:g} s > "
                f"xmax {end:g} s; fix the times or re-run the aligner",
                line,
            )
        if previous is not None and start < previous[1] - 1e-6:
            raise TextGridError(
                source,
                f"interval {number} ({label!r}) of tier {tier.name!r} starts at {start:g} s, before interval "
                f"{previous[0]} ends ({previous[1]:g} s): intervals overlap; fix the times or re-run the aligner",
                line,
            )
        if duration is not None and end > duration + tolerance:
            raise TextGridError(
                source,
                f"interval {number} ({label!r}) of tier {tier.name!r} ends at {end:.3f} s, after the audio ends "
                f"({duration:.3f} s): the TextGrid belongs to other or longer audio; re-align this recording",
                line,
            )
        previous = (number, end)
        try:
            phone = phone_from_label(label, source)
        except TextGridError as exc:
            raise TextGridError(source, exc.detail, line) from None
        if phone is None or not end > start:
            continue
        segments.append(PhoneSegment(phone, float(start), float(end)))
    return merge_silences(segments)


def _quote(label: str) -> str:
    return '"' + label.replace('"', '""') + '"'


def _fmt(x: float) -> str:
    return repr(float(round(x, 9)))


def _interval_tier_lines(
    name: str, items: Sequence[tuple[float, float, str]], xmin: float, xmax: float, index: int, gap: str = ""
) -> list[str]:
    # fill gaps: a Praat interval tier must cover [xmin, xmax] without holes
    filled: list[tuple[float, float, str]] = []
    t = xmin
    for start, end, label in items:
        if start > t + 1e-9:
            filled.append((t, start, gap))
        filled.append((start, end, label))
        t = end
    if xmax > t + 1e-9:
        filled.append((t, xmax, gap))
    lines = [
        f"    item [{index}]:",
        '        class = "IntervalTier"',
        f"        name = {_quote(name)}",
        f"        xmin = {_fmt(xmin)}",
        f"        xmax = {_fmt(xmax)}",
        f"        intervals: size = {len(filled)}",
    ]
    for i, (start, end, label) in enumerate(filled, 1):
        lines += [
            f"        intervals [{i}]:",
            f"            xmin = {_fmt(start)}",
            f"            xmax = {_fmt(end)}",
            f"            text = {_quote(label)}",
        ]
    return lines


def write_textgrid(
    path: str | os.PathLike,
    segments: Sequence[PhoneSegment],
    words: Sequence[tuple[str, float, float]] | None = None,
    xmax: float | None = None,
) -> Path:
    """Write phone ``segments`` (and optional ``words`` ``(word, start, end)``) as a long-format
    TextGrid, atomically. Tiers: ``words`` (if given) then ``phones``. Gaps between phone
    segments (unlabeled time) are written as ``spn`` so they read back as gaps; gaps in
    ``words`` as empty intervals. ``xmax``: total duration (default: the last end). Returns the path."""
    path = Path(path)
    segments = list(segments)
    ends = [s.end for s in segments] + [w[2] for w in (words or [])]
    total = float(xmax) if xmax is not None else (max(ends) if ends else 0.0)
    for seg in segments:
        if not (math.isfinite(seg.start) and math.isfinite(seg.end)) or seg.end < seg.start:
            raise ValueError(f"{path}: bad segment {seg}")
    tiers: list[list[str]] = []
    if words is not None:
        tiers.append(_interval_tier_lines("words", [(s, e, w) for w, s, e in words], 0.0, total, len(tiers) + 1))
    tiers.append(
        _interval_tier_lines(
            "phones", [(s.start, s.end, s.phone) for s in segments], 0.0, total, len(tiers) + 1, gap="spn"
        )
    )
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0.0",
        f"xmax = {_fmt(total)}",
        "tiers? <exists>",
        f"size = {len(tiers)}",
        "item []:",
    ]
    for tier_lines in tiers:
        lines += tier_lines
    return write_text_atomic(path, "\n".join(lines) + "\n")
