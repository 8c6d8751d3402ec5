"""experiments/compare_architectures.py: the NAP layer trend of two architectures side by side."""

from __future__ import annotations

import json

import numpy as np
from scripts import load_experiment

from asr_introspect.corpus import load_corpus
from asr_introspect.models import build_model, save_checkpoint
from asr_introspect.models.conformer import build_conformer
from asr_introspect.naps import NAPEstimator, layer_quality
from asr_introspect.workflows.compare import compare_architectures


def test_compare_two_architectures(tmp_path, tiny_corpus):
    utterances = load_corpus(tiny_corpus.root)
    models = {"conv": build_model("tiny").eval(), "conformer": build_conformer("conformer-tiny").eval()}
    report = compare_architectures(models, utterances, tmp_path, window=16, min_count=1)
    assert set(report["models"]) == {"conv", "conformer"}
    conformer = report["models"]["conformer"]
    assert [r["layer"] for r in conformer["phoneme"]] == [n for n in models["conformer"].layer_names if n != "ctc"]
    assert conformer["phoneme"][0]["depth"] == 0.0 and conformer["phoneme"][-1]["depth"] == 1.0
    # the trend is layer_quality of the NAPs, not a re-implementation
    naps = NAPEstimator("phoneme", ["block1"]).fit(models["conformer"], utterances).result()
    row = next(r for r in conformer["phoneme"] if r["layer"] == "block1")
    np.testing.assert_allclose(row["specificity"], layer_quality(naps, "block1").specificity)
    assert (tmp_path / "layer_trend.png").stat().st_size > 0 and (tmp_path / "patterns_conformer.npz").exists()


def test_the_script_writes_all_or_nothing(tmp_path, tiny_corpus, capsys):
    script = load_experiment("compare_architectures")
    save_checkpoint(tmp_path / "conv.safetensors", build_model("tiny"))
    out = tmp_path / "out"
    argv = ["--model", f"conv={tmp_path / 'conv.safetensors'}", "--data", str(tiny_corpus.root), "--out", str(out)]
    assert script.main([*argv, "--window", "16", "--min-count", "1", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip()) == {"conv": "wav2letter"}
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert script.main(["--model", "conv", "--out", str(tmp_path / "bad")]) == 2
    assert "NAME=PATH" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    speakers = ["--speakers", "no_such_voice_*", "--quiet"]
    assert script.main([*argv[:-1], str(tmp_path / "none"), *speakers]) == 2
    assert "no_such_voice_*" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_the_script_keeps_only_the_speakers_asked_for(tmp_path, tiny_corpus, capsys, monkeypatch):
    script = load_experiment("compare_architectures")
    seen = []
    monkeypatch.setattr(
        script, "compare_architectures", lambda models, utts, *a, **k: seen.extend(utts) or {"models": {}}
    )
    speaker = load_corpus(tiny_corpus.root)[0].speaker
    save_checkpoint(tmp_path / "conv.safetensors", build_model("tiny"))
    argv = ["--model", f"conv={tmp_path / 'conv.safetensors'}", "--data", str(tiny_corpus.root), "--quiet"]
    assert script.main([*argv, "--out", str(tmp_path / "out"), "--speakers", speaker]) == 0
    expected = [u.id for u in load_corpus(tiny_corpus.root) if u.speaker == speaker]
    assert [u.id for u in seen] == expected and 0 < len(expected) < 7
