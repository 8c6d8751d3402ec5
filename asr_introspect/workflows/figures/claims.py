"""(i) The papers' claims as numbers: each finding with its value, a null, a 95 % bootstrap interval over
utterances and a verdict (layer trends with bands, probes with control tasks, CKA between layers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.claims.layer_trend import DEFAULT_MIN_COUNT
from asr_introspect.report.claims import claims_section
from asr_introspect.workflows.checks import select_utterances
from asr_introspect.workflows.claims import claims
from asr_introspect.workflows.figures.section import Section


@dataclass
class Settings:
    n_boot: int = 100  # bootstrap replicates over utterances
    seed: int = 0
    min_count: int = DEFAULT_MIN_COUNT  # groups with fewer frames are left out of the layer trend
    max_frames: int = 8000  # frames sampled per layer for the probes and CKA
    others: bool = True  # also the pattern, centroid and LRP-randomization claims
    limit: int | None = None  # only the first N utterances


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings(n_boot=20, max_frames=1000, others=False, limit=24)


def run(
    model,
    utterances: Sequence,
    out: str | Path,
    settings: Settings | None = None,
    *,
    progress: bool = False,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
) -> Section:
    """Test every claim on ``model`` and ``utterances`` under ``out`` (``asr-introspect claims``) and return
    the report section: the claims table and the layer-trend figures with their bands."""
    settings = settings or Settings()
    out = Path(out)
    utterances = select_utterances(utterances, data_path, limit=settings.limit, what="test the claims on")
    summary, result = claims(
        model,
        utterances,
        out,
        n_boot=settings.n_boot,
        seed=settings.seed,
        min_count=settings.min_count,
        max_frames=settings.max_frames,
        others=settings.others,
        model_path=model_path,
        data_path=data_path,
        progress=progress,
    )
    figures = [(str(out / f["path"]), f["caption"]) for f in summary["figures"]]
    section = claims_section(result.claims, figures)
    numbers = {
        **section["numbers"],
        **{f"{name}_value": c["value"] for name, c in summary["claims"].items()},
    }
    text = section["text"]
    if result.notes:
        text += " Notes: " + "; ".join(str(n) for n in result.notes) + "."
    return Section(
        "claims",
        section["title"],
        text,
        [{"path": p, "caption": c} for p, c in figures],
        numbers,
        [],
        section["tables"],
    )
