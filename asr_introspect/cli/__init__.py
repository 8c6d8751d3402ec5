"""The ``asr-introspect`` command line: one entry point, one module per subcommand.

Each subcommand module defines ``register(subparsers)`` (adds its parser and
sets ``func``) and a ``run(args) -> dict`` that calls the library and returns
the JSON summary (paths written and key numbers). This module only dispatches,
prints the summary with ``--json`` and maps :class:`InputError` to exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from asr_introspect.cli._common import run_command

#: Subcommands in the order ``--help`` lists them; each is ``cli/<name>.py``.
SUBCOMMANDS = (
    "synth",
    "train",
    "eval",
    "transcribe",
    "align",
    "attribute",
    "visualize",
    "patterns",
    "naps",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-introspect",
        description="Look inside convolutional CTC speech recognizers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"asr_introspect.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != f"asr_introspect.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
