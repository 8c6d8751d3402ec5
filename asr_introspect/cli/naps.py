"""``asr-introspect naps``: NAPs over letters/phonemes, their clustering and cluster quality per layer.

Writes under ``--out``: ``naps_<by>.npz`` (NAPs, counts, group and layer
names; :meth:`NAPs.load` reads it), ``naps_<by>.json`` (cluster assignments
and scores per layer, settings), and figures: ``figures/<by>/<layer>_dendrogram``
and ``_clustermap`` per layer, ``figures/quality`` across layers. Under
``torchrun --nproc_per_node=N`` (gloo) each process takes a shard of the
corpus; rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    from asr_introspect.naps import LINKAGES, METRICS, NORMALIZATIONS

    parser = subparsers.add_parser(
        "naps", help="neuron activation profiles over letters/phonemes: cluster them, score layers")
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument("--by", choices=("letter", "phoneme", "both"), default="letter",
                        help="group frames by letter (CTC alignment), phoneme (phone segments) or both "
                             "(one pass over the corpus)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layers, e.g. conv9,conv10,conv11 (default: all)")
    parser.add_argument("--source", choices=("forced", "predicted"), default="forced",
                        help="letters from the forced alignment of the transcript or the greedy prediction")
    parser.add_argument("--mode", choices=("spike", "span"), default="spike",
                        help="letter frames: CTC spikes only, or spans up to the next letter")
    parser.add_argument("--shift", type=int, default=0,
                        help="move letter labels this many output frames later (negative: earlier, e.g. "
                             "minus the correction_output_frames that `align` reports)")
    parser.add_argument("--weighting", choices=("none", "gradient", "saliency"), default="none",
                        help="weight frames by the gradient (or |gradient x activation|) of the prediction")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="zscore",
                        help="per-neuron normalization before clustering (default: zscore across groups)")
    parser.add_argument("--linkage", choices=LINKAGES, default="average")
    parser.add_argument("--metric", choices=METRICS, default="euclidean")
    parser.add_argument("--clusters", type=int, default=None,
                        help="clusters to cut the group tree into (default: round(sqrt(groups)))")
    parser.add_argument("--min-count", type=int, default=1,
                        help="leave out groups with fewer frames from clustering (default 1)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-figures", action="store_true", help="write the .npz and .json only")
    set_runner(parser, run)


def _finite(x: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _init_distributed() -> tuple[int, int, bool]:
    """(rank, world, created) ; initializes gloo when launched by torchrun with WORLD_SIZE > 1."""
    import torch.distributed as dist

    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        created = not dist.is_initialized()
        if created:
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size(), created
    return 0, 1, False


def _check_args(args: argparse.Namespace) -> None:
    from asr_introspect.errors import InputError

    if args.linkage == "ward" and args.metric != "euclidean":
        raise InputError("--linkage ward needs --metric euclidean")
    if args.clusters is not None and args.clusters < 1:
        raise InputError(f"--clusters must be >= 1, got {args.clusters}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")


def _write_results(naps, args, out_dir, figures: bool) -> tuple[dict, list[str]]:
    """Write npz/json (+ figures) for one NAPs object; returns (per-layer scores, paths)."""
    from asr_introspect.io import save_json
    from asr_introspect.naps import cluster_naps, layer_quality

    by = naps.by
    written = [str(naps.save(out_dir / f"naps_{by}.npz"))]
    options = dict(normalize=args.normalize, method=args.linkage, metric=args.metric,
                   n_clusters=args.clusters, min_count=args.min_count)
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
            from asr_introspect.plotting.common import save_figure
            from asr_introspect.plotting.naps import plot_dendrogram, save_clustermap

            fig_dir = out_dir / "figures" / by
            written += [str(p) for p in save_figure(plot_dendrogram(clustering, by=by),
                                                   fig_dir / f"{layer}_dendrogram.png")]
            written += [str(p) for p in save_clustermap(clustering, fig_dir / f"{layer}_clustermap.png",
                                                        title=f"{layer}: {args.normalize} {by} NAPs")]
    settings = {**naps.settings, **{k: v for k, v in options.items()}}
    written.insert(1, str(save_json(out_dir / f"naps_{by}.json",
                                    _finite({"settings": settings, "layers": layers}))))
    return {"qualities": qualities}, written


def run(args: argparse.Namespace) -> dict:
    from asr_introspect.errors import InputError
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.naps import NAPEstimator, stream_naps

    _check_args(args)
    rank, world, created = _init_distributed()
    try:
        model, utterances, model_path, data_path = load_model_and_corpus(args.model, args.data)
        layers = None
        if args.layers:
            layers = [n.strip() for n in args.layers.split(",") if n.strip()]
            unknown = [n for n in layers if n not in model.layer_names]
            if unknown:
                raise InputError(f"unknown layer(s) {', '.join(unknown)}; the model has "
                                 f"{', '.join(model.layer_names)}")
        kinds = ["letter", "phoneme"] if args.by == "both" else [args.by]
        if "phoneme" in kinds and not any(u.phones for u in utterances):
            raise InputError(f"{data_path}: no utterance has phone segments (add TextGrids, or use --by letter)")
        weighting = None if args.weighting == "none" else args.weighting
        estimators = [NAPEstimator(model, by, layers, source=args.source, mode=args.mode, shift=args.shift,
                                   weighting=weighting)
                      for by in kinds]
        stream_naps(model, utterances, estimators, batch_size=args.batch_size,
                    progress=progress_enabled(args))
        results = [e.result() for e in estimators]
        for naps in results:
            if naps.settings["utterances"] == 0:
                raise InputError(f"{data_path}: no utterance could be used for {naps.by} NAPs "
                                 f"({len(naps.settings['skipped'])} skipped)")
        if rank != 0:
            return {"rank": rank, "world_size": world}
        args.out.mkdir(parents=True, exist_ok=True)
        files: list[str] = []
        scores: dict[str, Any] = {}
        qualities: dict[str, list] = {}
        for naps in results:
            info, written = _write_results(naps, args, args.out, not args.no_figures)
            files += written
            qualities[naps.by] = info["qualities"]
            scores[naps.by] = {q.layer: {**{f"ari_{k}": v for k, v in q.ari.items()},
                                         "silhouette": q.silhouette, "cophenetic": q.cophenetic,
                                         "specificity": q.specificity} for q in info["qualities"]}
        if not args.no_figures:
            from asr_introspect.plotting.common import save_figure
            from asr_introspect.plotting.naps import plot_quality

            files += [str(p) for p in save_figure(plot_quality(qualities), args.out / "figures" / "quality.png")]
        summary: dict[str, Any] = {
            "model": str(model_path), "data": str(data_path), "by": kinds, "layers": results[0].layers,
            "world_size": world,
            "utterances": {n.by: n.settings["utterances"] for n in results},
            "skipped": {n.by: len(n.settings["skipped"]) for n in results},
            "scores": scores,
        }
        if len(results) == 2:
            summary["letter_over_phoneme_specificity"] = {
                q.layer: (ql.specificity / q.specificity if q.specificity else float("nan"))
                for ql, q in zip(qualities["letter"], qualities["phoneme"])}
        summary["files"] = files
        return _finite(summary)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
