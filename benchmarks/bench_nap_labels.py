"""Labelling every frame of every layer for NAPs: whole batch at once vs utterance by utterance.

What NAPEstimator needs per batch: the label of each frame on each of the 11
layers, from the forced-alignment letters (moved from the output axis) or from
the phone segments. Baseline: the public per-utterance functions,
``alignment.transfer_labels`` and ``alignment.phone_labels``, called for each
utterance and layer (what the estimator did until 2026-12-01). Ours: the
stream's batch labels, ``StreamBatch.letter_labels`` / ``StreamBatch.phone_labels``
(one label transfer or time axis per layer for the whole batch; what
``NAPEstimator.partial_fit`` reads since the corpus stream, where it only maps
them to groups). Both start from the same forced-alignment paths
(``StreamBatch.output_paths``, computed once, not timed; the batch's cached
labels are dropped before each timed run) and must give the same labels (-1 on
padding and where there is none); best of ``--repeats``, interleaved. Shipped
model and corpus. Usage::

    .venv/bin/python benchmarks/bench_nap_labels.py [--repeats 5] [--utterances 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from asr_introspect.alignment import (
    frame_times,
    letter_labels,
    phone_labels,
    transfer_labels,
)
from asr_introspect.loading import load_model_and_corpus
from asr_introspect.stream import stream_corpus


def _forget_labels(batches) -> None:
    """Drop the batches' cached label arrays (keep the CTC paths, lengths and frames)."""
    for ab in batches:
        for key in [k for k in ab._cache if k[0] in ("letters", "phones")]:
            del ab._cache[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--utterances", type=int, default=0, help="the first N of the corpus (0: all)")
    args = parser.parse_args()
    model, utterances, _, _ = load_model_and_corpus()
    utterances = utterances[: args.utterances] if args.utterances else utterances
    model.eval()
    layers = list(model.layer_names)
    batches = list(stream_corpus(model, utterances, layers, batch_size=args.batch_size))
    n_frames = sum(int(ab.lengths[name].sum()) for ab in batches for name in layers)
    paths = [ab.output_paths("forced") for ab in batches]  # the forced alignment: computed once, not timed
    fm, fc, blank = model.frame_map, model.feature_config, model.alphabet.blank

    def per_utterance(by):
        def run():
            out = []
            for ab, batch_paths in zip(batches, paths):
                per_layer = {
                    name: np.full((len(ab.utterances), ab.activations[name].shape[2]), -1, np.int64) for name in layers
                }
                for b, utt in enumerate(ab.utterances):
                    if (by == "letter" and batch_paths[b] is None) or (by == "phoneme" and not utt.phones):
                        continue  # no labels: the row stays -1
                    n_in = int(ab.feature_lengths[b])
                    out_labels = letter_labels(batch_paths[b], "spike", blank=blank) if by == "letter" else None
                    for name in layers:
                        n = int(ab.lengths[name][b])
                        if by == "letter":
                            raw = (
                                out_labels
                                if name == model.output_layer
                                else transfer_labels(out_labels, fm, model.output_layer, name, n_in)
                            )
                        else:
                            raw = phone_labels(utt.phones, frame_times(fm, name, n, fc))
                        per_layer[name][b, :n] = raw
                out.append(per_layer)
            return out

        return run

    def batched(by):
        def run():
            if by == "letter":
                return [{name: ab.letter_labels(name, "forced", "spike") for name in layers} for ab in batches]
            return [{name: ab.phone_labels(name) for name in layers} for ab in batches]

        return run

    methods = {}
    for by in ("letter", "phoneme"):
        methods[f"{by}s, per utterance and layer (transfer_labels / phone_labels)"] = per_utterance(by)
        methods[f"{by}s, whole batch per layer (StreamBatch)"] = batched(by)
        _forget_labels(batches)
        reference, ours = per_utterance(by)(), batched(by)()
        for ref, mine in zip(reference, ours):
            for name in layers:
                assert np.array_equal(ref[name], mine[name]), (by, name)
        assert any((ref[name] >= 0).any() for ref in reference for name in layers), by  # not all "no label"
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(args.repeats):
        for name, fn in methods.items():
            _forget_labels(batches)  # the batch labels are cached per StreamBatch: recompute them each time
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    print(
        f"{len(utterances)} utterances, {len(batches)} batches, {len(layers)} layers, "
        f"{n_frames:,} layer frames; same labels checked\n"
    )
    print("| method | seconds | / whole batch |\n|---|---:|---:|")
    for by in ("letter", "phoneme"):
        mine = best[f"{by}s, whole batch per layer (StreamBatch)"]
        for name, seconds in best.items():
            if name.startswith(by):
                print(f"| {name} | {seconds:.4f} | {seconds / mine:.1f} |")


if __name__ == "__main__":
    main()
