"""Shared pieces of the subcommands: common flags, the JSON line, exit codes."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asr_introspect.errors import InputError
from asr_introspect.io import to_json

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_common(
    parser: argparse.ArgumentParser, *, model: bool = False, data: bool = False, out: str | None = None
) -> None:
    """Add the flags every subcommand shares.

    ``out``: None for no ``--out``; ``"required"``; or a default directory.
    """
    if model:
        parser.add_argument(
            "--model", type=Path, default=None, help="checkpoint (.safetensors); default: the shipped model"
        )
    if data:
        parser.add_argument(
            "--data",
            type=Path,
            default=None,
            help="corpus directory (LibriSpeech layout) or manifest; default: the shipped evaluation corpus",
        )
    if out == "required":
        parser.add_argument("--out", type=Path, required=True, help="output directory")
    elif out is not None:
        parser.add_argument("--out", type=Path, default=Path(out), help=f"output directory (default: {out})")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object summarizing the results as the last line of stdout"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def set_runner(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], dict[str, Any]]) -> None:
    parser.set_defaults(func=run)


def progress_enabled(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False)


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func``; print its summary; map bad input to exit code 2."""
    try:
        summary = args.func(args)
    except InputError as exc:
        print(f"asr-introspect {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"asr-introspect {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug, not bad input: keep the traceback
        traceback.print_exc()
        return 1
    summary = summary or {}
    if getattr(args, "json", False):
        sys.stdout.flush()
        print(to_json(summary, indent=None))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return EXIT_OK
