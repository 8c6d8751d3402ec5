"""Shared test fixtures: a tiny LibriSpeech-layout corpus built from tones and noise.

``tiny_corpus`` (session-scoped, read only) and ``tiny_corpus_factory`` (build
your own under a directory, e.g. ``tmp_path``) give a :class:`TinyCorpus`:
its ``root`` and the ``expected`` utterance records (sorted by id) that a
correct reader must return. Audio is written with soundfile directly, and
TextGrids as literal text, so the fixture does not depend on the code under test.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

#: (speaker, chapter, index, raw transcript, normalized text, seconds, MFA phone intervals or None)
#: Intervals are (start, end, label) with MFA labels; "" and "sp" are silences, "spn" noise.
TINY_UTTERANCES = (
    (
        "19",
        "198",
        0,
        "HELLO WORLD",
        "hello world",
        0.90,
        [
            (0.0, 0.1, ""),
            (0.1, 0.2, "HH"),
            (0.2, 0.3, "AH0"),
            (0.3, 0.4, "L"),
            (0.4, 0.5, "OW1"),
            (0.5, 0.55, "sp"),
            (0.55, 0.6, ""),
            (0.6, 0.7, "W"),
            (0.7, 0.8, "ER1"),
            (0.8, 0.85, "L"),
            (0.85, 0.9, "D"),
        ],
    ),
    ("19", "198", 1, "IT'S A TONE", "it's a tone", 0.50, None),
    (
        "19",
        "227",
        2,
        "Numbers: 2 dogs!",
        "numbers two dogs",
        1.25,
        [
            (0.0, 0.2, "sil"),
            (0.2, 0.3, "N"),
            (0.3, 0.4, "AH1"),
            (0.4, 0.5, "M"),
            (0.5, 0.6, "B"),
            (0.6, 0.7, "ER0"),
            (0.7, 0.8, "Z"),
            (0.8, 0.9, "spn"),
            (0.9, 1.0, "D"),
            (1.0, 1.1, "AO1"),
            (1.1, 1.2, "G"),
            (1.2, 1.25, "Z"),
        ],
    ),
    ("84", "121", 3, "HELLO WORLD", "hello world", 0.70, None),
    ("84", "121", 4, "SILENCE IS GOLDEN", "silence is golden", 1.50, None),
    ("103", "1240", 5, "A LONGER TONE FOR BUCKETING", "a longer tone for bucketing", 2.00, None),
    ("103", "1240", 6, "IT'S A TONE", "it's a tone", 0.35, None),
)

#: MFA label -> expected phone (silences merged, noise dropped)
_EXPECTED_LABEL = {"": "sil", "sil": "sil", "sp": "sil", "spn": None}


@dataclass
class TinyCorpus:
    """A corpus on disk (``root``) and the records a reader must return (``expected``)."""

    root: Path
    expected: list = field(default_factory=list)
    sample_rate: int = 16000

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self.expected]


def _utt_id(speaker: str, chapter: str, index: int) -> str:
    return f"{speaker}-{chapter}-{index:04d}"


def _signal(index: int, seconds: float, sample_rate: int) -> np.ndarray:
    rng = np.random.default_rng(index)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * (220.0 + 110.0 * index) * t)
    return (tone + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def _textgrid_text(intervals, xmax: float) -> str:
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {xmax}",
        "tiers? <exists>",
        "size = 2",
        "item []:",
        "    item [1]:",
        '        class = "IntervalTier"',
        '        name = "words"',
        "        xmin = 0",
        f"        xmax = {xmax}",
        "        intervals: size = 1",
        "        intervals [1]:",
        "            xmin = 0",
        f"            xmax = {xmax}",
        '            text = "words here"',
        "    item [2]:",
        '        class = "IntervalTier"',
        '        name = "phones"',
        "        xmin = 0",
        f"        xmax = {xmax}",
        f"        intervals: size = {len(intervals)}",
    ]
    for i, (start, end, label) in enumerate(intervals, 1):
        lines += [
            f"        intervals [{i}]:",
            f"            xmin = {start}",
            f"            xmax = {end}",
            f'            text = "{label}"',
        ]
    return "\n".join(lines) + "\n"


def expected_phones(intervals):
    """The ``PhoneSegment`` s a reader must make of MFA ``intervals`` (module rule)."""
    from asr_introspect.corpus import PhoneSegment

    out = []
    for start, end, label in intervals:
        phone = _EXPECTED_LABEL[label] if label in _EXPECTED_LABEL else label.rstrip("012").lower()
        if phone is None:
            continue
        if out and phone == "sil" and out[-1].phone == "sil" and out[-1].end == start:
            out[-1] = PhoneSegment("sil", out[-1].start, end)
        else:
            out.append(PhoneSegment(phone, start, end))
    return tuple(out)


def build_tiny_corpus(
    root: Path, audio_format: str = "flac", textgrids_beside_audio: bool = True, sample_rate: int = 16000
) -> TinyCorpus:
    """Write the ``TINY_UTTERANCES`` corpus under ``root`` and return it with the expected records."""
    from asr_introspect.corpus import Utterance

    root = Path(root)
    corpus = TinyCorpus(root=root, sample_rate=sample_rate)
    chapters: dict[Path, list[str]] = {}
    for speaker, chapter, index, raw, text, seconds, intervals in TINY_UTTERANCES:
        utt_id = _utt_id(speaker, chapter, index)
        chapter_dir = root / speaker / chapter
        chapter_dir.mkdir(parents=True, exist_ok=True)
        audio_path = chapter_dir / f"{utt_id}.{audio_format}"
        signal = _signal(index, seconds, sample_rate)
        sf.write(str(audio_path), signal, sample_rate, subtype="PCM_16")
        chapters.setdefault(chapter_dir, []).append(f"{utt_id} {raw}")
        phones = None
        if intervals is not None:
            if textgrids_beside_audio:
                (chapter_dir / f"{utt_id}.TextGrid").write_text(_textgrid_text(intervals, seconds))
            phones = expected_phones(intervals)
        corpus.expected.append(Utterance(utt_id, speaker, audio_path, text, phones, len(signal) / sample_rate))
    for chapter_dir, lines in chapters.items():
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    corpus.expected.sort(key=lambda u: u.id)
    return corpus


def write_mfa_textgrids(directory: Path, layout: str = "speaker") -> dict[str, Path]:
    """MFA-style TextGrids for the fixture's aligned utterances under ``directory``.

    ``layout``: ``"speaker"`` (``SPEAKER/UTTID.TextGrid``), ``"mirror"``
    (``SPEAKER/CHAPTER/UTTID.TextGrid``) or ``"flat"``. Returns id -> path.
    """
    paths = {}
    for speaker, chapter, index, _raw, _text, seconds, intervals in TINY_UTTERANCES:
        if intervals is None:
            continue
        utt_id = _utt_id(speaker, chapter, index)
        sub = {"speaker": Path(speaker), "mirror": Path(speaker) / chapter, "flat": Path()}[layout]
        path = Path(directory) / sub / f"{utt_id}.TextGrid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_textgrid_text(intervals, seconds))
        paths[utt_id] = path
    return paths


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> TinyCorpus:
    """A read-only tiny LibriSpeech-layout corpus (7 utterances, 3 speakers, FLAC, TextGrids)."""
    return build_tiny_corpus(tmp_path_factory.mktemp("tiny_corpus") / "LibriSpeech")


@pytest.fixture
def tiny_corpus_factory(tmp_path):
    """``factory(**kwargs) -> TinyCorpus``: a fresh, modifiable copy under ``tmp_path`` (see build_tiny_corpus)."""
    counter = iter(range(1000))

    def factory(**kwargs) -> TinyCorpus:
        return build_tiny_corpus(tmp_path / f"corpus{next(counter)}", **kwargs)

    return factory


@pytest.fixture
def mfa_textgrids():
    """``write_mfa_textgrids(directory, layout)`` for tests that need an MFA output directory."""
    return write_mfa_textgrids


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions run faster on one torch thread (and do not fight other processes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``flite`` when the flite binary is absent."""
    if shutil.which("flite") is not None:
        return
    skip = pytest.mark.skip(reason="flite is not installed (apt-get install flite)")
    for item in items:
        if "flite" in item.keywords:
            item.add_marker(skip)
