"""English sentences for synthesis: the Debian ``fortunes`` files or a user text file.

Fortune files are ``%``-separated; attributions (``-- Author``) are dropped,
lines joined, and the text split into sentences at ``. ! ?``. A sentence is
kept when it is plain English a synthesizer reads exactly as written:

- 4-20 words, starts with a capital letter, ends with ``. ! ?``;
- only letters, spaces, apostrophes inside words and ``, ; : . ! ?``
  (no digits, quotes, brackets, hyphens or symbols, which TTS front ends
  expand in their own ways);
- no word with two or more capitals (acronyms such as ``IBM`` are spelled
  out by the synthesizers) and no abbreviation before a full stop;
- no one-letter word except ``a`` and ``I`` (others are read as letter names).

Such a sentence normalizes to its lower-cased words (``text.normalize_transcript``
gives the same; the synthesizer normalizes the sentences it uses).
Duplicates (same normalized text) are dropped; order is the files' order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from asr_introspect.errors import InputError
from asr_introspect.text import normalize_transcript

__all__ = [
    "FORTUNES_DIR",
    "fortune_files",
    "fortune_sentences",
    "split_sentences",
    "is_plain_sentence",
    "read_text_sentences",
]

FORTUNES_DIR = Path("/usr/share/games/fortunes")

_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z' ,;:]*[.!?]$")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr vs etc prof rev gen col capt lt sgt mt ft no "
    "co inc ltd wm jan feb mar apr jun jul aug sep sept oct nov dec eg ie cf al".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def fortune_files(directory: str | os.PathLike = FORTUNES_DIR) -> list[Path]:
    """The fortune text files of ``directory`` (no ``.dat`` indexes or ``.u8`` links), sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            f"{directory}: fortune files not found (install the Debian packages "
            "'fortunes' and 'fortunes-min', or pass --text FILE)"
        )
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and not p.name.startswith(".")
    )


def _fortunes(text: str) -> Iterable[str]:
    for chunk in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        lines = []
        for line in chunk.splitlines():
            if re.match(r"^\s*--", line):  # attribution: "\t\t-- Mark Twain"
                break
            lines.append(line.strip())
        yield " ".join(l for l in lines if l)


def split_sentences(text: str) -> list[str]:
    """Split running text at ``. ! ?`` followed by a capital; abbreviations don't end a sentence."""
    pieces = _SENTENCE_END.split(re.sub(r"\s+", " ", text).strip())
    sentences: list[str] = []
    carry = ""
    for piece in pieces:
        piece = (carry + " " + piece).strip() if carry else piece
        last = re.sub(r"[^A-Za-z]", "", piece.rsplit(" ", 1)[-1][:-1]).lower() if piece else ""
        if piece.endswith(".") and (last in _ABBREVIATIONS or len(last) == 1 and last not in ("a", "i")):
            carry = piece
            continue
        carry = ""
        sentences.append(piece)
    if carry:
        sentences.append(carry)
    return sentences


def is_plain_sentence(sentence: str, min_words: int = 4, max_words: int = 20) -> bool:
    """Whether ``sentence`` passes the module's filter (except the normalization check)."""
    if not _ALLOWED.match(sentence):
        return False
    words = re.findall(r"[A-Za-z']+", sentence)
    if not min_words <= len(words) <= max_words:
        return False
    if not sentence[0].isupper():
        return False
    if "." in sentence[:-1] or "!" in sentence[:-1] or "?" in sentence[:-1]:
        return False
    for word in words:
        if sum(c.isupper() for c in word) >= 2 or word.startswith("'") or word.endswith("'"):
            return False
        if len(word) == 1 and word not in ("a", "A", "I"):  # spoken as a letter name
            return False
    return True


def _plain_key(sentence: str) -> str:
    """What ``normalize_transcript`` makes of a sentence that passed ``is_plain_sentence``."""
    return " ".join(re.sub(r"[,;:.!?]", " ", sentence.lower()).split())


def fortune_sentences(
    directory: str | os.PathLike = FORTUNES_DIR,
    min_words: int = 4,
    max_words: int = 20,
    files: Sequence[str | os.PathLike] | None = None,
) -> list[str]:
    """Plain English sentences from the fortune files (module docstring filter), deduplicated."""
    paths = [Path(p) for p in files] if files is not None else fortune_files(directory)
    candidates = []
    for path in paths:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for fortune in _fortunes(text):
            for sentence in split_sentences(fortune):
                if is_plain_sentence(sentence, min_words, max_words):
                    candidates.append(sentence)
    seen: set[str] = set()
    out = []
    for sentence in candidates:
        key = _plain_key(sentence)
        if key not in seen:
            seen.add(key)
            out.append(sentence)
    return out


def read_text_sentences(path: str | os.PathLike) -> list[str]:
    """Sentences of a user text file: each non-empty line, split at sentence ends; deduplicated.

    No plain-English filter (the user chose the text), but every sentence
    must normalize: ``InputError`` names the file and line otherwise.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the text file ({exc})") from exc
    sentences = []
    seen = set()
    for number, line in enumerate(lines, 1):
        for sentence in split_sentences(line):
            try:
                norm = normalize_transcript(sentence, utterance_id=f"{path.name} line {number}")
            except InputError as exc:
                raise InputError(f"{path} line {number}: {exc}") from exc
            if norm and norm not in seen:
                seen.add(norm)
                sentences.append(sentence)
    if not sentences:
        raise InputError(f"{path}: no sentences in the text file")
    return sentences
