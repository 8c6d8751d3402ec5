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
from asr_introspect.io import RunDirectory, to_json
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
    """Run one figure family (a letter of ``FAMILIES``); print its section (figures, key numbers) as JSON.

    ``--out`` is written all or nothing, as by the ``asr-introspect`` subcommands
    (:class:`~asr_introspect.io.RunDirectory`: a staging folder, then ``run.json``).
    Exit 0, 2 with one line for bad input, 130 when interrupted (``--out`` then unchanged).
    """
    module = FAMILIES[family]
    args = build_parser(module).parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(module.Settings)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    settings = {"model": args.model, "data": args.data, **values}
    try:
        settings_obj = module.Settings(**values)
        with RunDirectory(args.out, f"figure-{family}", json.loads(to_json(settings)), argv=argv) as run:
            model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
            section = module.run(
                model,
                utterances,
                run.path,
                settings=settings_obj,
                progress=not args.quiet,
                model_path=model_path,
                data_path=data_path,
            )
            summary = run.final(section.to_dict())
            run.summary = summary
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(to_json(summary, indent=None))
    return 0
