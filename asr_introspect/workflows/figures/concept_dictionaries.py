"""(h) Concept dictionaries of a layer (NMF, sparse autoencoder) grounded in phones and letters, their
stability and faithfulness, and L2I listenable interpretations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.concepts import plot_stability
from asr_introspect.workflows.checks import select_utterances
from asr_introspect.workflows.concepts import ConceptsRun, concept_labels, concepts
from asr_introspect.workflows.figures.section import Section


@dataclass
class Settings:
    layer: str = "conv9"
    n_concepts: int = 32
    nmf_passes: int = 20
    sae_passes: int = 30
    seeds: int = 2
    faithfulness_utterances: int = 24
    ablate: int = 6
    l2i_components: int = 32
    l2i_passes: int = 30
    l2i_epochs: int = 40
    l2i_cases: int = 40
    table_rows: int = 12
    limit: int | None = None  # only the first N utterances


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings(
    nmf_passes=3,
    sae_passes=3,
    faithfulness_utterances=4,
    ablate=2,
    l2i_passes=5,
    l2i_epochs=3,
    l2i_cases=4,
    table_rows=6,
    limit=16,
)

#: the demo's settings: fewer passes and cases than the experiment, enough for grounded concepts
DEMO = Settings(
    nmf_passes=6,
    sae_passes=6,
    faithfulness_utterances=8,
    ablate=3,
    l2i_passes=6,
    l2i_epochs=6,
    l2i_cases=8,
)


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
    """NMF and SAE dictionaries of ``settings.layer`` and an L2I interpreter, under ``out/{nmf,sae,l2i}``."""
    settings = settings or Settings()
    out = Path(out)
    utterances = select_utterances(utterances, data_path, limit=settings.limit, what="analyse")
    common = dict(layer=settings.layer, model_path=model_path, data_path=data_path, progress=progress)
    runs: dict[str, ConceptsRun] = {}
    for method, passes in (("nmf", settings.nmf_passes), ("sae", settings.sae_passes)):
        runs[method] = concepts(
            model,
            utterances,
            out / method,
            method=method,
            n_concepts=settings.n_concepts,
            passes=passes,
            seeds=settings.seeds,
            faithfulness_utterances=settings.faithfulness_utterances,
            ablate=settings.ablate,
            gram_utterances=1,
            audio_concepts=4,
            **common,
        )
    runs["l2i"] = concepts(
        model,
        utterances,
        out / "l2i",
        method="l2i",
        n_concepts=settings.l2i_components,
        passes=settings.l2i_passes,
        epochs=settings.l2i_epochs,
        l2i_cases=settings.l2i_cases,
        **common,
    )
    figures = [f for method in ("nmf", "sae") for f in runs[method].figures if _keep(f["path"])]
    stabilities = {m: runs[m].stability for m in ("nmf", "sae") if runs[m].stability is not None}
    if stabilities:
        paths = save_figure(
            plot_stability(
                {m: s.cosines for m, s in stabilities.items()}, {m: s.null_cosines for m, s in stabilities.items()}
            ),
            out / "stability",
        )
        figures.append({"path": paths[0], "caption": "Concepts matched across two seeds: cosine of each matched pair."})
    figures += runs["l2i"].figures[:3] + [f for f in runs["l2i"].figures if Path(f["path"]).stem == "spectra"]
    audio = runs["nmf"].audio[:4] + runs["sae"].audio[:4] + runs["l2i"].audio[:4]
    tables = [_grounding_table(runs["nmf"], settings.table_rows), _method_table(runs), _l2i_table(runs["l2i"])]
    numbers = {
        f"{method}_{key}": value
        for method, run_ in runs.items()
        for key, value in run_.summary.items()
        if isinstance(value, (int, float)) and key not in ("utterances_train", "utterances_test")
    }
    text = (
        f"A layer's frame activations are broken down into a small dictionary of concepts ({settings.layer}, "
        f"{settings.n_concepts} concepts), learned over the corpus by non-negative matrix factorization (the "
        "activations follow a ReLU, so they are sums of non-negative parts) and by a TopK sparse autoencoder. "
        "Each concept is grounded: the phones and letters of the frames where it peaks (purity: the share of "
        "its top events carrying its dominant label; lift: its activation share on a label over the label's "
        "share of frames), the average input window of those events, its top clips as audio, and its activation "
        "over time under the spectrogram and transcript (concept-gram). Stability: dictionaries fitted with "
        "two seeds are matched one to one (Hungarian matching on cosine); AudioSAE reports more than half of "
        "its features matched above 0.7. Faithfulness: the model is run with the layer replaced by its "
        "reconstruction (CER, KL to the model's posteriors; fraction recovered relative to replacing the layer "
        "by its mean), and with one concept removed at a time (which letters lose probability). L2I: an "
        "interpreter maps the layer to the time activations of an NMF dictionary of the corpus' spectra so that "
        "the model's letter posteriors are reproduced; the components most relevant to a letter or word are "
        "resynthesized as audio. Fidelity is the interpreter's agreement with the model on held-out utterances; "
        "faithfulness the drop of the model's posterior when those components are removed from the input, "
        "against removing as many random ones."
    )
    return Section("concepts", "Concept dictionaries", text, figures, numbers, audio, [t for t in tables if t])


def _keep(path) -> bool:
    """The report shows each method's first concept-gram, phone grounding, patterns and letter damage."""
    stem = Path(path).stem
    return stem.startswith("conceptgram_") or stem in ("grounding_phones", "patterns", "letter_damage")


def _fmt(value, digits: int = 3):
    return None if value is None else (round(value, digits) if isinstance(value, float) else value)


def _grounding_table(run: ConceptsRun, n_rows: int) -> dict:
    rows_by_concept = run.report.get("concepts", [])
    order = sorted(rows_by_concept, key=lambda r: -(r.get("mass_share") or 0.0))[:n_rows]
    labels = dict(zip([r["concept"] for r in order], concept_labels(run.grounding, [r["concept"] for r in order])))
    rows = []
    for r in order:
        ablation = r.get("ablation") or {}
        letters = ", ".join(f"{s['letter']!r} {s['drop']:.2f}" for s in ablation.get("suffering_letters", []))
        rows.append(
            [
                labels[r["concept"]],
                _fmt(r["mass_share"]),
                _fmt(r["phone_purity"]),
                _fmt(r["phone_lift"], 2),
                _fmt(r["letter_purity"]),
                _fmt(r["letter_lift"], 2),
                _fmt(ablation.get("delta_cer")),
                letters or None,
            ]
        )
    return {
        "caption": f"NMF concepts of {run.dictionary.layer}, most active first: grounding and single-concept ablation",
        "columns": [
            "concept /phone/ letter",
            "mass share",
            "phone purity",
            "phone lift",
            "letter purity",
            "letter lift",
            "CER change when removed",
            "letters that suffer (nats)",
        ],
        "rows": rows,
    }


def _method_table(runs: dict[str, ConceptsRun]) -> dict:
    keys = (
        "reconstruction_error",
        "stable_share",
        "stable_share_null",
        "mean_phone_purity",
        "mean_letter_purity",
        "cer_model",
        "cer_reconstruction",
        "cer_mean_ablation",
        "fraction_recovered",
        "kl_reconstruction",
    )
    rows = [[method] + [_fmt(runs[method].summary.get(k)) for k in keys] for method in ("nmf", "sae")]
    return {
        "caption": "Dictionaries compared: reconstruction, stability across seeds, grounding, faithfulness",
        "columns": [
            "method",
            "rel. reconstruction error",
            "stable (cos > 0.7)",
            "stable, shuffled null",
            "phone purity",
            "letter purity",
            "CER model",
            "CER reconstructed",
            "CER mean-ablated",
            "fraction recovered",
            "KL reconstructed (nats)",
        ],
        "rows": rows,
    }


def _l2i_table(run: ConceptsRun) -> dict:
    s = run.summary
    rows = [
        ["frame agreement (fidelity)", _fmt(s.get("fidelity_frame_agreement"))],
        ["chance (most frequent class)", _fmt(s.get("fidelity_chance_agreement"))],
        ["agreement on frames emitting a symbol", _fmt(s.get("fidelity_symbol_frame_agreement"))],
        ["CER of the decoded interpreter vs the model", _fmt(s.get("fidelity_decoded_cer"))],
        ["KL to the model (nats per frame)", _fmt(s.get("fidelity_kl"))],
        ["KL of chance (the mean posterior)", _fmt(s.get("fidelity_chance_kl"))],
        ["posterior drop, relevant components removed", _fmt(s.get("drop_relevant"))],
        ["posterior drop, random components removed", _fmt(s.get("drop_random"))],
        ["faithfulness (difference)", _fmt(s.get("faithfulness"))],
    ]
    return {
        "caption": f"L2I on held-out utterances ({s.get('fidelity_on')})",
        "columns": ["measure", "value"],
        "rows": rows,
    }
