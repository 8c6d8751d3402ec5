"""``asr-introspect train``: CTC training of a preset, resumable, torchrun-aware.

``--out`` that already holds a run is refused unless ``--resume`` (continue it)
or ``--overwrite`` (replace it: the old run's files are removed only when the
new run writes its first checkpoint; until then it lives in a staging folder
inside ``--out``, see :mod:`asr_introspect.training`). Every flag is checked
(by argparse), and the run directory too, before the corpus is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_introspect.cli._common import add_common, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, finite_float, nonnegative_int, positive_int
from asr_introspect.errors import InputError

#: ``training.ARCHITECTURES`` (a copy: training imports torch; tests/test_conformer.py keeps them equal)
ARCHITECTURES = ("wav2letter", "conformer", "quartznet")

#: ``augment.PROFILES`` (a copy: the package imports scipy; tests/test_augment.py keeps them equal)
AUGMENT_PROFILES = ("none", "light", "channels", "full")

#: TrainConfig's defaults, shown by --help (a copy: TrainConfig imports torch; a test keeps them equal)
CONFIG_DEFAULTS = {
    "max_steps": 20000,
    "batch_size": 16,
    "lr": 1e-3,
    "warmup_steps": 500,
    "eval_every": 500,
    "checkpoint_every": 250,
    "seed": 0,
}


def _default(name: str, what: str) -> str:
    return f"{what} (default: {CONFIG_DEFAULTS[name]:g})"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "train", help="train a preset (Wav2Letter, Conformer, QuartzNet) with CTC")
    add_common(parser, out="required")
    parser.add_argument("--data", type=Path, required=True, help="training corpus (LibriSpeech layout or manifest)")
    parser.add_argument(
        "--valid", type=Path, default=None, help="validation corpus; default: 5%% of the training texts held out"
    )
    parser.add_argument(
        "--speakers",
        default=None,
        metavar="PATTERNS",
        help="train and validate only on these speakers: comma-separated globs, e.g. 'flite_*' (default: all)",
    )
    parser.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default=None,
        help="model family; its presets: wav2letter: small | speechless | tiny, conformer: conformer-small | "
        "conformer-tiny, quartznet: quartznet-5x1 | quartznet-tiny (default: the --preset's family, else wav2letter)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="a preset of --architecture (default: its first: small, conformer-small or quartznet-5x1)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out (its stored settings win over these flags)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out: its files are removed only once the new run has written its first checkpoint",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start from these weights (same preset), e.g. to fine-tune the default model",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="stop after this many more steps (default: at --max-steps)"
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help=_default("max_steps", "length of the schedule (with --resume: extend a run's schedule)"),
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help=_default("batch_size", "global batch, in utterances")
    )
    parser.add_argument(
        "--lr", type=finite_float(0, lo_open=True), default=None, help=_default("lr", "peak learning rate of AdamW")
    )
    parser.add_argument(
        "--warmup-steps",
        type=nonnegative_int,
        default=None,
        help=_default("warmup_steps", "steps of linear learning-rate warm-up"),
    )
    parser.add_argument(
        "--eval-every", type=positive_int, default=None, help=_default("eval_every", "validate every N steps")
    )
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help=_default("checkpoint_every", "write model.safetensors and state.pt every N steps"),
    )
    parser.add_argument(
        "--no-batch-norm",
        action="store_true",
        help="drop the preset's BatchNorm (needed for exact multi-process equivalence)",
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENT_PROFILES,
        default=None,
        metavar="PROFILE",
        help="augmentation profile: none, light (speed, white noise, SpecAugment: the default), "
        "channels (light + simulated rooms, coloured/babble noise, gain, clipping, 8 kHz/mu-law/GSM-like "
        "channels), full (channels + VTLP and pitch shifts); see docs/training.md",
    )
    parser.add_argument("--no-augment", action="store_true", help="no speed, noise or masking (--augment none)")
    parser.add_argument(
        "--quantize-aware",
        choices=("nf4", "int8"),
        default=None,
        help="train and validate with the weights rounded as a checkpoint of this dtype "
        "stores them (fine-tune a model before shipping it quantized; default: off)",
    )
    parser.add_argument(
        "--seed",
        type=nonnegative_int,
        default=None,
        help=_default("seed", "seed of the initialization, batch order and augmentation"),
    )
    set_runner(parser, run)


def check_args(args: argparse.Namespace) -> None:
    """Checks across flags (each flag's range is checked by its argparse type)."""
    if args.resume and args.overwrite:
        raise InputError("--resume continues the run in --out and --overwrite replaces it: give only one of them")
    if args.resume and args.init is not None:
        raise InputError("--init starts a new run and --resume continues one: give only one of them")
    if args.no_augment and args.augment not in (None, "none"):
        raise InputError(f"--no-augment and --augment {args.augment} contradict each other: give only one of them")


def run(args: argparse.Namespace) -> dict:
    check_args(args)
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.corpus import filter_speakers, load_corpus, split_by_text
    from asr_introspect.training import (
        TrainConfig,
        architecture_of,
        check_resumable,
        check_run_dir,
        resolve_preset,
        train,
    )

    preset = resolve_preset(args.architecture, args.preset)
    if args.no_batch_norm and architecture_of(preset) == "conformer":
        raise InputError(
            f"--no-batch-norm: preset {preset!r} cannot drop its BatchNorm (the Conformer's convolution "
            "modules need it); leave the flag out"
        )
    # the run directory before the corpus is loaded
    check_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    if args.resume:
        check_resumable(args.out)
    config = TrainConfig(preset=preset)
    overrides = {
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
        "quantize_aware": args.quantize_aware,
        "augment": args.augment,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if args.no_batch_norm:
        config.batch_norm = False
    if args.no_augment:
        config.augment = "none"
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
        overwrite=args.overwrite,
    )
    return {
        "run": str(args.out),
        "model": str(Path(args.out) / "model.safetensors"),
        **{k: metrics.get(k) for k in ("step", "loss", "cer", "wer")},
    }
