"""The whole claims run (one pass with its nulls, bootstrap, probes, CKA) against one NAP pass.

Baseline: ``compute_naps(model, utterances, "phoneme")`` on the same model and corpus, in the same
process (best of ``--repeat``). Prints both times and the ratio (target: at most 2).

    OMP_NUM_THREADS=1 python benchmarks/bench_claims.py [--utterances N] [--bootstrap B]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from asr_introspect.loading import load_model_and_corpus
from asr_introspect.naps import compute_naps


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=None, help="first N utterances (default: all)")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, utterances, _, _ = load_model_and_corpus()
    utterances = utterances[: args.utterances]
    compute_naps(model, utterances[:4], "phoneme")  # warm-up (Numba kernels compiled)
    naps = _best(lambda: compute_naps(model, utterances, "phoneme"), args.repeat)
    timings: dict[str, float] = {}

    def claims() -> None:
        from asr_introspect.claims import run as run_module

        start = time.perf_counter()
        collected = run_module.collect(model, utterances)
        timings["collect"] = time.perf_counter() - start
        trends = run_module.layer_trends(collected, args.bootstrap)
        timings["layer_trends"] = time.perf_counter() - start - timings["collect"]
        probes = run_module.probe_trends(collected, args.bootstrap)
        run_module.cka_views(collected)
        run_module.layer_claims(collected, trends, probes)

    total = _best(claims, args.repeat)
    print(
        json.dumps(
            {
                "utterances": len(utterances),
                "bootstrap": args.bootstrap,
                "naps_seconds": round(naps, 2),
                "claims_seconds": round(total, 2),
                "collect_seconds": round(timings["collect"], 2),
                "layer_trends_seconds": round(timings["layer_trends"], 2),
                "ratio": round(total / naps, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
