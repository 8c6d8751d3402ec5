"""``asr-introspect dissect``: audio network dissection of a model's neurons over a corpus.

For every neuron of ``--layers``: its top-K activating clips, its scores against a closed vocabulary of
concepts (letters, phones, phonetic features, silence, word position, voice, F0 / energy / centroid
bins), labels, polysemanticity and a description; with ``--ablate CONCEPT...`` the concept-specific
ablation against random and top-activation neurons. Writes ``dissection.json``, ``dissection.npz``,
clips, figures and ``ablation.json`` under ``--out``: see :mod:`asr_introspect.workflows.dissect`.
Under ``torchrun --nproc_per_node=N`` (gloo) each process takes a shard of the corpus; rank 0 writes.
"""

from __future__ import annotations

import argparse
import os

from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import (
    add_parser,
    comma_list,
    finite_float,
    nonnegative_int,
    positive_int,
    shift_correction,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers,
        "dissect",
        help="name neurons with concepts (top clips, IoU with letters/phones/features/voice/F0...), test by ablation",
    )
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument(
        "--layers", type=comma_list, default=None, help="comma-separated layers, e.g. conv9,conv10 (default: all)"
    )
    parser.add_argument("--top-k", type=positive_int, default=10, help="top-activating clips kept per neuron")
    parser.add_argument(
        "--concepts",
        type=comma_list,
        default=None,
        help="comma-separated concept families: letters, phones, features, silence, position, voice, f0, energy, "
        "centroid (default: all that the corpus supports)",
    )
    parser.add_argument(
        "--ablate",
        nargs="+",
        metavar="CONCEPT",
        default=[],
        help="zero the neurons labelled with each concept (e.g. manner:fricative phone:s silence) and measure "
        "dA / dR against random and top-activation neurons",
    )
    parser.add_argument(
        "--ablate-layers",
        type=comma_list,
        default=None,
        help="layers to ablate, layer by layer (default: every dissected layer; one forward pass over the corpus "
        "per layer and method)",
    )
    parser.add_argument("--seeds", type=positive_int, default=5, help="random-neuron draws per ablation")
    parser.add_argument(
        "--quantile",
        type=finite_float(0.0, 0.5, lo_open=True),
        default=0.05,
        help="share of each neuron's frames counted as active (its top quantile)",
    )
    parser.add_argument(
        "--min-iou", type=finite_float(0.0, 1.0), default=0.1, help="IoU a concept needs to become a neuron's label"
    )
    parser.add_argument(
        "--clips", type=nonnegative_int, default=3, help="neurons per layer whose top clips are written as WAV"
    )
    parser.add_argument(
        "--clip-seconds", type=finite_float(0.05, 10.0), default=0.8, help="length of each clip around its peak"
    )
    parser.add_argument(
        "--separation",
        type=finite_float(0.0, 10.0),
        default=0.25,
        help="seconds between two top clips of one neuron in one utterance",
    )
    parser.add_argument(
        "--calibration",
        type=positive_int,
        default=200,
        help="utterances (a seeded random sample) for the activation thresholds and the CTC lag",
    )
    parser.add_argument(
        "--shift-correction",
        type=shift_correction,
        default="auto",
        help="move letter labels this many output frames earlier onto their sound: auto (the measured CTC lag), "
        "none, or an integer",
    )
    parser.add_argument(
        "--lag",
        type=_lag,
        default="auto",
        help="score each layer's frame t against the concepts at t - lag: auto (each layer's response lag, "
        "measured during calibration) or seconds for every layer (0: none)",
    )
    parser.add_argument(
        "--mode",
        choices=("span", "spike"),
        default="span",
        help="letter frames: spans up to the next letter, or CTC spikes only",
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="utterances per forward pass")
    parser.add_argument(
        "--describe-with",
        type=str,
        default=None,
        metavar="DIR",
        help="a local transformers causal language model that summarizes the concepts of the written clips "
        "(off by default; never downloads)",
    )
    parser.add_argument("--no-figures", action="store_true", help="no PNG/SVG figures")
    set_runner(parser, run)


def _lag(value: str) -> str | float:
    """An argparse ``type``: ``auto`` or a finite number of seconds."""
    if value == "auto":
        return value
    try:
        return finite_float(-1.0, 1.0)(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or seconds in [-1, 1], got {value!r}") from None


def _init_distributed() -> tuple[bool, object]:
    """(created, torch.distributed): initializes gloo when launched by torchrun with WORLD_SIZE > 1."""
    import torch.distributed as dist

    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
        return True, dist
    return False, dist


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.dissection import check_families
    from asr_introspect.workflows.dissect import dissect

    if args.concepts is not None:
        check_families(args.concepts)  # before loading anything
    created, dist = _init_distributed()
    try:
        model, utterances, model_path, data_path = load_inputs(args)
        return dissect(
            model,
            utterances,
            args.out,
            layers=args.layers,
            top_k=args.top_k,
            quantile=args.quantile,
            min_iou=args.min_iou,
            concepts=args.concepts,
            ablate=args.ablate,
            ablation_layers=args.ablate_layers,
            seeds=args.seeds,
            clips=args.clips,
            clip_seconds=args.clip_seconds,
            separation=args.separation,
            calibration=args.calibration,
            shift_correction=args.shift_correction,
            lag=args.lag,
            letter_mode=args.mode,
            batch_size=args.batch_size,
            figures=not args.no_figures,
            describe_with=args.describe_with,
            model_path=model_path,
            data_path=data_path,
            progress=progress_enabled(args),
        ).summary
    finally:
        if created:
            dist.destroy_process_group()
