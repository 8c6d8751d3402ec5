"""Reader for the LibriSpeech layout, the corpus interchange format.

Layout: ``ROOT/SPEAKER/CHAPTER/UTTID.flac`` (or ``.wav``) plus one
``ROOT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` per chapter with lines
``UTTID TEXT``. Phone alignments are optional: ``UTTID.TextGrid`` beside the
audio, or in a separate ``textgrid_dir`` laid out like Montreal Forced
Aligner output (``SPEAKER/UTTID.TextGrid``, ``SPEAKER/CHAPTER/UTTID.TextGrid``
or flat).

Problems with single utterances do not stop the scan: audio without a
transcript line, a transcript line without audio, a duplicate id, a
transcript outside the alphabet, an unreadable or truncated audio header, a
bad TextGrid (reversed or overlapping intervals, intervals past the audio's
end) are collected as :class:`~.validation.Skipped` records with reasons
naming the file and line. Transcripts are normalized by the one policy of
:mod:`.validation` (``normalize_text``), the same as for manifests. See
:func:`load_corpus` for the report and ``strict`` mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from asr_introspect.audio import audio_info
from asr_introspect.errors import CorpusError, InputError
from asr_introspect.text import Alphabet

from .manifest import load_manifest
from .textgrid import END_TOLERANCE, TextGridError, read_textgrid
from .utterance import PhoneSegment, Utterance
from .validation import Candidate, Corpus, CorpusReport, Normalized, Skipped, finish, validate

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
_LAYOUT = " (expected the LibriSpeech layout SPEAKER/CHAPTER/UTTID.flac + SPEAKER-CHAPTER.trans.txt)"


@dataclass
class CorpusScan:
    """Result of a scan: ``utterances`` (sorted by id), ``skipped`` and ``normalized`` records."""

    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    normalized: list[Normalized] = field(default_factory=list)
    source: Path | None = None

    @property
    def report(self) -> CorpusReport:
        """The scan's :class:`CorpusReport` (shares the lists)."""
        return CorpusReport(self.source, self.skipped, self.normalized)

    def skipped_by_reason(self) -> dict[str, int]:
        """Counts of skipped items per reason kind (the text before the first ' (' detail)."""
        return self.report.skipped_by_reason()


def _chapter_dirs(root: Path) -> Iterator[tuple[str, str, Path]]:
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for chapter_dir in sorted(p for p in speaker_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield speaker_dir.name, chapter_dir.name, chapter_dir


def _read_transcripts(path: Path, report: CorpusReport) -> dict[str, tuple[str, int]]:
    """``{utt_id: (raw text, line number)}`` of one trans.txt; repeated ids are skipped."""
    out: dict[str, tuple[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        report.skip(None, path, f"unreadable transcript file ({exc}; save it as UTF-8 text)")
        return out
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        utt_id = parts[0]
        text = parts[1] if len(parts) > 1 else ""
        if utt_id in out:
            report.skip(
                utt_id,
                path,
                f"duplicate id (also at {path} line {out[utt_id][1]}; give each utterance its own id)",
                number,
            )
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
    alphabet: Alphabet | None = None,
    end_tolerance: float = END_TOLERANCE,
) -> CorpusScan:
    """Scan a LibriSpeech-layout directory and validate it; see the module docstring.

    ``durations``: read each audio header for its duration (fast; no samples;
    also finds truncated WAV files and lets TextGrids be checked against the
    audio's end, within ``end_tolerance`` seconds). ``alphabet``: what
    transcripts must normalize into (default: ``Alphabet.default()``).
    Raises ``CorpusError`` when ``root`` (or ``textgrid_dir``) is not a
    directory or no usable utterance is left; single bad utterances are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus directory not found{_LAYOUT}")
    tg_index: dict[str, list[Path]] = {}
    if textgrid_dir is not None:
        textgrid_dir = Path(textgrid_dir)
        if not textgrid_dir.is_dir():
            raise CorpusError(f"{textgrid_dir}: TextGrid directory not found")
        tg_index = _textgrid_index(textgrid_dir)

    report = CorpusReport(root)
    candidates: list[Candidate] = []
    chapters = list(_chapter_dirs(root))
    for speaker, chapter, chapter_dir in tqdm(chapters, desc="scanning", unit="chapter", disable=not progress):
        trans_path = chapter_dir / f"{speaker}-{chapter}.trans.txt"
        files = sorted(chapter_dir.iterdir())
        audio: dict[str, Path] = {}
        for path in files:
            if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("."):
                if path.stem in audio:
                    report.skip(
                        path.stem,
                        path,
                        f"second audio file for the same id (using {audio[path.stem].name}; remove one of them)",
                    )
                    continue
                audio[path.stem] = path
        for path in files:
            if path.name.endswith(".trans.txt") and path != trans_path:
                report.skip(
                    None, path, f"transcript file with an unexpected name (expected {trans_path.name}; rename it)"
                )
        if not trans_path.is_file():
            for utt_id, path in sorted(audio.items()):
                report.skip(utt_id, path, f"no transcript line (missing {trans_path}; write the transcript file)")
            continue
        transcripts = _read_transcripts(trans_path, report)
        for utt_id in sorted(set(transcripts) - set(audio), key=lambda i: transcripts[i][1]):
            report.skip(
                utt_id,
                trans_path,
                f"transcript line without audio (no {utt_id}.flac or .wav in {chapter_dir}; "
                "restore the audio or delete the line)",
                transcripts[utt_id][1],
            )
        for utt_id in sorted(audio):
            path = audio[utt_id]
            if utt_id not in transcripts:
                report.skip(
                    utt_id,
                    path,
                    f"no transcript line (audio without a line in {trans_path}; add the line or remove the audio)",
                )
                continue
            raw, number = transcripts[utt_id]
            duration = None
            if durations:
                try:
                    rate, frames, _ = audio_info(path)
                    duration = frames / rate
                except InputError as exc:
                    detail = str(exc).removeprefix(f"{path}: ")
                    report.skip(utt_id, path, f"unreadable audio ({detail})")
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
                    phones = tuple(read_textgrid(tg_path, duration=duration, tolerance=end_tolerance))
                except TextGridError as exc:
                    report.skip(utt_id, tg_path, f"bad TextGrid ({exc.detail})", exc.line)
                    continue
                except CorpusError as exc:
                    report.skip(utt_id, tg_path, f"bad TextGrid ({exc})")
                    continue
            candidates.append(
                Candidate(utt_id, speaker, path, raw, trans_path, number, phones, duration, tg_path, None)
            )
    utterances = validate(candidates, report, alphabet=alphabet, end_tolerance=end_tolerance)
    seen = {u.id for u in utterances} | {c.id for c in candidates} | {s.id for s in report.skipped}
    for stem in sorted(set(tg_index) - seen):
        report.skip(
            stem,
            tg_index[stem][0],
            "TextGrid without an utterance (no audio or transcript with this id under the corpus root)",
        )
    utterances = finish(utterances, report, hint=_LAYOUT)
    return CorpusScan(sorted(utterances, key=lambda u: u.id), report.skipped, report.normalized, root)


def read_librispeech(
    root: str | os.PathLike,
    textgrid_dir: str | os.PathLike | None = None,
    strict: bool = False,
    progress: bool = False,
    alphabet: Alphabet | None = None,
) -> Corpus:
    """Utterances of a LibriSpeech-layout directory (sorted by id), with ``.report``; see the module docstring.

    Skipped items and normalized transcripts are listed in the returned
    :class:`~.validation.Corpus`'s ``report`` (no warnings); ``strict=True``
    raises ``CorpusError`` naming the first skipped item's file and line instead.
    """
    scan = scan_librispeech(root, textgrid_dir, progress=progress, alphabet=alphabet)
    return finish(scan.utterances, scan.report, strict=strict, hint=_LAYOUT)


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


def load_corpus(
    path: str | os.PathLike, progress: bool = False, strict: bool = False, alphabet: Alphabet | None = None
) -> Corpus:
    """Validated utterances of a corpus: a LibriSpeech-layout directory or a manifest file.

    Returns a :class:`~.validation.Corpus`: a ``list`` of :class:`Utterance`
    whose ``.report`` (:class:`~.validation.CorpusReport`) lists every skipped
    item with its reason, file and line, and every transcript that
    normalization changed (``report.to_dict()`` for JSON). Both layouts go
    through the same validation pass (:mod:`.validation`). ``strict=True``
    turns the first skip into a ``CorpusError`` naming its file and line; a
    corpus without a usable utterance is always a ``CorpusError``.
    ``alphabet``: what transcripts must normalize into (default: the toolkit's).

    A directory's ``manifest.jsonl`` is used when it is at least as new as every
    transcript and chapter directory; otherwise the directory is rescanned
    (the manifest is not rewritten: use ``save_manifest`` or
    ``data_prep/index_librispeech.py``). A directory of splits (e.g. ``train/``,
    ``test_text/`` from ``asr-introspect synth``) raises ``CorpusError`` naming them.
    """
    path = Path(path)
    if path.is_file():
        return load_manifest(path, strict=strict, alphabet=alphabet)
    if not path.is_dir():
        raise CorpusError(f"{path}: corpus not found (pass a LibriSpeech-layout directory or a {MANIFEST_NAME} file)")
    manifest = path / MANIFEST_NAME
    if manifest.is_file() and manifest.stat().st_mtime_ns >= corpus_files_mtime(path):
        return load_manifest(manifest, strict=strict, alphabet=alphabet)
    splits = sorted(p.name for p in path.iterdir() if (p / MANIFEST_NAME).is_file())
    if splits and not any(path.glob("*/*/*.trans.txt")):
        raise CorpusError(
            f"{path}: holds the corpus splits {', '.join(splits)}; pass one of them, e.g. {path / splits[0]}"
        )
    return read_librispeech(path, strict=strict, progress=progress, alphabet=alphabet)
