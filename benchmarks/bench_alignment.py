#!/usr/bin/env python3
"""Forced-alignment throughput over a corpus (utterances/s), with the model forward as the baseline.

Both run the same padded, padding-exact batches (``stream.stream_corpus`` in corpus order, as
``stream.align_corpus`` streams them); the difference is the cost of log-softmax + torchaudio's
forced_align + the greedy path + span extraction per utterance.

    .venv/bin/python benchmarks/bench_alignment.py [--model CKPT] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from asr_introspect.loading import load_model_and_corpus
from asr_introspect.stream import align_corpus, stream_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    list(align_corpus(model, utterances[:4], batch_size=4))  # warm-up
    start = time.perf_counter()
    forward_utts = sum(
        len(b.utterances) for b in stream_corpus(model, utterances, batch_size=args.batch_size, bucket=False)
    )
    forward = time.perf_counter() - start
    start = time.perf_counter()
    aligned = sum(1 for _ in align_corpus(model, utterances, batch_size=args.batch_size, skip_errors=True))
    total = time.perf_counter() - start
    seconds = sum(u.duration or 0 for u in utterances)
    print(
        json.dumps(
            {
                "model": str(model_path),
                "data": str(data_path),
                "utterances": len(utterances),
                "aligned": aligned,
                "audio_seconds": round(seconds, 1),
                "forward_only_utt_per_s": round(forward_utts / forward, 1),
                "alignment_utt_per_s": round(aligned / total, 1),
                "alignment_x_realtime": round(seconds / total, 1),
                "alignment_overhead_vs_forward": round(total / forward, 2),
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
