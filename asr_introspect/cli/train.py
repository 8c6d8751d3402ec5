"""``asr-introspect train``: CTC training of a preset, resumable, torchrun-aware."""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a Wav2Letter preset with CTC")
    add_common(parser, out="required")
    parser.add_argument("--data", type=Path, required=True, help="training corpus (LibriSpeech layout or manifest)")
    parser.add_argument(
        "--valid", type=Path, default=None, help="validation corpus; default: 5%% of the training texts held out"
    )
    parser.add_argument(
        "--speakers",
        default=None,
        metavar="PATTERNS",
        help="train and validate only on these speakers: comma-separated globs, e.g. 'flite_*'",
    )
    parser.add_argument("--preset", default="small", help="small | speechless | tiny")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start from these weights (same preset), e.g. to fine-tune the default model",
    )
    parser.add_argument("--steps", type=int, default=None, help="stop after this many more steps")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="length of the schedule (with --resume: extend a run's schedule)"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument(
        "--no-batch-norm",
        action="store_true",
        help="drop the preset's BatchNorm (needed for exact multi-process equivalence)",
    )
    parser.add_argument("--no-augment", action="store_true", help="no speed, noise or masking")
    parser.add_argument(
        "--quantize-aware",
        choices=("nf4", "int8"),
        default=None,
        help="train and validate with the weights rounded as a checkpoint of this dtype "
        "stores them (fine-tune a model before shipping it quantized)",
    )
    parser.add_argument("--seed", type=int, default=None)
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.corpus import filter_speakers, load_corpus, split_by_text
    from asr_introspect.training import TrainConfig, train

    config = TrainConfig(preset=args.preset)
    overrides = {
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
        "quantize_aware": args.quantize_aware,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if args.no_batch_norm:
        config.batch_norm = False
    if args.no_augment:
        config.speed_factors, config.noise_probability = (1.0,), 0.0
        config.freq_masks, config.time_masks_per_second = 0, 0.0
    utterances = load_corpus(args.data, progress=progress_enabled(args))
    if args.speakers:
        utterances = filter_speakers(utterances, args.speakers, source=str(args.data))
    if args.valid is not None:
        valid = load_corpus(args.valid)
        if args.speakers:
            valid = filter_speakers(valid, args.speakers, source=str(args.valid))
        train_utts = utterances
    else:
        train_utts, valid = split_by_text(utterances, fraction=0.05, seed=config.seed)
    data_info = {
        "train": str(args.data),
        "valid": str(args.valid) if args.valid else "5% of texts",
        "train_utterances": len(train_utts),
        "valid_utterances": len(valid),
        **({"speakers": args.speakers} if args.speakers else {}),
    }
    _, metrics = train(
        config,
        train_utts,
        args.out,
        valid_utterances=valid,
        resume=args.resume,
        steps=args.steps,
        progress=progress_enabled(args),
        data_info=data_info,
        extend_to=args.max_steps if args.resume else None,
        init_from=args.init,
    )
    return {
        "run": str(args.out),
        "model": str(Path(args.out) / "model.safetensors"),
        **{k: metrics.get(k) for k in ("step", "loss", "cer", "wer")},
    }
