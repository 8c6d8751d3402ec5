"""Top-activating segments per neuron: a bounded heap per neuron, fed batch by batch.

A *segment* of neuron ``n`` is a peak of its activation in one utterance: a
frame larger than the frame before it and at least as large as every frame
within ``radius`` frames on either side, so the K entries of a neuron are K
distinct events, not K neighbouring frames of one vowel (a plateau counts
once, at its first frame). ``radius=0`` keeps every valid frame.

:class:`TopK` holds, for N neurons, the K largest entries seen so far:
``values`` (N, K), ``utterances`` (N, K) (an index into a list of utterance
ids that the caller keeps), ``frames`` (N, K) and ``codes`` (N, K, F): the
concept codes of the frame (:meth:`ConceptVocabulary.frame_codes`). Entries
are sorted by value, largest first; empty slots have value ``-inf`` and
utterance -1. An entry displaces another only when strictly larger, so among
equal values the one streamed first stays: the heap equals a stable sort
(value descending, stream order) of every peak, truncated to K.

:meth:`TopK.update` walks a batch once per neuron in a Numba kernel (neurons
in parallel); a frame that does not beat the neuron's current K-th value costs
one comparison, so after the first batches nearly every frame is rejected at once.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["TopK"]


@numba.njit(cache=True)
def _update_neuron(
    acts, lengths, radius, first, codes, row_max, n, values, utterances, frames, top_codes
):  # pragma: no cover
    """Offer neuron n's peaks of the batch to its heap (row n of the heap arrays)."""
    k = values.shape[1]
    n_codes = codes.shape[2]
    floor = values[n, k - 1]
    for b in range(acts.shape[0]):
        length = lengths[b]
        if not row_max[b, n] > floor:  # most rows cannot beat the heap's floor
            continue
        for t in range(length):
            v = acts[b, n, t]
            if not v > floor:
                continue
            if radius > 0:
                if t > 0 and not v > acts[b, n, t - 1]:
                    continue
                peak = True
                for s in range(max(0, t - radius), min(length, t + radius + 1)):
                    if acts[b, n, s] > v:
                        peak = False
                        break
                if not peak:
                    continue
            pos = k - 1
            while pos > 0 and v > values[n, pos - 1]:
                values[n, pos] = values[n, pos - 1]
                utterances[n, pos] = utterances[n, pos - 1]
                frames[n, pos] = frames[n, pos - 1]
                for f in range(n_codes):
                    top_codes[n, pos, f] = top_codes[n, pos - 1, f]
                pos -= 1
            values[n, pos] = v
            utterances[n, pos] = first + b
            frames[n, pos] = t
            for f in range(n_codes):
                top_codes[n, pos, f] = codes[b, t, f]
            floor = values[n, k - 1]


@numba.njit(parallel=True, cache=True)
def _update(acts, lengths, radius, first, codes, row_max, values, utterances, frames, top_codes):  # pragma: no cover
    for n in prange(acts.shape[1]):
        _update_neuron(acts, lengths, radius, first, codes, row_max, n, values, utterances, frames, top_codes)


class TopK:
    """The K largest entries per neuron (a bounded heap per neuron, kept as sorted arrays).

    n_neurons, k: sizes; n_codes: concept codes stored per entry (facets).
    """

    def __init__(self, n_neurons: int, k: int, n_codes: int = 0) -> None:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.values = np.full((n_neurons, self.k), -np.inf, dtype=np.float64)
        self.utterances = np.full((n_neurons, self.k), -1, dtype=np.int64)
        self.frames = np.full((n_neurons, self.k), -1, dtype=np.int64)
        self.codes = np.full((n_neurons, self.k, n_codes), -1, dtype=np.int16)

    @property
    def n_neurons(self) -> int:
        return self.values.shape[0]

    def update(
        self,
        activations: np.ndarray,
        lengths: np.ndarray,
        radius: int,
        first: int,
        codes: np.ndarray | None = None,
        row_max: np.ndarray | None = None,
    ) -> TopK:
        """Offer every peak of a batch.

        activations: (B, N, T) float32 or float64; lengths: (B,) valid frames; radius: frames (module
        docstring); first: utterance index of row 0 (row b is utterance ``first + b``); codes: (B, T, F)
        concept codes of every frame (None: no codes); row_max: (B, N) an upper bound of each row's valid
        values (e.g. ``activations.amax(-1)``, padding included), to skip rows that cannot enter the heap.
        """
        acts = np.ascontiguousarray(activations)
        if acts.dtype not in (np.float32, np.float64):
            acts = acts.astype(np.float32)
        B, N, T = acts.shape
        if N != self.n_neurons:
            raise ValueError(f"expected {self.n_neurons} neurons, got {N}")
        if codes is None:
            codes = np.full((B, T, self.codes.shape[2]), -1, dtype=np.int32)
        if row_max is None:
            row_max = np.full((B, N), np.inf)
        _update(
            acts,
            np.ascontiguousarray(lengths, dtype=np.int64),
            int(radius),
            int(first),
            np.ascontiguousarray(codes, dtype=np.int32),
            np.ascontiguousarray(row_max, dtype=np.float64),
            self.values,
            self.utterances,
            self.frames,
            self.codes,
        )
        return self

    def push(self, values: np.ndarray, utterances: np.ndarray, frames: np.ndarray, codes: np.ndarray | None = None):
        """Offer ready entries: values, utterances, frames (N, M) (and codes (N, M, F)); keep the K largest
        of each row. Entries already held win ties against new ones; among new ones the earlier column."""
        values = np.asarray(values, dtype=np.float64)
        N, M = values.shape
        if N != self.n_neurons:
            raise ValueError(f"expected {self.n_neurons} neurons, got {N}")
        if codes is None:
            codes = np.full((N, M, self.codes.shape[2]), -1, dtype=np.int16)
        all_values = np.concatenate([self.values, values], axis=1)
        order = np.argsort(-all_values, axis=1, kind="stable")[:, : self.k]
        self.values = np.take_along_axis(all_values, order, axis=1)
        self.utterances = np.take_along_axis(np.concatenate([self.utterances, utterances], axis=1), order, axis=1)
        self.frames = np.take_along_axis(np.concatenate([self.frames, frames], axis=1), order, axis=1)
        all_codes = np.concatenate([self.codes, np.asarray(codes, dtype=np.int16)], axis=1)
        self.codes = np.take_along_axis(all_codes, order[:, :, None], axis=1)
        return self

    def merge(self, other: TopK, utterance_offset: int = 0) -> TopK:
        """Add ``other``'s entries (its utterance indices shifted by ``utterance_offset``); ours win ties."""
        utterances = np.where(other.utterances >= 0, other.utterances + utterance_offset, -1)
        return self.push(other.values, utterances, other.frames, other.codes)

    def count(self) -> np.ndarray:
        """(N,) entries held per neuron."""
        return (self.utterances >= 0).sum(axis=1)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}values": self.values,
            f"{prefix}utterances": self.utterances,
            f"{prefix}frames": self.frames,
            f"{prefix}codes": self.codes,
        }

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> TopK:
        values = np.asarray(arrays[f"{prefix}values"], dtype=np.float64)
        codes = np.asarray(arrays[f"{prefix}codes"], dtype=np.int16)
        top = cls(values.shape[0], values.shape[1], codes.shape[2])
        top.values = values.copy()
        top.utterances = np.asarray(arrays[f"{prefix}utterances"], dtype=np.int64).copy()
        top.frames = np.asarray(arrays[f"{prefix}frames"], dtype=np.int64).copy()
        top.codes = codes.copy()
        return top
