"""``asr-introspect patterns``: letter- or phoneme-averaged input windows, before and after subtraction.

Writes to ``--out``: ``patterns_<by>.npz`` (averages, counts, the subtracted
mean, label names, the sums to recompute everything), ``patterns_<by>.json``
(settings, counts and spectral centroids per label), figures
(``<by>_before_after``, ``<by>_zscore``: PNG; ``<by>_centroids``: PNG + SVG; an SVG of
dozens of raster panels is slow and no sharper) and,
unless ``--no-audio``, one WAV per label of the subtracted pattern under
``audio/``.
"""

from __future__ import annotations

import argparse
import math

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def _shift_arg(value: str) -> str | int:
    if value in ("auto", "none"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or an integer, got {value!r}") from None


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "patterns", help="letter/phoneme-averaged spectrogram windows and the average-subtracted patterns")
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument("--by", choices=("letter", "phoneme"), required=True,
                        help="group windows by letters (model's CTC path) or phonemes (phone segments)")
    parser.add_argument("--source", choices=("predicted", "forced"), default="predicted",
                        help="letters from the greedy prediction or the forced alignment of the transcript")
    parser.add_argument("--window", type=_positive, default=None,
                        help="window length in input frames (default: the model's receptive field)")
    parser.add_argument("--frames", choices=("all", "centers"), default="all",
                        help="one window per labelled frame, or per letter span / phone segment centre")
    parser.add_argument("--shift-correction", type=_shift_arg, default="none",
                        help="move letter labels N output frames earlier; 'auto' estimates N from the "
                             "corpus' phone segments (alignment.estimate_shift); default none")
    parser.add_argument("--no-audio", action="store_true", help="skip the WAV sonifications")
    parser.add_argument("--batch-size", type=_positive, default=16)
    parser.add_argument("--limit", type=_positive, default=None, help="only the first N utterances")
    set_runner(parser, run)


def _finite(x: float) -> float | None:
    return round(float(x), 1) if math.isfinite(x) else None


def run(args: argparse.Namespace) -> dict:
    from asr_introspect.errors import InputError
    from asr_introspect.io import save_json
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.patterns import (PatternAverager, aligned_features, save_sonifications,
                                         vowel_fricative_centroids)
    from asr_introspect.plotting.common import save_figure
    from asr_introspect.plotting.patterns import before_after, centroid_chart, pattern_grid

    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    if args.limit is not None:
        utterances = utterances[: args.limit]
    progress = progress_enabled(args)
    shift = args.shift_correction
    shift_info: dict = {"requested": shift}
    alignments = None
    if args.by == "phoneme":
        if shift not in ("none", "auto", 0):
            raise InputError("--shift-correction moves letter labels (the CTC lag); phone segments "
                             "need none (drop the flag for --by phoneme)")
        shift = 0
    elif shift == "none":
        shift = 0
    elif shift == "auto":
        from asr_introspect.alignment import estimate_shift

        alignments = [a for a, _ in aligned_features(model, utterances, batch_size=args.batch_size,
                                                     progress=progress)]
        report = estimate_shift(alignments, model.frame_map, model.feature_config, model.output_layer)
        shift = report.correction_frames
        shift_info.update(report.summary())
        if report.utterances_used == 0:
            shift_info["note"] = "no utterance with usable phone segments: no correction applied"
    shift_info["applied_output_frames"] = shift

    averager = PatternAverager(by=args.by, source=args.source, window=args.window, frames=args.frames,
                               shift_correction=shift, batch_size=args.batch_size)
    averager.fit(model, utterances, alignments=alignments, progress=progress)
    result = averager.result()
    if int(result.counts.sum()) == 0:
        raise InputError(f"{data_path}: no labelled {args.by} windows (the corpus has "
                         + ("no phone segments" if args.by == "phoneme" else "no alignable utterances")
                         + "); nothing to average")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    npz_path = result.save(out / f"patterns_{args.by}.npz")
    positive = result.spectral_centroids("positive")
    energy = result.spectral_centroids("energy")
    counts = {name: int(c) for name, c in zip(result.names, result.counts)}
    report = {
        "by": args.by,
        "model": str(model_path),
        "data": str(data_path),
        "settings": result.settings,
        "shift_correction": shift_info,
        "utterances": averager.n_utterances_,
        "skipped_utterances": averager.skipped_,
        "windows": int(result.counts.sum()),
        "counts": counts,
        "spectral_centroid_hz": {
            "definition": "centroid over mel-band centre frequencies, at the aligned frame (mean of the "
                          "5 central columns); 'positive': weights = positive part of the subtracted "
                          "pattern; 'energy': weights = 10**(15 * average / 10), the power of the average "
                          "read as z-normalized log-mel with a 15 dB std",
            "positive": {n: _finite(c) for n, c in positive.items()},
            "energy": {n: _finite(c) for n, c in energy.items()},
        },
    }
    if args.by == "phoneme":
        check = vowel_fricative_centroids(positive)
        report["fricatives_vs_vowels_hz"] = {
            "fricative_min": _finite(check["fricative_min"]), "vowel_max": _finite(check["vowel_max"]),
            "vowel_median": _finite(check["vowel_median"]),
            "fricatives_above_all_vowels": bool(check["fricative_min"] > check["vowel_max"]),
        }
    figures = []
    figures += save_figure(before_after(result), out / f"{args.by}_before_after.png", svg=False)
    figures += save_figure(pattern_grid(result, "zscore"), out / f"{args.by}_zscore.png", svg=False)
    figures += save_figure(centroid_chart(result, positive), out / f"{args.by}_centroids.png")
    audio = [] if args.no_audio else save_sonifications(result, out / "audio", "subtract")
    report["figures"] = [str(p) for p in figures]
    report["audio"] = [str(p) for p in audio]
    json_path = save_json(out / f"patterns_{args.by}.json", report)

    summary = {
        "by": args.by, "model": str(model_path), "data": str(data_path),
        "utterances": averager.n_utterances_, "skipped": len(averager.skipped_),
        "windows": int(result.counts.sum()), "labels": int((result.counts > 0).sum()),
        "window": result.window, "shift_correction_frames": shift,
        "npz": str(npz_path), "json": str(json_path), "figures": [str(p) for p in figures if p.suffix == ".png"],
        "audio": len(audio),
        "spectral_centroid_hz": {n: _finite(c) for n, c in positive.items() if counts[n] > 0},
    }
    if args.by == "phoneme":
        summary["fricatives_above_all_vowels"] = report["fricatives_vs_vowels_hz"]["fricatives_above_all_vowels"]
    return summary
