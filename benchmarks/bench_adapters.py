"""Transformer adapters: all-frames gradients against a per-frame captum loop, and the NAP pass against
the forward pass alone, on a small random wav2vec2 (timings do not depend on trained weights).

1. Gradients (``sensitivity``) of every output frame of a 10 s utterance with
   ``attribution.attribute(..., frames="all")`` against captum's ``Saliency`` called once per frame
   (the baseline: one forward and one backward pass per frame). The loop runs on ``--loop-frames``
   evenly spaced frames; its per-frame time times the number of frames is the baseline's time.
   The maps of those frames are checked equal first.
2. NAPs by letter and phoneme over every layer of the shipped corpus through the stream, against
   the same stream with no estimator (forward passes and batching only): the share of the time
   spent outside the forward pass.

Usage: .venv/bin/python benchmarks/bench_adapters.py [--seconds 10] [--loop-frames 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import transformers
from captum.attr import Saliency

from asr_introspect.attribution import attribute
from asr_introspect.corpus import load_corpus
from asr_introspect.defaults import default_corpus_path
from asr_introspect.models.huggingface import wrap_hf_ctc
from asr_introspect.naps import NAPEstimator
from asr_introspect.stream import fit_estimators, stream_corpus

VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5, **{chr(65 + i): 6 + i for i in range(26)}}
#: a small wav2vec2: the standard feature encoder geometry (7 convolutions, 20 ms stride) at 32 channels,
#: 4 transformer blocks of width 64
SMALL = dict(
    vocab_size=len(VOCAB),
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(32,) * 7,
    num_conv_pos_embeddings=32,
    num_conv_pos_embedding_groups=4,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    pad_token_id=0,
)


def small_wav2vec2(seed: int = 0):
    torch.manual_seed(seed)
    return wrap_hf_ctc(transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**SMALL)), VOCAB)


def bench_gradients(model, seconds: float, loop_frames: int) -> dict:
    x = torch.randn(1, int(seconds * 16000), generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    result = attribute(model, x, "sensitivity", frames="all")
    all_frames = time.perf_counter() - t0
    n = len(result.frames)
    chosen = np.linspace(0, n - 1, loop_frames).round().astype(int)

    def target_logit(inputs, frame, target):
        return model.logits(inputs)[0][:, target, frame]

    saliency = Saliency(lambda inputs, frame, target: target_logit(inputs, frame, target))
    maps = []
    t0 = time.perf_counter()
    for frame in chosen:
        grad = saliency.attribute(x[None], additional_forward_args=(int(frame), int(result.targets[frame])), abs=False)
        maps.append(grad[0].numpy())
    loop = (time.perf_counter() - t0) / len(chosen)
    error = float(np.abs(np.stack(maps) - result.relevance[chosen]).max())
    scale = float(np.abs(result.relevance[chosen]).max())
    assert error <= 1e-4 * scale, f"maps differ: {error} (scale {scale})"
    return {
        "output_frames": n,
        "all_frames_seconds": round(all_frames, 2),
        "captum_per_frame_seconds": round(loop, 4),
        "captum_loop_seconds_for_all_frames": round(loop * n, 1),
        "speedup": round(loop * n / all_frames, 1),
        "max_abs_difference": error,
    }


def bench_naps(model, repeats: int) -> dict:
    utterances = load_corpus(default_corpus_path())
    layers = list(model.layer_names)

    def forward_only():
        for _ in stream_corpus(model, utterances, layers, batch_size=16):
            pass

    def naps():
        fit_estimators(model, utterances, [NAPEstimator("letter", layers), NAPEstimator("phoneme", layers)])

    forward_only()  # warm up: audio cache, allocator
    times = {"forward": [], "naps": []}
    for _ in range(repeats):
        for name, fn in (("forward", forward_only), ("naps", naps)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    forward, total = min(times["forward"]), min(times["naps"])
    return {
        "utterances": len(utterances),
        "layers": len(layers),
        "forward_seconds": round(forward, 2),
        "naps_seconds": round(total, 2),
        "share_outside_forward": round((total - forward) / total, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop-frames", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-naps", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = small_wav2vec2()
    report = {"model": {k: v for k, v in SMALL.items() if k != "vocab_size"}, "threads": args.threads}
    report["gradients"] = bench_gradients(model, args.seconds, args.loop_frames)
    print(json.dumps(report["gradients"]))
    if not args.skip_naps:
        report["naps"] = bench_naps(model, args.repeats)
        print(json.dumps(report["naps"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
