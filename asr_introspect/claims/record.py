"""One scientific claim as a number: its value, its null, its interval and a verdict.

A :class:`Claim` is what every test of a published finding returns, whatever it measures
(NAP clustering, letter patterns, spectral centroids, attribution sanity checks), so the
report, the JSON file and the README read them all the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Claim", "VERDICTS", "percentile_interval", "verdict_for"]

VERDICTS = ("supported", "not supported", "inconclusive")


def percentile_interval(samples: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``samples`` (NaNs ignored) at ``level``."""
    values = np.asarray(samples, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return (float(low), float(high))


def verdict_for(interval: tuple[float, float], null_interval: tuple[float, float], direction: str = "greater") -> str:
    """ "supported" when the claim's interval lies wholly beyond the null's in ``direction``
    ("greater" or "less"), "not supported" when it lies wholly on the other side or the
    two overlap while the claim's interval straddles the null's, "inconclusive" otherwise
    (either interval undefined, or partial overlap)."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', not {direction!r}")
    (lo, hi), (nlo, nhi) = interval, null_interval
    if not all(np.isfinite([lo, hi, nlo, nhi])):
        return "inconclusive"
    if direction == "less":
        lo, hi, nlo, nhi = -hi, -lo, -nhi, -nlo
    if lo > nhi:
        return "supported"
    if hi < nlo or (lo <= nlo and hi >= nhi):
        return "not supported"
    return "inconclusive"


@dataclass
class Claim:
    """A published finding tested on one model and corpus.

    name: short identifier ("phoneme_clusters_layer9"); statement: the finding in words;
    value: the measured number; interval: its 95 % bootstrap interval over utterances;
    null: the same number under the null (e.g. random weights or shuffled labels), with
    ``null_interval``; ``null_name`` says which null; verdict: one of :data:`VERDICTS`;
    details: anything else a reader needs (per-layer curves, counts, settings).
    """

    name: str
    statement: str
    value: float
    interval: tuple[float, float]
    null: float
    null_interval: tuple[float, float]
    null_name: str
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.name}: verdict must be one of {VERDICTS}, not {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, NumPy scalars become floats)."""
        d = asdict(self)
        d["value"], d["null"] = float(self.value), float(self.null)
        d["interval"] = [float(x) for x in self.interval]
        d["null_interval"] = [float(x) for x in self.null_interval]
        return d
