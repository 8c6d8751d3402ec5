"""Evaluation workflow: greedy CER/WER of a model on utterances (``asr-introspect eval``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.io import check_out_file, save_json
from asr_introspect.training import evaluate, grouped_error_rates
from asr_introspect.workflows.checks import check_count, select_utterances
from asr_introspect.workflows.common import path_str


@dataclass
class EvalRun:
    """``summary``: what ``eval --json`` prints; ``evaluation``: :func:`~asr_introspect.training.evaluate`'s
    dict (cer, wer, utterances, examples); ``utterances``: those evaluated."""

    summary: dict
    evaluation: dict
    utterances: list


def evaluate_corpus(
    model,
    utterances: Sequence,
    out: str | Path | None = None,
    *,
    batch_size: int = 32,
    speakers: str | None = None,
    limit: int | None = None,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = False,
) -> EvalRun:
    """Greedy CER/WER; with ``out`` also a JSON file with per-speaker rates and per-utterance transcripts.

    ``speakers``: comma-separated globs selecting speakers; ``limit``: only the first N utterances.
    Everything is checked before evaluating: ``InputError`` for a ``batch_size`` or ``limit`` below 1,
    ``out`` naming a directory, and ``CorpusError`` naming the corpus when no utterance is left
    (an empty corpus is an error, never a perfect score).
    """
    check_count("--batch-size", batch_size)
    if out:
        check_out_file(out)
    utterances = select_utterances(utterances, data_path, speakers=speakers, limit=limit, what="evaluate")
    result = evaluate(model, utterances, batch_size=batch_size, progress=progress)
    summary = {
        "cer": round(result["cer"], 4),
        "wer": round(result["wer"], 4),
        "utterances": result["utterances"],
        "model": path_str(model_path),
        "data": path_str(data_path),
        **({"speakers": speakers} if speakers else {}),
    }
    if out:
        save_json(
            out,
            {
                **summary,
                "per_speaker": per_speaker_rates(utterances, result["examples"]),
                "examples": result["examples"],
            },
        )
        summary["transcripts"] = str(out)
    return EvalRun(summary, result, utterances)


def per_speaker_rates(utterances: Sequence, examples: list[dict]) -> dict[str, dict]:
    """{speaker: {"cer", "wer", "utterances"}} from evaluate()'s examples, worst CER first."""
    rates = grouped_error_rates(examples, {u.id: u.speaker for u in utterances})
    return {
        spk: {"cer": round(r["cer"], 4), "wer": round(r["wer"], 4), "utterances": r["utterances"]}
        for spk, r in sorted(rates.items(), key=lambda kv: (-kv[1]["cer"], kv[0]))
    }
