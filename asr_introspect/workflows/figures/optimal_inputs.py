"""(b) Optimal inputs for the first, a middle and the output layer, weakly vs strongly regularized.

Feature visualization by optimization: the log-mel window that maximizes a
first-layer channel, a middle-layer channel and the output logit of a letter,
under weak (smoothness, robustness) and strong (plus the learned Gaussian
prior of real windows) regularization. ``experiments/featvis_comparison.py``
measures objective vs naturalness for every regularizer set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.workflows.figures.section import Section
from asr_introspect.workflows.visualize import visualize


@dataclass
class Settings:
    letter_objective: str = "conv11:letter=e"  # also rendered alone and sonified
    steps: int = 128
    max_windows: int = 600  # real windows fitting the prior
    seed: int = 0


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings(steps=8, max_windows=50)


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
    """Render the letter objective and the optimal-inputs grid (prior fitted on ``utterances``) under ``out``."""
    settings = settings or Settings()
    summary = visualize(
        model,
        out,
        objective=settings.letter_objective,
        grid=True,
        utterances=utterances,
        steps=settings.steps,
        regularization="weak",
        max_windows=settings.max_windows,
        seed=settings.seed,
        model_path=model_path,
        progress=progress,
    ).summary
    figures = [
        {
            "path": Path(summary["grid"]["png"]),
            "caption": "Rows: a first-layer channel, a middle-layer channel, the output logit of a letter; "
            "columns: weakly vs strongly regularized optimization. Panel titles give the "
            "objective reached.",
        }
    ]
    files = summary.get("files", {})
    if files.get("png"):
        figures.append(
            {
                "path": Path(files["png"]),
                "caption": f"{settings.letter_objective}, weakly regularized, "
                "with the model's letter distribution at the centre frame.",
            }
        )
    audio = (
        [{"path": Path(files["wav"]), "caption": f"{settings.letter_objective}: the optimal input, sonified"}]
        if files.get("wav")
        else []
    )
    numbers = {}
    for row, cols in summary["grid"]["objectives"].items():
        for col, value in cols.items():
            numbers[f"{row} ({col})"] = value
    if "value" in summary:
        numbers[f"{settings.letter_objective} alone: objective reached"] = summary["value"]
    if summary.get("top_letters"):
        numbers[f"{settings.letter_objective} alone: top letters at the centre frame"] = ", ".join(
            f"{symbol!r} {p:.2f}" for symbol, p in summary["top_letters"][:3]
        )
    text = (
        "Each panel is the input window that maximizes one part of the network. For images such "
        "optimal inputs become interpretable once the optimization is regularized; for this speech model "
        "the original work found them hard to read. Weak regularization (smoothness and robustness to "
        "shifts) gives high objectives with unnatural inputs; strong regularization adds a Gaussian prior "
        "learned from real feature windows, trading objective for naturalness. "
        "experiments/featvis_comparison.py measures that trade-off for every regularizer."
    )
    return Section(
        "optimal-inputs",
        "Optimal inputs by optimization",
        text,
        [f for f in figures if f["path"].is_file()],
        numbers,
        audio,
    )
