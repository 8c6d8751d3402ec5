"""Numba kernels of the dissection pass: activation histograms on fixed float bins, concept counts.

Float bins (data-independent, so histograms of different batches and processes add up): the float32
magnitude ``|x| = m * 2**e`` (``m`` in [0.5, 1), as ``math.frexp`` writes it) falls in octave ``e`` and
in one of :data:`SUBBINS` equal parts of it, so a bin is at most ``1/32`` of its lower edge wide
(3.1 %, at the bottom of an octave); the kernel reads ``e`` and the part from the float's bits.
Magnitudes below :data:`TINY` (``2**-20``) share the zero bin; those of ``2**20`` and above share the
outermost bins. Negative values mirror the positive bins, so the bin index grows with the value:
``x <= y`` implies ``bin(x) <= bin(y)``.

The histogram kernel runs one neuron per task of Numba's thread pool on the model's (B, N, T) layout. The
concept-count kernel reads the frames-major copy of the batch (``StreamBatch.padded_frames``, shared
with the other estimators of the pass; reading the model's (B, N, T) layout with a transpose in the
kernel cost 1.6x more) and splits the valid frames into one chunk per thread, each with its own totals,
added at the end. A loop over a runtime range of neurons (``range(j0, j1)``) does not vectorize, because
Numba then checks every index for wrap-around (it ran 7x slower than a loop over all neurons), so the
threads split frames, not neurons. Per-label counts and sums go through float32 staging (16 lanes per
AVX-512 vector), flushed into float64 every :data:`_FLUSH` frames: counts stay exact, and a float32
partial sums at most 1024 activations (relative error below 1024 * 2**-24 = 6e-5). As in
:mod:`asr_introspect.aggregate.kernels`, the per-frame loops index the 2-D arrays directly (no row
views, which cost reference-count updates per frame).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = [
    "SUBBINS",
    "TINY",
    "N_BINS",
    "ZERO_BIN",
    "float_bins",
    "bin_lower_edges",
    "histogram_into",
    "concept_counts_into",
    "cooccurrence_into",
]

_SUB_BITS = 5
SUBBINS = 1 << _SUB_BITS
E_MIN, E_MAX = -19, 20  # frexp exponents of 2**-20 and of the largest magnitude below 2**20
TINY = 2.0**-20
N_KEYS = (E_MAX - E_MIN + 1) * SUBBINS
ZERO_BIN = N_KEYS
N_BINS = 2 * N_KEYS + 1
_FLUSH = 1024  # frames staged in float32 before they are added to the float64 totals
_MIN_CHUNK = 256  # fewest frames per thread of the concept-count kernel


@numba.njit(cache=True, inline="always")
def _bin_of_bits(bits):  # pragma: no cover - compiled
    """Bin of a float32 given as its int32 bit pattern: sign, exponent field E and the top mantissa bits
    give frexp's exponent ``E - 126`` and sub-bin directly (no float arithmetic)."""
    exponent = (bits >> 23) & 0xFF
    e = exponent - 126
    if exponent == 0xFF:
        if bits & 0x7FFFFF:  # NaN
            return ZERO_BIN
        key = N_KEYS - 1  # infinity
    elif e < E_MIN:  # below TINY, subnormals and zeros
        return ZERO_BIN
    elif e > E_MAX:
        key = N_KEYS - 1
    else:
        key = (e - E_MIN) * SUBBINS + ((bits >> (23 - _SUB_BITS)) & (SUBBINS - 1))
    if bits >= 0:
        return ZERO_BIN + 1 + key
    return ZERO_BIN - 1 - key


@numba.njit(cache=True)
def _float_bins(bits, out):  # pragma: no cover - compiled
    for i in range(bits.shape[0]):
        out[i] = _bin_of_bits(bits[i])


def float_bins(values) -> np.ndarray:
    """Bin index of every value (any shape, rounded to float32 first) -> int64 array of the same shape."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty(values.size, dtype=np.int64)
    _float_bins(values.reshape(-1).view(np.int32), out)
    return out.reshape(values.shape)


def bin_lower_edges() -> np.ndarray:
    """(N_BINS,) float32 ``edge[i]``: for every float32 ``x`` (not NaN), ``x >= edge[i]`` exactly when
    ``bin(x) >= i`` (``edge[0] = -inf``)."""
    keys = np.arange(N_KEYS)
    e = E_MIN + keys // SUBBINS
    sub = keys % SUBBINS
    lower = np.ldexp(0.5 + sub / (2.0 * SUBBINS), e)  # magnitude where key k starts (exact in float32)
    upper = np.ldexp(0.5 + (sub + 1) / (2.0 * SUBBINS), e)
    edges = np.empty(N_BINS, dtype=np.float64)
    edges[ZERO_BIN + 1 :] = lower
    edges[ZERO_BIN] = -TINY  # bin >= ZERO_BIN: x > -TINY
    edges[:ZERO_BIN] = -upper[::-1]  # bin >= ZERO_BIN - 1 - k: x > -upper(k)
    out = edges.astype(np.float32)
    # ">" edges become ">=" edges one float32 step up; the lowest bin takes everything
    out[: ZERO_BIN + 1] = np.nextafter(out[: ZERO_BIN + 1], np.float32(np.inf))
    out[0] = -np.inf
    return out


@numba.njit(parallel=True, cache=True)
def _histogram(bits, lengths, hist):  # pragma: no cover - compiled
    for n in prange(bits.shape[1]):
        for b in range(bits.shape[0]):
            for t in range(lengths[b]):
                hist[n, _bin_of_bits(bits[b, n, t])] += 1


def histogram_into(activations: np.ndarray, lengths: np.ndarray, hist: np.ndarray) -> None:
    """Add the float bins of the valid frames of ``activations`` ((B, N, T), rounded to float32; frame t
    of row b is valid when ``t < lengths[b]``) into ``hist`` ((N, N_BINS) int64)."""
    acts = np.ascontiguousarray(activations, dtype=np.float32)
    _histogram(acts.view(np.int32), np.ascontiguousarray(lengths, dtype=np.int64), hist)


@numba.njit(cache=True, fastmath={"contract"})
def _counts_chunk(frames, rows, codes, thresholds, i0, i1, active, sums, n_active, total, total_sq):  # pragma: no cover
    """Frames ``rows[i0:i1]`` into one thread's float64 totals, through float32 staging flushed every
    _FLUSH frames (counts stay exact; a float32 partial sums at most _FLUSH activations)."""
    n_neurons = frames.shape[1]
    n_base = active.shape[0]
    n_groups = codes.shape[1]
    stage_a = np.zeros((n_base, n_neurons), dtype=np.float32)
    stage_s = np.zeros((n_base, n_neurons), dtype=np.float32)
    stage_t = np.zeros((3, n_neurons), dtype=np.float32)
    staged = np.zeros(n_base, dtype=np.bool_)
    for start in range(i0, i1, _FLUSH):
        for i in range(start, min(i1, start + _FLUSH)):
            t = rows[i]
            for j in range(n_neurons):
                x = frames[t, j]
                stage_t[0, j] += np.float32(1.0) if x >= thresholds[j] else np.float32(0.0)
                stage_t[1, j] += x
                stage_t[2, j] += x * x
            for g in range(n_groups):
                r = codes[t, g]
                if r < 0:
                    continue
                staged[r] = True
                for j in range(n_neurons):
                    x = frames[t, j]
                    stage_a[r, j] += np.float32(1.0) if x >= thresholds[j] else np.float32(0.0)
                    stage_s[r, j] += x
        for j in range(n_neurons):
            n_active[j] += stage_t[0, j]
            total[j] += stage_t[1, j]
            total_sq[j] += stage_t[2, j]
            stage_t[0, j] = 0
            stage_t[1, j] = 0
            stage_t[2, j] = 0
        for r in range(n_base):
            if staged[r]:
                for j in range(n_neurons):
                    active[r, j] += stage_a[r, j]
                    sums[r, j] += stage_s[r, j]
                    stage_a[r, j] = 0
                    stage_s[r, j] = 0
                staged[r] = False


@numba.njit(parallel=True, cache=True)
def _concept_counts(frames, rows, codes, thresholds, active, sums, n_active, total, total_sq):  # pragma: no cover
    n_parts = active.shape[0]
    n = rows.shape[0]
    for p in prange(n_parts):
        _counts_chunk(
            frames,
            rows,
            codes,
            thresholds,
            p * n // n_parts,
            (p + 1) * n // n_parts,
            active[p],
            sums[p],
            n_active[p],
            total[p],
            total_sq[p],
        )


def concept_counts_into(
    frames: np.ndarray,
    rows: np.ndarray,
    codes: np.ndarray,
    thresholds: np.ndarray,
    active: np.ndarray,
    sums: np.ndarray,
    n_active: np.ndarray,
    total: np.ndarray,
    total_sq: np.ndarray,
) -> None:
    """Add one batch of one layer to the dissection counts.

    frames: (T, N) float32, frames-major (``StreamBatch.padded_frames``); rows: (n,) int64 the valid
    frames; codes: (T, G) int32 base label per facet group of each frame (-1: none); thresholds: (N,)
    float32 (a frame is active when ``value >= threshold``). Adds, in place: ``active[r, j]`` (K_base, N)
    int64 active frames with base label r, ``sums[r, j]`` (K_base, N) float64 activation sums;
    ``n_active`` (N,) int64, ``total``, ``total_sq`` (N,) float64 over the valid frames. Chunks of frames
    run on Numba's threads, each into its own totals, added here.
    """
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    n_base, n_neurons = active.shape
    parts = max(1, min(numba.get_num_threads(), rows.size // _MIN_CHUNK))
    part_active = np.zeros((parts, n_base, n_neurons))
    part_sums = np.zeros((parts, n_base, n_neurons))
    part_totals = np.zeros((3, parts, n_neurons))
    _concept_counts(
        frames,
        rows,
        np.ascontiguousarray(codes, dtype=np.int32),
        np.ascontiguousarray(thresholds, dtype=np.float32),
        part_active,
        part_sums,
        part_totals[0],
        part_totals[1],
        part_totals[2],
    )
    active += part_active.sum(axis=0).round().astype(np.int64)
    sums += part_sums.sum(axis=0)
    n_active += part_totals[0].sum(axis=0).round().astype(np.int64)
    total += part_totals[1].sum(axis=0)
    total_sq += part_totals[2].sum(axis=0)


@numba.njit(cache=True)
def _cooccurrence(codes, lengths, frames_per_label, cooc):  # pragma: no cover - compiled
    n_groups = codes.shape[2]
    for b in range(codes.shape[0]):
        for t in range(lengths[b]):
            for g in range(n_groups):
                r = codes[b, t, g]
                if r < 0:
                    continue
                frames_per_label[r] += 1
                for h in range(n_groups):
                    s = codes[b, t, h]
                    if s >= 0:
                        cooc[r, s] += 1


def cooccurrence_into(codes: np.ndarray, lengths: np.ndarray, frames_per_label: np.ndarray, cooc: np.ndarray) -> None:
    """Add base-label frame counts ((K_base,) int64) and co-occurrences ((K_base, K_base) int64: frames
    carrying both labels) of ``codes`` ((B, T, G) int32, -1: none) over the first ``lengths[b]`` frames."""
    _cooccurrence(
        np.ascontiguousarray(codes, dtype=np.int32),
        np.ascontiguousarray(lengths, dtype=np.int64),
        frames_per_label,
        cooc,
    )
