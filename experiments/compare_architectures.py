#!/usr/bin/env python3
"""The NAP layer trend (letters and phonemes, every layer) and letter patterns of several models side by side.

Example:
    python experiments/compare_architectures.py --out out/compare \\
        --model wav2letter=asr_introspect/data/default_model.safetensors \\
        --model conformer=runs/conformer/model.safetensors

--speakers 'flite_*' keeps one voice family of the corpus (shell globs, comma-separated).

Each --model is NAME=PATH (a checkpoint, a transformers directory or module:function). Writes compare.json,
layer_trend.png and patterns_<NAME>.npz into --out (all or nothing, with run.json).
"""

import argparse
import sys
from pathlib import Path

from asr_introspect.errors import InputError
from asr_introspect.io import RunDirectory, to_json
from asr_introspect.loading import load_corpus_or_default, load_model
from asr_introspect.workflows.checks import select_utterances
from asr_introspect.workflows.compare import compare_architectures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="repeat per model")
    parser.add_argument("--data", type=Path, default=None, help="corpus (default: the shipped corpus)")
    parser.add_argument("--speakers", default=None, metavar="PATTERNS", help="only these speakers, e.g. 'flite_*'")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--window", type=int, default=64, help="letter pattern width in input frames")
    parser.add_argument("--min-count", type=int, default=20, help="leave out groups with fewer frames")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        pairs = [m.partition("=") for m in args.model]
        bad = [m for m, (name, sep, path) in zip(args.model, pairs) if not (name and sep and path)]
        if bad:
            raise InputError(f"--model {bad[0]!r}: expected NAME=PATH")
        settings = {
            "models": args.model,
            "data": str(args.data),
            "speakers": args.speakers,
            "window": args.window,
            "min_count": args.min_count,
        }
        with RunDirectory(args.out, "compare-architectures", settings, argv=argv) as run:
            models = {name: load_model(path)[0] for name, _, path in pairs}
            utterances, path = load_corpus_or_default(args.data)
            utterances = select_utterances(utterances, path, speakers=args.speakers)
            report = compare_architectures(
                models, utterances, run.path, window=args.window, min_count=args.min_count, progress=not args.quiet
            )
            run.summary = run.final(report)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_json({name: m["architecture"] for name, m in run.summary["models"].items()}, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
