"""Concepts workflow: a dictionary of one layer's frame activations (NMF or a sparse autoencoder), grounded,
checked for stability and faithfulness; or an L2I listenable interpreter (``asr-introspect concepts``).

``method="nmf"`` or ``"sae"`` writes under ``out``:

- ``concepts_<method>.npz``: the dictionary (:meth:`ConceptDictionary.load` reads it);
- ``grounding_<method>.npz``: label masses, top events and average input patterns
  (:meth:`Grounding.load`);
- ``concepts_<method>.json``: settings, reconstruction error per pass, one row per concept
  (dominant phone and letter with purity and lift, top events, ablation results), stability
  across seeds and faithfulness;
- ``audio/<method>/concept_<k>.wav``: the top events of the most active concepts;
- ``figures/<method>/``: ``conceptgram_<utterance>``, ``grounding_phones``, ``grounding_letters``,
  ``patterns``, ``stability``, ``letter_damage``.

``method="l2i"`` writes ``l2i.json`` (settings, losses, fidelity, faithfulness, the interpretations
with their components), ``l2i.npz`` (spectral components, interpreter weights), WAVs under
``audio/l2i/`` (letters at frames, words) and figures under ``figures/l2i/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr_introspect.alignment import forced_align, token_spans
from asr_introspect.audio import save_audio
from asr_introspect.concepts import (
    SPARSITIES,
    ConceptDictionary,
    ConceptEstimator,
    ConceptGrounding,
    Faithfulness,
    Grounding,
    ListenableInterpreter,
    Stability,
    concept_gram,
    concept_stability,
    faithfulness,
    fit_concepts,
    save_concept_clips,
)
from asr_introspect.errors import AlignmentError, InputError
from asr_introspect.features import featurize_file
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.concepts import (
    plot_concept_gram,
    plot_grounding,
    plot_interpretation,
    plot_letter_damage,
    plot_patterns,
    plot_spectral_components,
    plot_stability,
)
from asr_introspect.workflows.checks import check_count, check_layers, select_utterances
from asr_introspect.workflows.common import finite, path_str

__all__ = ["CONCEPT_METHODS", "ConceptsRun", "concepts", "concept_labels"]

#: ``--method`` choices
CONCEPT_METHODS = ("nmf", "sae", "l2i")


@dataclass
class ConceptsRun:
    """``summary``: what ``concepts --json`` prints; ``report``: the content of the JSON file written; the
    objects computed (None where the method has none)."""

    summary: dict
    report: dict = field(default_factory=dict)
    dictionary: ConceptDictionary | None = None
    grounding: Grounding | None = None
    stability: Stability | None = None
    faithfulness: Faithfulness | None = None
    interpreter: ListenableInterpreter | None = None
    figures: list[dict] = field(default_factory=list)
    audio: list[dict] = field(default_factory=list)


def concept_labels(grounding: Grounding, concepts: Sequence[int]) -> list[str]:
    """Short names like ``"c3 /s/ s"``: concept index, dominant phone, dominant letter."""
    phones, _, _ = grounding.purity("phone")
    letters, _, _ = grounding.purity("letter")
    out = []
    for k in concepts:
        letter = letters[k]
        letter = "␣" if letter == " " else letter
        out.append(f"c{k} /{phones[k] or '-'}/ {letter or '-'}")
    return out


def _spread(utterances: Sequence, n: int) -> list:
    """``n`` utterances spread evenly over the list (speakers vary along a sorted corpus)."""
    if n >= len(utterances):
        return list(utterances)
    index = np.linspace(0, len(utterances) - 1, n).round().astype(int)
    return [utterances[i] for i in dict.fromkeys(index.tolist())]


def _check_settings(model, layer: str, method: str, n_concepts: int, **counts: int | None) -> None:
    if method not in CONCEPT_METHODS:
        raise InputError(f"--method must be one of {', '.join(CONCEPT_METHODS)}, got {method!r}")
    check_layers(model, [layer], flag="--layer")
    check_count("--n-concepts", n_concepts)
    for flag, value in counts.items():
        check_count(flag, value, minimum=0 if flag in ("--faithfulness-utterances", "--ablate") else 1)
    if method == "nmf" and layer == model.output_layer:
        raise InputError(
            f"--layer {layer} is the output layer (logits, not non-negative): NMF needs a layer after a ReLU; "
            "choose a hidden layer or --method sae"
        )
    if method == "l2i" and layer == model.output_layer:
        raise InputError(f"--layer {layer} is the output layer: L2I interprets a hidden layer")


def concepts(
    model,
    utterances: Sequence,
    out: str | Path,
    *,
    layer: str,
    method: str = "nmf",
    n_concepts: int = 32,
    passes: int | None = None,
    seeds: int = 2,
    seed: int = 0,
    sparsity: str = "topk",
    k: int | None = None,
    top_k: int = 20,
    faithfulness_utterances: int = 24,
    ablate: int = 8,
    gram_utterances: int = 2,
    audio_concepts: int = 8,
    epochs: int = 40,
    l2i_cases: int = 40,
    batch_size: int = 16,
    figures: bool = True,
    audio: bool = True,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = False,
) -> ConceptsRun:
    """Concepts of ``layer`` by ``method`` ("nmf", "sae" or "l2i"); write the files (module docstring).

    NMF / SAE: ``n_concepts`` concepts, ``passes`` over the corpus (None: the method's default),
    ``seeds`` dictionaries (seeds ``seed``, ``seed + 1``, ...; two or more give the stability across
    seeds, the first is grounded and checked), SAE ``sparsity``/``k``; ``top_k`` events per concept;
    faithfulness on ``faithfulness_utterances`` utterances (0: skip) with the ``ablate`` most active
    concepts removed one at a time. L2I: ``n_concepts`` spectral components, ``passes`` NMF passes,
    ``epochs`` of interpreter training, faithfulness on ``l2i_cases`` letter frames.
    Settings, the layer and a non-empty corpus are checked before the first forward pass.
    """
    counts = {
        "--seeds": seeds,
        "--top-k": top_k,
        "--faithfulness-utterances": faithfulness_utterances,
        "--ablate": ablate,
        "--epochs": epochs,
        "--l2i-cases": l2i_cases,
        "--batch-size": batch_size,
        "--passes": passes,
        "--k": k,
    }
    _check_settings(model, layer, method, n_concepts, **counts)
    if sparsity not in SPARSITIES:
        raise InputError(f"--sparsity must be one of {', '.join(SPARSITIES)}, got {sparsity!r}")
    if method == "sae" and sparsity == "topk" and k is not None and k > n_concepts:
        raise InputError(f"--k {k}: more active concepts than --n-concepts {n_concepts}; choose 1..{n_concepts}")
    if getattr(model, "alphabet", None) is None and (method == "l2i" or faithfulness_utterances):
        raise InputError("the model has no CTC head: use --method nmf|sae with --faithfulness-utterances 0")
    utterances = select_utterances(utterances, data_path, what="analyse")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    common = {"model": path_str(model_path), "data": path_str(data_path), "layer": layer, "method": method}
    if method == "l2i":
        interpreter = ListenableInterpreter(
            layer, n_concepts, nmf_passes=passes or 30, epochs=epochs, seed=seed, batch_size=batch_size
        )
        interpreter.fit(model, utterances, progress=progress)
        return _l2i_outputs(model, interpreter, out, common, l2i_cases, figures, audio)
    estimators = [
        ConceptEstimator(
            layer,
            method,
            n_concepts,
            passes=passes,
            seed=seed + i,
            sparsity=sparsity,
            k=k,
            batch_size=batch_size,
        )
        for i in range(seeds)
    ]
    fit_concepts(model, utterances, estimators, batch_size=batch_size, progress=progress)
    dictionary = estimators[0].result()
    run = ConceptsRun({}, dictionary=dictionary)
    files = [str(dictionary.save(out / f"concepts_{method}.npz"))]
    if seeds >= 2:
        run.stability = concept_stability([e.result().components for e in estimators])
    grounding_estimator = ConceptGrounding(dictionary, top_k=top_k, batch_size=batch_size)
    run.grounding = grounding = grounding_estimator.fit(model, utterances, progress=progress).result()
    files.append(str(grounding.save(out / f"grounding_{method}.npz")))
    by_mass = [int(c) for c in np.argsort(-grounding.total, kind="stable")]
    ablated = by_mass[: min(ablate, n_concepts)]
    if faithfulness_utterances:
        run.faithfulness = faithfulness(
            model,
            _spread(utterances, faithfulness_utterances),
            dictionary,
            concepts=ablated,
            batch_size=batch_size,
            progress=progress,
        )
    rows = grounding.table()
    if run.faithfulness is not None:
        for entry in run.faithfulness.summary()["ablations"]:
            rows[entry["concept"]]["ablation"] = {k: v for k, v in entry.items() if k != "concept"}
    if audio:
        clips = save_concept_clips(
            grounding,
            utterances,
            out / "audio" / method,
            by_mass[:audio_concepts],
            sample_rate=model.feature_config.sample_rate,
        )
        labels = dict(zip(clips, concept_labels(grounding, list(clips))))
        for concept, path in clips.items():
            files.append(str(path))
            run.audio.append({"path": path, "caption": f"{method} {labels[concept]}: its top events"})
    if figures:
        files += _dictionary_figures(run, model, utterances, out / "figures" / method, by_mass, gram_utterances)
    report = {
        "settings": {**common, **dictionary.settings, "top_k": top_k},
        "reconstruction_error": dictionary.history,
        "grounding": grounding.summary(),
        "concepts": rows,
        "stability": None if run.stability is None else run.stability.summary(),
        "faithfulness": None if run.faithfulness is None else run.faithfulness.summary(),
    }
    files.insert(1, str(save_json(out / f"concepts_{method}.json", finite(report))))
    run.report = finite(report)
    summary = {
        **common,
        "n_concepts": n_concepts,
        "utterances": dictionary.settings["utterances"],
        "frames": dictionary.settings["frames"],
        "passes": dictionary.settings["passes_done"],
        "reconstruction_error": dictionary.history[-1],
        **{k: v for k, v in grounding.summary().items() if k != "frames"},
    }
    if run.stability is not None:
        summary["stable_share"] = run.stability.share_stable
        summary["stable_share_null"] = run.stability.null_share
    if run.faithfulness is not None:
        f = run.faithfulness.summary()
        summary.update({key: f[key] for key in ("cer_model", "cer_reconstruction", "cer_mean_ablation")})
        summary.update(fraction_recovered=f["fraction_recovered"], kl_reconstruction=f["kl_reconstruction"])
    summary["files"] = files
    run.summary = finite(summary)
    return run


def _dictionary_figures(
    run: ConceptsRun, model, utterances: Sequence, directory: Path, by_mass: list[int], gram_utterances: int
) -> list[str]:
    grounding, method = run.grounding, run.dictionary.method
    shown = by_mass[: min(16, len(by_mass))]
    labels = concept_labels(grounding, shown)
    written: list[str] = []

    def save(fig, name: str, caption: str) -> None:
        paths = save_figure(fig, directory / name)
        written.extend(str(p) for p in paths)
        run.figures.append({"path": paths[0], "caption": caption})

    for utt in _gram_utterances(utterances, gram_utterances):
        features = featurize_file(utt.audio_path, model.feature_config, model.min_input_frames)
        gram = concept_gram(model, run.dictionary, features)
        fig = plot_concept_gram(
            gram,
            model.feature_config,
            shown,
            concept_labels=labels,
            letters=_emitted_letters(model, gram.logits, utt),
            title=f"{utt.id}: {utt.text}",
        )
        save(fig, f"conceptgram_{utt.id}", f"Concept-gram of {utt.id} ({method}, {run.dictionary.layer}).")
    for kind, names in (("phone", grounding.phones), ("letter", grounding.letters)):
        fig = plot_grounding(
            grounding.lift(kind),
            names,
            shown,
            concept_labels=labels,
            title=f"{method} concepts of {grounding.layer}: {kind} lift",
        )
        save(fig, f"grounding_{kind}s", f"Where each concept's activation falls, by {kind} (log2 lift).")
    fig = plot_patterns(grounding.contrast_patterns()[shown], model.feature_config, labels, title="top-event patterns")
    save(fig, "patterns", "Average input window of each concept's top events, minus the corpus mean.")
    if run.stability is not None:
        fig = plot_stability({method: run.stability.cosines}, {method: run.stability.null_cosines})
        save(fig, "stability", "Cosine of concepts matched across seeds (Hungarian matching).")
    if run.faithfulness is not None and run.faithfulness.ablated():
        faith = run.faithfulness
        keep = [i for i, s in enumerate(faith.letters) if faith.letter_frames[i] > 0]
        drops = np.stack([faith.letter_drop[f"ablate:{k}"][keep] for k in faith.ablated()])
        fig = plot_letter_damage(
            drops,
            [faith.letters[i] for i in keep],
            concept_labels(grounding, faith.ablated()),
            title="letters that suffer when one concept is removed",
        )
        save(fig, "letter_damage", "Mean log-posterior drop of each letter when one concept is ablated.")
    return written


def _gram_utterances(utterances: Sequence, n: int) -> list:
    """``n`` utterances of moderate length (at most 4 s where possible), spread over the corpus."""
    moderate = [u for u in utterances if getattr(u, "duration", None) and u.duration <= 4.0] or list(utterances)
    return _spread(moderate, n) if n else []


def _emitted_letters(model, logits: np.ndarray, utt) -> list[tuple[float, str]]:
    """(time in seconds, symbol) where the forced alignment of the transcript emits each symbol."""
    alphabet = model.alphabet
    if alphabet is None:
        return []
    log_probs = torch.log_softmax(torch.as_tensor(logits).float(), dim=0).T.contiguous()
    try:
        path = forced_align(log_probs, alphabet.encode(utt.text, utterance_id=utt.id), blank=alphabet.blank)
    except AlignmentError:
        return []
    seconds = model.feature_config.frame_seconds
    return [
        (float(model.frame_map.center(model.output_layer, span.start)) * seconds, alphabet.symbols[span.token])
        for span in token_spans(path, alphabet.blank)
    ]


# ---------------------------------------------------------------------------
# L2I


def _l2i_outputs(
    model, interpreter: ListenableInterpreter, out: Path, common: dict, n_cases: int, figures: bool, audio: bool
) -> ConceptsRun:
    """Faithfulness, example interpretations (three letters and the first word of two held-out
    utterances), files and summary of a trained interpreter."""
    faith = interpreter.faithfulness(model, n_cases=n_cases)
    run = ConceptsRun({}, interpreter=interpreter)
    config = model.feature_config
    files: list[str] = []
    interpretations = []
    examples = interpreter.collected_test_ or interpreter.collected_
    for u in examples[:2]:
        top = u.log_probs.argmax(axis=0)
        letters = np.flatnonzero(np.isin(top, model.alphabet.letter_indices))
        frames = letters[np.linspace(0, len(letters) - 1, 3).astype(int)] if len(letters) else []
        items = [interpreter.interpret_frame(model, u.features, int(t), int(top[t])) for t in frames]
        if u.path is not None:
            items.append(interpreter.interpret_word(model, u.features, u.path, 0))
        for i, item in enumerate(items):
            entry = {
                "utterance": u.id,
                "what": item.what,
                "components": item.components,
                "relevance": [float(item.relevance[k]) for k in item.components],
                "frames": list(item.frames),
            }
            stem = f"{u.id}_{i}"
            if audio and item.audio.size:
                path = save_audio(out / "audio" / "l2i" / f"{stem}.wav", item.audio, config.sample_rate)
                files.append(str(path))
                entry["audio"] = str(path)
                run.audio.append({"path": path, "caption": f"L2I, {u.id}: {item.what} (components {item.components})"})
            if figures:
                start, stop = item.frames
                fig = plot_interpretation(item, u.features[:, start:stop], config)
                paths = save_figure(fig, out / "figures" / "l2i" / f"interpretation_{stem}")
                files += [str(p) for p in paths]
                run.figures.append({"path": paths[0], "caption": f"L2I interpretation of {item.what} in {u.id}."})
            interpretations.append(entry)
    if figures:
        paths = save_figure(plot_spectral_components(interpreter.spectra_, config), out / "figures" / "l2i" / "spectra")
        files += [str(p) for p in paths]
        run.figures.append({"path": paths[0], "caption": "The spectral NMF dictionary of the corpus (mel magnitude)."})
    weights = {f"interpreter/{k}": v.detach().numpy() for k, v in interpreter.interpreter_.state_dict().items()}
    files.insert(0, str(save_npz(out / "l2i.npz", spectra=interpreter.spectra_, **weights)))
    report = finite(
        {
            "settings": {**common, **interpreter.get_params()},
            "summary": interpreter.summary(),
            "faithfulness": faith,
            "interpretations": interpretations,
        }
    )
    files.insert(1, str(save_json(out / "l2i.json", report)))
    run.report = report
    test = interpreter.fidelity_["test"] or interpreter.fidelity_["train"]
    summary = {
        **common,
        "n_components": interpreter.n_components,
        "utterances_train": len(interpreter.train_ids_),
        "utterances_test": len(interpreter.test_ids_),
        "fidelity_on": "test" if interpreter.fidelity_["test"] else "train",
        **{f"fidelity_{k}": v for k, v in test.items() if k != "utterances"},
        "reconstruction_error": interpreter.history_[-1]["reconstruction"],
        **{k: faith[k] for k in ("cases", "drop_relevant", "drop_random", "faithfulness") if k in faith},
        "files": files,
    }
    run.summary = finite(summary)
    return run
