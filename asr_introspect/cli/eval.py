"""``asr-introspect eval``: greedy CER/WER of a checkpoint on a corpus."""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, progress_enabled, set_runner
from asr_introspect.io import save_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="greedy CER/WER of a model on a corpus")
    add_common(parser, model=True, data=True)
    parser.add_argument("--out", default=None,
                        help="optional JSON file with per-speaker error rates and per-utterance transcripts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--speakers", default=None, metavar="PATTERNS",
                        help="only these speakers: comma-separated globs, e.g. 'flite_slt*,flite_awb*'")
    parser.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.training import evaluate

    model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
    if args.speakers:
        from asr_introspect.corpus import filter_speakers

        utterances = filter_speakers(utterances, args.speakers, source=str(data_path))
    if args.limit is not None:
        utterances = utterances[: args.limit]
    result = evaluate(model, utterances, batch_size=args.batch_size, progress=progress_enabled(args))
    summary = {"cer": round(result["cer"], 4), "wer": round(result["wer"], 4),
               "utterances": result["utterances"], "model": str(model_path), "data": str(data_path),
               **({"speakers": args.speakers} if args.speakers else {})}
    if args.out:
        save_json(args.out, {**summary, "per_speaker": per_speaker_rates(utterances, result["examples"]),
                             "examples": result["examples"]})
        summary["transcripts"] = str(args.out)
    return summary


def per_speaker_rates(utterances, examples: list[dict]) -> dict[str, dict]:
    """{speaker: {"cer", "wer", "utterances"}} from evaluate()'s examples, worst CER first."""
    from asr_introspect.training import grouped_error_rates

    rates = grouped_error_rates(examples, {u.id: u.speaker for u in utterances})
    return {spk: {"cer": round(r["cer"], 4), "wer": round(r["wer"], 4), "utterances": r["utterances"]}
            for spk, r in sorted(rates.items(), key=lambda kv: (-kv[1]["cer"], kv[0]))}
