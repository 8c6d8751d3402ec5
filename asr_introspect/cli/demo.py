"""``asr-introspect demo``: every figure family on the shipped model and corpus, plus the HTML report.

Writes under ``--out`` one folder per family (``a_attribution`` ...), example
audio, ``summary.json`` (what the report shows) and ``index.html``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from asr_introspect.cli._common import add_common, progress_enabled, set_runner

FOLDERS = {"a": "a_attribution", "b": "b_optimal_inputs", "c": "c_ctc_alignment",
           "d": "d_patterns", "e": "e_naps"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run every analysis on the shipped model and write an HTML report")
    add_common(parser, model=True, data=True, out="out/demo")
    parser.add_argument("--only", default="abcde", help="figure families to run (default: abcde)")
    parser.add_argument("--examples", type=int, default=4, help="example utterances with audio players")
    parser.add_argument("--fast", action="store_true",
                        help="small settings (few optimization steps, no sonification): a smoke test")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    from asr_introspect.experiments import FAMILIES, load_family
    from asr_introspect.io import save_json
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.models import read_checkpoint_info
    from asr_introspect.report import write_report
    from asr_introspect.training import evaluate

    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    progress = progress_enabled(args)
    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    evaluation = evaluate(model, utterances, progress=progress)
    examples = []
    (out / "audio").mkdir(exist_ok=True)
    for example in evaluation["examples"][: args.examples]:
        utt = next(u for u in utterances if u.id == example["id"])
        target = out / "audio" / Path(utt.audio_path).name
        shutil.copyfile(utt.audio_path, target)
        examples.append({**example, "audio": str(target.relative_to(out))})
    sections, timings = [], {}
    model_flag = None if args.model is None else args.model
    data_flag = None if args.data is None else args.data
    for family in args.only:
        if family not in FAMILIES:
            from asr_introspect.errors import InputError

            raise InputError(f"--only: unknown figure family {family!r}; choose from {''.join(FAMILIES)}")
        t0 = time.perf_counter()
        module = load_family(family)
        section = module.run(out / FOLDERS[family], model=model_flag, data=data_flag,
                             settings=module.FAST if args.fast else None, progress=progress)
        timings[family] = round(time.perf_counter() - t0, 1)
        sections.append(section.relative_to(out).to_dict())
    info = read_checkpoint_info(model_path)
    card = (info.get("metadata") or {}).get("model_card") or {}
    card_path = model_path.parent / "MODEL_CARD.md"
    card_text = card_path.read_text() if card_path.is_file() else _card_from_info(info)
    key_numbers = {"CER (greedy)": round(evaluation["cer"], 4), "WER (greedy)": round(evaluation["wer"], 4),
                   "utterances": evaluation["utterances"], "model": str(model_path.name),
                   "corpus": str(data_path.name), "parameters": card.get("parameters")}
    summary = {"title": "asr-introspect: looking inside a convolutional speech recognizer",
               "model_card_markdown": card_text, "key_numbers": key_numbers, "sections": sections,
               "examples": examples, "timings_seconds": timings}
    save_json(out / "summary.json", summary)
    index = write_report(out)
    return {"report": str(index), "cer": key_numbers["CER (greedy)"], "wer": key_numbers["WER (greedy)"],
            "utterances": evaluation["utterances"], "sections": [s["id"] for s in sections],
            "seconds": round(time.perf_counter() - started, 1), "timings": timings}


def _card_from_info(info: dict) -> str:
    meta = info.get("metadata") or {}
    training = meta.get("training", {})
    return (f"# Model card\n\nCheckpoint trained for {training.get('step', '?')} steps; "
            f"metrics: {meta.get('metrics', {})}.\n")
