#!/usr/bin/env python3
"""Training and inference throughput (x real time) of the model presets on this machine.

Baseline-free by nature: the number is seconds of audio processed per second of
wall time. Training steps include everything a real step does (augmentation,
features, exact padding, CTC, AdamW); inference is a padded batch forward with
features computed from audio. Audio is synthetic noise of typical utterance
lengths, so no corpus is needed.

    .venv/bin/python benchmarks/bench_training.py [--presets small speechless] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from asr_introspect.features import compute_features
from asr_introspect.text import Alphabet
from asr_introspect.training import EncodedCorpus, TrainConfig, Trainer, new_model


def synthetic_corpus(feature_config, n: int, seed: int = 0) -> EncodedCorpus:
    rng = np.random.default_rng(seed)
    alphabet = Alphabet.default()
    seconds = rng.uniform(2.5, 4.5, n)
    audio = [(rng.standard_normal(int(s * 16000)) * 3000).astype(np.int16) for s in seconds]
    texts = ["the quick brown fox jumps over the lazy dog"[: int(s * 12)] for s in seconds]
    return EncodedCorpus(
        [f"u{i}" for i in range(n)],
        audio,
        [alphabet.encode(t) for t in texts],
        [feature_config.frames(len(a)) for a in audio],
    )


def measure(preset: str, steps: int, batch_size: int, tmp: str) -> dict:
    alphabet = Alphabet.default()
    model = new_model(preset, alphabet, seed=0)
    corpus = synthetic_corpus(model.feature_config, batch_size * (steps + 1))
    config = TrainConfig(
        preset=preset, batch_size=batch_size, max_steps=10**6, warmup_steps=10, eval_every=10**9, checkpoint_every=10**9
    )
    trainer = Trainer(model, config, tmp, corpus)
    batches = trainer.epoch_batches(0)
    audio_seconds = lambda batch: sum(len(corpus.audio[i]) for i in batch) / 16000.0  # noqa: E731
    trainer.train_step(0, batches[0])  # warm-up
    start, seconds = time.perf_counter(), 0.0
    for batch in batches[1 : steps + 1]:
        trainer.train_step(0, batch)
        seconds += audio_seconds(batch)
    train_wall = time.perf_counter() - start
    model.module.eval()
    start, inf_seconds = time.perf_counter(), 0.0
    with torch.no_grad():
        for batch in batches[1 : steps + 1]:
            waves = [torch.from_numpy(corpus.audio[i].astype(np.float32) / 32767) for i in batch]
            lengths = torch.tensor([len(w) for w in waves])
            padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
            features, frame_lengths = compute_features(padded, model.feature_config, lengths=lengths)
            model.logits(features, frame_lengths)
            inf_seconds += audio_seconds(batch)
    inf_wall = time.perf_counter() - start
    params = sum(p.numel() for p in model.module.parameters())
    return {
        "preset": preset,
        "parameters": params,
        "batch_size": batch_size,
        "steps": steps,
        "train_seconds_per_step": round(train_wall / steps, 3),
        "train_x_realtime": round(seconds / train_wall, 1),
        "inference_x_realtime": round(inf_seconds / inf_wall, 1),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "speechless"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(preset, args.steps, args.batch_size, tmp))
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
