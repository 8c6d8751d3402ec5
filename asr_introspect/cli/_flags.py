"""Flag types and the help formatter of the subcommands.

Flags are checked by argparse before anything is loaded or computed: a bad
value exits with code 2 and one line on stderr naming the flag and the valid
range (the parser class is ``_common.OneLineArgumentParser``), e.g.
``asr-introspect eval: error: argument --batch-size: expected an integer >= 1,
got 0``. Checks that need the loaded model or corpus (layer names, clusters
against the number of groups, an empty selection of utterances) live in the
workflows (:mod:`asr_introspect.workflows.checks`).

Light imports only (argparse, math): building the parser must not import torch.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default: appended as ``(default: X)`` unless the help text already
    says what the default is, the flag is required, its default is None (the help says what leaving it
    out means) or it is an on/off switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.required
            or action.default is None
            or action.default is argparse.SUPPRESS
            or action.nargs == 0
        ):
            return text
        return super()._get_help_string(action)


def add_parser(subparsers: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """``subparsers.add_parser(name, ...)`` with :class:`HelpFormatter`."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    return subparsers.add_parser(name, **kwargs)


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_number(lo)}, {_number(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_number(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_number(hi)}"
    return ""


def _shown(value: str, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: a flag's value in a message stays short."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[lo, hi]`` (either bound may be None)."""
    wanted = " ".join(filter(None, ("an integer", _range_text(lo, hi))))

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {_shown(value)}") from None
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {number}")
        return number

    parse.__name__ = "int"
    return parse


#: an integer >= 1 (batch sizes, counts, limits, window lengths)
positive_int = int_range(1)
#: an integer >= 0 (seeds, optional counts)
nonnegative_int = int_range(0)


def finite_float(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: a finite float (no nan, no inf) in the range ``lo``..``hi``;
    ``lo_open``/``hi_open`` exclude the bound itself."""
    wanted = " ".join(filter(None, ("a finite number", _range_text(lo, hi, lo_open, hi_open))))

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {_shown(value)}") from None
        if (
            not math.isfinite(number)
            or (lo is not None and (number <= lo if lo_open else number < lo))
            or (hi is not None and (number >= hi if hi_open else number > hi))
        ):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {_shown(value)}")
        return number

    parse.__name__ = "float"
    return parse


def comma_list(value: str) -> list[str]:
    """An argparse ``type``: a comma-separated list of names, each stripped; an empty list or an empty
    item (``','``, ``'a,,b'``) is an error."""
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"expected one or more comma-separated names, got {_shown(value)}")
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty name in the comma-separated list {_shown(value)}")
    return items


def letters_from(allowed: str, what: str) -> Callable[[str], str]:
    """An argparse ``type``: a non-empty string of letters from ``allowed`` (``what`` names one of them,
    e.g. "figure family"); repeats are dropped, order kept."""

    def parse(value: str) -> str:
        if not value:
            raise argparse.ArgumentTypeError(f"expected one or more of {allowed}, got ''")
        for letter in value:
            if letter not in allowed:
                raise argparse.ArgumentTypeError(f"unknown {what} {letter!r}; choose from {allowed}")
        return "".join(dict.fromkeys(value))

    parse.__name__ = "str"
    return parse


def shift_correction(value: str) -> str | int:
    """An argparse ``type``: ``auto``, ``none`` or an integer number of output frames."""
    if value in ("auto", "none"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or an integer, got {_shown(value)}") from None
