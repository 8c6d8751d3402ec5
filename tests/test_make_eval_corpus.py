"""data_prep/make_eval_corpus.py: a phone-labelled selection, and --add that keeps what is there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scripts import load_data_prep

from asr_introspect.audio import save_audio
from asr_introspect.corpus import load_corpus
from asr_introspect.corpus.textgrid import write_textgrid
from asr_introspect.corpus.utterance import PhoneSegment


@pytest.fixture(scope="module")
def make():
    return load_data_prep("make_eval_corpus")


def synthetic_split(root: Path, speakers: dict[str, int]) -> Path:
    """A LibriSpeech-layout split: ``speakers[id]`` one-second utterances each, all with phones."""
    rng = np.random.default_rng(0)
    for speaker, n in speakers.items():
        chapter = root / speaker / "0"
        chapter.mkdir(parents=True)
        lines = []
        for i in range(n):
            utt = f"{speaker}-0-{i:06d}"
            save_audio(chapter / f"{utt}.flac", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
            phones = [PhoneSegment("sil", 0.0, 0.2), PhoneSegment("ah", 0.2, 0.8), PhoneSegment("sil", 0.8, 1.0)]
            write_textgrid(chapter / f"{utt}.TextGrid", phones, xmax=1.0)
            lines.append(f"{utt} A")
        (chapter / f"{speaker}-0.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_add_keeps_the_corpus_and_takes_only_the_named_family(make, tmp_path, capsys):
    src = synthetic_split(tmp_path / "src", {"flite_kal_d100": 3, "festival_ked_d100": 3, "espeak_en_us_s145": 3})
    out = tmp_path / "eval"
    args = ["--src", str(src), "--out", str(out), "--max-mb", "5"]
    assert make.main([*args, "--utterances", "2", "--families", "flite"]) == 0
    first = snapshot(out)
    assert {u.speaker for u in load_corpus(out)} == {"flite_kal_d100"}

    assert make.main([*args, "--utterances", "2"]) == 2  # not empty, no --add: nothing touched
    assert "--add" in capsys.readouterr().err and snapshot(out) == first

    assert make.main([*args, "--utterances", "2", "--families", "espeak", "festival", "--add"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    after = load_corpus(out)
    assert summary["added"] == 2 and summary["utterances"] == len(after) == 4
    assert sorted({u.speaker for u in after}) == ["espeak_en_us_s145", "festival_ked_d100", "flite_kal_d100"]
    kept = snapshot(out)
    assert all(kept[name] == data for name, data in first.items() if name != "manifest.jsonl")
    assert {json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()} == {
        u.id for u in after
    }

    # adding to a speaker already there appends to its transcript file; ids already there are never taken twice
    assert make.main([*args, "--utterances", "1", "--families", "flite", "--add"]) == 0
    flite = sorted(u.id for u in load_corpus(out) if u.speaker == "flite_kal_d100")
    assert len(flite) == 3 == len(set(flite))
    assert make.main([*args, "--utterances", "1", "--families", "flite", "--add"]) == 2  # none left
    assert "only 0 utterances" in capsys.readouterr().err
