"""data_prep/real_dev_set.py: texts come from the packages' own files, the layout is LibriSpeech's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scripts import load_data_prep

from asr_introspect.corpus import load_corpus
from asr_introspect.errors import InputError


@pytest.fixture(scope="module")
def real_dev_set():
    yield load_data_prep("real_dev_set")
    sys.modules.pop("real_dev_set", None)


def tone(path: Path, seconds: float, rate: int, fmt: str, channels: int = 1) -> None:
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 300 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.repeat(audio[:, None], channels, axis=1), rate, format=fmt)


@pytest.fixture
def fake_packages(tmp_path):
    """A miniature of the packages' file trees, with the quirks the script must handle."""
    alsa = tmp_path / "alsa"
    for name in ("Front_Left", "Rear_Center", "Noise"):
        tone(alsa / f"{name}.wav", 1.0, 48000, "WAV", channels=2)
    stamps = tmp_path / "stamps"
    for stem, text in {
        "animals/frog": "A frog.\nfr.utf8=Une grenouille.",
        "animals/nandou": "A rhea.",  # reworded after the recording: skipped
        "animals/mountaingoat": "A mountaingoat.",
        "animals/wallaby": None,  # no description file: skipped
    }.items():
        tone(stamps / f"{stem}_desc.ogg", 0.8, 44100, "OGG")
        tone(stamps / f"{stem}_desc_fr.ogg", 0.8, 44100, "OGG")  # another language: never read
        if text is not None:
            (stamps / f"{stem}.txt").write_text(text + "\n")
    math = tmp_path / "math"
    tone(math / "7_en_GB.ogg", 0.7, 8000, "OGG")
    (math / "7.txt").write_text("Seven.\nde.utf8=Sieben.\nen_GB.utf8=Seven.\n")
    klettres = tmp_path / "klettres"
    for name in ("car", "th"):
        tone(klettres / "en" / "syllab" / f"{name}.ogg", 0.5, 44100, "OGG")
    tone(klettres / "en" / "alpha" / "A.ogg", 0.5, 44100, "OGG")
    (klettres / "en" / "sounds.xml").write_text(
        '<klettres><language code="en"><alphabet><sound name="A" file="en/alpha/A.ogg" /></alphabet>'
        '<syllables><sound name="CAR" file="en/syllab/car.ogg" /><sound name="TH" file="en/syllab/th.ogg" />'
        "</syllables></language></klettres>"
    )
    return {
        "alsa": alsa,
        "tuxpaint": stamps,
        "tuxpaint_gb": math,
        "klettres": klettres / "en",
        "klettres_gb": tmp_path / "absent",
    }


def test_builds_a_librispeech_corpus_with_provenance(real_dev_set, fake_packages, tmp_path):
    out = tmp_path / "dev"
    summary = real_dev_set.build(out, roots=fake_packages)
    utts = load_corpus(out)
    texts = {u.speaker: sorted(x.text for x in utts if x.speaker == u.speaker) for u in utts}
    assert texts == {
        "alsa": ["front left", "rear center"],
        "tuxpaint": ["a frog", "a mountain goat"],
        "tuxpaint_gb": ["seven"],
        "klettres": ["car"],
    }
    assert summary["utterances"] == 6 and summary["speakers"] == 4
    assert summary["sources"]["klettres_gb"] == {"utterances": 0, "missing": "apt-get install klettres-data"}
    for utt in utts:
        info = sf.info(str(utt.audio_path))
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        assert utt.audio_path.parent == out / utt.speaker / "0"
    seconds = {u.text: u.duration for u in utts}
    assert seconds["front left"] == pytest.approx(1.0, abs=1e-3) and seconds["seven"] == pytest.approx(0.7, abs=1e-3)
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in provenance) == sorted(u.id for u in utts)
    frog = next(p for p in provenance if p["transcript"] == "a frog")
    assert frog["source"].endswith("animals/frog_desc.ogg") and frog["text_given"] == "A frog."
    assert frog["licence"] == "GPL-2" and frog["package"] == "tuxpaint-stamps-default" and len(frog["sha256"]) == 64
    assert summary["seconds"] == pytest.approx(sum(p["seconds"] for p in provenance), abs=0.01)


def test_no_package_installed_is_a_one_line_error(real_dev_set, tmp_path):
    roots = {s: tmp_path / "none" for s in real_dev_set.SOURCES}
    with pytest.raises(InputError, match="apt-get install alsa-utils klettres-data tuxpaint-stamps-default"):
        real_dev_set.build(tmp_path / "out", roots=roots)


def test_names_its_file(real_dev_set):
    assert real_dev_set.names_its_file("An hippopotamus.", "hippopotamus")
    assert real_dev_set.names_its_file("A mountaingoat.", "mountaingoat")
    assert not real_dev_set.names_its_file("A red kangaroo.", "kangaroo")
    assert not real_dev_set.names_its_file("A rhea.", "nandou")


@pytest.mark.skipif(not Path("/usr/share/sounds/alsa/Front_Left.wav").is_file(), reason="alsa-utils not installed")
def test_installed_alsa_prompts(real_dev_set, tmp_path):
    summary = real_dev_set.build(tmp_path / "dev", sources=["alsa"])
    assert summary["sources"]["alsa"]["utterances"] == 8
    assert {u.text.split()[0] for u in load_corpus(tmp_path / "dev")} == {"front", "rear", "side"}
