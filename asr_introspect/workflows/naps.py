"""NAP workflow: neuron activation profiles over letters/phonemes, their clustering and cluster quality per
layer (``asr-introspect naps``).

Writes under ``out``: ``naps_<by>.npz`` (NAPs, counts, group and layer names;
:meth:`NAPs.load` reads it), ``naps_<by>.json`` (cluster assignments and
scores per layer, settings), and figures: ``figures/<by>/<layer>_dendrogram``
and ``_clustermap`` per layer, ``figures/quality`` across layers. With
``align="saliency-peak"`` the profiles are SNAPs (:mod:`asr_introspect.naps.snap`;
same files, ``settings.align`` says which). With ``topographic`` (a layout
method) also ``topographic_<by>.npz`` (per layer ``layout@L`` (N, 2),
``images@L`` (G, R, R), ``profiles@L``, ``groups@L``) and
``figures/<by>/<layer>_topographic`` (:mod:`asr_introspect.naps.topographic`). In an
initialized ``torch.distributed`` process group (``torchrun``) each process
takes a shard of the corpus; rank 0 writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from asr_introspect.errors import InputError
from asr_introspect.io import save_json, save_npz
from asr_introspect.naps import (
    LayerQuality,
    NAPEstimator,
    NAPs,
    cluster_naps,
    layer_quality,
    letter_groups,
    phoneme_groups,
)
from asr_introspect.naps.snap import ALIGNMENTS, SNAPEstimator
from asr_introspect.naps.topographic import available_layouts, topographic_images, topographic_layout
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.naps import plot_dendrogram, plot_quality, save_clustermap
from asr_introspect.plotting.topographic import topographic_maps
from asr_introspect.stream import fit_estimators
from asr_introspect.workflows.checks import check_count, check_layers, corpus_name, select_utterances
from asr_introspect.workflows.common import finite, path_str


@dataclass
class NapsRun:
    """``summary``: what ``naps --json`` prints; ``naps``: one :class:`NAPs` per grouping;
    ``reports``: {by: content of ``naps_<by>.json``}; ``qualities``: {by: [LayerQuality per layer]}.
    On ranks other than 0 of a process group only ``summary`` (rank, world size) is filled."""

    summary: dict
    naps: list[NAPs] = field(default_factory=list)
    reports: dict[str, dict] = field(default_factory=dict)
    qualities: dict[str, list[LayerQuality]] = field(default_factory=dict)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _write_results(naps: NAPs, out: Path, options: dict, figures: bool) -> tuple[dict, list[LayerQuality], list[str]]:
    """Write npz/json (+ figures) of one NAPs object; returns (json content, qualities per layer, paths)."""
    by = naps.by
    written = [str(naps.save(out / f"naps_{by}.npz"))]
    layers: dict[str, Any] = {}
    qualities = []
    for layer in naps.layers:
        entry: dict[str, Any] = {"counts": dict(zip(naps.groups, naps.counts(layer).tolist()))}
        quality = layer_quality(naps, layer, **options)
        qualities.append(quality)
        entry["quality"] = quality.to_dict()
        try:
            clustering = cluster_naps(naps, layer, **options, neurons=figures)
        except ValueError as exc:  # fewer than 2 groups with frames
            entry["clustering"] = {"error": str(exc)}
            layers[layer] = entry
            continue
        entry["clustering"] = clustering.to_dict()
        layers[layer] = entry
        if figures:
            fig_dir = out / "figures" / by
            written += [
                str(p) for p in save_figure(plot_dendrogram(clustering, by=by), fig_dir / f"{layer}_dendrogram.png")
            ]
            written += [
                str(p)
                for p in save_clustermap(
                    clustering, fig_dir / f"{layer}_clustermap.png", title=f"{layer}: {options['normalize']} {by} NAPs"
                )
            ]
    report = finite({"settings": {**naps.settings, **options}, "layers": layers})
    written.insert(1, str(save_json(out / f"naps_{by}.json", report)))
    return report, qualities, written


def _write_topographic(
    naps: NAPs, out: Path, options: dict, method: str, figures: bool, seed: int = 0
) -> tuple[dict, list[str]]:
    """Layouts and per-group maps of every layer (``topographic_<by>.npz`` + figures); returns
    (summary per layer, paths). Layers with no group of ``min_count`` frames are left out."""
    by = naps.by
    arrays: dict[str, Any] = {"method": np.array(method), "layers": np.array(naps.layers, dtype=str)}
    entries: dict[str, Any] = {}
    written: list[str] = []
    for layer in naps.layers:
        profiles, groups = naps.profiles(layer, options["normalize"], options["min_count"])
        if not groups:
            entries[layer] = {"error": f"no group has {options['min_count']} frames"}
            continue
        layout = topographic_layout(profiles, method, seed=seed)
        images = topographic_images(layout, profiles)
        arrays.update(
            {
                f"layout@{layer}": layout,
                f"images@{layer}": images,
                f"profiles@{layer}": profiles,
                f"groups@{layer}": np.array(groups, dtype=str),
            }
        )
        entries[layer] = {"neurons": int(layout.shape[0]), "groups": len(groups)}
        if figures:
            title = f"{layer}: {options['normalize']} {by} profiles ({method})"
            fig = topographic_maps(
                layout,
                profiles,
                groups,
                images=images,
                title=title,
            )
            written += [str(p) for p in save_figure(fig, out / "figures" / by / f"{layer}_topographic.png")]
    written.insert(0, str(save_npz(out / f"topographic_{by}.npz", **arrays)))
    return {"method": method, "layers": entries}, written


def check_clusters(model, clusters: int | None, kinds: Sequence[str]) -> None:
    """InputError unless ``clusters`` (None: the default) lies in 1..the number of groups of each kind."""
    check_count("--clusters", clusters)
    for kind in kinds:
        groups = len(letter_groups(model.letter_alphabet) if kind == "letter" else phoneme_groups())
        if clusters is not None and clusters > groups:
            raise InputError(f"--clusters {clusters}: more than the {groups} {kind} groups; choose 1..{groups}")


def naps(
    model,
    utterances: Sequence,
    out: str | Path,
    *,
    by: str = "letter",
    layers: Sequence[str] | None = None,
    source: str = "forced",
    letter_mode: str = "spike",
    shift: int = 0,
    weighting: str | None = None,
    normalize: str = "zscore",
    linkage: str = "average",
    metric: str = "euclidean",
    clusters: int | None = None,
    min_count: int = 1,
    batch_size: int = 16,
    align: str = "label",
    topographic: str | None = None,
    figures: bool = True,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = False,
) -> NapsRun:
    """NAPs grouped ``by`` "letter", "phoneme" or "both" (one pass) at ``layers`` (default: all); write the files.

    ``weighting``: None, "gradient" or "saliency"; ``normalize``/``linkage``/``metric``/``clusters``/
    ``min_count``: how the profiles are clustered and scored. Layer names, counts, ``clusters`` against
    the number of groups and a non-empty corpus are checked before the pass over the corpus.
    """
    rank, world = _rank_world()
    if layers is not None:
        layers = list(layers)
    check_layers(model, layers)
    check_count("--batch-size", batch_size)
    check_count("--min-count", min_count)
    kinds = ["letter", "phoneme"] if by == "both" else [by]
    check_clusters(model, clusters, kinds)
    if align not in ALIGNMENTS:
        raise InputError(f"--align {align}: choose one of {', '.join(ALIGNMENTS)}")
    if align == "saliency-peak":
        model.require_ctc("--align saliency-peak (the saliency of the model's logits)")
    if topographic is not None and topographic not in available_layouts():
        raise InputError(f"--topographic {topographic}: choose one of {', '.join(available_layouts())}")
    utterances = select_utterances(utterances, data_path, what="profile")
    if "phoneme" in kinds and not any(u.phones for u in utterances):
        raise InputError(
            f"{corpus_name(data_path)}: no utterance has phone segments (add TextGrids, or use --by letter)"
        )
    estimator_class = SNAPEstimator if align == "saliency-peak" else NAPEstimator
    estimators = [
        estimator_class(
            kind,
            layers,
            source=source,
            letter_mode=letter_mode,
            shift=shift,
            weighting=weighting,
            batch_size=batch_size,
        )
        for kind in kinds
    ]
    fit_estimators(model, utterances, estimators, batch_size=batch_size, progress=progress)
    results = [e.result() for e in estimators]
    for result in results:
        if result.settings["utterances"] == 0:
            raise InputError(
                f"{corpus_name(data_path)}: no utterance could be used for {result.by} NAPs "
                f"({len(result.settings['skipped'])} skipped)"
            )
    if rank != 0:
        return NapsRun({"rank": rank, "world_size": world})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(normalize=normalize, method=linkage, metric=metric, n_clusters=clusters, min_count=min_count)
    run = NapsRun({}, results)
    files: list[str] = []
    scores: dict[str, Any] = {}
    topographic_summary: dict[str, Any] = {}
    for result in results:
        report, qualities, written = _write_results(result, out, options, figures)
        files += written
        run.reports[result.by] = report
        run.qualities[result.by] = qualities
        if topographic is not None:
            maps, written = _write_topographic(result, out, options, topographic, figures)
            files += written
            topographic_summary[result.by] = maps
        scores[result.by] = {
            q.layer: {
                **{f"ari_{k}": v for k, v in q.ari.items()},
                "silhouette": q.silhouette,
                "cophenetic": q.cophenetic,
                "specificity": q.specificity,
            }
            for q in qualities
        }
    if figures:
        files += [str(p) for p in save_figure(plot_quality(run.qualities), out / "figures" / "quality.png")]
    summary: dict[str, Any] = {
        "model": path_str(model_path),
        "data": path_str(data_path),
        "by": kinds,
        "align": align,
        "layers": results[0].layers,
        "world_size": world,
        "utterances": {n.by: n.settings["utterances"] for n in results},
        "skipped": {n.by: len(n.settings["skipped"]) for n in results},
        "scores": scores,
    }
    if topographic is not None:
        summary["topographic"] = topographic_summary
    if align == "saliency-peak":
        summary["peak_offset"] = {n.by: n.settings["peak_offset"] for n in results}
    if len(results) == 2:
        summary["letter_over_phoneme_specificity"] = {
            q.layer: (ql.specificity / q.specificity if q.specificity else float("nan"))
            for ql, q in zip(run.qualities["letter"], run.qualities["phoneme"])
        }
    summary["files"] = files
    run.summary = finite(summary)
    return run
