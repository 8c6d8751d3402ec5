"""The claims section of the HTML report: one table row per claim (value, interval, null, verdict)
plus the claims run's figures, in the ``summary.json`` section format (:mod:`asr_introspect.report`)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["claims_section", "claims_table"]

_TEXT = (
    "Each finding of the original work is measured on this model and corpus, with a 95 % percentile "
    "bootstrap interval over utterances, and compared with a null (random weights, a layer randomized "
    "alone, or labels shuffled within utterances). **supported**: the interval lies wholly beyond the "
    "null's; **not supported**: wholly on the other side, or the null's interval lies inside it; "
    "**inconclusive**: partial overlap. Bands in the layer-trend figures are the same intervals."
)


def _fmt(x: float) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


def claims_table(claims: Sequence) -> dict:
    """A report table (caption, columns, rows) of :class:`~asr_introspect.claims.Claim` objects."""
    rows = [
        [
            c.name,
            c.statement,
            _fmt(c.value),
            f"[{_fmt(c.interval[0])}, {_fmt(c.interval[1])}]",
            f"{_fmt(c.null)} ({c.null_name})",
            f"[{_fmt(c.null_interval[0])}, {_fmt(c.null_interval[1])}]",
            c.verdict,
        ]
        for c in claims
    ]
    columns = ["claim", "statement", "value", "95 % interval", "null", "null interval", "verdict"]
    return {"caption": "The papers' claims as numbers", "columns": columns, "rows": rows}


def claims_section(claims: Sequence, figures: Sequence[tuple[str, str]] = (), section_id: str = "claims") -> dict:
    """A ``summary.json`` section: the claims table and ``figures`` ((relative path, caption) pairs)."""
    verdicts = [c.verdict for c in claims]
    return {
        "id": section_id,
        "title": "Claims: each finding with its null and interval",
        "text": _TEXT,
        "figures": [{"path": p, "caption": cap} for p, cap in figures],
        "numbers": {v: verdicts.count(v) for v in ("supported", "not supported", "inconclusive")},
        "tables": [claims_table(claims)],
    }
