#!/usr/bin/env python3
"""Build a small development set of *real* English speech from recordings that Debian packages ship.

Never train on it: it exists to check that a model trained on synthetic
voices hears people. It is small (a few hundred seconds, short phrases and
single words), so treat its error rates as a sanity check, not a benchmark.

Sources (each: the package, where the recording is, where its text comes from):

- ``alsa``: ``alsa-utils`` (GPL-2), ``/usr/share/sounds/alsa/*.wav``, the voice
  prompts of ``speaker-test`` ("Front Left", ...); the text is the file name
  (``Front_Left`` -> "front left"); ``Noise.wav`` is noise and is skipped.
- ``tuxpaint``: ``tuxpaint-stamps-default`` (GPL-2), every ``NAME_desc.ogg``
  (the English spoken description of a stamp) whose ``NAME.txt`` exists; the
  text is the first line of ``NAME.txt`` (Tux Paint's English description),
  kept only when it names the file: the description without its article
  equals ``NAME`` ("A frog." for ``frog_desc.ogg``). Descriptions were
  reworded after some recordings were made: the default model heard "nen do"
  for ``nandou_desc.ogg`` described as "A rhea.", and the recordings of
  "A red kangaroo." (``kangaroo``), "Two wild boars." (``wildboar``), "A
  chimpanzee." (``chimp``) or "A brown hen." (``hen``) may say less or
  other words; those are skipped (:func:`names_its_file`). "mountaingoat"
  is respelled as read (:data:`RESPELLINGS`).
- ``tuxpaint_gb``: the same package, ``symbols/math/N_en_GB.ogg``: the digits
  zero to nine in British English; the text is the ``en_GB.utf8=`` line of
  ``N.txt``.
- ``klettres``, ``klettres_gb``: ``klettres-data`` (GPL-2+), the ``syllables``
  of ``/usr/share/klettres/en*/sounds.xml`` (American and British English
  speakers): the text is the entry's ``name``. Entries that are letter
  sounds rather than words (:data:`KLETTRES_NOT_WORDS`: "aw", "ch", "th") and
  the spelled alphabet (letter names, whose transcript is ambiguous) are
  skipped.

Checked and not used: ``gcompris-qt-data`` (its voices are downloaded at run
time, the package ships none); Tux Paint's ``*_en_GB.ogg`` letter stamps
(their recordings say the letter name, whose spelling is ambiguous).

Layout (LibriSpeech): ``OUT/SPEAKER/0/SPEAKER-0-NNNN.flac`` (16 kHz mono,
resampled with ``scipy.signal.resample_poly``, channels averaged) and
``OUT/SPEAKER/0/SPEAKER-0.trans.txt``; ``OUT/provenance.jsonl``: one line per
utterance (id, package, package version, source file, its sha256, licence,
where the text came from, the text as given); ``OUT/real_dev_set.json``: the
summary (utterances, seconds, speakers, sources found and missing).

Speakers: one id per source (``alsa``, ``tuxpaint``, ``tuxpaint_gb``,
``klettres``, ``klettres_gb``). The packages do not say who spoke, so a
source may hold several people (Tux Paint's descriptions come at 44.1 and
8 kHz and probably from more than one volunteer).

    python data_prep/real_dev_set.py --out data/real_dev
    asr-introspect eval --data data/real_dev
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from asr_introspect.audio import save_audio
from asr_introspect.errors import InputError
from asr_introspect.io import save_json, write_text_atomic
from asr_introspect.text import normalize_transcript

SAMPLE_RATE = 16000
CHAPTER = "0"
SOURCES = ("alsa", "tuxpaint", "tuxpaint_gb", "klettres", "klettres_gb")
#: source -> (Debian package, licence)
PACKAGES = {
    "alsa": ("alsa-utils", "GPL-2"),
    "tuxpaint": ("tuxpaint-stamps-default", "GPL-2"),
    "tuxpaint_gb": ("tuxpaint-stamps-default", "GPL-2"),
    "klettres": ("klettres-data", "GPL-2+"),
    "klettres_gb": ("klettres-data", "GPL-2+"),
}
#: where each source lives on a Debian system (tests pass other roots)
DEFAULT_ROOTS = {
    "alsa": Path("/usr/share/sounds/alsa"),
    "tuxpaint": Path("/usr/share/tuxpaint/stamps"),
    "tuxpaint_gb": Path("/usr/share/tuxpaint/stamps/symbols/math"),
    "klettres": Path("/usr/share/klettres/en"),
    "klettres_gb": Path("/usr/share/klettres/en_GB"),
}
#: words of a Tux Paint description written differently from how they are read
RESPELLINGS = {"mountaingoat": "mountain goat"}
#: KLettres syllables that are letter sounds, not words
KLETTRES_NOT_WORDS = frozenset({"aw", "ch", "th"})


@dataclass(frozen=True)
class Recording:
    """One recording with its text: ``source`` (a key of SOURCES), ``path``, ``text`` (as the package gives
    it), ``text_from`` (where the text was read)."""

    source: str
    path: Path
    text: str
    text_from: str


def alsa_recordings(root: Path) -> Iterator[Recording]:
    for path in sorted(root.glob("*.wav")):
        if path.stem.lower() == "noise":
            continue
        yield Recording("alsa", path, path.stem.replace("_", " "), f"file name {path.name}")


def names_its_file(text: str, name: str) -> bool:
    """Whether ``text`` without a leading article, letters only, equals the file ``name``'s letters."""
    words = normalize_transcript(text).split()
    if words and words[0] in ("a", "an", "the"):
        words = words[1:]
    return bool(words) and "".join(words) == re.sub(r"[^a-z]", "", name.lower())


def tuxpaint_recordings(root: Path) -> Iterator[Recording]:
    for path in sorted(root.rglob("*_desc.ogg")):
        description = path.with_name(path.name[: -len("_desc.ogg")] + ".txt")
        if not description.is_file():
            continue
        lines = description.read_text(encoding="utf-8", errors="replace").splitlines()
        if lines and names_its_file(lines[0], description.stem):
            yield Recording("tuxpaint", path, lines[0].strip(), f"first line of {description}")


def tuxpaint_gb_recordings(root: Path) -> Iterator[Recording]:
    for path in sorted(root.glob("*_en_GB.ogg")):
        description = path.with_name(path.name[: -len("_en_GB.ogg")] + ".txt")
        if not description.is_file():
            continue
        for line in description.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("en_GB.utf8="):
                yield Recording("tuxpaint_gb", path, line.split("=", 1)[1].strip(), f"en_GB line of {description}")
                break


def klettres_recordings(root: Path, source: str) -> Iterator[Recording]:
    sounds = root / "sounds.xml"
    if not sounds.is_file():
        return
    tree = ET.parse(sounds)
    base = root.parent
    for language in tree.getroot().iter("language"):
        if f"{language.get('code')}" != root.name:
            continue
        for syllables in language.iter("syllables"):
            for sound in syllables.iter("sound"):
                path = base / sound.get("file", "")
                name = sound.get("name", "").strip()
                if path.is_file() and name and name.lower() not in KLETTRES_NOT_WORDS:
                    yield Recording(source, path, name, f"syllable name in {sounds}")


def find_recordings(roots: dict[str, Path], sources: Sequence[str] = SOURCES) -> dict[str, list[Recording]]:
    """Recordings per source found under ``roots`` (a source whose root is missing gives none)."""
    found: dict[str, list[Recording]] = {}
    for source in sources:
        root = roots[source]
        if not root.is_dir():
            found[source] = []
        elif source == "alsa":
            found[source] = list(alsa_recordings(root))
        elif source == "tuxpaint":
            found[source] = list(tuxpaint_recordings(root))
        elif source == "tuxpaint_gb":
            found[source] = list(tuxpaint_gb_recordings(root))
        else:
            found[source] = list(klettres_recordings(root, source))
    return found


def transcript(text: str) -> str:
    """The normalized transcript of a package's text, with :data:`RESPELLINGS` applied."""
    words = normalize_transcript(text).split()
    return normalize_transcript(" ".join(RESPELLINGS.get(w, w) for w in words))


def read_mono_16k(path: Path) -> np.ndarray:
    """float32 (N,) at 16 kHz: channels averaged, resampled with a polyphase filter."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = int(np.gcd(int(rate), SAMPLE_RATE))
        audio = resample_poly(audio, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def package_version(package: str) -> str | None:
    """The installed version of a Debian package (None when dpkg-query cannot tell)."""
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def build(out: str | Path, roots: dict[str, Path] | None = None, sources: Sequence[str] = SOURCES) -> dict:
    """Write the development set into ``out`` (LibriSpeech layout); returns the summary.

    ``InputError`` when no source has a recording (naming the packages to install).
    """
    out = Path(out)
    roots = {**DEFAULT_ROOTS, **(roots or {})}
    found = find_recordings(roots, sources)
    if not any(found.values()):
        packages = sorted({PACKAGES[s][0] for s in sources})
        raise InputError(
            f"no recordings found under {', '.join(str(roots[s]) for s in sources)}: "
            f"apt-get install {' '.join(packages)}"
        )
    versions = {s: package_version(PACKAGES[s][0]) for s in sources if found[s]}
    provenance, summary_sources, total_seconds = [], {}, 0.0
    for source in sources:
        recordings = found[source]
        if not recordings:
            summary_sources[source] = {"utterances": 0, "missing": f"apt-get install {PACKAGES[source][0]}"}
            continue
        speaker = source
        chapter_dir = out / speaker / CHAPTER
        chapter_dir.mkdir(parents=True, exist_ok=True)
        lines, seconds = [], 0.0
        for n, recording in enumerate(recordings):
            utt_id = f"{speaker}-{CHAPTER}-{n:04d}"
            text = transcript(recording.text)
            if not text:
                continue
            audio = read_mono_16k(recording.path)
            save_audio(chapter_dir / f"{utt_id}.flac", audio, SAMPLE_RATE)
            seconds += len(audio) / SAMPLE_RATE
            lines.append(f"{utt_id} {text.upper()}\n")
            provenance.append(
                {
                    "id": utt_id,
                    "package": PACKAGES[source][0],
                    "version": versions.get(source),
                    "licence": PACKAGES[source][1],
                    "source": str(recording.path),
                    "sha256": hashlib.sha256(recording.path.read_bytes()).hexdigest(),
                    "text_from": recording.text_from,
                    "text_given": recording.text,
                    "transcript": text,
                    "seconds": round(len(audio) / SAMPLE_RATE, 3),
                }
            )
        write_text_atomic(chapter_dir / f"{speaker}-{CHAPTER}.trans.txt", "".join(lines))
        summary_sources[source] = {
            "utterances": len(lines),
            "seconds": round(seconds, 2),
            "package": PACKAGES[source][0],
            "version": versions.get(source),
        }
        total_seconds += seconds
    write_text_atomic(out / "provenance.jsonl", "".join(json.dumps(p) + "\n" for p in provenance))
    summary = {
        "out": str(out),
        "utterances": len(provenance),
        "seconds": round(total_seconds, 2),
        "speakers": sum(1 for s in summary_sources.values() if s["utterances"]),
        "sources": summary_sources,
        "words": sum(len(p["transcript"].split()) for p in provenance),
    }
    save_json(out / "real_dev_set.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (LibriSpeech layout)")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES), help="which sources to use")
    args = parser.parse_args(argv)
    try:
        summary = build(args.out, sources=args.sources)
    except InputError as exc:
        print(f"real_dev_set.py: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
