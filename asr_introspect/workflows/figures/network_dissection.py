"""(f) Audio network dissection: neuron labels and polysemanticity by layer, top clips to listen to, and
concept-specific ablation against random and top-activation neurons (AND, ICML 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.dissection import ablation_table
from asr_introspect.workflows.checks import select_utterances
from asr_introspect.workflows.dissect import dissect
from asr_introspect.workflows.figures.section import Section


@dataclass
class Settings:
    layers: tuple[str, ...] | None = None  # None: every layer
    concepts: tuple[str, ...] | None = None  # concept families; None: all the corpus supports
    top_k: int = 10
    quantile: float = 0.05
    min_iou: float = 0.1
    ablate: tuple[str, ...] = ("manner:fricative", "phone:s", "silence")
    ablation_layers: tuple[str, ...] | None = None  # None: the two layers below the output layer
    seeds: int = 5
    clips: int = 2  # neurons per layer whose top clips are written
    audio_neurons: int = 2  # neurons per ablation layer with audio players in the report
    audio_per_neuron: int = 3
    limit: int | None = None  # only the first N utterances


#: small settings for smoke tests (``asr-introspect demo --fast``): no F0 (pyin) and no word positions
#: (CMUdict), one concept, two seeds
FAST = Settings(
    concepts=("letters", "phones", "features", "silence", "voice", "energy", "centroid"),
    top_k=5,
    ablate=("manner:fricative",),
    seeds=2,
    clips=1,
    audio_neurons=1,
    audio_per_neuron=2,
    limit=24,
)


#: the demo's settings: the whole corpus and every concept family, fewer ablations and seeds
DEMO = Settings(ablate=("phone:s",), seeds=2, clips=1, audio_neurons=2)


def _fmt(value, digits: int = 3):
    return None if value is None else round(float(value), digits)


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
    """Dissect every layer (or ``settings.layers``), ablate ``settings.ablate`` at the ablation layers, and
    return the report section with the figures, audio players for the top clips of a few neurons and the
    tables."""
    settings = settings or Settings()
    out = Path(out)
    utterances = select_utterances(utterances, data_path, limit=settings.limit, what="dissect")
    layers = list(settings.layers) if settings.layers else list(model.layer_names)
    hidden = [n for n in layers if n != model.output_layer]
    ablation_layers = list(settings.ablation_layers) if settings.ablation_layers else (hidden[-2:] or layers[-1:])
    result = dissect(
        model,
        utterances,
        out,
        layers=layers,
        concepts=settings.concepts,
        top_k=settings.top_k,
        quantile=settings.quantile,
        min_iou=settings.min_iou,
        ablate=settings.ablate,
        ablation_layers=ablation_layers,
        seeds=settings.seeds,
        clips=max(settings.clips, settings.audio_neurons),
        model_path=model_path,
        data_path=data_path,
        progress=progress,
    )
    d = result.dissection
    figures = []
    for name, caption in (
        (
            "polysemanticity.png",
            "(a) Per layer, the share of neurons labelled with 0 (unlabelled), 1, 2, 3 or more distinct concepts "
            "(labels grouped when one mostly contains the other); (b) each neuron's best IoU and the label threshold.",
        ),
        ("label_families.png", "Per layer, the concept family of each neuron's best label."),
    ):
        if (out / "figures" / name).is_file():
            figures.append({"path": out / "figures" / name, "caption": caption})
    for concept in settings.ablate:
        path = out / "figures" / f"ablation_{concept.replace(':', '_')}.png"
        if path.is_file():
            figures.append(
                {
                    "path": path,
                    "caption": f"Ablating the neurons labelled '{concept}': dA - dR against random neurons "
                    "(mean and sd over seeds) and the highest-mean-activation neurons.",
                }
            )
    audio = []
    for layer in ablation_layers:
        for neuron, paths in list(result.clips.get(layer, {}).items())[: settings.audio_neurons]:
            description = d.describe(layer, neuron)
            figure = out / "figures" / "clips" / f"{layer}_n{neuron}.png"
            if figure.is_file():
                figures.append(
                    {"path": figure, "caption": f"{layer} neuron {neuron} ({description}): its top clips, centred."}
                )
            for rank, (path, segment) in enumerate(zip(paths, d.top_segments(layer, neuron, concepts=False))):
                if rank >= settings.audio_per_neuron:
                    break
                audio.append(
                    {
                        "path": path,
                        "caption": f"{layer} #{neuron}, clip {rank + 1}: {segment['utterance']} at "
                        f"{segment['sound_time']:.2f} s (activation {segment['activation']:.2f}). {description}",
                    }
                )
    per_layer = result.summary["per_layer"]
    tables = [
        {
            "caption": f"Neuron labels by layer (IoU >= {d.min_iou:g} at the top {100 * d.settings['quantile']:g} % "
            "of each neuron's frames).",
            "columns": [
                "layer",
                "neurons",
                "labelled",
                "phone/feature labels",
                "mean polysemanticity",
                "median best IoU",
                "commonest best family",
            ],
            "rows": [
                [
                    layer,
                    row["neurons"],
                    f"{100 * row['labelled_fraction']:.0f} %",
                    row["phone_or_feature_labelled"],
                    _fmt(row["mean_polysemanticity_labelled"], 2),
                    _fmt(row["median_best_iou"]),
                    next(iter(row["best_label_family"]), None),
                ]
                for layer, row in per_layer.items()
            ],
        }
    ]
    if result.ablations:
        tables.append(ablation_table(result.ablations))
    numbers = {
        f"{layer} labelled": round(row["labelled_fraction"], 3)
        for layer, row in per_layer.items()
        if layer in ablation_layers
    }
    numbers.update(
        {
            f"{layer} phone/feature-labelled neurons": row["phone_or_feature_labelled"]
            for layer, row in per_layer.items()
            if layer in ablation_layers
        }
    )
    for entry in result.summary.get("ablation", []):
        for layer in ablation_layers:
            concept_row = entry.get(f"{layer}/concept", {})
            random_row = entry.get(f"{layer}/random", {})
            if concept_row.get("neurons"):
                numbers[f"{entry['concept']} @ {layer}: dA-dR labelled / random"] = (
                    f"{concept_row['d_a_minus_d_r']:+.3f} / {random_row.get('d_a_minus_d_r', float('nan')):+.3f}"
                )
    text = (
        "Audio network dissection names neurons. For every neuron (channel) of every layer, one pass over the "
        "corpus keeps its top-activating clips and counts how its most active frames (its top "
        f"{100 * d.settings['quantile']:g} %) overlap each concept of a closed vocabulary taken from the alignments "
        "and the audio: letters, phones, phonetic features, silence, word position, voice, and bins of F0, "
        "energy and spectral centroid. The IoU of the two frame sets (Network Dissection) names the neuron; "
        "polysemanticity counts the distinct concepts that pass. AND found that supervised training narrows "
        "neurons in deeper layers. Ablation tests the names: zeroing the neurons labelled with a concept should "
        "hurt the model's belief in that concept's letters (dA) more than in the rest (dR), and more than "
        "zeroing as many random or highly active neurons. Listen to the clips: they are the audio around each "
        "peak."
    )
    return Section("dissection", "Audio network dissection", text, figures, numbers, audio, tables)
