"""experiments/real_speech_gap.py: silence and lexicon probes of the synthetic-to-real gap."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scripts import load_experiment

from asr_introspect.corpus import load_corpus
from asr_introspect.decoding import edit_distance, error_rates
from asr_introspect.models import build_model, save_checkpoint
from asr_introspect.training import evaluate

SR = 16000


@pytest.fixture(scope="module")
def gap():
    return load_experiment("real_speech_gap")


def tone_between_silences(before: float, speech: float, after: float) -> np.ndarray:
    t = np.arange(int(speech * SR)) / SR
    return np.concatenate([np.zeros(int(before * SR)), 0.5 * np.sin(2 * np.pi * 220 * t), np.zeros(int(after * SR))])


def test_silence_is_measured_cut_and_padded(gap):
    audio = tone_between_silences(0.3, 0.5, 0.2)
    before, after = gap.silence_seconds(audio, SR)
    assert before == pytest.approx(0.3, abs=0.011) and after == pytest.approx(0.2, abs=0.011)
    kept = gap.keep_silence(audio, SR, 0.05)
    assert len(kept) / SR == pytest.approx(0.6, abs=0.011)
    assert gap.silence_seconds(kept, SR)[0] == pytest.approx(0.05, abs=0.011)
    assert len(gap.keep_silence(audio, SR, 0.0)) / SR == pytest.approx(0.5, abs=0.011)
    padded = gap.pad_silence(audio, SR, 0.25)
    assert len(padded) == len(audio) + 2 * 4000 and not padded[:4000].any()
    assert gap.speech_bounds(np.zeros(800), SR) == (0, 800)  # all silent: nothing to cut


def test_edit_distances_equal_the_toolkits_edit_distance(gap):
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcd'"), rng.integers(0, 7))) for _ in range(200)]
    width = max(map(len, words))
    codes = np.zeros((len(words), width), dtype=np.uint8)
    for row, w in enumerate(words):
        codes[row, : len(w)] = list(w.encode())
    lengths = np.array([len(w) for w in words])
    for query in ["", "a", "abba", "dcab'd", "kitten"]:
        expected = [edit_distance(query, w) for w in words]
        assert gap.edit_distances(query, codes, lengths).tolist() == expected


def test_nearest_word_prefers_distance_then_count(gap):
    nearest = gap.NearestWord({"rabbit": 5, "ratio": 1, "rat": 3, "cat": 1, "bat": 5})
    assert nearest("ratit") == "ratio"  # one substitution beats the frequent words two edits away
    assert nearest("hat") == "bat"  # equal distance: the more frequent word
    assert nearest("rabbit") == "rabbit"
    assert nearest.correct("ratit hat rat") == "ratio bat rat"
    assert gap.NearestWord({"a": 1}, max_distance=1)("elephant") == "elephant"  # nothing near enough
    assert gap.word_counts(["A rat, a cat."]) == {"a": 2, "rat": 1, "cat": 1}


def test_the_script_reports_every_probe_against_the_baseline(gap, tiny_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gap, "fortune_sentences", lambda: ["the rat sat on the mat", "a cat and a bat"])
    synthetic = tmp_path / "synthetic"
    shutil.copytree(tiny_corpus.root, synthetic)
    save_checkpoint(tmp_path / "tiny.safetensors", build_model("tiny"))
    out = tmp_path / "out"
    argv = ["--model", str(tmp_path / "tiny.safetensors"), "--real", str(tiny_corpus.root), "--out", str(out)]
    assert gap.main([*argv, "--synthetic", str(synthetic), "--keep-ms", "0", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == json.loads((out / "real_speech_gap.json").read_text())
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    real, synth = report["sets"][str(tiny_corpus.root)], report["sets"][str(synthetic)]
    assert set(real["silence_edits"]) == {"pad_ms=300"} and set(synth["silence_edits"]) == {"keep_ms=0", "keep_ms=50"}
    model, _ = gap.load_model(str(tmp_path / "tiny.safetensors"))
    baseline = evaluate(model, load_corpus(tiny_corpus.root))
    assert real["baseline"]["cer"] == pytest.approx(baseline["cer"]) and real["baseline"]["utterances"] == 7
    nearest = gap.NearestWord(gap.word_counts(["the rat sat on the mat", "a cat and a bat"]))
    refs = [e["reference"] for e in baseline["examples"]]
    corrected = [nearest.correct(e["hypothesis"]) for e in baseline["examples"]]
    assert real["lexicon"]["fortunes"]["cer"] == pytest.approx(error_rates(refs, corrected)[0])
    assert report["vocabulary"] == {"fortunes": 9}
    assert real["silence_edits"]["pad_ms=300"]["utterances"] == 7
    assert real["silence"]["before"]["median"] >= 0 and len(real["examples"]) == 7


def test_bad_input_is_one_line_and_writes_nothing(gap, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    same = ["--real", str(tiny_corpus.root), "--synthetic", str(tiny_corpus.root), "--out", str(out)]
    assert gap.main(same) == 2
    assert "the same corpus twice" in capsys.readouterr().err and not out.exists()
    missing = ["--real", str(tmp_path / "nowhere"), "--synthetic", str(tiny_corpus.root), "--out", str(out)]
    assert gap.main(missing) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err and not out.exists()
