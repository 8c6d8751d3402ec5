"""(e) NAP clustering of letters and phonemes at layers 9, 10 and 11, and the layer-wise quality curve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.workflows.checks import select_utterances
from asr_introspect.workflows.figures.section import Section
from asr_introspect.workflows.naps import naps


@dataclass
class Settings:
    figure_layers: tuple[str, ...] = ("conv9", "conv10", "conv11")
    normalize: str = "zscore"
    linkage: str = "average"
    metric: str = "euclidean"
    limit: int | None = None  # only the first N utterances


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings()


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
    """Letter and phoneme NAPs of every layer, clustered and scored, under ``out``."""
    settings = settings or Settings()
    out = Path(out)
    utterances = select_utterances(utterances, data_path, limit=settings.limit, what="profile")
    result = naps(
        model,
        utterances,
        out,
        by="both",
        normalize=settings.normalize,
        linkage=settings.linkage,
        metric=settings.metric,
        model_path=model_path,
        data_path=data_path,
        progress=progress,
    )
    summary = result.summary
    figures = []
    quality = out / "figures" / "quality.png"
    if quality.is_file():
        figures.append(
            {
                "path": quality,
                "caption": "Per layer: agreement of the NAP clustering with "
                "phonetic categories (ARI), silhouette, cophenetic correlation and between/within-group "
                "variance, for letters and phonemes.",
            }
        )
    for by in ("letter", "phoneme"):
        for layer in settings.figure_layers:
            for kind, what in (("dendrogram", "Dendrogram"), ("clustermap", "Clustermap (groups x neurons)")):
                path = out / "figures" / by / f"{layer}_{kind}.png"
                if path.is_file():
                    figures.append({"path": path, "caption": f"{what} of the {by} NAPs at {layer}."})
    numbers: dict = {}
    tables = []
    for by in ("letter", "phoneme"):
        layers = result.reports.get(by, {}).get("layers", {})
        ari_keys = sorted({k for entry in layers.values() for k in entry.get("quality", {}).get("ari", {})})
        rows = []
        for layer, entry in layers.items():
            q = entry.get("quality", {})
            rows.append(
                [layer]
                + [_fmt(q.get("ari", {}).get(k)) for k in ari_keys]
                + [_fmt(q.get(k)) for k in ("silhouette", "cophenetic", "specificity")]
            )
        if rows:
            tables.append(
                {
                    "caption": f"{by} NAPs per layer",
                    "columns": ["layer"]
                    + [f"ARI {k}" for k in ari_keys]
                    + ["silhouette", "cophenetic corr.", "between/within variance"],
                    "rows": rows,
                }
            )
    numbers.update(
        {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and k not in ("model", "data")}
    )
    text = (
        "A neuron activation profile (NAP) is a layer's mean activation over all frames of one letter or "
        "phoneme in the corpus. Clustering the NAPs of a layer shows what it encodes: groups that end up "
        "close in the dendrogram evoke similar responses. The original work reports that phoneme clusters "
        "emerge in the 9th layer and become more distinct in the 10th, where a cluster of vowel letters "
        "appears, while the output layer encodes letters. The curve measures this per layer: agreement of "
        "the clustering with phonetic categories (adjusted Rand index) and how separated the groups are."
    )
    return Section("naps", "Neuron activation profiles", text, figures, numbers, tables=tables)


def _fmt(value):
    return None if value is None else (round(value, 3) if isinstance(value, float) else value)
