"""The Numba group-by kernels and their Python drivers (serial or threaded, staging, scratch).

:func:`group_stats_into` adds per-group sums, sums of squares and counts of
``values: (T, N)`` into caller-owned float64 arrays; :func:`windowed_sums_into`
adds per-group sums of the ``(F, W)`` window around each labelled frame of
``features: (F, T)``. Both check their inputs, then run serially in the calling
thread for small inputs and on Numba's thread pool above ``_PARALLEL_MIN_WORK``.
The kernels are ``numba.njit(cache=True)``: compiled on first use, then loaded
from the on-disk cache (``__pycache__``, or ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import sys
import threading

import numba
import numpy as np
from numba import prange

from asr_introspect.aggregate.checks import as_numpy, check_border, check_labels, float_array, int_array

__all__ = ["group_stats_into", "windowed_sums_into"]


# Below this much work (frames x features, or windows x features x window;
# 2**20 is about half a millisecond on one core) the kernels run serially in the
# calling thread. Starting the thread pool costs tens of microseconds on idle
# cores but milliseconds when another process keeps them busy (measured: 5-20
# ms per call while a training run occupied both cores). To stay serial
# whatever the size, call ``numba.set_num_threads(1)``.
_PARALLEL_MIN_WORK = 1 << 20


def _use_parallel(work: int) -> bool:
    return _numba_threads() > 1 and work >= _PARALLEL_MIN_WORK


_threads_started = False


def _numba_threads() -> int:
    """``numba.get_num_threads()``, keeping torch's thread count across the first call.

    The first call starts Numba's threading layer; the OpenMP layer sets the
    OpenMP runtime's global thread count to ``NUMBA_NUM_THREADS``, and torch
    shares that runtime: with ``NUMBA_NUM_THREADS=1``, torch dropped from 2
    threads to 1 (tests/test_aggregate.py). Later calls change nothing.
    """
    global _threads_started
    if _threads_started:
        return numba.get_num_threads()
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    n = numba.get_num_threads()
    if torch is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)
    _threads_started = True
    return n


# ---------------------------------------------------------------------------
# kernels
#
# group_stats: each thread gets one contiguous chunk of frames and its own
# (G, N) float64 totals (no races); the kernel then adds these parts together.
#
# Adding every float32 frame straight into float64 totals costs a conversion
# and two float64 read-modify-writes per value: about twice the time of reading
# the input (measured: 2.2x the plain-sum read bound; a version that sorted
# blocks of frames by group to add 8 at a time still took 1.8-2.2x). So each
# thread first sums a group's frames in the input's dtype, into (G, N)
# staging arrays that stay in cache and vectorize 8-wide, and adds the staged
# partial to the float64 totals after every _STAGE_FRAMES frames of that group
# (and at the end). Each partial is a float32 sum of at most 64 terms, with an
# error of at most 64 * 2**-24 (4e-6) of the sum of their absolute values;
# everything above the partials is float64, so the error does not grow with the
# corpus. Flushing every 64 frames instead of every 16 is worth about 10%
# (benchmarks/README.md).
# Float64 input is staged in float64. Nothing but the loop over neurons sits in
# the innermost loops: a count update or a branch there stops vectorization.
#
# The per-frame loop indexes the 2-D arrays directly (``stage_s[g, j]``),
# takes no row view (``stage_s[g]``, ``values[t]``) and calls no helper with
# array arguments (even ``inline="always"``): each of these makes Numba
# increment and decrement reference counts with atomic instructions, which
# cost 50-80 ns per frame, more than adding 256 neurons (benchmarks/README.md).

_STAGE_FRAMES = 64


@numba.njit(cache=True, fastmath={"contract"}, inline="always")
def _flush(g, stage_s, stage_q, sums, sums_sq):  # pragma: no cover - compiled
    """Add group g's staged partial sums (row g of the (G, N) staging) to its float64 totals and clear them."""
    for j in range(sums.shape[1]):
        sums[g, j] += np.float64(stage_s[g, j])
        sums_sq[g, j] += np.float64(stage_q[g, j])
        stage_s[g, j] = 0
        stage_q[g, j] = 0


@numba.njit(cache=True, inline="always")
def _new_stage(values, n_groups):  # pragma: no cover - compiled
    """Per-thread staging: partial sums and squares, each (G, N) in the input dtype, frames staged (G,)."""
    n_feat = values.shape[1]
    return (
        np.zeros((n_groups, n_feat), dtype=values.dtype),
        np.zeros((n_groups, n_feat), dtype=values.dtype),
        np.zeros(n_groups, dtype=np.int64),
    )


@numba.njit(cache=True, fastmath={"contract"})
def _flush_all(stage_s, stage_q, staged, sums, sums_sq, counts):  # pragma: no cover - compiled
    """Flush every group with staged frames (at the end of a chunk)."""
    for g in range(staged.shape[0]):
        if staged[g] > 0:
            _flush(g, stage_s, stage_q, sums, sums_sq)
            counts[g] += staged[g]
            staged[g] = 0


@numba.njit(cache=True, fastmath={"contract"})
def _accumulate(values, labels, weights, start, stop, sums, sums_sq, counts, weight_sums):  # pragma: no cover
    """Add frames [start, stop) of values (T, N) into sums/sums_sq (G, N) float64 and counts (G,).

    weights (T,): add w_t x_t and w_t x_t**2 and sum w_t into weight_sums (G,);
    empty: unweighted (weight_sums untouched).
    """
    n_feat = values.shape[1]
    weighted = weights.shape[0] > 0
    stage_s, stage_q, staged = _new_stage(values, sums.shape[0])
    for t in range(start, stop):
        g = labels[t]
        if g < 0:
            continue
        if weighted:
            w = weights[t]
            weight_sums[g] += np.float64(w)
            for j in range(n_feat):
                v = values[t, j]
                wv = w * v
                stage_s[g, j] += wv
                stage_q[g, j] += wv * v
        else:
            for j in range(n_feat):
                v = values[t, j]
                stage_s[g, j] += v
                stage_q[g, j] += v * v
        staged[g] += 1  # inline: see the note above on helpers called per frame
        if staged[g] == _STAGE_FRAMES:
            _flush(g, stage_s, stage_q, sums, sums_sq)
            counts[g] += _STAGE_FRAMES
            staged[g] = 0
    _flush_all(stage_s, stage_q, staged, sums, sums_sq, counts)


@numba.njit(parallel=True, cache=True, fastmath={"contract"})
def _group_stats_parallel(
    values, labels, weights, sums, sums_sq, counts, weight_sums, parts_sums, parts_sq, parts_counts, parts_w
):  # pragma: no cover - compiled
    """One chunk of frames per thread into its own zeroed parts, then the parts added to the totals.

    parts_* are scratch arrays (n_chunks, G, N), (n_chunks, G, N), (n_chunks, G),
    (n_chunks, G) of any content; weights empty means unweighted.
    """
    n_chunks = parts_sums.shape[0]
    n_frames = values.shape[0]
    step = (n_frames + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        ps, pq, pc, pw = parts_sums[c], parts_sq[c], parts_counts[c], parts_w[c]
        ps[:] = 0
        pq[:] = 0
        pc[:] = 0
        pw[:] = 0
        start = min(n_frames, c * step)
        stop = min(n_frames, start + step)
        _accumulate(values, labels, weights, start, stop, ps, pq, pc, pw)
    for c in range(n_chunks):
        for g in range(sums.shape[0]):
            counts[g] += parts_counts[c, g]
            weight_sums[g] += parts_w[c, g]
            for j in range(sums.shape[1]):
                sums[g, j] += parts_sums[c, g, j]
                sums_sq[g, j] += parts_sq[c, g, j]


# Scratch for the per-thread parts, kept between calls (per Python thread and
# shape, at most _SCRATCH_SHAPES shapes): a fresh (n_chunks, G, N) float64 array
# is mapped page by page on first write, which on this VM cost about as much as
# the kernel itself for updates of a few thousand frames (the streamed
# GroupStats.update rows of benchmarks/bench_aggregate_old_vs_new.py).
_scratch = threading.local()
_SCRATCH_SHAPES = 32


def _parts(n_chunks: int, n_groups: int, n_feat: int) -> tuple[np.ndarray, ...]:
    cache = getattr(_scratch, "parts", None)
    if cache is None:
        cache = _scratch.parts = {}
    key = (n_chunks, n_groups, n_feat)
    if key not in cache:
        if len(cache) >= _SCRATCH_SHAPES:
            cache.clear()
        cache[key] = (
            np.empty((n_chunks, n_groups, n_feat)),
            np.empty((n_chunks, n_groups, n_feat)),
            np.empty((n_chunks, n_groups), dtype=np.int64),
            np.empty((n_chunks, n_groups)),
        )
    return cache[key]


# windowed sums: a plan (counts, valid columns, windows sorted by group) is made
# once per call; then each thread owns a set of feature rows f, so sums[g, f, :]
# is never shared. Whole windows of a group are added 4 at a time (one update
# of the (W,) accumulator row per 4 windows); border windows one by one.


@numba.njit(cache=True, fastmath=False)
def _window_plan(n_frames, centers, labels, n_groups, window, pad):  # pragma: no cover - compiled
    """Counts (G,), position counts (G, W), valid columns [lo, hi) per window (K,),
    and the used windows sorted by (group, border) with offsets (2G + 1,): group
    g's whole windows are order[offsets[2g]:offsets[2g+1]], its border windows
    order[offsets[2g+1]:offsets[2g+2]]."""
    half = window // 2
    n_centers = centers.shape[0]
    counts = np.zeros(n_groups, dtype=np.int64)
    position_counts = np.zeros((n_groups, window), dtype=np.int64)
    lo = np.zeros(n_centers, dtype=np.int64)
    hi = np.zeros(n_centers, dtype=np.int64)
    key = np.full(n_centers, -1, dtype=np.int64)
    offsets = np.zeros(2 * n_groups + 1, dtype=np.int64)
    for k in range(n_centers):
        g = labels[k]
        if g < 0:
            continue
        start = centers[k] - half
        if pad:
            lo[k] = max(0, -start)
            hi[k] = min(window, n_frames - start)
        elif start >= 0 and start + window <= n_frames:
            hi[k] = window
        else:
            continue
        counts[g] += 1
        for w in range(lo[k], hi[k]):
            position_counts[g, w] += 1
        key[k] = 2 * g + (0 if (lo[k] == 0 and hi[k] == window) else 1)
        offsets[key[k] + 1] += 1
    for i in range(2 * n_groups):
        offsets[i + 1] += offsets[i]
    fill = offsets[:-1].copy()
    order = np.empty(offsets[-1], dtype=np.int64)
    for k in range(n_centers):
        if key[k] >= 0:
            order[fill[key[k]]] = k
            fill[key[k]] += 1
    return counts, position_counts, lo, hi, order, offsets


@numba.njit(cache=True, fastmath=False, inline="always")
def _wadd4(s0, s1, s2, s3, dst):  # pragma: no cover - compiled
    for w in range(dst.shape[0]):
        dst[w] += (np.float64(s0[w]) + np.float64(s1[w])) + (np.float64(s2[w]) + np.float64(s3[w]))


@numba.njit(cache=True, fastmath=False, inline="always")
def _wadd1(s0, dst):  # pragma: no cover - compiled
    for w in range(dst.shape[0]):
        dst[w] += np.float64(s0[w])


@numba.njit(cache=True, fastmath=False)
def _window_rows(features, centers, lo, hi, order, offsets, window, sums, f_start, f_stop):  # pragma: no cover
    """Add rows [f_start, f_stop) of every planned window into sums (G, F, W)."""
    half = window // 2
    n_groups = sums.shape[0]
    for f in range(f_start, f_stop):
        row = features[f]
        for g in range(n_groups):
            dst = sums[g, f]
            i = offsets[2 * g]
            e = offsets[2 * g + 1]
            # slices throughout, so every loop index is a plain range: numba's
            # negative-index handling on ``row[start + w]`` stops vectorization
            while i + 4 <= e:
                c0 = centers[order[i]] - half
                c1 = centers[order[i + 1]] - half
                c2 = centers[order[i + 2]] - half
                c3 = centers[order[i + 3]] - half
                _wadd4(row[c0 : c0 + window], row[c1 : c1 + window], row[c2 : c2 + window], row[c3 : c3 + window], dst)
                i += 4
            while i < e:
                c0 = centers[order[i]] - half
                _wadd1(row[c0 : c0 + window], dst)
                i += 1
            for i in range(offsets[2 * g + 1], offsets[2 * g + 2]):
                k = order[i]
                c0 = centers[k] - half
                _wadd1(row[c0 + lo[k] : c0 + hi[k]], dst[lo[k] : hi[k]])


@numba.njit(parallel=True, cache=True, fastmath=False)
def _windowed_parallel(features, centers, lo, hi, order, offsets, window, sums):  # pragma: no cover - compiled
    for f in prange(features.shape[0]):
        _window_rows(features, centers, lo, hi, order, offsets, window, sums, f, f + 1)


# ---------------------------------------------------------------------------
# drivers: checks, then the serial or the threaded kernel


def group_stats_into(values, labels, weights, sums, sums_sq, counts, weight_sums) -> None:
    """Add the statistics of ``values`` into the given (G, N), (G, N), (G,), (G,) arrays."""
    n_groups = sums.shape[0]
    values = float_array(values, 2, "values")
    n_frames, n_feat = values.shape
    if n_feat != sums.shape[1]:
        raise ValueError(f"values must have shape (T, {sums.shape[1]}), got {values.shape}")
    labels = int_array(labels, n_frames, "labels")
    check_labels(labels, n_groups)
    w = np.empty(0, dtype=values.dtype)  # empty: unweighted
    if weights is not None:
        w = as_numpy(weights)
        if w.ndim != 1 or w.shape[0] != n_frames:
            raise ValueError(f"weights must have shape ({n_frames},), got {w.shape}")
        w = np.ascontiguousarray(w, dtype=values.dtype)
    if n_frames == 0 or n_groups == 0:
        return
    n_chunks = _numba_threads() if _use_parallel(n_frames * n_feat) else 1
    n_chunks = max(1, min(n_chunks, n_frames))
    before = counts.copy()
    if n_chunks == 1:  # serial: straight into the caller's arrays
        _accumulate(values, labels, w, 0, n_frames, sums, sums_sq, counts, weight_sums)
    else:
        _group_stats_parallel(
            values, labels, w, sums, sums_sq, counts, weight_sums, *_parts(n_chunks, n_groups, n_feat)
        )
    if weights is None:  # unit weights
        weight_sums += counts - before


def windowed_sums_into(features, centers, labels, border, sums, counts, position_counts) -> None:
    """Add the windows into the given (G, F, W), (G,), (G, W) arrays."""
    n_groups, n_feat, window = sums.shape
    border = check_border(border)
    features = float_array(features, 2, "features")
    if features.shape[0] != n_feat:
        raise ValueError(f"features must have shape ({n_feat}, T), got {features.shape}")
    n_frames = features.shape[1]
    centers = as_numpy(centers)
    n_centers = centers.shape[0] if centers.ndim == 1 else -1
    centers = int_array(centers, n_centers, "centers")
    labels = int_array(labels, centers.shape[0], "labels")
    check_labels(labels, n_groups)
    if centers.size and (centers.min() < 0 or centers.max() >= n_frames):
        bad = int(centers.min()) if centers.min() < 0 else int(centers.max())
        raise ValueError(f"centers must be frames in [0, T) = [0, {n_frames}); found {bad}")
    if centers.size == 0 or n_groups == 0:
        return
    c, p, lo, hi, order, offsets = _window_plan(n_frames, centers, labels, n_groups, window, border == "pad")
    counts += c
    position_counts += p
    if _use_parallel(n_feat * centers.shape[0] * window) and n_feat > 1:
        _windowed_parallel(features, centers, lo, hi, order, offsets, window, sums)
    else:
        _window_rows(features, centers, lo, hi, order, offsets, window, sums, 0, n_feat)
