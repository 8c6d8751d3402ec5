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
        raise InputError(f"shift correction: expected auto, none or an integer, got {value!r}") from None


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
    """
    utterances = list(utterances)
    if limit is not None:
        utterances = utterances[:limit]
    shift = shift_value(shift_correction)
    shift_info: dict = {"requested": shift}
    if by == "phoneme":
        if shift not in ("none", "auto", 0):
            raise InputError(
                "--shift-correction moves letter labels (the CTC lag); phone segments "
                "need none (drop the flag for --by phoneme)"
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
            f"{data_path}: no labelled {by} windows (the corpus has "
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
