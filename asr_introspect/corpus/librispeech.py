"""Reader for the LibriSpeech layout, the corpus interchange format.

Layout: ``ROOT/SPEAKER/CHAPTER/UTTID.flac`` (or ``.wav``) plus one
``ROOT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` per chapter with lines
``UTTID TEXT``. Phone alignments are optional: ``UTTID.TextGrid`` beside the
audio, or in a separate ``textgrid_dir`` laid out like Montreal Forced
Aligner output (``SPEAKER/UTTID.TextGrid``, ``SPEAKER/CHAPTER/UTTID.TextGrid``
or flat). Transcripts are normalized with ``text.normalize_transcript``.

Problems with single utterances (audio without transcript line, transcript
line without audio, a transcript outside the alphabet, an unreadable
TextGrid or audio header) do not stop the scan: they are collected as
:class:`Skipped` records with reasons (``scan_librispeech``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from asr_introspect.audio import audio_info
from asr_introspect.errors import CorpusError, InputError
from asr_introspect.text import normalize_transcript

from .manifest import load_manifest
from .textgrid import read_textgrid
from .utterance import PhoneSegment, Utterance

__all__ = [
    "Skipped",
    "CorpusScan",
    "scan_librispeech",
    "read_librispeech",
    "load_corpus",
    "AUDIO_SUFFIXES",
    "corpus_files_mtime",
]

AUDIO_SUFFIXES = (".flac", ".wav")
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class Skipped:
    """An utterance (or file) left out of a corpus: ``id``, ``path``, ``reason``."""

    id: str
    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        """``{"id", "path", "reason"}`` for JSON reports."""
        return {"id": self.id, "path": str(self.path), "reason": self.reason}


@dataclass
class CorpusScan:
    """Result of a scan: ``utterances`` (sorted by id) and ``skipped`` records."""

    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        """Counts of skipped items per reason kind (the text before the first ':' detail)."""
        counts: dict[str, int] = {}
        for item in self.skipped:
            kind = item.reason.split(" (", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def _chapter_dirs(root: Path) -> Iterator[tuple[str, str, Path]]:
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for chapter_dir in sorted(p for p in speaker_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield speaker_dir.name, chapter_dir.name, chapter_dir


def _read_transcripts(path: Path, skipped: list[Skipped]) -> dict[str, tuple[str, int]]:
    """``{utt_id: (raw text, line number)}`` of one trans.txt."""
    out: dict[str, tuple[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        skipped.append(Skipped(path.name, path, f"unreadable transcript file ({exc})"))
        return out
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        utt_id = parts[0]
        text = parts[1] if len(parts) > 1 else ""
        if utt_id in out:
            skipped.append(Skipped(utt_id, path, f"duplicate transcript line (line {number} of {path})"))
            continue
        out[utt_id] = (text, number)
    return out


def _textgrid_index(textgrid_dir: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for dirpath, _dirnames, filenames in os.walk(textgrid_dir):
        for name in filenames:
            if name.endswith(".TextGrid") or name.endswith(".textgrid"):
                index.setdefault(name.rsplit(".", 1)[0], []).append(Path(dirpath) / name)
    return index


def _pick_textgrid(candidates: list[Path], speaker: str, chapter: str) -> Path:
    if len(candidates) == 1:
        return candidates[0]
    for path in candidates:  # prefer SPEAKER/CHAPTER/, then SPEAKER/
        if path.parent.name == chapter and path.parent.parent.name == speaker:
            return path
    for path in candidates:
        if path.parent.name == speaker:
            return path
    return sorted(candidates)[0]


def scan_librispeech(
    root: str | os.PathLike,
    textgrid_dir: str | os.PathLike | None = None,
    durations: bool = True,
    progress: bool = False,
) -> CorpusScan:
    """Scan a LibriSpeech-layout directory; see the module docstring.

    ``durations``: read each audio header for its duration (fast; no samples).
    Raises ``CorpusError`` when ``root`` (or ``textgrid_dir``) is not a
    directory or holds no utterance at all; single bad utterances are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(
            f"{root}: corpus directory not found (expected the LibriSpeech layout "
            "SPEAKER/CHAPTER/UTTID.flac + SPEAKER-CHAPTER.trans.txt)"
        )
    tg_index: dict[str, list[Path]] = {}
    if textgrid_dir is not None:
        textgrid_dir = Path(textgrid_dir)
        if not textgrid_dir.is_dir():
            raise CorpusError(f"{textgrid_dir}: TextGrid directory not found")
        tg_index = _textgrid_index(textgrid_dir)

    scan = CorpusScan()
    chapters = list(_chapter_dirs(root))
    for speaker, chapter, chapter_dir in tqdm(chapters, desc="scanning", unit="chapter", disable=not progress):
        trans_path = chapter_dir / f"{speaker}-{chapter}.trans.txt"
        files = sorted(chapter_dir.iterdir())
        audio: dict[str, Path] = {}
        for path in files:
            if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("."):
                if path.stem in audio:
                    scan.skipped.append(
                        Skipped(path.stem, path, f"second audio file for the same id (using {audio[path.stem].name})")
                    )
                    continue
                audio[path.stem] = path
        other_trans = [p for p in files if p.name.endswith(".trans.txt") and p != trans_path]
        for path in other_trans:
            scan.skipped.append(
                Skipped(path.name, path, f"transcript file with an unexpected name (expected {trans_path.name})")
            )
        if not trans_path.is_file():
            for utt_id, path in sorted(audio.items()):
                scan.skipped.append(Skipped(utt_id, path, f"no transcript line (missing {trans_path})"))
            continue
        transcripts = _read_transcripts(trans_path, scan.skipped)
        for utt_id in sorted(set(transcripts) - set(audio)):
            scan.skipped.append(
                Skipped(
                    utt_id,
                    trans_path,
                    f"transcript line without audio (line "
                    f"{transcripts[utt_id][1]} of {trans_path}; "
                    f"no {utt_id}.flac or .wav)",
                )
            )
        for utt_id in sorted(audio):
            path = audio[utt_id]
            if utt_id not in transcripts:
                scan.skipped.append(Skipped(utt_id, path, f"no transcript line (audio without a line in {trans_path})"))
                continue
            raw, number = transcripts[utt_id]
            try:
                text = normalize_transcript(raw, utterance_id=utt_id)
            except InputError as exc:
                scan.skipped.append(Skipped(utt_id, trans_path, f"bad transcript ({trans_path} line {number}: {exc})"))
                continue
            if not text:
                scan.skipped.append(Skipped(utt_id, trans_path, f"empty transcript ({trans_path} line {number})"))
                continue
            duration = None
            if durations:
                try:
                    rate, frames, _ = audio_info(path)
                    duration = frames / rate
                except InputError as exc:
                    scan.skipped.append(Skipped(utt_id, path, f"unreadable audio ({exc})"))
                    continue
            phones: tuple[PhoneSegment, ...] | None = None
            tg_path = None
            if utt_id in tg_index:
                tg_path = _pick_textgrid(tg_index[utt_id], speaker, chapter)
            else:
                for suffix in (".TextGrid", ".textgrid"):
                    if (chapter_dir / f"{utt_id}{suffix}").is_file():
                        tg_path = chapter_dir / f"{utt_id}{suffix}"
                        break
            if tg_path is not None:
                try:
                    phones = tuple(read_textgrid(tg_path))
                except CorpusError as exc:
                    scan.skipped.append(Skipped(utt_id, tg_path, f"bad TextGrid ({exc})"))
                    continue
            scan.utterances.append(Utterance(utt_id, speaker, path, text, phones, duration))
    seen = {u.id for u in scan.utterances} | {s.id for s in scan.skipped}
    for stem in sorted(set(tg_index) - seen):
        scan.skipped.append(
            Skipped(
                stem,
                tg_index[stem][0],
                "TextGrid without an utterance (no audio or transcript with this id under the corpus root)",
            )
        )
    if not scan.utterances:
        detail = f"; {len(scan.skipped)} item(s) skipped, first: {scan.skipped[0].reason}" if scan.skipped else ""
        raise CorpusError(
            f"{root}: no utterances found (expected the LibriSpeech layout "
            f"SPEAKER/CHAPTER/UTTID.flac + SPEAKER-CHAPTER.trans.txt{detail})"
        )
    scan.utterances.sort(key=lambda u: u.id)
    return scan


def read_librispeech(
    root: str | os.PathLike, textgrid_dir: str | os.PathLike | None = None, strict: bool = False, progress: bool = False
) -> list[Utterance]:
    """Utterances of a LibriSpeech-layout directory (sorted by id); see the module docstring.

    Skipped items produce one ``UserWarning`` with their count and the first
    reason (``scan_librispeech`` returns them all); ``strict=True`` raises
    ``CorpusError`` listing them instead.
    """
    scan = scan_librispeech(root, textgrid_dir, progress=progress)
    if scan.skipped:
        first = scan.skipped[:3]
        listing = "; ".join(f"{s.id}: {s.reason}" for s in first)
        more = f" (and {len(scan.skipped) - len(first)} more)" if len(scan.skipped) > len(first) else ""
        message = f"{root}: {len(scan.skipped)} item(s) skipped: {listing}{more}"
        if strict:
            raise CorpusError(message)
        warnings.warn(message, stacklevel=2)
    return scan.utterances


def corpus_files_mtime(root: str | os.PathLike) -> int:
    """Newest modification time (ns) of the transcripts and chapter directories under ``root``.

    A chapter directory's mtime changes when files are added, removed or
    renamed in it (atomic writes rename), so this detects new audio/TextGrids.
    """
    root = Path(root)
    newest = 0
    for _speaker, _chapter, chapter_dir in _chapter_dirs(root):
        newest = max(newest, chapter_dir.stat().st_mtime_ns)
        for path in chapter_dir.glob("*.trans.txt"):
            newest = max(newest, path.stat().st_mtime_ns)
    return newest


def load_corpus(path: str | os.PathLike, progress: bool = False) -> list[Utterance]:
    """Utterances of a corpus: a LibriSpeech-layout directory or a manifest file.

    A directory's ``manifest.jsonl`` is used when it is at least as new as every
    transcript and chapter directory; otherwise the directory is rescanned
    (the manifest is not rewritten: use ``save_manifest`` or
    ``data_prep/index_librispeech.py``). A directory of splits (e.g. ``train/``,
    ``test_text/`` from ``asr-introspect synth``) raises ``CorpusError`` naming them.
    """
    path = Path(path)
    if path.is_file():
        return load_manifest(path)
    if not path.is_dir():
        raise CorpusError(f"{path}: corpus not found (pass a LibriSpeech-layout directory or a {MANIFEST_NAME} file)")
    manifest = path / MANIFEST_NAME
    if manifest.is_file() and manifest.stat().st_mtime_ns >= corpus_files_mtime(path):
        return load_manifest(manifest)
    splits = sorted(p.name for p in path.iterdir() if (p / MANIFEST_NAME).is_file())
    if splits and not any(path.glob("*/*/*.trans.txt")):
        raise CorpusError(
            f"{path}: holds the corpus splits {', '.join(splits)}; pass one of them, e.g. {path / splits[0]}"
        )
    return read_librispeech(path, progress=progress)
