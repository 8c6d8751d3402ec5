"""Benchmark concept dictionaries: one NMF or SAE pass against the model's forward pass over the same batches.

Model and corpus: the shipped default model and evaluation corpus (the first ``--utterances``), layer
``--layer`` (default conv9), ``--concepts`` concepts. Timed over the same length-bucketed batches, held in
memory (the stream's batching is swapped for them, as in bench_naps.py), each ``--repeats`` times
interleaved, best time reported:

1. ``forward`` (the baseline): ``model.logits(features, lengths)`` under ``no_grad``, batch by batch;
2. ``nmf pass, streamed``: one pass of ``ConceptEstimator(method="nmf")`` fed by
   ``stream.fit_estimators`` (forward + hooks + valid frames + HALS codes + sufficient statistics) and
   the dictionary update at its end;
3. ``nmf pass, replayed``: a later pass of :func:`concepts.fit_concepts` with ``cache=True``: the
   recorded frames fed again, no forward pass;
4. ``sae pass, streamed`` / ``sae pass, replayed``: the same for the TopK sparse autoencoder (Adam
   steps on minibatches of 256 frames).

Reported: seconds, layer frames per second, and the throughput of each pass relative to the forward
pass (``forward seconds / pass seconds``; the goal for a streamed NMF pass is 0.8 or more). The SAE's
training throughput is its frames (and Adam steps) per second. A default fit (20 NMF passes, 30 SAE
passes) costs one streamed pass plus the replayed ones. Usage::

    .venv/bin/python benchmarks/bench_concepts.py [--utterances 64] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from bench_naps import _in_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--layer", default="conv9")
    parser.add_argument("--concepts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (NumPy's BLAS runs on one thread)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from asr_introspect.concepts import ConceptEstimator
    from asr_introspect.corpus import iterate_batches
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.stream import fit_estimators

    model, utterances, model_path, data_path = load_model_and_corpus()
    utterances = utterances[: args.utterances]
    batches = list(
        iterate_batches(utterances, model.feature_config, model.alphabet, batch_size=args.batch_size, bucket=True)
    )
    n_frames = sum(int(model.layer_length(args.layer, b.feature_lengths).sum()) for b in batches)
    seconds_audio = sum(float(b.feature_lengths.sum()) for b in batches) * model.feature_config.frame_seconds

    def forward():
        with torch.no_grad():
            for b in batches:
                model.logits(b.features, b.feature_lengths)

    def estimator(method: str) -> ConceptEstimator:
        return ConceptEstimator(args.layer, method, args.concepts, batch_size=args.batch_size)

    recorded: dict[str, list] = {}

    def streamed(method: str):
        def run():
            est = estimator(method)
            est.prepare(model)
            frames: list = []
            original = est.partial_fit_frames
            est.partial_fit_frames = lambda x: (frames.append(x.copy()), original(x))[1]
            with _in_memory(batches):
                fit_estimators(model, utterances, [est], batch_size=args.batch_size)
            del est.partial_fit_frames  # the recording wrapper: replayed passes call the method itself
            est.end_pass()
            recorded[method] = (est, frames)

        return run

    def replayed(method: str):
        def run():
            est, frames = recorded[method]
            for x in frames:
                est.partial_fit_frames(x)
            est.end_pass()

        return run

    methods = {
        "forward": forward,
        "nmf pass, streamed": streamed("nmf"),
        "nmf pass, replayed": replayed("nmf"),
        "sae pass, streamed": streamed("sae"),
        "sae pass, replayed": replayed("sae"),
    }
    for fn in methods.values():  # warm-up: first-call costs (Adam's first step imports torch._dynamo)
        fn()
    best = {name: float("inf") for name in methods}
    best_cpu = {name: float("inf") for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            best_cpu[name] = min(best_cpu[name], time.process_time() - c0)
    sae = recorded["sae"][0]
    steps_per_pass = sum(-(-len(x) // sae.minibatch_size) for x in recorded["sae"][1])
    rows = []
    for name, seconds in best.items():
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "cpu_seconds": best_cpu[name],
                "frames_per_s": n_frames / seconds,
                "throughput_vs_forward": best["forward"] / seconds,
                "throughput_vs_forward_cpu": best_cpu["forward"] / best_cpu[name],
            }
        )
    passes = {"nmf": 20, "sae": 30}
    fits = {
        m: (best[f"{m} pass, streamed"] + (passes[m] - 1) * best[f"{m} pass, replayed"]) / best["forward"]
        for m in passes
    }
    info = {
        "model": str(model_path),
        "data": str(data_path),
        "layer": args.layer,
        "concepts": args.concepts,
        "utterances": len(utterances),
        "batches": len(batches),
        "layer_frames": n_frames,
        "audio_seconds": seconds_audio,
        "sae_steps_per_pass": steps_per_pass,
        "sae_steps_per_s": steps_per_pass / best["sae pass, replayed"],
        "default_fit_in_forward_passes": fits,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "rows": rows,
    }
    print(
        f"shipped model, {len(utterances)} utterances ({seconds_audio:.1f} s of audio), layer {args.layer}: "
        f"{n_frames} frames, {args.concepts} concepts, batch {args.batch_size}, torch threads "
        f"{info['torch_threads']}, load average {info['load_average_1min']:.1f}"
    )
    print(f"{'method':22s} {'wall s':>8s} {'cpu s':>8s} {'frames/s':>10s} {'vs forward':>11s} {'(cpu)':>7s}")
    for r in rows:
        print(
            f"{r['method']:22s} {r['seconds']:8.3f} {r['cpu_seconds']:8.3f} {r['frames_per_s']:10.0f} "
            f"{r['throughput_vs_forward']:10.2f}x {r['throughput_vs_forward_cpu']:6.2f}x"
        )
    print(
        f"SAE training: {info['sae_steps_per_s']:.0f} Adam steps/s ({sae.minibatch_size} frames each); "
        f"a default fit costs {fits['nmf']:.1f} (NMF, 20 passes) and {fits['sae']:.1f} (SAE, 30 passes) forward passes"
    )
    if args.json:
        args.json.write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
