"""The report section a figure family returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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

    def relative_to(self, root: Path) -> Section:
        """A copy whose figure/audio paths are relative to ``root``."""

        def rel(item: dict) -> dict:
            return {**item, "path": str(Path(item["path"]).resolve().relative_to(root.resolve()))}

        return Section(
            self.id,
            self.title,
            self.text,
            [rel(f) for f in self.figures],
            dict(self.numbers),
            [rel(a) for a in self.audio],
            list(self.tables),
        )
