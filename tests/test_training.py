"""CTC training on a tiny synthetic task: letters are tones, spaces are silence."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_introspect.audio import save_audio
from asr_introspect.corpus import Utterance
from asr_introspect.models import load_checkpoint
from asr_introspect.text import Alphabet
from asr_introspect.training import EncodedCorpus, TrainConfig, Trainer, evaluate, new_model, train

SR = 16000
TONES = {"a": 400.0, "b": 800.0, "c": 1500.0, "d": 2600.0}


def tone_utterances(directory: Path, n: int, seed: int = 0) -> list[Utterance]:
    """Utterances whose letters are 0.12 s tones (and 0.04 s gaps) and whose spaces are 0.08 s silences."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    utterances = []
    for i in range(n):
        words = ["".join(rng.choice(list(TONES), size=rng.integers(1, 4))) for _ in range(rng.integers(1, 4))]
        text = " ".join(words)
        pieces = [np.zeros(int(0.1 * SR))]
        for ch in text:
            if ch == " ":
                pieces.append(np.zeros(int(0.08 * SR)))
            else:  # a tone, then a short gap so that repeated letters stay apart
                t = np.arange(int(0.12 * SR)) / SR
                pieces.append(0.5 * np.sin(2 * np.pi * TONES[ch] * t) * np.hanning(len(t)))
                pieces.append(np.zeros(int(0.04 * SR)))
        pieces.append(np.zeros(int(0.1 * SR)))
        audio = np.concatenate(pieces) + 0.003 * rng.standard_normal(sum(len(p) for p in pieces))
        path = directory / f"tone-{i:03d}.wav"
        save_audio(path, audio.astype(np.float32), SR)
        utterances.append(
            Utterance(id=f"tone-{i:03d}", speaker="s0", audio_path=path, text=text, duration=len(audio) / SR)
        )
    return utterances


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return tone_utterances(root / "train", 48, seed=0), tone_utterances(root / "valid", 12, seed=1)


def small_config(**kw) -> TrainConfig:
    base = dict(
        preset="tiny",
        batch_size=8,
        max_steps=400,
        lr=3e-3,
        warmup_steps=30,
        eval_every=10**9,
        checkpoint_every=10**9,
        speed_factors=(1.0,),
        noise_probability=0.0,
        freq_masks=0,
        time_masks_per_second=0.0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_ctc_training_drives_loss_and_cer_down(tone_corpus, tmp_path):
    train_utts, valid_utts = tone_corpus
    config = small_config()
    model = new_model("tiny", Alphabet.default(), seed=0)
    corpus = EncodedCorpus.load(train_utts, model.alphabet, model.feature_config)
    trainer = Trainer(model, config, tmp_path / "run", corpus, valid_utts)
    before = evaluate(model, valid_utts)["cer"]
    losses = [trainer.train_step(0, batch) for batch in trainer.epoch_batches(0)]
    first = float(np.mean(losses))
    trainer.run()
    later = [trainer.train_step(99, batch) for batch in trainer.epoch_batches(99)]
    after = evaluate(model, valid_utts)
    assert np.mean(later) < 0.3 * first, (first, np.mean(later))
    # from ~1 (untrained) to well under half: 400 steps of an 80 k-parameter model on 48 clips
    assert before > 0.8
    assert after["cer"] < 0.45, after["examples"][:3]


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tone_corpus, tmp_path):
    train_utts, valid_utts = tone_corpus
    config = small_config(
        max_steps=12,
        checkpoint_every=6,
        speed_factors=(0.9, 1.0, 1.1),
        noise_probability=0.5,
        freq_masks=2,
        time_masks_per_second=1.0,
    )
    alphabet = Alphabet.default()

    def fresh(run: Path) -> Trainer:
        model = new_model("tiny", alphabet, seed=3)
        return Trainer(model, config, run, EncodedCorpus.load(train_utts, alphabet, model.feature_config))

    def steps(trainer: Trainer, n: int) -> list[float]:
        out = []
        for epoch, batch in trainer.batches():
            if len(out) == n:
                break
            out.append(trainer.train_step(epoch, batch))
        return out

    straight = steps(fresh(tmp_path / "a"), 12)
    first = fresh(tmp_path / "b")
    head = steps(first, 6)
    first.save()
    resumed = fresh(tmp_path / "b")
    resumed.load()
    assert resumed.step == 6
    tail = steps(resumed, 6)
    np.testing.assert_allclose(head + tail, straight, rtol=1e-5)


def test_train_writes_checkpoints_that_load(tone_corpus, tmp_path):
    train_utts, valid_utts = tone_corpus
    config = small_config(max_steps=4, eval_every=4, checkpoint_every=2)
    model, metrics = train(config, train_utts, tmp_path / "run", valid_utterances=valid_utts)
    assert metrics["step"] == 4 and 0.0 <= metrics["cer"]
    loaded, meta = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert meta["training"]["step"] == 4
    for (name, a), b in zip(model.module.state_dict().items(), loaded.module.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4
    with pytest.raises(Exception, match="nothing to resume|not a training run"):
        train(config, train_utts, tmp_path / "empty", resume=True)


def test_init_starts_from_a_checkpoint_and_rejects_other_architectures(tone_corpus, tmp_path):
    train_utts, valid_utts = tone_corpus
    first, _ = train(small_config(max_steps=3), train_utts, tmp_path / "first")
    source = tmp_path / "first" / "model.safetensors"
    # zero steps: the new run's weights are the checkpoint's, not a fresh initialization
    model, _ = train(small_config(max_steps=0, seed=7), train_utts, tmp_path / "tuned", init_from=source)
    for (name, a), b in zip(first.module.state_dict().items(), model.module.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["data"]["init_from"] == str(source) and len(config["data"]["init_sha256"]) == 64
    # the source stays in the checkpoints' metadata after a resume
    train(small_config(max_steps=1), train_utts, tmp_path / "tuned1", init_from=source)
    train(small_config(max_steps=1), train_utts, tmp_path / "tuned1", resume=True, extend_to=2)
    _, meta = load_checkpoint(tmp_path / "tuned1" / "model.safetensors")
    assert meta["training"]["step"] == 2 and meta["training"]["data"]["init_from"] == str(source)
    with pytest.raises(Exception, match="do not match preset 'small'"):
        train(small_config(preset="small", max_steps=0), train_utts, tmp_path / "bad", init_from=source)
    with pytest.raises(Exception, match="only one of them"):
        train(small_config(), train_utts, tmp_path / "first", resume=True, init_from=source)


def test_quantize_aware_steps_take_the_gradient_at_the_rounded_weights(tone_corpus, tmp_path):
    from asr_introspect.errors import InputError
    from asr_introspect.models import NF4, rounded_weights

    train_utts, valid_utts = tone_corpus
    alphabet = Alphabet.default()
    config = small_config(quantize_aware="nf4", lr=1e-2, warmup_steps=0, max_steps=10)
    model = new_model("tiny", alphabet, seed=5)
    corpus = EncodedCorpus.load(train_utts, alphabet, model.feature_config)
    qat = Trainer(model, config, tmp_path / "qat", corpus, valid_utts[:6])
    # the reference: an ordinary trainer whose weights are the rounded ones
    ref_model = new_model("tiny", alphabet, seed=5)
    rounded = rounded_weights(ref_model, NF4)
    ref_model.module.load_state_dict({**ref_model.module.state_dict(), **rounded})
    ref = Trainer(ref_model, small_config(lr=1e-2, warmup_steps=0, max_steps=10), tmp_path / "ref", corpus)
    floats = {k: v.clone() for k, v in model.module.state_dict().items()}
    batch = qat.epoch_batches(0)[0]
    loss = qat.train_step(0, batch)
    assert loss == pytest.approx(ref.train_step(0, batch), rel=1e-6)
    # same gradient, so the same AdamW step; only the decoupled weight decay sees different weights
    decay = 1 - config.lr * config.weight_decay
    after, ref_after = model.module.state_dict(), ref_model.module.state_dict()
    for name, value in after.items():
        start = floats[name]
        if name in rounded:
            assert not torch.equal(start, rounded[name]), name  # the float weights are off the nf4 grid
            torch.testing.assert_close(
                value - decay * start, ref_after[name] - decay * rounded[name], rtol=0, atol=1e-6, msg=name
            )
        elif value.is_floating_point():
            torch.testing.assert_close(value, ref_after[name], rtol=0, atol=1e-6, msg=name)
    # validation measures the rounded model, and best.safetensors keeps the float weights
    metrics = qat.evaluate()
    shipped = new_model("tiny", alphabet, seed=0)
    shipped.module.load_state_dict({**model.module.state_dict(), **rounded_weights(model, NF4)})
    assert metrics["cer"] == evaluate(shipped, valid_utts[:6])["cer"]
    best, _ = load_checkpoint(tmp_path / "qat" / "best.safetensors")
    for name, value in model.module.state_dict().items():
        torch.testing.assert_close(best.module.state_dict()[name], value, rtol=0, atol=0, msg=name)
    with pytest.raises(InputError, match="quantize_aware must be"):
        small_config(quantize_aware="int4")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_cli_speakers_selects_training_and_validation_utterances(tone_corpus, tmp_path):
    import dataclasses

    from asr_introspect.cli import main
    from asr_introspect.corpus import save_manifest

    train_utts, valid_utts = tone_corpus

    def relabel(utts):
        return [dataclasses.replace(u, speaker=f"voice_{i % 3}") for i, u in enumerate(utts)]

    save_manifest(relabel(train_utts), tmp_path / "train.jsonl")
    save_manifest(relabel(valid_utts), tmp_path / "valid.jsonl")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "train.jsonl"),
                "--valid",
                str(tmp_path / "valid.jsonl"),
                "--speakers",
                "voice_0,voice_2",
                "--preset",
                "tiny",
                "--steps",
                "1",
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--eval-every",
                "1000",
                "--checkpoint-every",
                "1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["speakers"] == "voice_0,voice_2"
    assert data["train_utterances"] == sum(i % 3 != 1 for i in range(len(train_utts)))
    assert data["valid_utterances"] == sum(i % 3 != 1 for i in range(len(valid_utts)))


@pytest.mark.slow
def test_two_torchrun_processes_match_one(tone_corpus, tmp_path):
    """Same global batch on 2 gloo processes gives the same weights as 1 process."""
    train_utts, _ = tone_corpus
    manifest = tmp_path / "train.jsonl"
    from asr_introspect.corpus import save_manifest

    save_manifest(train_utts, manifest)
    common = [
        "--data",
        str(manifest),
        "--valid",
        str(manifest),
        "--preset",
        "tiny",
        "--no-batch-norm",
        "--steps",
        "5",
        "--max-steps",
        "5",
        "--batch-size",
        "8",
        "--eval-every",
        "1000",
        "--checkpoint-every",
        "5",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "asr_introspect.cli", "train", "--out", str(tmp_path / "one"), *common],
        env=env,
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            "-m",
            "asr_introspect.cli",
            "train",
            "--out",
            str(tmp_path / "two"),
            *common,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a, _ = load_checkpoint(tmp_path / "one" / "model.safetensors")
    b, meta = load_checkpoint(tmp_path / "two" / "model.safetensors")
    assert meta["training"]["processes"] == 2
    for (name, x), y in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
