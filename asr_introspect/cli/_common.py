"""Shared pieces of the subcommands: common flags, the run directory, the JSON line, errors and exit codes.

:func:`run_command` is the one place where every subcommand's ``--out`` is
validated (before anything is computed) and made all-or-nothing with a
manifest (:class:`asr_introspect.io.RunDirectory`), and where exceptions
become one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from asr_introspect.cli._flags import comma_list
from asr_introspect.errors import InputError
from asr_introspect.io import RunDirectory, check_out_dir, check_out_file, clean_file_leftovers, to_json

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
#: An error line on stderr is at most this long (longer messages are cut in the middle with an ellipsis).
MAX_ERROR_LINE = 300

#: How ``run_command`` treats ``--out`` per subcommand (default ``"staged"``: an all-or-nothing run directory):
#: ``"file"``: ``--out`` is one JSON file, written atomically (checked, not staged);
#: ``"in-place"``: the command resumes its own partial output (``synth``), so it writes into ``--out``
#: directly and gets the manifest at the end; ``"own"``: the command manages its directory itself
#: (``train``: checkpoints, ``--resume``, ``--overwrite``), ``--out`` is only checked.
OUT_MODES = {"eval": "file", "synth": "in-place", "train": "own"}
#: Namespace entries that are not settings of the run (left out of the manifest).
_NOT_SETTINGS = ("func", "command", "json", "quiet", "debug")


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit 2), pointing at ``--help``."""

    def error(self, message: str):
        line = _one_line(f"{self.prog}: error: {message} (see {self.prog} --help)")
        self.exit(EXIT_BAD_INPUT, line + "\n")


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
        parser.add_argument(
            "--strict",
            action="store_true",
            help="stop at the first corpus problem (duplicate id, bad TextGrid, missing or truncated audio, "
            "untranscribable text) instead of skipping the utterance and listing it under 'corpus' in the summary",
        )
        parser.add_argument(
            "--speakers",
            type=comma_list,
            default=None,
            metavar="PATTERNS",
            help="only these speakers: comma-separated globs, e.g. 'flite_*' (the shipped corpus' first 160 "
            "utterances) or 'espeak_*,festival_*' (default: all)",
        )
    if out == "required":
        parser.add_argument(
            "--out",
            type=Path,
            required=True,
            help="output directory, written all or nothing; run.json lists what the run wrote",
        )
    elif out is not None:
        parser.add_argument(
            "--out",
            type=Path,
            default=Path(out),
            help=f"output directory, written all or nothing; run.json lists what the run wrote (default: {out})",
        )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object summarizing the results as the last line of stdout"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug(parser, default=argparse.SUPPRESS)


def add_debug(parser: argparse.ArgumentParser, default: Any = False) -> None:
    """``--debug``: print the traceback of an error instead of the one-line message.

    The main parser has it with default False, each subcommand with
    ``argparse.SUPPRESS`` (so ``asr-introspect --debug naps`` and
    ``asr-introspect naps --debug`` both work).
    """
    parser.add_argument(
        "--debug", action="store_true", default=default, help="on an error, print the full traceback too"
    )


def set_runner(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], dict[str, Any]]) -> None:
    parser.set_defaults(func=run)


def progress_enabled(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False)


def _one_line(text: str, limit: int = MAX_ERROR_LINE) -> str:
    """``text`` on one line (line breaks become spaces), cut in the middle with an ellipsis beyond ``limit``."""
    text = re.sub(r"\s*[\r\n]+\s*", " ", str(text)).strip()
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    tail = limit - 1 - head
    return text[:head] + "…" + text[len(text) - tail :]


def _error_line(command: str, message: str, suffix: str = "") -> str:
    """``asr-introspect CMD: error: MESSAGE SUFFIX`` in at most MAX_ERROR_LINE characters (the suffix kept whole)."""
    prefix = f"asr-introspect {command}: "
    room = max(MAX_ERROR_LINE - len(prefix) - len(suffix), 40)
    return prefix + _one_line(message, room) + suffix


def _settings(args: argparse.Namespace) -> dict:
    """The run's settings for the manifest: every parsed flag except bookkeeping ones."""
    return {key: value for key, value in vars(args).items() if key not in _NOT_SETTINGS and not key.startswith("_")}


def _rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return int(os.environ.get("RANK", "0") or 0)
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` and staging cleanup runs."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def load_inputs(args: argparse.Namespace):
    """(model, utterances, model path, data path) from ``--model``, ``--data``, ``--strict`` and
    ``--speakers``, loaded once.

    The corpus' validation report (skipped utterances with their reasons, normalized transcripts)
    goes into the command's JSON summary under ``"corpus"``.
    """
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.workflows.checks import select_utterances

    model, utterances, model_path, data_path = load_model_and_corpus(
        args.model, args.data, strict=getattr(args, "strict", False)
    )
    args.corpus_report = getattr(utterances, "report", None)
    if getattr(args, "speakers", None):
        utterances = select_utterances(utterances, data_path, speakers=args.speakers)
    return model, utterances, model_path, data_path


def _call(args: argparse.Namespace) -> dict[str, Any]:
    """Run the command; add the corpus report of :func:`load_inputs` to its summary."""
    summary = args.func(args) or {}
    report = getattr(args, "corpus_report", None)
    if report is not None and isinstance(summary, dict) and "corpus" not in summary:
        summary["corpus"] = report.to_dict(limit=20)
    return summary


def _run(args: argparse.Namespace, command: str, argv: list[str] | None) -> dict[str, Any]:
    """Check ``--out`` first, then run the command (into a staging folder when it has an output directory)."""
    out = getattr(args, "out", None)
    mode = OUT_MODES.get(command, "staged")
    if out is None:
        return _call(args)
    if mode == "file":
        check_out_file(out)
        clean_file_leftovers(out)
        return _call(args)
    if mode == "own":
        check_out_dir(out)
        return _call(args)
    if mode == "staged" and _rank() != 0:
        mode = "discard"  # under torchrun rank 0 writes the results; the other ranks' files are dropped
    final_out = args.out
    run = RunDirectory(out, command, _settings(args), argv=argv, mode=mode)
    with run:
        args.out = run.path
        try:
            summary = _call(args)
        finally:
            args.out = final_out
        summary = run.final(summary)
        run.summary = summary
    return summary


def run_command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run ``args.func`` with ``--out`` checked and staged; print its summary; map errors to exit codes.

    Exit 0 on success; 2 with one line on stderr for bad input (``InputError``);
    130 (SIGINT) or 143 (SIGTERM, turned into KeyboardInterrupt so every
    cleanup runs) when interrupted, a staged ``--out`` left as it was; 1 with
    one line "internal error: ..." for anything else (a bug), or its traceback
    with ``--debug``.
    """
    command = getattr(args, "command", "?")
    debug = getattr(args, "debug", False)
    try:
        with _sigterm_as_interrupt():
            summary = _run(args, command, argv)
    except InputError as exc:
        if debug:
            traceback.print_exc()
        print(_error_line(command, f"error: {exc}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        if debug:
            traceback.print_exc()
        terminated = isinstance(exc, _Terminated)
        print(f"asr-introspect {command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + signal.SIGTERM if terminated else EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not bad input
        if debug:
            traceback.print_exc()
            return EXIT_INTERNAL
        suffix = " (run with --debug for the traceback)"
        what = f"{type(exc).__name__}: {exc}" if str(exc).strip() else type(exc).__name__
        print(_error_line(command, f"internal error: {what}", suffix), file=sys.stderr)
        return EXIT_INTERNAL
    if getattr(args, "json", False):
        sys.stdout.flush()
        print(to_json(summary, indent=None))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return EXIT_OK
