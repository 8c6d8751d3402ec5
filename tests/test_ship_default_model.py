"""data_prep/ship_default_model.py: the card lists every training stage, evaluates what ships."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scripts import load_data_prep

from asr_introspect.corpus import load_corpus
from asr_introspect.io import file_sha256
from asr_introspect.models import build_model, load_checkpoint, read_checkpoint_info, save_checkpoint
from asr_introspect.training import TrainConfig, evaluate


@pytest.fixture(scope="module")
def ship():
    return load_data_prep("ship_default_model")


def stage(step: int, data: dict, augment: bool = True) -> dict:
    """A training record as ``Trainer.metadata()`` writes it."""
    config = TrainConfig(preset="tiny", max_steps=step, batch_size=4)
    if not augment:
        config = replace(config, speed_factors=(1.0,), noise_probability=0.0, freq_masks=0, time_masks_per_second=0.0)
    return {"config": config.to_dict(), "step": step, "wall_seconds": 36.0 * step, "processes": 1, "data": data}


def save(path: Path, seed: int, metadata: dict) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(path, build_model("tiny"), metadata=metadata)
    return path


def chain(tmp_path: Path, corpus_root: Path) -> tuple[Path, list[dict]]:
    """shipped model A (with a card naming one earlier stage) -> training checkpoint B -> run C."""
    train = {"train": str(corpus_root), "train_utterances": 7}
    t0, ta = stage(10, dict(train)), stage(20, dict(train))
    a = save(tmp_path / "a.safetensors", 0, {"training": ta, "model_card": {"training": ta, "earlier_stages": [t0]}})
    tb = stage(30, {**train, "init_from": str(a), "init_sha256": file_sha256(a)})
    b = save(tmp_path / "b.safetensors", 1, {"training": tb})
    tc = stage(
        40,
        {
            "train": str(corpus_root),
            "train_utterances": 5,
            "speakers": "19,84",
            "init_from": str(b),
            "init_sha256": file_sha256(b),
        },
        augment=False,
    )
    tc["config"]["quantize_aware"] = "nf4"
    run = tmp_path / "run"
    run.mkdir()
    save(run / "best.safetensors", 2, {"training": tc, "metrics": {}})
    return run, [t0, ta, tb, tc]


#: the tiny corpus's speakers as if they were voices of three synthesizer families
FAMILY_OF = {"19": "flite", "84": "espeak", "103": "espeak-klatt"}


def test_card_lists_every_stage_and_states_the_error_rate_of_the_shipped_weights(
    ship, tiny_corpus, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(ship, "speaker_family", FAMILY_OF.__getitem__)
    run, (t0, ta, tb, tc) = chain(tmp_path, tiny_corpus.root)
    out = tmp_path / "out"
    out.mkdir()
    root = str(tiny_corpus.root)
    assert (
        ship.main(
            [
                "--run",
                str(run),
                "--test-text",
                root,
                "--test-speaker",
                root,
                "--eval-corpus",
                root,
                "--out",
                str(out),
                "--command",
                "asr-introspect train ...",
            ]
        )
        == 0
    )

    assert read_checkpoint_info(out / "default_model.safetensors")["dtype"] == "nf4"
    model, meta = load_checkpoint(out / "default_model.safetensors")
    card = meta["model_card"]
    assert [s["step"] for s in card["earlier_stages"]] == [10, 20, 30]
    assert card["training"]["step"] == 40
    # hours only where the corpus on disk still has the stage's utterances (speakers 19 and 84: 5)
    assert card["training"]["data"]["train_hours"] == pytest.approx(
        sum(u.duration for u in load_corpus(root) if u.speaker in ("19", "84")) / 3600
    )
    assert all(s["data"].get("train_hours") for s in card["earlier_stages"])
    # the stated rate is that of the weights as stored (nf4), on the evaluation corpus
    assert meta["metrics"]["cer"] == pytest.approx(evaluate(model, load_corpus(root))["cer"], abs=1e-9)
    # one row per synthesizer family when the held-out text or the shipped corpus mixes several
    families = ("espeak", "espeak-klatt", "flite")
    assert set(card["evaluation"]) == {
        "held-out speaker",
        *(
            f"{name}{part}"
            for name in ("held-out text", "shipped evaluation corpus")
            for part in ("", *(f", {f} voices" for f in families))
        ),
    }
    assert card["evaluation"]["held-out text, flite voices"]["utterances"] == 3
    flite = evaluate(model, [u for u in load_corpus(root) if u.speaker == "19"])
    for name in ("held-out text", "shipped evaluation corpus"):
        assert card["evaluation"][f"{name}, flite voices"]["cer"] == pytest.approx(flite["cer"], abs=1e-9)

    text = (out / "MODEL_CARD.md").read_text()
    assert "  4. fine-tuning from stage 3 (`train --init`): 40 steps" in text
    assert "speakers `19,84`" in text and "no augmentation; quantization-aware (forward and backward" in text
    assert "speed perturbation x0.9/1/1.1" in text and "white noise (p=0.5, 10-40 dB SNR)" in text
    assert "Total wall time 1.00 h." in text
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["path"] == str(out / "default_model.safetensors")


def test_history_stops_at_a_replaced_or_missing_checkpoint(ship, tiny_corpus, tmp_path, capsys):
    run, (_t0, _ta, tb, tc) = chain(tmp_path, tiny_corpus.root)
    assert [s["step"] for s in ship.earlier_stages(tc["data"])] == [10, 20, 30]

    save(tmp_path / "b.safetensors", 5, {"training": tb})  # B overwritten by other weights
    assert ship.earlier_stages(tc["data"]) == []
    assert "b.safetensors is not the file this stage started from" in capsys.readouterr().err

    (tmp_path / "a.safetensors").unlink()
    assert [s["step"] for s in ship.earlier_stages(tb["data"])] == []
    assert "a.safetensors (the weights this stage started from) is gone" in capsys.readouterr().err


def test_train_hours_only_for_the_corpus_the_stage_used(ship, tiny_corpus):
    root = str(tiny_corpus.root)
    assert ship.train_hours({"train": root, "train_utterances": 7}) == pytest.approx(
        sum(u.duration for u in load_corpus(root)) / 3600
    )
    assert ship.train_hours({"train": root, "train_utterances": 3960}) is None  # path reused for another corpus
    assert ship.train_hours({"train": root + "/missing", "train_utterances": 7}) is None


def test_another_architecture_ships_under_its_own_name_with_its_own_card(ship, tiny_corpus, tmp_path):
    """A Conformer run ships beside the default model: NAME.safetensors and NAME.md, the card naming
    its architecture and a receptive field of the whole utterance; the default model is untouched."""
    from asr_introspect.models.conformer import build_conformer

    torch.manual_seed(0)
    model = build_conformer("conformer-tiny")
    training = stage(7, {"train": str(tiny_corpus.root), "train_utterances": 7})
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.safetensors", model, metadata={"training": training, "metrics": {}})
    out = tmp_path / "out"
    out.mkdir()
    root = str(tiny_corpus.root)
    args = ["--run", str(run), "--test-text", root, "--test-speaker", root, "--eval-corpus", root, "--out", str(out)]
    assert ship.main([*args, "--dtype", "float16", "--name", "conformer_tiny"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["conformer_tiny.md", "conformer_tiny.safetensors"]
    shipped, meta = load_checkpoint(out / "conformer_tiny.safetensors")
    assert meta["model_card"]["architecture"] == "conformer" and shipped.frame_map.first_global is not None
    text = (out / "conformer_tiny.md").read_text()
    assert text.startswith("# Model card: the shipped model `conformer_tiny`")
    assert "Conformer CTC (torchaudio Conformer blocks), preset `conformer-tiny`" in text
    assert "receptive field the whole utterance (self-attention)" in text


def test_card_names_the_augmentation_profile(ship):
    light = stage(1, {})["config"]
    assert "profile" not in ship._augmentation(light) and "speed perturbation" in ship._augmentation(light)
    full = ship._augmentation({**light, "augment": "full"})
    assert "profile `full` (simulated rooms" in full and "VTLP" in full
    assert "VTLP" not in ship._augmentation({**light, "augment": "channels"})
    assert ship._augmentation({**light, "augment": "none"}) == "no augmentation"


def test_candidates_are_chosen_on_every_family_condition_and_the_real_set(ship, tiny_corpus, tmp_path, capsys):
    """--candidates: the checkpoint with the lowest (grid mean CER + real CER) / 2 of its rounded weights
    ships; the card reports the grid, the real set per source and the selection table."""
    import shutil

    grid = tmp_path / "grid"
    for family, condition in (("espeak", "clean"), ("flite", "clean"), ("flite", "reverb")):
        shutil.copytree(tiny_corpus.root, grid / family / condition)
    runs = []
    for seed in (3, 4):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        training = stage(5 * seed, {"train": str(tiny_corpus.root), "train_utterances": 7})
        runs.append(save(run / "best.safetensors", seed, {"training": training, "metrics": {}}))
    out = tmp_path / "out"
    out.mkdir()
    root = str(tiny_corpus.root)
    args = ["--run", str(tmp_path / "run3"), "--test-text", root, "--test-speaker", root, "--eval-corpus", root]
    with pytest.raises(SystemExit):  # a choice needs what it is made on
        ship.main([*args, "--out", str(out), "--candidates", *map(str, runs)])
    assert "--candidates needs --grid and --real" in capsys.readouterr().err
    assert (
        ship.main([*args, "--out", str(out), "--candidates", *map(str, runs), "--grid", str(grid), "--real", root]) == 0
    )

    scores = []
    for path in runs:
        model, _ = load_checkpoint(path)
        ship.round_as_shipped(model, "nf4")
        cells = [evaluate(model, load_corpus(root))["cer"]] * 3  # every cell is a copy of the tiny corpus
        scores.append(0.5 * (sum(cells) / 3 + evaluate(model, load_corpus(root))["cer"]))
    _, meta = load_checkpoint(out / "default_model.safetensors")
    card = meta["model_card"]
    chosen = runs[int(np.argmin(scores))]
    assert card["selection"]["chosen"] == str(chosen)
    assert [r["score"] for r in card["selection"]["candidates"]] == pytest.approx(scores, abs=1e-9)
    assert card["training"]["step"] == load_checkpoint(chosen)[1]["training"]["step"]
    assert list(card["grid"]) == ["flite", "espeak"] and list(card["grid"]["flite"]) == ["clean", "reverb"]
    assert set(card["real"]) == {"all", "19", "84", "103"} and card["real"]["all"]["utterances"] == 7

    text = (out / "MODEL_CARD.md").read_text()
    assert "## By voice family and channel condition" in text and "| family | clean | reverb |" in text
    assert "## Real speech" in text and "| `103` | " in text
    assert "| step | grid mean CER | real dev CER | score | |" in text and text.count(" chosen |") == 1
    assert "real recordings score CER" in text
