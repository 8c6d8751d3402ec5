"""Labelling every frame of every layer for NAPs: whole batch at once vs utterance by utterance.

What NAPEstimator needs per batch: the group of each frame on each of the 11
layers, from the forced-alignment letters (moved from the output axis) or from
the phone segments. Baseline: the public per-utterance functions,
``alignment.transfer_labels`` and ``alignment.phone_labels``, called for each
utterance and layer (what the estimator did until 2026-12-01). Ours:
``NAPEstimator._batch_labels``, one label transfer or time axis per layer for
the whole batch. Both start from the same forced-alignment letters (the
alignment itself is not timed) and must give the same labels; best of
``--repeats``, interleaved. Shipped model and corpus. Usage::

    .venv/bin/python benchmarks/bench_nap_labels.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from asr_introspect.alignment import frame_times, phone_labels, transfer_labels
from asr_introspect.hooks import stream_activations
from asr_introspect.loading import load_model_and_corpus
from asr_introspect.naps import NAPEstimator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    model, utterances, _, _ = load_model_and_corpus()
    model.eval()
    layers = list(model.layer_names)
    batches = list(stream_activations(model, utterances, layers, batch_size=args.batch_size))
    n_frames = sum(int(ab.lengths[name].sum()) for ab in batches for name in layers)
    estimators = {by: NAPEstimator(model, by, layers) for by in ("letter", "phoneme")}
    letters = [[estimators["letter"]._output_letters(ab, b) for b in range(len(ab.utterances))] for ab in batches]
    fm, fc = model.frame_map, model.feature_config

    def per_utterance(by):
        est = estimators[by]

        def run():
            out = []
            for ab, batch_letters in zip(batches, letters):
                per_layer = {name: np.full((len(ab.utterances), ab.activations[name].shape[2]), -1, np.int64)
                             for name in layers}
                for b, utt in enumerate(ab.utterances):
                    n_in = int(ab.feature_lengths[b])
                    for name in layers:
                        n = int(ab.lengths[name][b])
                        if by == "letter":
                            raw = batch_letters[b] if name == model.output_layer else \
                                transfer_labels(batch_letters[b], fm, model.output_layer, name, n_in)
                        else:
                            raw = phone_labels(utt.phones, frame_times(fm, name, n, fc))
                        per_layer[name][b, :n] = est._map[raw]
                out.append(per_layer)
            return out
        return run

    def batched(by):
        est = estimators[by]
        if by == "letter":  # reuse the alignments computed above: time the labelling only
            cached = {id(ab): batch_letters for ab, batch_letters in zip(batches, letters)}
            est._output_letters = lambda ab, b: cached[id(ab)][b]
        return lambda: [est._batch_labels(ab) for ab in batches]

    methods = {}
    for by in ("letter", "phoneme"):
        methods[f"{by}s, per utterance and layer (transfer_labels / phone_labels)"] = per_utterance(by)
        methods[f"{by}s, whole batch per layer (NAPEstimator)"] = batched(by)
        reference, ours = per_utterance(by)(), batched(by)()
        for ref, mine in zip(reference, ours):
            for name in layers:
                assert np.array_equal(ref[name], mine[name]), (by, name)
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(args.repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"{len(utterances)} utterances, {len(batches)} batches, {len(layers)} layers, "
          f"{n_frames:,} layer frames; same labels checked\n")
    print("| method | seconds | / whole batch |\n|---|---:|---:|")
    for by in ("letter", "phoneme"):
        mine = best[f"{by}s, whole batch per layer (NAPEstimator)"]
        for name, seconds in best.items():
            if name.startswith(by):
                print(f"| {name} | {seconds:.4f} | {seconds / mine:.1f} |")


if __name__ == "__main__":
    main()
