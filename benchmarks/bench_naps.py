"""Benchmark NAP computation: frames/s for all 11 layers and the share of time outside the forward pass.

Model and corpus: the shipped default model and evaluation corpus when they
exist; otherwise a stand-in (the "small" preset with random weights, 64 mels,
and a corpus synthesized with flite into a temporary directory: real speech
with phone segments). The output says which was used.

Timed, in one run, over the same length-bucketed batches (``--batch-size``),
each ``--repeats`` times interleaved, best time reported:

1. ``forward`` (the baseline): ``model.logits(features, lengths)`` under
   ``no_grad`` on batches whose features are already in memory: the model's
   forward pass alone (padding-exact, as the NAP run does it);
2. ``naps letter``: ``NAPEstimator(by="letter", all 11 layers)`` fed by
   ``stream.fit_estimators`` (the library's ``fit`` path: ``stream_corpus``,
   ``StreamBatch``, ``partial_fit``) over the same batches, already in memory
   (the stream's batching is swapped for them while timing): forward + hooks +
   CTC forced alignment + label transfer to every layer + accumulation;
3. ``naps phoneme``: the same with phone labels;
4. ``naps letter+phoneme``: both estimators fed from one pass (``fit_estimators``);
5. ``end to end``: ``compute_naps(model, utterances, by="letter")`` from the
   audio files (reading audio and computing features included).

Share outside the forward = 1 - forward / naps (goal: at most 20%), from the
best wall time and, separately, from the best process CPU time (less sensitive
to other jobs on a shared machine; ``--threads 1`` makes it the cleanest).
Frames/s counts valid output frames (every one is accumulated on each of the
11 layers). Usage::

    .venv/bin/python benchmarks/bench_naps.py [--utterances 48] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch


@contextlib.contextmanager
def _in_memory(batches):
    """``stream_corpus`` yields ``batches`` (featurized once, up front) instead of reading the audio again."""
    from asr_introspect import stream

    ids = sorted(u.id for b in batches for u in b.utterances)
    original = stream.iterate_batches

    def cached(utts, *args, **kwargs):
        assert sorted(u.id for u in utts) == ids, "the stream asked for other utterances than the cached batches"
        return iter(batches)

    stream.iterate_batches = cached
    try:
        yield
    finally:
        stream.iterate_batches = original


def _corpus_and_model(n_utterances: int, tmp: Path):
    from asr_introspect.corpus import load_corpus
    from asr_introspect.defaults import DEFAULT_CORPUS, DEFAULT_MODEL

    if DEFAULT_MODEL.is_file() and DEFAULT_CORPUS.is_dir():
        from asr_introspect.loading import load_model_and_corpus

        model, utterances, mp, dp = load_model_and_corpus()
        return (
            model,
            utterances[:n_utterances] if n_utterances else utterances,
            f"shipped model {mp.name}, shipped corpus {dp.name}",
        )
    from asr_introspect.corpus import synthesize_corpus
    from asr_introspect.models import build_model

    out = tmp / "corpus"
    synthesize_corpus(
        out,
        n_utterances=n_utterances,
        voices=["slt", "awb", "rms", "kal16"],
        seed=0,
        test_text_fraction=0.0,
        test_speaker_fraction=0.0,
    )
    torch.manual_seed(0)
    model = build_model("small").eval()
    return (
        model,
        load_corpus(out),
        (
            f"STAND-IN: 'small' preset (random weights), {n_utterances} flite "
            "utterances (slt/awb/rms/kal16) synthesized for this run"
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and Numba threads (default: library defaults)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)

    from asr_introspect.corpus import iterate_batches
    from asr_introspect.naps import NAPEstimator, compute_naps
    from asr_introspect.stream import fit_estimators

    with tempfile.TemporaryDirectory() as tmp:
        model, utterances, what = _corpus_and_model(args.utterances, Path(tmp))
        model.eval()
        batches = list(
            iterate_batches(utterances, model.feature_config, model.alphabet, batch_size=args.batch_size, bucket=True)
        )
        n_out = sum(int(model.output_lengths(b.feature_lengths).sum()) for b in batches)
        seconds_audio = sum(float(b.feature_lengths.sum()) for b in batches) * model.feature_config.frame_seconds
        layers = list(model.layer_names)

        def forward():
            with torch.no_grad():
                for b in batches:
                    model.logits(b.features, b.feature_lengths)

        def naps(kinds):
            def run():
                ests = [NAPEstimator(k, layers) for k in kinds]
                with _in_memory(batches):
                    return fit_estimators(model, utterances, ests, batch_size=args.batch_size)

            return run

        def end_to_end():
            compute_naps(model, utterances, "letter", layers, batch_size=args.batch_size)

        has_phones = any(u.phones for u in utterances)
        methods = {"forward": forward, "naps letter": naps(["letter"])}
        if has_phones:
            methods["naps phoneme"] = naps(["phoneme"])
            methods["naps letter+phoneme"] = naps(["letter", "phoneme"])
        methods["end to end (letter, from audio)"] = end_to_end
        for fn in methods.values():  # warm-up: Numba cache load, allocator, first-call costs
            fn()
        # the in-memory stream gives the NAPs of the stream from the audio files (same batches, same frames)
        fast, slow = (
            naps(["letter"])()[0].result(),
            compute_naps(model, utterances, "letter", layers, batch_size=args.batch_size),
        )
        for name in layers:
            assert (fast.stats[name].counts == slow.stats[name].counts).all(), name
            assert np.allclose(fast.stats[name].sums, slow.stats[name].sums, rtol=1e-6, atol=1e-6), name
        channels = {name: fast.n_neurons(name) for name in layers}
        best = {name: float("inf") for name in methods}
        best_cpu = {name: float("inf") for name in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
                best_cpu[name] = min(best_cpu[name], time.process_time() - c0)

    rows = []
    for name, t in best.items():
        cpu = best_cpu[name]
        rows.append(
            {
                "method": name,
                "seconds": t,
                "cpu_seconds": cpu,
                "output_frames_per_s": n_out / t,
                "x_realtime": seconds_audio / t,
                "outside_forward": None if name == "forward" else 1.0 - best["forward"] / t,
                "outside_forward_cpu": None if name == "forward" else 1.0 - best_cpu["forward"] / cpu,
            }
        )
    info = {
        "what": what,
        "utterances": len(utterances),
        "batches": len(batches),
        "output_frames": n_out,
        "audio_seconds": seconds_audio,
        "layers": len(layers),
        "channels": channels,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "rows": rows,
    }
    print(
        f"{what}\n{len(utterances)} utterances, {seconds_audio:.1f} s of audio, {n_out} output frames, "
        f"{len(layers)} layers, batch {args.batch_size}, torch threads {info['torch_threads']}, "
        f"load average {info['load_average_1min']:.1f}"
    )
    print(
        f"{'method':34s} {'wall s':>8s} {'cpu s':>8s} {'frames/s':>9s} {'x real time':>11s} "
        f"{'outside fwd (wall)':>18s} {'(cpu)':>7s}"
    )
    for r in rows:
        share = "-" if r["outside_forward"] is None else f"{100 * r['outside_forward']:.1f}%"
        share_cpu = "-" if r["outside_forward_cpu"] is None else f"{100 * r['outside_forward_cpu']:.1f}%"
        print(
            f"{r['method']:34s} {r['seconds']:8.3f} {r['cpu_seconds']:8.3f} {r['output_frames_per_s']:9.0f} "
            f"{r['x_realtime']:11.1f} {share:>18s} {share_cpu:>7s}"
        )
    if args.json:
        args.json.write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
