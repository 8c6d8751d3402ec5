"""Command line of the ``experiments/`` scripts: flags from a figure family's ``Settings`` dataclass.

The script loads the model and corpus once and calls the family's ``run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from asr_introspect.errors import InputError
from asr_introspect.io import to_json
from asr_introspect.loading import load_model_and_corpus
from asr_introspect.workflows.figures import FAMILIES


def build_parser(module) -> argparse.ArgumentParser:
    """``--model``, ``--data``, ``--out``, ``--quiet`` and one flag per field of ``module.Settings``."""
    parser = argparse.ArgumentParser(description=(module.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=None, help="corpus (default: the shipped corpus)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quiet", action="store_true")
    hints = typing.get_type_hints(module.Settings)
    for field in dataclasses.fields(module.Settings):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        if hint is bool:
            parser.add_argument(
                flag,
                type=lambda v: v.lower() in ("1", "true", "yes"),
                default=field.default,
                metavar="BOOL",
                help=f"default: {field.default}",
            )
        else:
            parser.add_argument(
                flag,
                type=json.loads if field.default is None or isinstance(field.default, tuple) else type(field.default),
                default=field.default,
                help=f"default: {field.default}",
            )
    return parser


def main(family: str, argv: list[str] | None = None) -> int:
    """Run one figure family (a letter of ``FAMILIES``); print its section (figures, key numbers) as JSON."""
    module = FAMILIES[family]
    args = build_parser(module).parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(module.Settings)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
        section = module.run(
            model,
            utterances,
            args.out,
            settings=module.Settings(**values),
            progress=not args.quiet,
            model_path=model_path,
            data_path=data_path,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_json(section.to_dict(), indent=None))
    return 0
