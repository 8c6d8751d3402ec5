"""Demo workflow: evaluation, every figure family and the HTML report, on one loaded model and corpus
(``asr-introspect demo``).

Writes under ``out`` one folder per family (``a_attribution`` ...), example
audio, ``summary.json`` (what the report shows) and ``index.html``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from asr_introspect.defaults import model_card_path
from asr_introspect.errors import InputError
from asr_introspect.io import save_json
from asr_introspect.models import read_checkpoint_info
from asr_introspect.report import write_report
from asr_introspect.workflows.checks import check_count, select_utterances
from asr_introspect.workflows.eval import evaluate_corpus
from asr_introspect.workflows.figures import FAMILIES

#: figure family letter -> folder under the demo's output directory
FOLDERS = {
    "a": "a_attribution",
    "b": "b_optimal_inputs",
    "c": "c_ctc_alignment",
    "d": "d_patterns",
    "e": "e_naps",
    "f": "f_dissection",
    "g": "g_wavelets",
    "h": "h_concepts",
    "i": "i_claims",
}

TITLE = "asr-introspect: looking inside a convolutional speech recognizer"


@dataclass
class DemoRun:
    """``summary``: what ``demo --json`` prints; ``report``: the content of ``summary.json``."""

    summary: dict
    report: dict


def check_families(only: str) -> None:
    """InputError unless every letter of ``only`` names a figure family."""
    for family in only:
        if family not in FAMILIES:
            raise InputError(f"--only: unknown figure family {family!r}; choose from {''.join(FAMILIES)}")


def demo(
    model,
    utterances: Sequence,
    out: str | Path,
    *,
    model_path: Path,
    data_path: Path,
    only: str = "abcde",
    examples: int = 4,
    fast: bool = False,
    progress: bool = False,
) -> DemoRun:
    """Evaluate once, run the families in ``only`` (their ``DEMO`` settings where they have them, else their
    defaults; ``fast``: their ``FAST`` settings) and write the report.

    ``model_path`` (its metadata gives the model card) and ``data_path`` name what was loaded.
    ``only``, ``examples`` (>= 0) and a non-empty corpus are checked first; ``progress``: a bar over
    the sections besides each section's own bars.
    """
    check_families(only)
    check_count("--examples", examples, minimum=0)
    utterances = select_utterances(utterances, data_path, what="demonstrate")
    started = time.perf_counter()
    out = Path(out)
    model_path, data_path = Path(model_path), Path(data_path)
    out.mkdir(parents=True, exist_ok=True)
    evaluation = evaluate_corpus(model, utterances, data_path=data_path, progress=progress).evaluation
    chosen = []
    (out / "audio").mkdir(exist_ok=True)
    for example in evaluation["examples"][:examples]:
        utt = next(u for u in utterances if u.id == example["id"])
        target = out / "audio" / Path(utt.audio_path).name
        shutil.copyfile(utt.audio_path, target)
        chosen.append({**example, "audio": str(target.relative_to(out))})
    sections, timings = [], {}
    bar = tqdm(only, desc="demo", unit="section", disable=not progress)
    for family in bar:
        bar.set_postfix_str(FOLDERS[family])
        t0 = time.perf_counter()
        module = FAMILIES[family]
        section = module.run(
            model,
            utterances,
            out / FOLDERS[family],
            settings=module.FAST if fast else getattr(module, "DEMO", None),
            progress=progress,
            model_path=model_path,
            data_path=data_path,
        )
        timings[family] = round(time.perf_counter() - t0, 1)
        sections.append(section.relative_to(out).to_dict())
    bar.close()
    info = read_checkpoint_info(model_path)
    card = (info.get("metadata") or {}).get("model_card") or {}
    card_path = model_card_path(model_path)
    card_text = card_path.read_text() if card_path.is_file() else _card_from_info(info)
    key_numbers = {
        "CER (greedy)": round(evaluation["cer"], 4),
        "WER (greedy)": round(evaluation["wer"], 4),
        "utterances": evaluation["utterances"],
        "model": str(model_path.name),
        "corpus": str(data_path.name),
        "parameters": card.get("parameters"),
    }
    report = {
        "title": TITLE,
        "model_card_markdown": card_text,
        "key_numbers": key_numbers,
        "sections": sections,
        "examples": chosen,
        "timings_seconds": timings,
    }
    save_json(out / "summary.json", report)
    index = write_report(out)
    summary = {
        "report": str(index),
        "cer": key_numbers["CER (greedy)"],
        "wer": key_numbers["WER (greedy)"],
        "utterances": evaluation["utterances"],
        "sections": [s["id"] for s in sections],
        "seconds": round(time.perf_counter() - started, 1),
        "timings": timings,
    }
    return DemoRun(summary, report)


def _card_from_info(info: dict) -> str:
    meta = info.get("metadata") or {}
    training = meta.get("training", {})
    return (
        f"# Model card\n\nCheckpoint trained for {training.get('step', '?')} steps; "
        f"metrics: {meta.get('metrics', {})}.\n"
    )
