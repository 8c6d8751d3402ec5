#!/usr/bin/env python3
"""Baseline of the model card: CER/WER per synthesizer family x channel condition, and on the real dev set.

1. The sentences the shipped model never trained on: the held-out texts of
   its training corpus (``synth --utterances 14000 --seed 0
   --test-text-fraction 0.08``; the split depends only on the seed, the
   fortunes and the count).
2. Per family (flite, festival, espeak, espeak-klatt): ``--utterances N``
   of those sentences spoken by the family's speakers (``synthesize_corpus``,
   flat layout), then a copy per channel condition (``augment.conditions``).
3. Greedy CER/WER of ``--model`` (default: the shipped one) on every copy and on ``--real``.

    python data_prep/eval_families.py --work /tmp/vbase --real data/real_dev --utterances 24 --out baseline.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asr_introspect.augment.conditions import CONDITIONS, write_condition_corpus
from asr_introspect.corpus import load_corpus
from asr_introspect.corpus.synth import FAMILIES, default_speakers, plan_corpus, synthesize_corpus
from asr_introspect.corpus.text_sources import fortune_sentences
from asr_introspect.defaults import default_model_path
from asr_introspect.models import load_checkpoint
from asr_introspect.training import evaluate

#: the corpus the shipped model was trained on (MODEL_CARD.md, stage 2)
TRAINING_CORPUS = {"n_utterances": 14000, "seed": 0, "test_text_fraction": 0.08, "test_speaker_fraction": 0.04}


def held_out_sentences() -> list[str]:
    old_speakers = default_speakers()[:51]  # the speakers before festival and klatt (the split ignores them)
    _, info = plan_corpus(fortune_sentences(), old_speakers, **TRAINING_CORPUS)
    return info["held_out_texts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--real", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--utterances", type=int, default=24)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sentences = held_out_sentences()
    args.work.mkdir(parents=True, exist_ok=True)
    text = args.work / "held_out_sentences.txt"
    text.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    model, _ = load_checkpoint(args.model or default_model_path())
    rows = []
    for family in args.families:
        clean = args.work / family / "clean"
        synthesize_corpus(
            clean,
            n_utterances=args.utterances,
            voices=[family],
            seed=3,
            workers=1,
            text_file=text,
            test_text_fraction=0.0,
            test_speaker_fraction=0.0,
        )
        for condition in args.conditions:
            data = clean if condition == "clean" else args.work / family / condition
            if condition != "clean" and not (data / "condition.json").is_file():
                write_condition_corpus(clean, data, condition, seed=0)
            result = evaluate(model, load_corpus(data))
            rows.append({"set": family, "condition": condition, **{k: result[k] for k in ("cer", "wer", "utterances")}})
            print(json.dumps(rows[-1]), flush=True)
    if args.real is not None:
        result = evaluate(model, load_corpus(args.real))
        rows.append({"set": "real", "condition": "as recorded", **{k: result[k] for k in ("cer", "wer", "utterances")}})
        print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps({"model": str(args.model or default_model_path()), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
