#!/usr/bin/env python3
"""Cost of the augmentation profiles: training-step time on a preset, relative to ``light`` in the same run.

Each round times one training step per profile on the same global batch
(profiles interleaved, so load changes on a shared machine hit them alike),
and the batch preparation alone (audio effects, features, SpecAugment), in
wall seconds and in CPU seconds of this process (``time.process_time``: on a
machine shared with other jobs, CPU seconds are the stabler measure of what
a step costs). The RIR bank is simulated before timing (once per run in training). Audio is
synthetic noise of typical utterance lengths, so no corpus is needed.

    .venv/bin/python benchmarks/bench_augment.py [--preset small] [--rounds 8] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from bench_training import synthetic_corpus

from asr_introspect.augment import PROFILES
from asr_introspect.text import Alphabet
from asr_introspect.training import TrainConfig, Trainer, new_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--profiles", nargs="+", default=["light", "channels", "full"])
    args = parser.parse_args()
    alphabet = Alphabet.default()
    corpus = None
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.profiles:
            model = new_model(args.preset, alphabet, seed=0)
            corpus = corpus or synthetic_corpus(model.feature_config, args.batch_size * (args.rounds + 1))
            config = TrainConfig(
                preset=args.preset,
                batch_size=args.batch_size,
                max_steps=10**6,
                warmup_steps=10,
                eval_every=10**9,
                checkpoint_every=10**9,
                augment=name,
            )
            trainers[name] = Trainer(model, config, f"{tmp}/{name}", corpus)
        batches = next(iter(trainers.values())).epoch_batches(0)
        start = time.perf_counter()
        corpus.room_bank(0, PROFILES["full"].rir_bank_size, 16000)
        bank_seconds = time.perf_counter() - start
        for trainer in trainers.values():
            trainer.train_step(0, batches[0])  # warm-up
        wall = {name: {"step": [], "prepare": []} for name in trainers}
        cpu = {name: {"step": [], "prepare": []} for name in trainers}
        for r, batch in enumerate(batches[1 : args.rounds + 1], start=1):
            for name, trainer in trainers.items():
                w0, c0 = time.perf_counter(), time.process_time()
                corpus.batch(batch, trainer.model.feature_config, trainer.config, r, augment=True)
                w1, c1 = time.perf_counter(), time.process_time()
                trainer.train_step(r, batch)
                w2, c2 = time.perf_counter(), time.process_time()
                wall[name]["prepare"].append(w1 - w0)
                wall[name]["step"].append(w2 - w1)
                cpu[name]["prepare"].append(c1 - c0)
                cpu[name]["step"].append(c2 - c1)
    med = statistics.median
    for name in trainers:
        row = {
            "preset": args.preset,
            "profile": name,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "step_wall_s": round(med(wall[name]["step"]), 3),
            "step_cpu_s": round(med(cpu[name]["step"]), 3),
            "prepare_wall_s": round(med(wall[name]["prepare"]), 3),
            "prepare_cpu_s": round(med(cpu[name]["prepare"]), 3),
            "step_wall_vs_light": round(med(wall[name]["step"]) / med(wall["light"]["step"]), 3),
            "step_cpu_vs_light": round(med(cpu[name]["step"]) / med(cpu["light"]["step"]), 3),
            "rir_bank_seconds": round(bank_seconds, 2),
            "threads": torch.get_num_threads(),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
