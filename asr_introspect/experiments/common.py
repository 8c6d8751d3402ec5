"""Shared pieces of the experiment modules: the report section and running subcommands."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: figure family letter -> module name, in the order of the original work
FAMILIES = {
    "a": "attribution_maps",
    "b": "optimal_inputs",
    "c": "ctc_alignment",
    "d": "letter_patterns",
    "e": "nap_clustering",
}


def load_family(name: str):
    """The experiment module for a family letter or module name."""
    module = FAMILIES.get(name, name)
    return importlib.import_module(f"asr_introspect.experiments.{module}")


@dataclass
class Section:
    """One section of the HTML report (paths relative to the report folder)."""

    id: str
    title: str
    text: str
    figures: list[dict] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    audio: list[dict] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def relative_to(self, root: Path) -> "Section":
        """A copy whose figure/audio paths are relative to ``root``."""
        def rel(item: dict) -> dict:
            return {**item, "path": str(Path(item["path"]).resolve().relative_to(root.resolve()))}

        return Section(self.id, self.title, self.text, [rel(f) for f in self.figures], dict(self.numbers),
                       [rel(a) for a in self.audio], list(self.tables))


def run_subcommand(argv: list[str]) -> dict:
    """Run one ``asr-introspect`` subcommand in-process and return its JSON summary.

    Raises what the subcommand raises (InputError for bad input).
    """
    from asr_introspect.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args) or {}


def model_data_flags(model: Path | None, data: Path | None) -> list[str]:
    flags: list[str] = []
    if model is not None:
        flags += ["--model", str(model)]
    if data is not None:
        flags += ["--data", str(data)]
    return flags
