"""MkDocs hook: the CLI reference page, generated from the argument parser.

``docs/reference/cli.md`` holds the introduction and the marker
``<!-- cli-reference -->``; at build time the marker is replaced by one section
per subcommand of :func:`asr_introspect.cli.build_parser`: its help line, the
module docstring's first paragraph, the usage line and a table of every option
(flags, choices, default, help). The reference therefore cannot drift from
``asr-introspect --help``. ``python docs/hooks/cli_reference.py`` prints the
generated Markdown.
"""

from __future__ import annotations

import argparse
import html
import inspect
import re
import sys

MARKER = "<!-- cli-reference -->"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Subcommand name -> (parser, one-line help), in ``--help`` order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}
    return {}


def _plain(text: str) -> str:
    """reStructuredText of the docstrings as Markdown: ``x`` and :role:`x` become `x`."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no raw HTML, no line breaks)."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "&#124;")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        metavar = action.metavar or action.dest
        return f"`{metavar.upper() if isinstance(metavar, str) else action.dest}`"
    return ", ".join(f"`{flag}`" for flag in action.option_strings)


def _value(action: argparse.Action) -> str:
    """What the option takes: its choices, a metavar, or nothing for a switch."""
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return " ".join(f"`{choice}`" for choice in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    suffix = " ..." if action.nargs in ("*", "+") else ""
    return f"`{metavar}`{suffix}"


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return "required" if action.required else ""
    if isinstance(action.default, (list, tuple)):
        return ", ".join(f"`{v}`" for v in action.default) or "(none)"
    return f"`{action.default}`"


def _module_summary(parser: argparse.ArgumentParser) -> str:
    """First paragraph of the subcommand module's docstring (after its title line)."""
    from asr_introspect.cli import COMMANDS

    module = COMMANDS.get(parser.prog.split()[-1])
    doc = inspect.getdoc(module) or ""
    paragraphs = [p for p in doc.split("\n\n")[1:] if p.strip()]
    return _plain(" ".join(paragraphs[0].split())) if paragraphs else ""


def subcommand_markdown(name: str, parser: argparse.ArgumentParser, help_line: str) -> str:
    """One subcommand as Markdown: heading, description, usage and the option table."""
    lines = [f"## `{name}`", "", help_line[:1].upper() + help_line[1:] + ".", ""]
    summary = _module_summary(parser)
    if summary:
        lines += [summary, ""]
    usage = " ".join(parser.format_usage().replace("usage:", "").split())
    lines += ["```text", usage, "```", ""]
    lines += ["| option | takes | default | what it does |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        help_text = (action.help or "") % {**vars(action), "prog": parser.prog}  # as argparse formats it
        lines.append(f"| {_flags(action)} | {_value(action)} | {_default(action)} | {_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def cli_reference_markdown() -> str:
    """The reference of every subcommand of ``asr-introspect``, in ``--help`` order."""
    from asr_introspect.cli import build_parser

    parser = build_parser()
    sections = [subcommand_markdown(name, sub, help_line) for name, (sub, help_line) in _subparsers(parser).items()]
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    """Replace the marker on the CLI reference page by the generated sections."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference_markdown())


if __name__ == "__main__":
    sys.stdout.write(cli_reference_markdown())
