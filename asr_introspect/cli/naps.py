"""``asr-introspect naps``: NAPs over letters/phonemes, their clustering and cluster quality per layer.

Writes ``naps_<by>.npz``, ``naps_<by>.json`` and figures under ``--out``: see
:mod:`asr_introspect.workflows.naps`. Under ``torchrun --nproc_per_node=N``
(gloo) each process takes a shard of the corpus; rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import os

from asr_introspect.cli._choices import LINKAGES, METRICS, NAP_NORMALIZATIONS
from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, comma_list, int_range, positive_int
from asr_introspect.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers, "naps", help="neuron activation profiles over letters/phonemes: cluster them, score layers"
    )
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument(
        "--by",
        choices=("letter", "phoneme", "both"),
        default="letter",
        help="group frames by letter (CTC alignment), phoneme (phone segments) or both (one pass over the corpus)",
    )
    parser.add_argument(
        "--layers",
        type=comma_list,
        default=None,
        help="comma-separated layers, e.g. conv9,conv10,conv11 (default: all)",
    )
    parser.add_argument(
        "--source",
        choices=("forced", "predicted"),
        default="forced",
        help="letters from the forced alignment of the transcript or the greedy prediction",
    )
    parser.add_argument(
        "--mode",
        choices=("spike", "span"),
        default="spike",
        help="letter frames: CTC spikes only, or spans up to the next letter",
    )
    parser.add_argument(
        "--shift",
        type=int_range(),
        default=0,
        help="move letter labels this many output frames later (negative: earlier, e.g. "
        "minus the correction_output_frames that `align` reports)",
    )
    parser.add_argument(
        "--weighting",
        choices=("none", "gradient", "saliency"),
        default="none",
        help="weight frames by the gradient (or |gradient x activation|) of the prediction",
    )
    parser.add_argument(
        "--align",
        choices=("label", "saliency-peak"),
        default="label",
        help="where each letter/phone occurrence's frames are taken: at its label (NAPs) or moved to the input "
        "frame its prediction's saliency peaks at (SNAPs)",
    )
    parser.add_argument(
        "--topographic",
        nargs="?",
        const="pca",
        default=None,
        choices=("pca", "mds", "umap"),
        metavar="LAYOUT",
        help="also write topographic maps per layer: neurons laid out by their profiles with LAYOUT "
        "(pca, the default; mds; umap if umap-learn is installed), one map per group",
    )
    parser.add_argument(
        "--normalize",
        choices=NAP_NORMALIZATIONS,
        default="zscore",
        help="per-neuron normalization before clustering (zscore: across groups)",
    )
    parser.add_argument(
        "--linkage", choices=LINKAGES, default="average", help="hierarchical clustering linkage (ward: euclidean only)"
    )
    parser.add_argument("--metric", choices=METRICS, default="euclidean", help="distance between two groups' NAPs")
    parser.add_argument(
        "--clusters",
        type=positive_int,
        default=None,
        help="clusters to cut the group tree into, at most the number of groups (default: round(sqrt(groups)))",
    )
    parser.add_argument(
        "--min-count", type=positive_int, default=1, help="leave out groups with fewer frames from clustering"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="utterances per forward pass")
    parser.add_argument(
        "--aligner",
        default=None,
        metavar="MODEL",
        help="for an encoder without a CTC head (e.g. Whisper's): the CTC model whose forced alignment gives "
        "the letters, carried over by time (default: the shipped model)",
    )
    parser.add_argument("--no-figures", action="store_true", help="write the .npz and .json only")
    set_runner(parser, run)


def _check_args(args: argparse.Namespace) -> None:
    """Checks across flags (each flag alone is checked by its argparse type)."""
    if args.linkage == "ward" and args.metric != "euclidean":
        raise InputError(f"--linkage ward needs --metric euclidean, got --metric {args.metric}")


def _init_distributed() -> tuple[bool, object]:
    """(created, torch.distributed): initializes gloo when launched by torchrun with WORLD_SIZE > 1."""
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    import torch.distributed as dist

    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
        return True, dist
    return False, dist


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.workflows.naps import naps

    _check_args(args)
    layers = args.layers
    created, dist = _init_distributed()
    try:
        model, utterances, model_path, data_path = load_inputs(args)
        aligner_path = None
        if args.by != "phoneme" and not model.has_ctc_head:
            from asr_introspect.loading import load_model

            model.aligner, aligner_path = load_model(args.aligner)
        elif args.aligner is not None:
            raise InputError(f"--aligner {args.aligner}: the model has its own CTC head, which gives the letters")
        summary = naps(
            model,
            utterances,
            args.out,
            by=args.by,
            layers=layers,
            source=args.source,
            letter_mode=args.mode,
            shift=args.shift,
            weighting=None if args.weighting == "none" else args.weighting,
            normalize=args.normalize,
            linkage=args.linkage,
            metric=args.metric,
            clusters=args.clusters,
            min_count=args.min_count,
            batch_size=args.batch_size,
            align=args.align,
            topographic=args.topographic,
            figures=not args.no_figures,
            model_path=model_path,
            data_path=data_path,
            progress=progress_enabled(args),
        ).summary
        if aligner_path is not None:
            summary["aligner"] = str(aligner_path)
        return summary
    finally:
        if created:
            dist.destroy_process_group()
