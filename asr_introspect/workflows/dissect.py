"""Dissection workflow: name every neuron of some layers with concepts, listen to its top clips, and test
the names by concept-specific ablation (``asr-introspect dissect``).

Writes under ``out``:

- ``dissection.npz``: per layer ``iou@L``, ``precision@L``, ``recall@L``, ``selectivity@L`` (neurons x
  concepts), ``thresholds@L``, ``polysemanticity@L``, the top segments ``top@L/...`` and the accumulated
  counts (:meth:`Dissection.load` reads it back);
- ``dissection.json``: settings, the concept list (frames per concept), and per layer its summary
  (labelled share, polysemanticity distribution, families of the best labels) and every neuron: labels,
  best concepts with IoU / precision / recall / selectivity, description, polysemanticity, top clips
  (utterance, time, activation; for neurons with written clips also the concepts at the peak and the
  WAV files);
- ``clips/<layer>/n<neuron>_<rank>.wav``: the audio around each top peak of ``clips`` neurons per layer
  (the best-labelled ones, one per best concept), and their spectrogram crops
  ``clips/<layer>/n<neuron>_crops.npz`` and ``figures/clips/<layer>_n<neuron>.png``;
- ``ablation.json`` (with ``ablate``): per concept, layer and method (labelled neurons, random neurons over
  ``seeds``, top-mean-activation neurons) dA, dR, dA - dR, the error rises and dCER, and the table;
- figures: ``figures/polysemanticity.png``, ``figures/label_families.png``, ``figures/ablation_<concept>.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr_introspect.aggregate import torch_distributed
from asr_introspect.audio import load_audio, save_audio
from asr_introspect.dissection import (
    FAMILIES,
    ConceptVocabulary,
    Dissection,
    DissectionEstimator,
    ablation_table,
    check_families,
    concept_ablation,
    local_language_model,
    summarize_clips,
)
from asr_introspect.dissection.quantiles import check_quantile
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, compute_features
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.dissection import plot_ablation, plot_label_families, plot_polysemanticity, plot_top_clips
from asr_introspect.workflows.checks import check_count, check_layers, corpus_name, select_utterances
from asr_introspect.workflows.common import finite, path_str

__all__ = [
    "DissectRun",
    "dissect",
    "DEFAULT_MIN_IOU",
    "PHONE_FAMILIES",
    "write_clips",
    "clip_neurons",
    "output_letter_accuracy",
]

#: IoU a concept needs to label a neuron (at quantile 0.05; docs/dissection.md: chance level and the
#: random-weights model)
DEFAULT_MIN_IOU = 0.1
#: concept families that need phone segments
PHONE_FAMILIES = ("phones", "features", "silence", "position")
_FADE_SECONDS = 0.01


@dataclass
class DissectRun:
    """``summary``: what ``dissect --json`` prints; ``dissection``: the :class:`Dissection`; ``report``: the
    content of ``dissection.json``; ``ablations``: one :func:`concept_ablation` result per concept;
    ``clips``: {layer: {neuron: [WAV paths]}}."""

    summary: dict
    dissection: Dissection
    report: dict
    ablations: list[dict] = field(default_factory=list)
    clips: dict[str, dict[int, list[Path]]] = field(default_factory=dict)


def _shift(shift_correction: str | int) -> str | int:
    """The estimator's ``shift`` for ``--shift-correction`` (auto, none or output frames to move letters earlier)."""
    if shift_correction == "auto":
        return "auto"
    if shift_correction == "none":
        return 0
    try:
        return -int(shift_correction)
    except (TypeError, ValueError):
        raise InputError(f"--shift-correction: expected auto, none or an integer, got {shift_correction!r}") from None


def _families(concepts: Sequence[str] | None, utterances: Sequence, data_path) -> tuple[list[str], list[str]]:
    """(families to use, families dropped because the corpus has no phone segments). Asking explicitly for
    a phone family on such a corpus is an error; the default drops them with a note."""
    has_phones = any(getattr(u, "phones", None) for u in utterances)
    if concepts is None:
        families = list(FAMILIES)
        dropped = [] if has_phones else [f for f in families if f in PHONE_FAMILIES]
        return [f for f in families if f not in dropped], dropped
    families = check_families(concepts)
    needing = [f for f in families if f in PHONE_FAMILIES]
    if needing and not has_phones:
        raise InputError(
            f"{corpus_name(data_path)}: no utterance has phone segments, which --concepts {','.join(needing)} "
            "need (add TextGrids, or leave them out)"
        )
    return families, []


def clip_neurons(dissection: Dissection, layer: str, n: int) -> list[int]:
    """Up to ``n`` neurons of ``layer`` to listen to: labelled neurons by best IoU, one per best concept."""
    if n <= 0:
        return []
    scores = dissection.scores(layer)
    labels = dissection.labels(layer)
    best = np.nan_to_num(scores.iou, nan=-1.0).max(axis=1)
    chosen, seen = [], set()
    for neuron in np.argsort(-best, kind="stable"):
        if not len(labels[neuron]):
            break
        concept = int(labels[neuron][0])
        if concept in seen:
            continue
        chosen.append(int(neuron))
        seen.add(concept)
        if len(chosen) == n:
            break
    return chosen


def output_letter_accuracy(dissection: Dissection, alphabet) -> dict | None:
    """AND's check on neurons whose meaning is known: each letter channel of the output layer should have
    its own letter as its best letter concept. Returns {"top1", "top5": share of letter channels whose
    letter is the best / among the 5 best letter concepts by IoU, "channels"}, or None when the output
    layer was not dissected with the letter concepts."""
    layer = dissection.settings.get("output_layer")
    if layer not in dissection.layers or "letters" not in dissection.vocabulary.families:
        return None
    scores = dissection.scores(layer)
    letters = [k for k, f in enumerate(dissection.vocabulary.concept_families) if f == "letters"]
    names = [scores.concepts[k].partition(":")[2] for k in letters]
    hits1 = hits5 = total = 0
    for channel, symbol in enumerate(alphabet.symbols):
        if symbol not in names or channel >= scores.iou.shape[0]:
            continue
        order = np.argsort(-np.nan_to_num(scores.iou[channel, letters], nan=-1.0), kind="stable")
        ranked = [names[i] for i in order]
        total += 1
        hits1 += ranked[0] == symbol
        hits5 += symbol in ranked[:5]
    return {"top1": hits1 / total, "top5": hits5 / total, "channels": total} if total else None


def _display_config(model) -> FeatureConfig:
    """The model's log-mel front end, or a 64-band log-mel for models that take other input (waveforms)."""
    config = model.feature_config
    return config if isinstance(config, FeatureConfig) else FeatureConfig(sample_rate=config.sample_rate, n_mels=64)


def write_clips(
    model,
    utterances_by_id: dict,
    dissection: Dissection,
    layer: str,
    neuron: int,
    out: Path,
    clip_seconds: float,
    audio_cache: dict | None = None,
) -> tuple[list[Path], np.ndarray, list[dict]]:
    """The WAV clips (``clip_seconds`` around each top peak, 10 ms fades) and spectrogram crops ((K, F, W),
    zero outside the utterance) of one neuron. Returns (paths, crops, the top segments)."""
    config = _display_config(model)
    rate = int(config.sample_rate)
    audio_cache = audio_cache if audio_cache is not None else {}
    segments = dissection.top_segments(layer, neuron)
    half = int(round(0.5 * clip_seconds * rate))
    width = int(round(clip_seconds / config.frame_seconds))
    fade = np.linspace(0.0, 1.0, max(int(_FADE_SECONDS * rate), 1), dtype=np.float32)
    paths, crops = [], []
    for rank, segment in enumerate(segments):
        utt = utterances_by_id[segment["utterance"]]
        if utt.id not in audio_cache:
            audio = load_audio(utt.audio_path, sample_rate=rate)
            audio_cache[utt.id] = (audio, compute_features(audio, config).numpy())
        audio, features = audio_cache[utt.id]
        centre = int(round(segment["sound_time"] * rate))
        clip = audio[max(centre - half, 0) : centre + half].astype(np.float32).copy()
        if len(clip) > 2 * len(fade):
            clip[: len(fade)] *= fade
            clip[-len(fade) :] *= fade[::-1]
        paths.append(save_audio(out / f"n{neuron}_{rank + 1}.wav", clip, rate))
        frame = int(round(segment["sound_time"] / config.frame_seconds))
        crop = np.zeros((features.shape[0], width), dtype=np.float32)
        lo = frame - width // 2
        src = features[:, max(lo, 0) : lo + width]
        crop[:, max(-lo, 0) : max(-lo, 0) + src.shape[1]] = src
        crops.append(crop)
    stacked = np.stack(crops) if crops else np.zeros((0, config.n_mels, width), dtype=np.float32)
    return paths, stacked, segments


def _rank_world() -> tuple[int, int]:
    dist = torch_distributed()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def dissect(
    model,
    utterances: Sequence,
    out: str | Path,
    *,
    layers: Sequence[str] | None = None,
    top_k: int = 10,
    quantile: float = 0.05,
    min_iou: float = DEFAULT_MIN_IOU,
    concepts: Sequence[str] | None = None,
    ablate: Sequence[str] = (),
    ablation_layers: Sequence[str] | None = None,
    seeds: int = 5,
    clips: int = 3,
    clip_seconds: float = 0.8,
    separation: float = 0.25,
    calibration: int | None = 200,
    shift_correction: str | int = "auto",
    lag: str | float = "auto",
    letter_mode: str = "span",
    batch_size: int = 16,
    figures: bool = True,
    describe_with: str | Path | Callable[[str], str] | None = None,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = False,
) -> DissectRun:
    """Dissect ``layers`` (default: all) of ``model`` over ``utterances`` and write the files (module docstring).

    concepts: concept families (default: all of :data:`dissection.FAMILIES` the corpus supports); ablate:
    concept names to ablate (e.g. "manner:fricative", "phone:s") at ``ablation_layers`` (default: the
    dissected layers) against ``seeds`` random draws; clips: neurons per layer whose top clips are written
    (centred on the sound the neuron responds to: its frame's time minus the layer's lag); lag: "auto" (each
    layer's response lag, measured) or seconds;
    describe_with: a local ``transformers`` causal LM directory, or a ``prompt -> text`` function, that
    summarizes the concepts of those neurons' top clips (off by default). Every flag, layer and concept
    name is checked before the pass over the corpus.
    """
    check_layers(model, layers)
    check_layers(model, ablation_layers, flag="--ablate-layers")
    top_k = check_count("--top-k", top_k)
    check_count("--batch-size", batch_size)
    check_count("--seeds", seeds)
    check_count("--clips", clips, minimum=0)
    check_count("--calibration", calibration)
    quantile = check_quantile(quantile)
    if not 0.0 <= float(min_iou) <= 1.0:
        raise InputError(f"--min-iou must be in [0, 1], got {min_iou!r}")
    if not 0.05 <= float(clip_seconds) <= 10.0:
        raise InputError(f"--clip-seconds must be in [0.05, 10], got {clip_seconds!r}")
    shift = _shift(shift_correction)
    utterances = select_utterances(utterances, data_path, what="dissect")
    families, dropped = _families(concepts, utterances, data_path)
    vocabulary = ConceptVocabulary.for_corpus(
        utterances, model.alphabet, families, sample_rate=model.feature_config.sample_rate
    )
    ablate = list(dict.fromkeys(ablate))
    for name in ablate:
        vocabulary.index(name)
    if ablation_layers is not None and layers is not None:
        outside = [n for n in ablation_layers if n not in layers]
        if outside:
            raise InputError(f"--ablate-layers {', '.join(outside)}: not among the dissected --layers")
    summarizer = local_language_model(describe_with) if isinstance(describe_with, (str, Path)) else describe_with

    estimator = DissectionEstimator(
        layers,
        vocabulary=vocabulary,
        top_k=top_k,
        quantile=quantile,
        separation=separation,
        letter_mode=letter_mode,
        shift=shift,
        lag=lag,
        min_iou=min_iou,
        calibration=calibration,
        batch_size=batch_size,
    )
    estimator.fit(model, utterances, progress=progress)
    dissection = estimator.result()
    if not dissection.settings["utterances"]:
        raise InputError(f"{corpus_name(data_path)}: no utterance could be dissected")
    rank, world = _rank_world()
    if rank != 0:  # under torchrun every process holds the all-reduced result; rank 0 writes it
        return DissectRun({"rank": rank, "world_size": world}, dissection, {})

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = [str(dissection.save(out / "dissection.npz"))]
    by_id = {u.id: u for u in utterances}
    audio_cache: dict = {}
    written: dict[str, dict[int, list[Path]]] = {}
    clip_info: dict[str, dict[int, dict]] = {}
    for layer in dissection.layers:
        for neuron in clip_neurons(dissection, layer, clips):
            clip_dir = out / "clips" / layer
            paths, crops, segments = write_clips(
                model, by_id, dissection, layer, neuron, clip_dir, clip_seconds, audio_cache
            )
            written.setdefault(layer, {})[neuron] = paths
            files += [str(p) for p in paths]
            files.append(str(save_npz(clip_dir / f"n{neuron}_crops.npz", crops=crops)))
            info: dict[str, Any] = {"wav": [str(p.relative_to(out)) for p in paths]}
            if summarizer is not None:
                info["summary"] = summarize_clips([s["concepts"] for s in segments], summarizer)
            clip_info.setdefault(layer, {})[neuron] = info
            if figures and len(crops):
                titles = [f"{s['utterance']} {s['sound_time']:.2f}s a={s['activation']:.2f}" for s in segments]
                fig = plot_top_clips(
                    list(crops),
                    titles,
                    _display_config(model),
                    clip_seconds,
                    suptitle=f"{layer} neuron {neuron}: {dissection.describe(layer, neuron)}",
                )
                path = out / "figures" / "clips" / f"{layer}_n{neuron}.png"
                files += [str(p) for p in save_figure(fig, path, svg=False)]

    report = dissection.to_dict(clip_concepts={layer: list(n) for layer, n in clip_info.items()})
    for layer, neurons in clip_info.items():
        for neuron, info in neurons.items():
            report["layers"][layer]["units"][neuron].update(info)
    report["dropped_families"] = dropped

    ablations = []
    for concept in ablate:
        result = concept_ablation(
            model,
            utterances,
            dissection,
            concept,
            layers=ablation_layers,
            seeds=seeds,
            batch_size=batch_size,
            progress=progress,
        )
        ablations.append(result)
        if figures and any(r["neurons"] for r in result["rows"]):
            fig = plot_ablation(result)
            files += [str(p) for p in save_figure(fig, out / "figures" / f"ablation_{_safe(concept)}.png")]
    if ablations:
        files.insert(
            1, str(save_json(out / "ablation.json", finite({"results": ablations, "table": ablation_table(ablations)})))
        )

    summaries = {layer: report["layers"][layer] for layer in dissection.layers}
    if figures:
        layer_summaries = {layer: dissection.layer_summary(layer) for layer in dissection.layers}
        best = {
            layer: np.nanmax(np.nan_to_num(dissection.scores(layer).iou, nan=0.0), axis=1)
            for layer in dissection.layers
        }
        files += [
            str(p)
            for p in save_figure(
                plot_polysemanticity(layer_summaries, best, dissection.min_iou), out / "figures" / "polysemanticity.png"
            )
        ]
        files += [
            str(p)
            for p in save_figure(
                plot_label_families(layer_summaries, vocabulary.families), out / "figures" / "label_families.png"
            )
        ]
    files.insert(1, str(save_json(out / "dissection.json", finite(report))))

    phonetic = {"phones", "features", "silence"}
    families_of = vocabulary.concept_families
    per_layer = {}
    for layer in dissection.layers:
        s = summaries[layer]
        labels = dissection.labels(layer)
        per_layer[layer] = {
            "neurons": s["neurons"],
            "labelled": s["labelled"],
            "labelled_fraction": s["labelled_fraction"],
            "phone_or_feature_labelled": int(sum(any(families_of[k] in phonetic for k in m) for m in labels)),
            "mean_polysemanticity_labelled": s["mean_polysemanticity_labelled"],
            "median_best_iou": s["median_best_iou"],
            "best_label_family": s["best_label_family"],
        }
    output_check = output_letter_accuracy(dissection, model.alphabet)
    summary: dict[str, Any] = {
        "model": path_str(model_path),
        "data": path_str(data_path),
        "utterances": dissection.settings["utterances"],
        "layers": dissection.layers,
        "concepts": len(vocabulary),
        "families": vocabulary.families,
        "dropped_families": dropped,
        "quantile": quantile,
        "min_iou": float(min_iou),
        "shift_output_frames": dissection.settings["shift_output_frames"],
        "lag_seconds": {layer: round(v["seconds"], 4) for layer, v in dissection.settings["lags"].items()},
        "world_size": world,
        "per_layer": per_layer,
    }
    if output_check is not None:
        summary["output_letter_accuracy"] = output_check
    if ablations:
        summary["ablation"] = [
            {
                "concept": result["concept"],
                **{
                    f"{row['layer']}/{row['method']}": {
                        "neurons": row["neurons"],
                        "d_a_minus_d_r": row["d_a_minus_d_r"],
                        **({"std": row["d_a_minus_d_r_std"]} if "d_a_minus_d_r_std" in row else {}),
                    }
                    for row in result["rows"]
                },
            }
            for result in ablations
        ]
    summary["files"] = files
    return DissectRun(finite(summary), dissection, report, ablations, written)
