"""The ``asr-introspect`` command line: one entry point, one module per subcommand.

Each subcommand module defines ``register(subparsers)`` (adds its parser and
sets ``func``) and a ``run(args) -> dict`` that validates the flags, loads the
model and corpus once (:mod:`asr_introspect.loading`), calls its workflow
(:mod:`asr_introspect.workflows`) and returns the JSON summary (paths written
and key numbers). This module only dispatches; :func:`run_command` checks
``--out`` before anything runs and makes it all or nothing (a staging folder
moved into place, with a manifest ``run.json``), prints the summary with
``--json``, and maps errors to one line on stderr: :class:`InputError` to exit
code 2, an unexpected exception to exit 1 ("internal error", the traceback
with ``--debug``). Usage errors are one line too (exit 2).

Building the parser imports only argparse and light modules (no torch):
``asr-introspect --help`` is instant. The subcommands import their workflows
inside ``run``.
"""

from __future__ import annotations

import argparse
import sys

from asr_introspect.cli import (
    align,
    attribute,
    claims,
    concepts,
    demo,
    dissect,
    naps,
    patterns,
    synth,
    train,
    transcribe,
    visualize,
)
from asr_introspect.cli import eval as evaluate
from asr_introspect.cli._common import OneLineArgumentParser, add_debug, run_command

#: Subcommands in the order ``--help`` lists them: name -> module ``cli/<name>.py``.
COMMANDS = {
    "synth": synth,
    "train": train,
    "eval": evaluate,
    "transcribe": transcribe,
    "align": align,
    "attribute": attribute,
    "visualize": visualize,
    "patterns": patterns,
    "naps": naps,
    "dissect": dissect,
    "concepts": concepts,
    "claims": claims,
    "demo": demo,
}
SUBCOMMANDS = tuple(COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="asr-introspect",
        description="Look inside convolutional CTC speech recognizers.",
    )
    add_debug(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    subparsers.required = True
    for module in COMMANDS.values():
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    return run_command(args, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
