"""Benchmark letter/phoneme pattern accumulation: windows aggregated per second.

A synthetic corpus shaped like the real thing: utterances of 2-6 s (250-750
input frames of F mel bands), one phone label per input frame (about 85 %
labelled, runs of 3-12 frames, 39 phones + unlabelled), every labelled frame
one window of W = 194 frames (the receptive field), ``frames="all"``.

Methods (all accumulate float64, border "pad": columns outside an utterance add
nothing and are not counted):

1. ``PatternAverager.add`` per utterance (the raw-array form; ``partial_fit``
   takes corpus-stream batches): label handling + the Numba windowed kernel
   for the sums and for the sums of squares (the full state).
2. ``WindowStats.update`` per utterance: the Numba kernel, sums only.
3. NumPy baseline: zero-pad the utterance, gather the windows ``(K, F, W)``
   (256 at a time) and ``np.add.at`` them into the per-label sums (and the
   squares for the full state); run on a subsample of utterances and scaled.
4. A stronger NumPy baseline: gather, sort the windows by label and
   ``np.add.reduceat`` (sums only), also on the subsample.

Every result is checked against the Numba one in the same run. Best of
``--repeats``, interleaved. Usage::

    .venv/bin/python benchmarks/bench_patterns.py [--mels 64] [--utterances 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numba
import numpy as np

from asr_introspect.aggregate import WindowStats
from asr_introspect.patterns import PatternAverager
from asr_introspect.text import PHONES

SIL = PHONES.index("sil")


def make_corpus(n_utts: int, n_mels: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_utts):
        n = int(rng.integers(250, 751))
        lengths = rng.integers(3, 13, n)
        phones = rng.integers(0, len(PHONES) - 1, n)  # never "sil" ...
        phones[rng.random(n) < 0.15] = -1  # ... but 15 % unlabelled
        labels = np.repeat(phones, lengths)[:n].astype(np.int64)
        out.append((rng.standard_normal((n_mels, n), dtype=np.float32), labels))
    return out


def numpy_add_at(utts, n_groups, window, squares=True, chunk=256):
    """Gather + np.add.at; returns (sums, sums_sq or None, counts, position_counts)."""
    half = window // 2
    n_mels = utts[0][0].shape[0]
    sums = np.zeros((n_groups, n_mels, window))
    sums_sq = np.zeros_like(sums) if squares else None
    counts = np.zeros(n_groups, np.int64)
    position_counts = np.zeros((n_groups, window), np.int64)
    offsets = np.arange(window)
    for x, labels in utts:
        n = x.shape[1]
        padded = np.zeros((n_mels, n + window), np.float64)
        padded[:, half : half + n] = x
        inside = np.zeros(n + window, np.int64)
        inside[half : half + n] = 1
        centers = np.flatnonzero(labels >= 0)
        ids = labels[centers]
        np.add.at(counts, ids, 1)
        for a in range(0, len(centers), chunk):
            idx = centers[a : a + chunk, None] + offsets  # (k, W) into the padded axis
            win = np.moveaxis(padded[:, idx], 1, 0)  # (k, F, W)
            np.add.at(sums, ids[a : a + chunk], win)
            if squares:
                np.add.at(sums_sq, ids[a : a + chunk], win * win)
            np.add.at(position_counts, ids[a : a + chunk], inside[idx])
    return sums, sums_sq, counts, position_counts


def numpy_reduceat(utts, n_groups, window, chunk=256):
    """Gather, sort by label, np.add.reduceat (sums only)."""
    half = window // 2
    n_mels = utts[0][0].shape[0]
    sums = np.zeros((n_groups, n_mels, window))
    offsets = np.arange(window)
    for x, labels in utts:
        n = x.shape[1]
        padded = np.zeros((n_mels, n + window), np.float64)
        padded[:, half : half + n] = x
        centers = np.flatnonzero(labels >= 0)
        ids = labels[centers]
        for a in range(0, len(centers), chunk):
            c, g = centers[a : a + chunk], ids[a : a + chunk]
            order = np.argsort(g, kind="stable")
            c, g = c[order], g[order]
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            win = np.moveaxis(padded[:, c[:, None] + offsets], 1, 0)
            sums[g[starts]] += np.add.reduceat(win, starts, axis=0)
    return sums


def best_of(methods: dict, repeats: int):
    best = {name: float("inf") for name in methods}
    outputs = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            outputs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, outputs


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-300))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mels", type=int, default=64)
    p.add_argument("--window", type=int, default=194)
    p.add_argument("--utterances", type=int, default=60)
    p.add_argument("--numpy-utterances", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)

    utts = make_corpus(args.utterances, args.mels)
    sub = utts[: args.numpy_utterances]
    n_groups = len(PHONES)
    windows = sum(int((lab >= 0).sum()) for _, lab in utts)
    sub_windows = sum(int((lab >= 0).sum()) for _, lab in sub)
    frames = sum(x.shape[1] for x, _ in utts)
    info = dict(
        python=platform.python_version(),
        numpy=np.__version__,
        numba=numba.__version__,
        cpu_count=os.cpu_count(),
        numba_threads=numba.get_num_threads(),
        load_average=os.getloadavg(),
    )

    def averager():
        a = PatternAverager(by="phoneme", window=args.window, exclude=())
        for x, lab in utts:
            a.add(x, lab)
        return a

    def window_stats():
        s = WindowStats(n_groups, args.mels, args.window, border="pad")
        for x, lab in utts:
            centers = np.flatnonzero(lab >= 0)
            s.update(x, centers, lab[centers])
        return s

    # warm up: compile/load the kernels, fault in the pages
    PatternAverager(by="phoneme", window=args.window, exclude=()).add(*utts[0])
    names = {
        "numba": "PatternAverager.add (sums + squares)",
        "kernel": "WindowStats.update (sums only)",
        "addat": f"NumPy gather + np.add.at, sums + squares ({len(sub)} utts, scaled)",
        "addat1": f"NumPy gather + np.add.at, sums only ({len(sub)} utts, scaled)",
        "reduceat": f"NumPy gather + sort + np.add.reduceat, sums only ({len(sub)} utts, scaled)",
    }
    methods = {
        names["numba"]: averager,
        names["kernel"]: window_stats,
        names["addat"]: lambda: numpy_add_at(sub, n_groups, args.window, squares=True),
        names["addat1"]: lambda: numpy_add_at(sub, n_groups, args.window, squares=False),
        names["reduceat"]: lambda: numpy_reduceat(sub, n_groups, args.window),
    }
    best, outs = best_of(methods, args.repeats)
    for key in ("addat", "addat1", "reduceat"):
        best[names[key]] *= windows / sub_windows

    # correctness, same run
    full = outs[names["numba"]]
    checks = {}
    checks[names["kernel"]] = rel_err(outs[names["kernel"]].sums, full.stats_.sums)
    assert np.array_equal(outs[names["kernel"]].counts, full.stats_.counts)
    sub_avg = PatternAverager(by="phoneme", window=args.window, exclude=())
    for x, lab in sub:
        sub_avg.add(x, lab)
    s, q, c, pc = outs[names["addat"]]
    assert np.array_equal(c, sub_avg.stats_.counts) and np.array_equal(pc, sub_avg.stats_.position_counts)
    checks[names["addat"]] = max(rel_err(s, sub_avg.stats_.sums), rel_err(q, sub_avg.squares_.sums))
    checks[names["addat1"]] = rel_err(outs[names["addat1"]][0], sub_avg.stats_.sums)
    checks[names["reduceat"]] = rel_err(outs[names["reduceat"]], sub_avg.stats_.sums)
    assert max(checks.values()) < 1e-9, checks
    info["load_average_after"] = os.getloadavg()

    rows = [
        dict(method=name, seconds=sec, windows_per_s=windows / sec, max_rel_err=checks.get(name))
        for name, sec in best.items()
    ]
    summary = dict(
        mels=args.mels,
        window=args.window,
        utterances=len(utts),
        frames=frames,
        windows=windows,
        speedup_full_vs_add_at=best[names["addat"]] / best[names["numba"]],
        speedup_kernel_vs_add_at=best[names["addat1"]] / best[names["kernel"]],
        speedup_kernel_vs_reduceat=best[names["reduceat"]] / best[names["kernel"]],
    )
    print(f"# pattern accumulation benchmark  {json.dumps(info)}\n")
    print(
        f"{len(utts)} utterances, {frames:,} input frames, {windows:,} windows of {args.mels} x "
        f"{args.window}, {n_groups} labels, {info['numba_threads']} Numba threads\n"
    )
    print("| method | seconds | windows/s | max rel. diff vs Numba |")
    print("|---|---:|---:|---:|")
    for r in rows:
        err = "" if r["max_rel_err"] is None else f"{r['max_rel_err']:.1e}"
        print(f"| {r['method']} | {r['seconds']:.3f} | {r['windows_per_s']:,.0f} | {err} |")
    print(
        f"\nsums + squares: Numba {summary['speedup_full_vs_add_at']:.0f}x faster than np.add.at; "
        f"sums only: {summary['speedup_kernel_vs_add_at']:.0f}x vs np.add.at, "
        f"{summary['speedup_kernel_vs_reduceat']:.1f}x vs sort + reduceat"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(info=info, rows=rows, summary=summary), f, indent=2)


if __name__ == "__main__":
    main()
