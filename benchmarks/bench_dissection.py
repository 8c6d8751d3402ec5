"""Benchmark the dissection pass against the stream it rides on (goal: at least 0.8x the stream's speed).

Model and corpus: the shipped default model and evaluation corpus (160 flite
utterances, 491 s) when they exist; otherwise a stand-in ("small" preset with
random weights and a corpus synthesized with flite). The output says which.

Timed in one run, over the same length-bucketed batches, featurized once up
front (so reading and featurizing audio is in neither), each ``--repeats``
times interleaved, best time reported:

1. ``stream`` (the baseline): ``stream_corpus`` over the batches with the
   dissected layers recorded and nothing consuming them (forward + hooks);
2. ``dissection pass``: the same stream feeding ``DissectionEstimator.partial_fit``
   (thresholds from a calibration done before timing; the per-utterance acoustic
   tracks already cached, as in the pass that follows the calibration):
   concept codes on every layer, forced alignment for the letters, concept
   counts, co-occurrences and the top-K heaps;
3. ``calibration pass``: ``ActivationQuantiles`` fed by the same stream
   (histograms of every neuron, the CTC lag, and each layer's response lag);

and, once each: the one-off costs of the acoustic tracks per utterance (F0 with
``librosa.pyin``, RMS energy, spectral centroid) and of the word positions
(CMUdict), relative to one stream over the corpus.

Speed ratio = stream time / pass time (goal >= 0.8 for the dissection pass),
from the best wall time and from the best process CPU time (less sensitive to
other jobs; ``--threads 1`` is the cleanest). Usage::

    .venv/bin/python benchmarks/bench_dissection.py [--utterances 160] [--layers all] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numba
import numpy as np
import torch


@contextlib.contextmanager
def _in_memory(batches):
    """``stream_corpus`` yields ``batches`` (featurized once, up front) instead of reading the audio again."""
    from asr_introspect import stream

    original = stream.iterate_batches
    stream.iterate_batches = lambda *args, **kwargs: iter(batches)
    try:
        yield
    finally:
        stream.iterate_batches = original


def _corpus_and_model(n_utterances: int, tmp: Path):
    from asr_introspect.defaults import DEFAULT_CORPUS, DEFAULT_MODEL

    if DEFAULT_MODEL.is_file() and DEFAULT_CORPUS.is_dir():
        from asr_introspect.loading import load_model_and_corpus

        model, utterances, mp, dp = load_model_and_corpus()
        return model, utterances[:n_utterances], f"shipped model {mp.name}, shipped corpus {dp.name}"
    from asr_introspect.corpus import load_corpus, synthesize_corpus
    from asr_introspect.models import build_model

    out = tmp / "corpus"
    synthesize_corpus(
        out, n_utterances=n_utterances, voices=["slt", "awb", "rms", "kal16"], seed=0, test_text_fraction=0.0
    )
    torch.manual_seed(0)
    model = build_model("small").eval()
    return model, load_corpus(out), f"STAND-IN: 'small' preset (random weights), {n_utterances} flite utterances"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=160)
    parser.add_argument("--layers", default="all", help="comma-separated layers, or 'all'")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and Numba threads (default: library defaults)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # g2p's tagger fallback warning

    from asr_introspect.corpus import iterate_batches
    from asr_introspect.dissection import ActivationQuantiles, ConceptVocabulary, DissectionEstimator
    from asr_introspect.stream import fit_estimators, stream_corpus

    with tempfile.TemporaryDirectory() as tmp:
        model, utterances, what = _corpus_and_model(args.utterances, Path(tmp))
        model.eval()
        layers = list(model.layer_names) if args.layers == "all" else args.layers.split(",")
        batches = list(
            iterate_batches(utterances, model.feature_config, model.alphabet, batch_size=args.batch_size, bucket=True)
        )
        seconds_audio = sum(float(b.feature_lengths.sum()) for b in batches) * model.feature_config.frame_seconds

        def stream_only():
            with _in_memory(batches):
                for _ in stream_corpus(model, utterances, layers, batch_size=args.batch_size):
                    pass

        # one-off costs, measured once: word positions (CMUdict load included) and acoustic tracks
        vocabulary = ConceptVocabulary.for_corpus(
            utterances, model.alphabet, sample_rate=model.feature_config.sample_rate
        )
        t0 = time.perf_counter()
        for utt in utterances:
            vocabulary.tracks_of(utt)
        tracks_seconds = time.perf_counter() - t0
        only_f0 = ConceptVocabulary.for_corpus(utterances, model.alphabet, families=["f0"])
        t0 = time.perf_counter()
        for utt in utterances:
            only_f0.tracks_of(utt)
        f0_seconds = time.perf_counter() - t0

        estimator = DissectionEstimator(layers, vocabulary=vocabulary, calibration=None)
        estimator.calibrate(model, utterances)

        def dissection_pass():
            estimator.reset()
            with _in_memory(batches):
                fit_estimators(model, utterances, [estimator], batch_size=args.batch_size)

        def calibration_pass():
            with _in_memory(batches):
                calibration = ActivationQuantiles(layers, measure_lag=True, lag_range=estimator.lag_range)
                fit_estimators(model, utterances, [calibration], batch_size=args.batch_size)

        methods = {"stream": stream_only, "dissection pass": dissection_pass, "calibration pass": calibration_pass}
        for fn in methods.values():  # warm-up: Numba cache load, allocator, first-call costs
            fn()
        # the in-memory batches give the dissection of the stream from the audio files
        from_files = DissectionEstimator(
            layers, vocabulary=vocabulary, thresholds=estimator.thresholds_, shift=estimator.shift_, lag=estimator.lags_
        )
        from_files.fit(model, utterances)
        dissection_pass()
        for name in layers:
            assert np.array_equal(from_files.counts_[name].active, estimator.counts_[name].active), name
            assert np.array_equal(from_files.top_[name].frames, estimator.top_[name].frames), name
        best = {name: float("inf") for name in methods}
        best_cpu = {name: float("inf") for name in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
                best_cpu[name] = min(best_cpu[name], time.process_time() - c0)

    rows = [
        {
            "method": name,
            "seconds": best[name],
            "cpu_seconds": best_cpu[name],
            "x_realtime": seconds_audio / best[name],
            "speed_vs_stream": best["stream"] / best[name],
            "speed_vs_stream_cpu": best_cpu["stream"] / best_cpu[name],
        }
        for name in methods
    ]
    info = {
        "what": what,
        "utterances": len(utterances),
        "audio_seconds": seconds_audio,
        "layers": layers,
        "neurons": int(sum(estimator.counts_[n].total.shape[0] for n in layers)),
        "concepts": len(vocabulary),
        "base_labels": vocabulary.n_base,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "rows": rows,
        "one_off": {
            "acoustic_tracks_and_positions_seconds": tracks_seconds,
            "f0_only_seconds": f0_seconds,
            "tracks_over_stream": tracks_seconds / best["stream"],
        },
    }
    print(
        f"{what}\n{len(utterances)} utterances, {seconds_audio:.1f} s of audio, {len(layers)} layers, "
        f"{info['neurons']} neurons, {len(vocabulary)} concepts ({vocabulary.n_base} base labels), batch "
        f"{args.batch_size}, torch threads {info['torch_threads']}, load average {info['load_average_1min']:.1f}"
    )
    print(f"{'method':20s} {'wall s':>8s} {'cpu s':>8s} {'x real time':>11s} {'speed vs stream':>16s} {'(cpu)':>7s}")
    for r in rows:
        print(
            f"{r['method']:20s} {r['seconds']:8.3f} {r['cpu_seconds']:8.3f} {r['x_realtime']:11.1f} "
            f"{r['speed_vs_stream']:16.2f} {r['speed_vs_stream_cpu']:7.2f}"
        )
    print(
        f"one-off, per run: acoustic tracks + word positions {tracks_seconds:.2f} s "
        f"({tracks_seconds / best['stream']:.1f}x one stream; F0 alone {f0_seconds:.2f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
