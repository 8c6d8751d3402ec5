"""Benchmark: WAM for every output frame of a 10 s utterance, ours vs a per-frame loop.

Ours: ``wavelet_attribution(model, audio, method, frames="all")`` with the fast engine (one forward pass,
the receptive-field crop engine for d logit / d features, the frame-local front end on waveform crops,
three utterance statistics, band crops). Baselines, each on the same waveform, frames and targets:

- **per-frame loop** (the baseline the issue names): per output frame, wavelet coefficients as leaf
  tensors -> inverse DWT -> the model's front end -> ``model.logits`` -> backward of the frame's target
  logit (what :func:`~asr_introspect.attribution.wavelets.explain_targets` does for one frame). Timed
  on a subset of frames (evenly spaced, both ends included) and extrapolated to all frames.
- **batched autograd**: our ``engine="autograd"`` (one forward pass, then vector-Jacobian products of
  many frames at once, ``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over the
  backward pass): what a generic implementation gets from amortizing the forward pass. Timed on
  ``--batched-frames`` frames and extrapolated.

The loop's full gradients are compared with our band crops on the crop's coefficients
(max |ours - loop| / max |loop| per frame).

Run: ``.venv/bin/python benchmarks/bench_wavelets.py [--seconds 10] [--loop-frames 8] [--batched-frames 32]
[--methods wam-grad] [--wavelet haar] [--threads 1] [--json out.json]``. Audio: utterances of the
shipped corpus concatenated (a modulated tone with noise if it is not installed); model: the shipped
checkpoint (random ``small`` weights if not installed; the cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr_introspect.attribution.wavelets import explain_targets, wavelet_attribution  # noqa: E402
from asr_introspect.defaults import DEFAULT_CORPUS, DEFAULT_MODEL  # noqa: E402
from asr_introspect.models import build_model  # noqa: E402

OPTIONS = {"wam-grad": {}, "wam-smoothgrad": {"n_samples": 4}, "wam-ig": {"steps": 4}}


def load_model():
    if DEFAULT_MODEL.is_file():
        from asr_introspect.models import load_checkpoint

        model, _ = load_checkpoint(DEFAULT_MODEL)
        return model.eval(), "shipped default"
    torch.manual_seed(0)
    return build_model("small").eval(), "random weights"


def load_speech(seconds: float, sample_rate: int) -> tuple[np.ndarray, str]:
    n = int(seconds * sample_rate)
    if DEFAULT_CORPUS.is_dir():
        from asr_introspect.audio import load_audio

        pieces, total = [], 0
        for path in sorted(DEFAULT_CORPUS.rglob("*.flac")):
            pieces.append(load_audio(path, sample_rate=sample_rate))
            total += len(pieces[-1])
            if total >= n:
                return np.concatenate(pieces)[:n], "shipped corpus, concatenated"
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(0)
    wave = 0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n)
    return wave.astype(np.float32), "modulated tone with noise"


def bench(model, wave: np.ndarray, method: str, wavelet: str, n_loop: int, n_batched: int) -> dict:
    options = OPTIONS[method]
    wavelet_attribution(model, wave[: len(wave) // 8], method, frames=[0, 5], wavelet=wavelet, **options)  # warm-up
    t0 = time.perf_counter()
    ours = wavelet_attribution(model, wave, method, frames="all", wavelet=wavelet, engine="fast", **options)
    ours_s = time.perf_counter() - t0
    n_out = len(ours.frames)

    subset = np.unique(np.linspace(0, n_out - 1, n_loop).round().astype(int))
    loop_s, errors = [], []
    for t in subset:
        target = int(ours.targets[t])
        t0 = time.perf_counter()
        dense = explain_targets(model, wave, [int(t)], [target], method, wavelet=wavelet, **options)
        loop_s.append(time.perf_counter() - t0)
        full = dense.flat()
        crop = ours.map(int(t)).flat()
        inside = np.concatenate(ours.geometry.dense(np.ones(ours.geometry.n_columns), int(t))) > 0
        errors.append(float(np.abs(full[inside] - crop[inside]).max() / np.abs(full).max()))
        outside_share = float(np.abs(full[~inside]).sum() / np.abs(full).sum())
    per_frame = float(np.median(loop_s))

    batch = np.unique(np.linspace(0, n_out - 1, n_batched).round().astype(int))
    t0 = time.perf_counter()
    batched = wavelet_attribution(model, wave, method, frames=batch, wavelet=wavelet, engine="autograd", **options)
    batched_s = time.perf_counter() - t0
    batched_error = float(np.abs(batched.relevance - ours.relevance[batch]).max() / np.abs(batched.relevance).max())
    return {
        "method": method,
        "wavelet": wavelet,
        "output_frames": n_out,
        "threads": torch.get_num_threads(),
        "ours_seconds": round(ours_s, 2),
        "ours_ms_per_frame": round(1000 * ours_s / n_out, 2),
        "loop_frames_timed": int(len(subset)),
        "loop_seconds_per_frame": round(per_frame, 3),
        "loop_seconds_all_frames_extrapolated": round(per_frame * n_out, 1),
        "speedup_vs_loop": round(per_frame * n_out / ours_s, 1),
        "batched_frames_timed": int(len(batch)),
        "batched_seconds_all_frames_extrapolated": round(batched_s / len(batch) * n_out, 1),
        "speedup_vs_batched": round(batched_s / len(batch) * n_out / ours_s, 1),
        "max_relative_difference_vs_loop": max(errors),
        "max_relative_difference_vs_batched": batched_error,
        "relevance_outside_crops_last_frame": round(outside_share, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--methods", nargs="+", default=["wam-grad"], choices=sorted(OPTIONS))
    parser.add_argument("--wavelet", default="haar")
    parser.add_argument("--loop-frames", type=int, default=8, help="frames timed in the per-frame loop")
    parser.add_argument("--batched-frames", type=int, default=32, help="frames timed with batched autograd")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, weights = load_model()
    wave, audio = load_speech(args.seconds, model.feature_config.sample_rate)
    results = []
    for method in args.methods:
        r = {"weights": weights, "audio": audio, "seconds": args.seconds, **bench(
            model, wave, method, args.wavelet, args.loop_frames, args.batched_frames
        )}  # fmt: skip
        results.append(r)
        print(f"{method} ({args.wavelet}), {r['output_frames']} output frames of {args.seconds:g} s ({audio}), "
              f"{weights}, {r['threads']} thread(s):")  # fmt: skip
        print(f"  ours, all frames:          {r['ours_seconds']:8.2f} s  ({r['ours_ms_per_frame']} ms/frame)")
        print(f"  per-frame loop, per frame: {r['loop_seconds_per_frame']:8.3f} s  (median of {r['loop_frames_timed']} "
              f"frames; all frames extrapolated: {r['loop_seconds_all_frames_extrapolated']} s)")  # fmt: skip
        print(f"  speed-up vs the loop:      {r['speedup_vs_loop']:8.1f} x")
        print(f"  batched autograd, all (extrapolated from {r['batched_frames_timed']} frames): "
              f"{r['batched_seconds_all_frames_extrapolated']} s; speed-up {r['speedup_vs_batched']} x")  # fmt: skip
        print(f"  max relative difference:   {r['max_relative_difference_vs_loop']:.2e} (loop), "
              f"{r['max_relative_difference_vs_batched']:.2e} (batched); |relevance| outside the crops "
              f"(last frame timed): {r['relevance_outside_crops_last_frame']:.1%}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
