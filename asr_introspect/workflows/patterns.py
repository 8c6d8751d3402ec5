"""Pattern workflow: letter- or phoneme-averaged input windows, before and after subtraction
(``asr-introspect patterns``).

Writes to ``out``: ``patterns_<by>.npz`` (averages, counts, the subtracted mean,
label names, the sums to recompute everything), ``patterns_<by>.json``
(settings, counts and spectral centroids per label), figures
(``<by>_before_after``, ``<by>_zscore``: PNG; ``<by>_centroids``: PNG + SVG; an
SVG of dozens of raster panels is slow and no sharper) and, with ``audio``, one
WAV per label of the subtracted pattern under ``audio/``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.alignment import estimate_shift
from asr_introspect.errors import InputError
from asr_introspect.io import save_json
from asr_introspect.patterns import PatternAverager, PatternResult, save_sonifications, vowel_fricative_centroids
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.patterns import before_after, centroid_chart, pattern_grid
from asr_introspect.stream import align_corpus
from asr_introspect.text import PHONES
from asr_introspect.workflows.checks import check_count, corpus_name, select_utterances
from asr_introspect.workflows.common import path_str

CENTROID_DEFINITION = (
    "centroid over mel-band centre frequencies, at the aligned frame (mean of the "
    "5 central columns); 'positive': weights = positive part of the subtracted "
    "pattern; 'energy': weights = 10**(15 * average / 10), the power of the average "
    "read as z-normalized log-mel with a 15 dB std"
)


@dataclass
class PatternsRun:
    """``summary``: what ``patterns --json`` prints; ``report``: the content of ``patterns_<by>.json``;
    ``result``: the averages (:class:`PatternResult`)."""

    summary: dict
    report: dict
    result: PatternResult


def _rounded(x: float) -> float | None:
    return round(float(x), 1) if math.isfinite(x) else None


def shift_value(value: str | int) -> str | int:
    """ "auto", "none" or an integer (also given as a string) of output frames; InputError otherwise."""
    if value in ("auto", "none"):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"--shift-correction: expected auto, none or an integer, got {value!r}") from None


#: the largest pattern state (sums, squares and the result's copies, float64) a run may allocate
MAX_PATTERN_BYTES = 2 * 1024**3


def check_window(model, utterances: Sequence, window: int | None, by: str) -> None:
    """InputError for a ``window`` (input frames) longer than any window of the corpus can be (twice its
    longest utterance) or too large for memory; None (the receptive field) passes."""
    if window is None:
        return
    frame_seconds = model.feature_config.frame_seconds
    durations = [u.duration for u in utterances if getattr(u, "duration", None)]
    if durations and len(durations) == len(utterances):
        longest = int(math.ceil(max(durations) / frame_seconds)) + 1
        if window > 2 * longest + 1:
            raise InputError(
                f"--window {window}: longer than twice the longest utterance ({max(durations):.2f} s, "
                f"{longest} input frames), so it would hold only padding; choose at most {2 * longest + 1}"
            )
    groups = len(PHONES) if by == "phoneme" else len(model.alphabet.symbols)
    bands = getattr(model.feature_config, "n_mels", 128)
    per_frame = 6 * groups * bands * 8  # sums + squares + means/z-scores/subtracted copies, float64
    if window * per_frame > MAX_PATTERN_BYTES:
        raise InputError(
            f"--window {window}: {groups} {by} patterns of {bands} x {window} would need about "
            f"{window * per_frame / 1024**3:.1f} GiB; choose at most {MAX_PATTERN_BYTES // per_frame} input frames"
        )


def patterns(
    model,
    utterances: Sequence,
    out: str | Path,
    *,
    by: str,
    source: str = "predicted",
    window: int | None = None,
    frames: str = "all",
    shift_correction: str | int = "none",
    audio: bool = True,
    batch_size: int = 16,
    limit: int | None = None,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = False,
) -> PatternsRun:
    """Average the input windows around each ``by`` label ("letter" or "phoneme") and write the files.

    ``shift_correction`` (letters only): "none", "auto" (the lag measured on the corpus'
    phone segments, :func:`~asr_introspect.alignment.estimate_shift`) or output frames.
    Settings, the window's size (:func:`check_window`) and a non-empty corpus are checked first.
    """
    check_count("--batch-size", batch_size)
    check_count("--window", window)
    utterances = select_utterances(utterances, data_path, limit=limit, what="average")
    check_window(model, utterances, window, by)
    shift = shift_value(shift_correction)
    shift_info: dict = {"requested": shift}
    if by == "phoneme":
        if shift not in ("none", "auto", 0):
            raise InputError(
                "--shift-correction moves letter labels (the CTC lag); phone segments "
                "need none (drop the flag for --by phoneme)"
            )
        if not any(u.phones for u in utterances):
            raise InputError(
                f"{corpus_name(data_path)}: no utterance has phone segments (add TextGrids, or use --by letter)"
            )
        shift = 0
    elif shift == "none":
        shift = 0
    elif shift == "auto":
        alignments = list(align_corpus(model, utterances, batch_size=batch_size, progress=progress, skip_errors=True))
        report = estimate_shift(alignments, model.frame_map, model.feature_config, model.output_layer)
        shift = report.correction_frames
        shift_info.update(report.summary())
        if report.utterances_used == 0:
            shift_info["note"] = "no utterance with usable phone segments: no correction applied"
    shift_info["applied_output_frames"] = shift

    # the correction moves letters earlier; the averager's shift moves them later
    averager = PatternAverager(by, source=source, shift=-shift, window=window, frames=frames, batch_size=batch_size)
    averager.fit(model, utterances, progress=progress)
    result = averager.result()
    if int(result.counts.sum()) == 0:
        raise InputError(
            f"{corpus_name(data_path)}: no labelled {by} windows (the corpus has "
            + ("no phone segments" if by == "phoneme" else "no alignable utterances")
            + "); nothing to average"
        )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npz_path = result.save(out / f"patterns_{by}.npz")
    positive = result.spectral_centroids("positive")
    energy = result.spectral_centroids("energy")
    counts = {name: int(c) for name, c in zip(result.names, result.counts)}
    report = {
        "by": by,
        "model": path_str(model_path),
        "data": path_str(data_path),
        "settings": result.settings,
        "shift_correction": shift_info,
        "utterances": averager.n_utterances_,
        "skipped_utterances": averager.skipped_,
        "windows": int(result.counts.sum()),
        "counts": counts,
        "spectral_centroid_hz": {
            "definition": CENTROID_DEFINITION,
            "positive": {n: _rounded(c) for n, c in positive.items()},
            "energy": {n: _rounded(c) for n, c in energy.items()},
        },
    }
    if by == "phoneme":
        check = vowel_fricative_centroids(positive)
        report["fricatives_vs_vowels_hz"] = {
            "fricative_min": _rounded(check["fricative_min"]),
            "vowel_max": _rounded(check["vowel_max"]),
            "vowel_median": _rounded(check["vowel_median"]),
            "fricatives_above_all_vowels": bool(check["fricative_min"] > check["vowel_max"]),
        }
    figures = []
    figures += save_figure(before_after(result), out / f"{by}_before_after.png", svg=False)
    figures += save_figure(pattern_grid(result, "zscore"), out / f"{by}_zscore.png", svg=False)
    figures += save_figure(centroid_chart(result, positive), out / f"{by}_centroids.png")
    sounds = save_sonifications(result, out / "audio", "subtract") if audio else []
    report["figures"] = [str(p) for p in figures]
    report["audio"] = [str(p) for p in sounds]
    json_path = save_json(out / f"patterns_{by}.json", report)

    summary = {
        "by": by,
        "model": path_str(model_path),
        "data": path_str(data_path),
        "utterances": averager.n_utterances_,
        "skipped": len(averager.skipped_),
        "windows": int(result.counts.sum()),
        "labels": int((result.counts > 0).sum()),
        "window": result.window,
        "shift_correction_frames": shift,
        "npz": str(npz_path),
        "json": str(json_path),
        "figures": [str(p) for p in figures if p.suffix == ".png"],
        "audio": len(sounds),
        "spectral_centroid_hz": {n: _rounded(c) for n, c in positive.items() if counts[n] > 0},
    }
    if by == "phoneme":
        summary["fricatives_above_all_vowels"] = report["fricatives_vs_vowels_hz"]["fricatives_above_all_vowels"]
    return PatternsRun(summary, report, result)
