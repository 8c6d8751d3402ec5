"""Numba group-by kernels and mergeable accumulators.

Two kernels aggregate frames by an integer label (``-1`` = ignore):

- :func:`group_stats`: per-group sums, sums of squares and counts of
  ``values: (T, N)`` (frames x neurons), optionally weighted per frame;
- :func:`windowed_sums`: per-group sums of the ``(F, W)`` input window centred
  on each labelled frame of ``features: (F, T)``.

Totals are float64. ``group_stats`` first sums each group's frames in the
input dtype in runs of at most 64 frames (for float32 input, an error of at
most 64 * 2**-24, about 4e-6, of those frames' absolute sum; float64 input
stays float64 throughout); ``windowed_sums`` adds in
float64. The kernels are ``numba.njit(parallel=True, cache=True)`` (fastmath
only to fuse multiply-adds): the first call in a
fresh environment compiles them (1-5 s per kernel and input dtype on 2 cores,
see benchmarks/README.md); later processes load the compiled code from the
on-disk cache (``__pycache__``, or ``NUMBA_CACHE_DIR``) in a fraction of a
second. Small inputs run serially in the calling thread; larger ones use
Numba's thread pool (``numba.set_num_threads`` controls it).

:class:`GroupStats` and :class:`WindowStats` hold the state (plain arrays) over
a whole corpus: ``update`` chunk by chunk, ``merge`` two accumulators, and
``all_reduce`` across processes with ``torch.distributed`` (launched by
``torchrun``; gloo on CPU). Because every statistic is a sum, any split of the
frames gives the same result up to the rounding of the float32 partials.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import prange

__all__ = [
    "group_stats",
    "windowed_sums",
    "GroupStats",
    "GroupSummary",
    "WindowStats",
    "WindowSummary",
    "variance_decomposition",
    "specificity",
]

_BORDERS = ("skip", "pad")


# ---------------------------------------------------------------------------
# input checks (Python side, before any kernel runs)


def _as_numpy(x: Any) -> np.ndarray:
    """NumPy view of an array-like or a (CPU or not) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _float_array(x: Any, ndim: int, name: str) -> np.ndarray:
    """C-contiguous float32/float64 array (other dtypes become float64)."""
    a = _as_numpy(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def _int_array(x: Any, length: int, name: str) -> np.ndarray:
    a = _as_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.shape[0] != length:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {length}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _check_n_groups(n_groups: Any) -> int:
    if isinstance(n_groups, (bool, np.bool_)) or int(n_groups) != n_groups or n_groups < 0:
        raise ValueError(f"n_groups must be a non-negative integer, got {n_groups!r}")
    return int(n_groups)


def _check_labels(labels: np.ndarray, n_groups: int) -> None:
    """Labels must lie in [-1, n_groups); -1 means "ignore this frame"."""
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < -1 or hi >= n_groups:
        bad = lo if lo < -1 else hi
        index = int(np.flatnonzero(labels == bad)[0])
        raise ValueError(
            f"labels must lie in [-1, n_groups) = [-1, {n_groups}) (-1 = ignore); "
            f"found {bad} at index {index} (pass a larger n_groups or relabel)"
        )


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
    return (np.zeros((n_groups, n_feat), dtype=values.dtype), np.zeros((n_groups, n_feat), dtype=values.dtype),
            np.zeros(n_groups, dtype=np.int64))


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
def _group_stats_parallel(values, labels, weights, sums, sums_sq, counts, weight_sums,
                          parts_sums, parts_sq, parts_counts, parts_w):  # pragma: no cover - compiled
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
        cache[key] = (np.empty((n_chunks, n_groups, n_feat)), np.empty((n_chunks, n_groups, n_feat)),
                      np.empty((n_chunks, n_groups), dtype=np.int64), np.empty((n_chunks, n_groups)))
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
# public kernel wrappers


def group_stats(values, labels, n_groups: int, weights=None):
    """Per-group sums, sums of squares and counts over frames.

    values: (T, N) float32 (float64 accepted; copied if not C-contiguous);
    labels: (T,) int in [-1, n_groups), -1 = frame ignored;
    weights: optional (T,) per-frame weights w_t (e.g. gradients for GradNAPs), used in
    the dtype of ``values``.

    Returns ``(sums (G, N) float64, sums_sq (G, N) float64, counts (G,) int64)``;
    with ``weights`` also ``weight_sums (G,) float64`` as a 4th element, and
    then ``sums = sum_t w_t x_t`` and ``sums_sq = sum_t w_t x_t**2`` (counts
    stay plain frame counts). ``T = 0`` gives zeros. Raises ``ValueError`` for
    labels outside [-1, n_groups) or mismatched shapes.

    Precision: float64 totals of float32 partial sums over at most 64 frames of a
    group (error at most ``64 * 2**-24`` times the sum of the absolute values
    added); pass float64 ``values`` for float64 throughout (about 2x slower).
    """
    out = _group_stats(values, labels, n_groups, weights)
    return out if weights is not None else out[:3]


def _group_stats(values, labels, n_groups, weights):
    """Always ``(sums, sums_sq, counts, weight_sums)``; unweighted -> weight 1."""
    n_groups = _check_n_groups(n_groups)
    values = _float_array(values, 2, "values")
    n_feat = values.shape[1]
    out = (np.zeros((n_groups, n_feat)), np.zeros((n_groups, n_feat)), np.zeros(n_groups, np.int64), np.zeros(n_groups))
    _group_stats_into(values, labels, weights, *out)
    return out


def _group_stats_into(values, labels, weights, sums, sums_sq, counts, weight_sums) -> None:
    """Add the statistics of ``values`` into the given (G, N), (G, N), (G,), (G,) arrays."""
    n_groups = sums.shape[0]
    values = _float_array(values, 2, "values")
    n_frames, n_feat = values.shape
    if n_feat != sums.shape[1]:
        raise ValueError(f"values must have shape (T, {sums.shape[1]}), got {values.shape}")
    labels = _int_array(labels, n_frames, "labels")
    _check_labels(labels, n_groups)
    w = np.empty(0, dtype=values.dtype)  # empty: unweighted
    if weights is not None:
        w = _as_numpy(weights)
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
        _group_stats_parallel(values, labels, w, sums, sums_sq, counts, weight_sums,
                              *_parts(n_chunks, n_groups, n_feat))
    if weights is None:  # unit weights
        weight_sums += counts - before


def _check_border(border: str) -> str:
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {_BORDERS}, got {border!r}")
    return border


def _check_window(window: Any) -> int:
    if isinstance(window, (bool, np.bool_)) or int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    return int(window)


def _windowed(features, centers, labels, n_groups, window, border):
    """Always ``(sums (G, F, W), counts (G,), position_counts (G, W))``."""
    n_groups = _check_n_groups(n_groups)
    window = _check_window(window)
    features = _float_array(features, 2, "features")
    out = (
        np.zeros((n_groups, features.shape[0], window)),
        np.zeros(n_groups, dtype=np.int64),
        np.zeros((n_groups, window), dtype=np.int64),
    )
    _windowed_into(features, centers, labels, border, *out)
    return out


def _windowed_into(features, centers, labels, border, sums, counts, position_counts) -> None:
    """Add the windows into the given (G, F, W), (G,), (G, W) arrays."""
    n_groups, n_feat, window = sums.shape
    border = _check_border(border)
    features = _float_array(features, 2, "features")
    if features.shape[0] != n_feat:
        raise ValueError(f"features must have shape ({n_feat}, T), got {features.shape}")
    n_frames = features.shape[1]
    centers = _as_numpy(centers)
    n_centers = centers.shape[0] if centers.ndim == 1 else -1
    centers = _int_array(centers, n_centers, "centers")
    labels = _int_array(labels, centers.shape[0], "labels")
    _check_labels(labels, n_groups)
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


def windowed_sums(features, centers, labels, n_groups: int, window: int, border: str = "pad"):
    """Sum, per label, the input window centred on each labelled frame.

    features: (F, T) float32; centers: (K,) int frames in [0, T);
    labels: (K,) int in [-1, n_groups), -1 = ignored. The window of centre
    ``c`` is the columns ``[c - W//2, c - W//2 + W)`` (for even W the centre
    sits at position W//2, one right of the middle).

    border="skip": windows not entirely inside [0, T) are dropped. Returns
    ``(sums (G, F, W) float64, counts (G,) int64)``; mean = sums / counts.

    border="pad" (default; with a receptive-field-wide window "skip" would drop
    much of every short utterance): every labelled window counts; columns
    outside [0, T) add nothing. Returns ``(sums, counts, position_counts (G, W)
    int64)``, where
    counts[g] is the number of windows of group g and position_counts[g, w]
    the number of them whose column w lies inside [0, T); the mean is
    ``sums / position_counts[:, None, :]`` (a border window contributes only
    its valid columns).

    Sums of squares: call again on ``features ** 2``.
    """
    sums, counts, position_counts = _windowed(features, centers, labels, n_groups, window, border)
    if border == "skip":
        return sums, counts
    return sums, counts, position_counts


# ---------------------------------------------------------------------------
# variance decomposition (ANOVA) from sums


def variance_decomposition(sums, sums_sq, weights):
    """Between- and within-group variance per neuron from group sums.

    sums, sums_sq: (G, N); weights: (G,) counts (or weight sums).
    With W_g the group weights, W = sum W_g, mu_g = sums_g / W_g and
    mu = sum sums_g / W: ``between = sum_g W_g (mu_g - mu)**2 / W`` (variance
    of the group means weighted by counts) and ``within = sum_g (sums_sq_g -
    W_g mu_g**2) / W`` (count-weighted mean of the within-group variances), so
    that between + within = the total variance over all frames. Empty groups
    are left out. Returns ``(between (N,), within (N,))``; NaN when all groups
    are empty.
    """
    sums = np.asarray(sums, dtype=np.float64)
    sums_sq = np.asarray(sums_sq, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if sums.ndim != 2 or sums_sq.shape != sums.shape or weights.shape != sums.shape[:1]:
        raise ValueError(
            f"expected sums (G, N), sums_sq (G, N), weights (G,); got {sums.shape}, "
            f"{sums_sq.shape}, {weights.shape}"
        )
    keep = weights > 0
    s, q, w = sums[keep], sums_sq[keep], weights[keep]
    total = w.sum()
    if total <= 0:
        nan = np.full(sums.shape[1], np.nan)
        return nan, nan.copy()
    mu_g = s / w[:, None]
    mu = s.sum(axis=0) / total
    between = (w[:, None] * (mu_g - mu) ** 2).sum(axis=0) / total
    within = (q - w[:, None] * mu_g**2).sum(axis=0) / total
    return between, np.maximum(within, 0.0)


def specificity(sums, sums_sq, weights):
    """Between-group over within-group variance per neuron: (N,).

    See :func:`variance_decomposition`. Large values: the neuron's mean
    differs between groups much more than it varies inside a group. ``inf``
    where the within-group variance is 0 and the between-group one is not,
    NaN where both are 0 or all groups are empty.
    """
    between, within = variance_decomposition(sums, sums_sq, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        return between / within


# ---------------------------------------------------------------------------
# accumulators


def _torch_distributed():
    """``torch.distributed`` when a process group is initialized, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def _all_reduce_arrays(arrays: list[np.ndarray], group=None) -> None:
    """Sum ``arrays`` in place across all processes (no-op without a process group)."""
    dist = _torch_distributed()
    if dist is None:
        return
    import torch

    # NCCL reduces CUDA tensors only; gloo (and others) work on the CPU arrays in place
    device = torch.device("cpu")
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    # one cheap collective first, so mismatched shapes fail loudly instead of hanging
    dims = [int(d) for a in arrays for d in (tuple(a.shape) + (1, 1, 1))[:3]]
    check = torch.tensor(dims + [-d for d in dims], dtype=torch.int64, device=device)
    dist.all_reduce(check, op=dist.ReduceOp.MAX, group=group)
    check = check.cpu().tolist()
    largest, smallest = check[: len(dims)], [-d for d in check[len(dims) :]]
    if largest != dims or smallest != dims:
        shapes = [tuple(a.shape) for a in arrays]
        raise ValueError(
            f"all_reduce: accumulator shapes differ between processes (here {shapes}); "
            "create every process's accumulator with the same groups and features"
        )
    for a in arrays:
        if a.size == 0:
            continue
        host = torch.from_numpy(a)  # shares memory with the accumulator's array
        if device.type == "cpu":
            dist.all_reduce(host, op=dist.ReduceOp.SUM, group=group)
        else:
            buf = host.to(device)
            dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
            host.copy_(buf.cpu())


class GroupSummary(NamedTuple):
    """Result of :meth:`GroupStats.result` (G groups, N features)."""

    means: np.ndarray  # (G, N), NaN for empty groups
    variance: np.ndarray  # (G, N), NaN for empty groups
    std: np.ndarray  # (G, N)
    counts: np.ndarray  # (G,) int64 frames
    weight_sums: np.ndarray  # (G,) float64 (== counts when unweighted)


class GroupStats:
    """Mergeable per-group statistics of frames: the state of a NAP.

    State (float64 unless noted): ``sums (G, N)``, ``sums_sq (G, N)``,
    ``counts (G,) int64`` (frames) and ``weight_sums (G,)`` (sum of frame
    weights; an unweighted update gives every frame weight 1). Means are
    ``sums / weight_sums``; the variance is ``sums_sq / weight_sums - mean**2``
    (population variance, clipped at 0; meaningful for non-negative weights).
    """

    def __init__(self, n_groups: int, n_features: int):
        self.n_groups = _check_n_groups(n_groups)
        if int(n_features) != n_features or n_features < 0:
            raise ValueError(f"n_features must be a non-negative integer, got {n_features!r}")
        self.n_features = int(n_features)
        self.sums = np.zeros((self.n_groups, self.n_features))
        self.sums_sq = np.zeros((self.n_groups, self.n_features))
        self.counts = np.zeros(self.n_groups, dtype=np.int64)
        self.weight_sums = np.zeros(self.n_groups)

    def __repr__(self) -> str:
        return (
            f"GroupStats(n_groups={self.n_groups}, n_features={self.n_features}, "
            f"frames={int(self.counts.sum())})"
        )

    def _arrays(self) -> list[np.ndarray]:
        return [self.sums, self.sums_sq, self.counts, self.weight_sums]

    def update(self, values, labels, weights=None) -> "GroupStats":
        """Add frames: values (T, N), labels (T,) in [-1, G), weights (T,) or None."""
        _group_stats_into(values, labels, weights, self.sums, self.sums_sq, self.counts, self.weight_sums)
        return self

    def merge(self, other: "GroupStats") -> "GroupStats":
        """Add ``other``'s state into this one (in place); returns self."""
        if not isinstance(other, GroupStats) or (other.n_groups, other.n_features) != (
            self.n_groups,
            self.n_features,
        ):
            raise ValueError(f"cannot merge {other!r} into {self!r}: shapes differ")
        for mine, theirs in zip(self._arrays(), other._arrays()):
            mine += theirs
        return self

    def all_reduce(self, group=None) -> "GroupStats":
        """Sum the state over all processes (torch.distributed SUM); no-op if not initialized.

        A collective: every rank must call it once; afterwards every rank
        holds the totals (calling it twice would count everything twice).
        """
        _all_reduce_arrays(self._arrays(), group)
        return self

    def copy(self) -> "GroupStats":
        return GroupStats.from_dict(self.to_dict())

    @property
    def means(self) -> np.ndarray:
        """(G, N) weighted means; NaN for empty groups."""
        with np.errstate(divide="ignore", invalid="ignore"):
            m = self.sums / self.weight_sums[:, None]
        m[self.weight_sums == 0] = np.nan
        return m

    def variance(self, ddof: int = 0) -> np.ndarray:
        """(G, N) variance per group; ``ddof`` scales by c / (c - ddof) with c = counts."""
        mean = self.means
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.maximum(self.sums_sq / self.weight_sums[:, None] - mean**2, 0.0)
            if ddof:
                c = self.counts.astype(np.float64)
                factor = np.where(c > ddof, c / (c - ddof), np.nan)
                var = var * factor[:, None]
        return var

    def result(self, ddof: int = 0) -> GroupSummary:
        """Means, variance, std (G, N), counts and weight sums (G,)."""
        var = self.variance(ddof)
        return GroupSummary(self.means, var, np.sqrt(var), self.counts.copy(), self.weight_sums.copy())

    def variance_decomposition(self):
        """``(between (N,), within (N,))``: see :func:`variance_decomposition`."""
        return variance_decomposition(self.sums, self.sums_sq, self.weight_sums)

    def specificity(self) -> np.ndarray:
        """Between- over within-group variance per neuron (N,): see :func:`specificity`."""
        return specificity(self.sums, self.sums_sq, self.weight_sums)

    def to_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """State as arrays (keys ``prefix + sums|sums_sq|counts|weight_sums``), npz-friendly."""
        return {
            prefix + "sums": self.sums.copy(),
            prefix + "sums_sq": self.sums_sq.copy(),
            prefix + "counts": self.counts.copy(),
            prefix + "weight_sums": self.weight_sums.copy(),
        }

    @classmethod
    def from_dict(cls, d, prefix: str = "") -> "GroupStats":
        """Inverse of :meth:`to_dict` (e.g. the dict returned by ``io.load_npz``)."""
        sums = np.asarray(d[prefix + "sums"], dtype=np.float64)
        if sums.ndim != 2:
            raise ValueError(f"{prefix}sums must be 2-D (G, N), got shape {sums.shape}")
        out = cls(*sums.shape)
        out.sums[...] = sums
        out.sums_sq[...] = np.asarray(d[prefix + "sums_sq"], dtype=np.float64)
        out.counts[...] = np.asarray(d[prefix + "counts"], dtype=np.int64)
        out.weight_sums[...] = np.asarray(d[prefix + "weight_sums"], dtype=np.float64)
        return out


class WindowSummary(NamedTuple):
    """Result of :meth:`WindowStats.result` (G groups, F features, W window)."""

    means: np.ndarray  # (G, F, W), NaN where position_counts == 0
    counts: np.ndarray  # (G,) int64 windows
    position_counts: np.ndarray  # (G, W) int64 valid columns per window position


class WindowStats:
    """Mergeable per-group sums of input windows (letter/phoneme-averaged patterns).

    State: ``sums (G, F, W) float64``, ``counts (G,) int64`` (windows) and
    ``position_counts (G, W) int64`` (windows whose column w was inside the
    input; equal to ``counts`` in every column for border="skip"). The mean
    pattern is ``sums / position_counts[:, None, :]``. Windows are
    ``[c - W//2, c - W//2 + W)`` around each centre c (see :func:`windowed_sums`).
    """

    def __init__(self, n_groups: int, n_features: int, window: int, border: str = "pad"):
        self.n_groups = _check_n_groups(n_groups)
        if int(n_features) != n_features or n_features < 0:
            raise ValueError(f"n_features must be a non-negative integer, got {n_features!r}")
        self.n_features = int(n_features)
        self.window = _check_window(window)
        self.border = _check_border(border)
        self.sums = np.zeros((self.n_groups, self.n_features, self.window))
        self.counts = np.zeros(self.n_groups, dtype=np.int64)
        self.position_counts = np.zeros((self.n_groups, self.window), dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"WindowStats(n_groups={self.n_groups}, n_features={self.n_features}, "
            f"window={self.window}, border={self.border!r}, windows={int(self.counts.sum())})"
        )

    def _arrays(self) -> list[np.ndarray]:
        return [self.sums, self.counts, self.position_counts]

    def update(self, features, centers, labels) -> "WindowStats":
        """Add the windows of one utterance: features (F, T), centers (K,), labels (K,)."""
        _windowed_into(features, centers, labels, self.border, self.sums, self.counts, self.position_counts)
        return self

    def merge(self, other: "WindowStats") -> "WindowStats":
        """Add ``other``'s state into this one (in place); returns self."""
        if not isinstance(other, WindowStats) or (
            other.n_groups,
            other.n_features,
            other.window,
            other.border,
        ) != (self.n_groups, self.n_features, self.window, self.border):
            raise ValueError(f"cannot merge {other!r} into {self!r}: settings differ")
        for mine, theirs in zip(self._arrays(), other._arrays()):
            mine += theirs
        return self

    def all_reduce(self, group=None) -> "WindowStats":
        """Sum the state over all processes (torch.distributed SUM); no-op if not initialized."""
        _all_reduce_arrays(self._arrays(), group)
        return self

    def copy(self) -> "WindowStats":
        return WindowStats.from_dict(self.to_dict())

    @property
    def means(self) -> np.ndarray:
        """(G, F, W) mean window; NaN where no window covered a position."""
        denom = self.position_counts[:, None, :].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            m = self.sums / denom
        m[np.broadcast_to(denom == 0, m.shape)] = np.nan
        return m

    def result(self) -> WindowSummary:
        """Means (G, F, W), counts (G,), position_counts (G, W)."""
        return WindowSummary(self.means, self.counts.copy(), self.position_counts.copy())

    def to_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """State as arrays (``sums``, ``counts``, ``position_counts``, ``border``), npz-friendly."""
        return {
            prefix + "sums": self.sums.copy(),
            prefix + "counts": self.counts.copy(),
            prefix + "position_counts": self.position_counts.copy(),
            prefix + "border": np.array(self.border),
        }

    @classmethod
    def from_dict(cls, d, prefix: str = "") -> "WindowStats":
        """Inverse of :meth:`to_dict`."""
        sums = np.asarray(d[prefix + "sums"], dtype=np.float64)
        if sums.ndim != 3:
            raise ValueError(f"{prefix}sums must be 3-D (G, F, W), got shape {sums.shape}")
        out = cls(*sums.shape, border=str(np.asarray(d[prefix + "border"])))
        out.sums[...] = sums
        out.counts[...] = np.asarray(d[prefix + "counts"], dtype=np.int64)
        out.position_counts[...] = np.asarray(d[prefix + "position_counts"], dtype=np.int64)
        return out
