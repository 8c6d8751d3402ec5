"""Where the group-sum kernel's time goes: one thread, input in cache vs in memory.

The 1.3x-of-the-read-bound goal assumes the kernel is limited by reading its
input. This script times one thread of the kernel on the same 1,000,000 frames
x 256 neurons float32 (a) streamed from memory and (b) as 2,000-frame blocks
that stay in L3, each for 1 group (staging rows in L1) and 70 groups (staging
rows in L2), against the one-thread read bound (the plain sum of
bench_aggregate.py). If (b) is not much faster than (a), the kernel is limited
by its own work per frame, not by memory. Usage::

    .venv/bin/python benchmarks/bench_aggregate_cache.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from bench_aggregate import _read_sum

from asr_introspect.aggregate.kernels import _accumulate

FRAMES, NEURONS, BLOCK = 1_000_000, 256, 2_000


def ns_per_frame(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / FRAMES * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((FRAMES, NEURONS), dtype=np.float32)
    flat = values.reshape(-1)
    _read_sum(flat[:1000])
    rows = {"read bound (plain sum), from memory": ns_per_frame(lambda: _read_sum(flat), args.repeats)}
    for groups in (1, 70):
        labels = rng.integers(0, groups, FRAMES)
        sums, sums_sq = np.zeros((groups, NEURONS)), np.zeros((groups, NEURONS))
        counts, weight_sums = np.zeros(groups, np.int64), np.zeros(groups)
        no_weights = np.empty(0, np.float32)  # unweighted
        block, block_labels = values[:BLOCK], labels[:BLOCK]
        _accumulate(block, block_labels, no_weights, 0, BLOCK, sums, sums_sq, counts, weight_sums)  # compile

        # both closures run within this iteration, so the loop variables they read are current
        def from_memory():
            _accumulate(values, labels, no_weights, 0, FRAMES, sums, sums_sq, counts, weight_sums)  # noqa: B023

        def from_cache():
            for _ in range(FRAMES // BLOCK):
                _accumulate(block, block_labels, no_weights, 0, BLOCK, sums, sums_sq, counts, weight_sums)  # noqa: B023

        rows[f"kernel, {groups} group(s), from memory"] = ns_per_frame(from_memory, args.repeats)
        rows[f"kernel, {groups} group(s), {BLOCK:,}-frame block in cache"] = ns_per_frame(from_cache, args.repeats)
    bound = rows["read bound (plain sum), from memory"]
    print(f"one thread, {FRAMES:,} frames x {NEURONS} float32\n")
    print("| run | ns per frame | / read bound |\n|---|---:|---:|")
    for name, ns in rows.items():
        print(f"| {name} | {ns:.1f} | {ns / bound:.2f} |")


if __name__ == "__main__":
    main()
