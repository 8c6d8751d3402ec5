"""Alignment workflow: frame labels (letters, phones) on any layer axis + the CTC shift report
(``asr-introspect align``).

Writes ``labels.npz``: for each layer axis ``L`` (the output layer and the
requested ones) the labels of all utterances concatenated, ``letters_forced@L``,
``letters_predicted@L``, ``phones@L`` (-1: no phone) and ``offsets@L`` ((N+1,)
start of each utterance), plus ``ids``; ``shift.json`` (the lag of CTC letters
behind their phones, :func:`~asr_introspect.alignment.estimate_shift`; utterances
whose transcript cannot be aligned under ``skipped``) and ``shift.npz`` (the
per-word lags).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_introspect.alignment import ShiftReport, estimate_shift, frame_times, phone_labels, transfer_labels
from asr_introspect.errors import CorpusError
from asr_introspect.io import save_json, save_npz
from asr_introspect.stream import align_corpus
from asr_introspect.workflows.checks import check_count, check_layers, corpus_name, select_utterances
from asr_introspect.workflows.common import path_str


@dataclass
class AlignRun:
    """``summary``: what ``align --json`` prints (counts, shift, paths of ``labels.npz`` and ``shift.json``);
    ``labels``: the arrays of ``labels.npz``; ``shift``: the :class:`ShiftReport`."""

    summary: dict
    labels: dict[str, np.ndarray]
    shift: ShiftReport


def align(
    model,
    utterances: Sequence,
    out: str | Path,
    *,
    layers: Sequence[str] | None = None,
    letter_mode: str = "spike",
    batch_size: int = 16,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = False,
) -> AlignRun:
    """Forced-align ``utterances``; write ``labels.npz``, ``shift.json`` and ``shift.npz`` under ``out``.

    ``layers``: layer axes to label besides the output layer ("input" for the input frames);
    ``letter_mode``: letter labels at CTC spikes ("spike") or spans up to the next letter ("span").
    Layer names, ``batch_size`` and a non-empty corpus are checked first (``InputError``).
    """
    check_layers(model, layers, allow_input=True)
    check_count("--batch-size", batch_size)
    utterances = select_utterances(utterances, data_path, what="align")
    wanted = [model.output_layer]
    wanted += [n for n in (layers or ()) if n not in wanted]
    out = Path(out)
    fm, fc = model.frame_map, model.feature_config
    columns: dict[str, list[np.ndarray]] = {}
    ids: list[str] = []
    alignments = []
    for alignment in align_corpus(model, utterances, batch_size=batch_size, progress=progress, skip_errors=True):
        alignments.append(alignment)
        utt, n_in = alignment.utterance, alignment.n_input_frames
        ids.append(utt.id)
        forced = alignment.letters("forced", letter_mode)
        predicted = alignment.letters("predicted", letter_mode)
        for layer in wanted:
            n = int(fm.output_length(layer, n_in)) if layer != "input" else n_in
            times = (np.arange(n) * fc.frame_seconds) if layer == "input" else frame_times(fm, layer, n, fc)
            on_layer = {
                "letters_forced": transfer_labels(forced, fm, model.output_layer, layer, n_in),
                "letters_predicted": transfer_labels(predicted, fm, model.output_layer, layer, n_in),
                "phones": phone_labels(utt.phones or (), times),
            }
            for key, values in on_layer.items():
                columns.setdefault(f"{key}@{layer}", []).append(values)
    if not ids:
        raise CorpusError(
            f"{corpus_name(data_path)}: none of the {len(utterances)} utterance(s) could be aligned "
            "(transcripts longer than the model's output frames allow?); nothing to write"
        )
    arrays: dict[str, np.ndarray] = {"ids": np.array(ids)}
    for key, parts in columns.items():
        arrays[key] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    for layer in wanted:
        sizes = [len(p) for p in columns.get(f"phones@{layer}", [])]
        arrays[f"offsets@{layer}"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    labels_path = save_npz(out / "labels.npz", **arrays)
    report = estimate_shift(alignments, fm, fc, model.output_layer)
    aligned = set(ids)
    skipped = [u.id for u in utterances if u.id not in aligned]
    shift = {**report.summary(), "output_frame_seconds": report.output_frame_seconds, "skipped": skipped}
    shift_path = save_json(out / "shift.json", shift)
    save_npz(out / "shift.npz", center_shifts=report.center_shifts, onset_shifts=report.onset_shifts)
    summary = {
        "model": path_str(model_path),
        "data": path_str(data_path),
        "utterances": len(ids),
        "skipped": len(skipped),
        "layers": wanted,
        "median_shift_seconds": shift["center_shift_seconds"].get("median"),
        "correction_output_frames": report.correction_frames,
        "labels": str(labels_path),
        "shift_report": str(shift_path),
    }
    return AlignRun(summary, arrays, report)
