"""(c) Predictions vs spectrogram: where CTC emits letters relative to their sound, and the correction.

Forced-aligns every utterance of the corpus, measures per word the lag between
the CTC letter spikes and the word's phones (``alignment.estimate_shift``),
and draws one example utterance with its phone segments, the raw spikes and
the spikes moved by the median lag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asr_introspect.alignment import estimate_shift, frame_times, token_spans
from asr_introspect.errors import CorpusError
from asr_introspect.features import featurize_file
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.alignment import predictions_vs_spectrogram, shift_histogram
from asr_introspect.plotting.common import save_figure
from asr_introspect.stream import align_corpus
from asr_introspect.workflows.checks import select_utterances
from asr_introspect.workflows.figures.section import Section


@dataclass
class Settings:
    batch_size: int = 16
    example_max_seconds: float = 3.5  # the example utterance: the first with phones this short or shorter
    limit: int | None = None  # only the first N utterances


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings()


def run(
    model,
    utterances: Sequence,
    out: str | Path,
    settings: Settings | None = None,
    *,
    progress: bool = False,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
) -> Section:
    """Measure the CTC lag on the corpus and draw an example; write figures, npz and json under ``out``."""
    settings = settings or Settings()
    out = Path(out)
    utterances = select_utterances(utterances, data_path, limit=settings.limit, what="align")
    alignments = list(
        align_corpus(model, utterances, batch_size=settings.batch_size, progress=progress, skip_errors=True)
    )
    if not alignments:
        raise CorpusError(
            f"{'corpus' if data_path is None else data_path}: none of the {len(utterances)} utterance(s) "
            "could be aligned; nothing to draw"
        )
    fm, fc = model.frame_map, model.feature_config
    report = estimate_shift(alignments, fm, fc, model.output_layer)
    correction = report.correction_frames * report.output_frame_seconds
    example = next(
        (
            a
            for a in alignments
            if a.utterance.phones and a.utterance.duration and a.utterance.duration <= settings.example_max_seconds
        ),
        alignments[0],
    )
    utt = example.utterance
    features = featurize_file(utt.audio_path, fc)
    times = frame_times(fm, model.output_layer, len(example.frame_tokens), fc)
    figures = []
    fig = predictions_vs_spectrogram(
        features.numpy(),
        fc,
        utt.phones,
        example.spans,
        times,
        model.alphabet,
        correction_seconds=correction,
        predicted_spans=token_spans(example.predicted, model.alphabet.blank),
        title=f'{utt.id}: "{utt.text}"',
    )
    figures.append(
        {
            "path": save_figure(fig, out / "c_predictions_vs_spectrogram.png")[0],
            "caption": "Input features with phone segments; below, where CTC emits each letter "
            "(forced alignment, greedy prediction) and the forced letters moved by the "
            "median measured lag.",
        }
    )
    fig = shift_histogram(report.center_shifts, report.onset_shifts, report.output_frame_seconds)
    figures.append(
        {
            "path": save_figure(fig, out / "c_shift_histogram.png")[0],
            "caption": "Lag between the CTC emission of a word's letters and the word's phones.",
        }
    )
    centers = report.center_shifts
    numbers = {
        "words measured": int(len(centers)),
        "utterances used / skipped": f"{report.utterances_used} / {report.utterances_skipped}",
        "median lag of word centres (ms)": round(1000 * report.median, 1) if len(centers) else None,
        "correction (output frames)": report.correction_frames,
        "mean |lag| before correction (ms)": round(1000 * float(np.abs(centers).mean()), 1) if len(centers) else None,
        "mean |lag| after correction (ms)": round(1000 * float(np.abs(centers - correction).mean()), 1)
        if len(centers)
        else None,
    }
    save_npz(
        out / "c_shifts.npz",
        center_shifts=report.center_shifts,
        onset_shifts=report.onset_shifts,
        example_features=features.numpy(),
        example_frame_tokens=example.frame_tokens,
        example_predicted=example.predicted,
        example_frame_times=times,
    )
    save_json(
        out / "c_ctc_alignment.json",
        {"settings": asdict(settings), "shift": report.summary(), "numbers": numbers, "example": utt.id},
    )
    text = (
        "CTC is trained to emit each letter once, anywhere within the model's receptive field, so a "
        "letter's spike need not sit on its sound. The upper panel shows the input features of one "
        "held-out utterance with its phone segments; below are the letters where the model emits them "
        "and the same letters moved earlier by the median lag measured over the whole corpus. The "
        "histogram shows that lag per word (centre of the word's letter spikes minus the centre of its "
        "phones). Later analyses (patterns, NAPs) can switch this correction on."
    )
    return Section("ctc-alignment", "Predictions vs spectrogram: the CTC lag", text, figures, numbers)
