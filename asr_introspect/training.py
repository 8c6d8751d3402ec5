"""CTC training of the toolkit's presets (Wav2Letter, Conformer, QuartzNet) on 2 CPU cores or many processes.

The loop is deterministic by construction: the batch order of an epoch and the
augmentation of every utterance are functions of ``(seed, epoch, utterance)``,
so resuming from a checkpoint (weights, optimizer, schedule, step and the torch
RNG used by dropout) reproduces an uninterrupted run exactly, and a run under
``torchrun`` sees the same global batches as a single process.

``TrainConfig.quantize_aware = "nf4"`` (or ``"int8"``) trains for a quantized
checkpoint: each step's forward and backward pass use the weights as such a
checkpoint stores them, the optimizer updates float weights, and validation
measures the rounded model (see ``Trainer.rounded_weights``).

Run directory layout (``RUN/``)::

    config.json            the TrainConfig and the data it was started with
    model.safetensors      latest weights, a regular checkpoint (load_checkpoint)
    best.safetensors       weights with the lowest validation CER so far
    state.pt               weights, optimizer, schedule, step, RNG: everything a resume
                           needs in one atomic file (torch.load weights_only)
    log.jsonl              one JSON object per evaluation
    run.json               manifest of the last session that ended normally: settings,
                           times, version, every file with size and sha256

Never losing a run: :func:`train` refuses a directory that already holds a run
(any of ``config.json``, ``model.safetensors``, ``best.safetensors``,
``state.pt``, ``log.jsonl``) unless ``resume`` (continue it) or ``overwrite``
(replace it) is given. A new run (with or without ``overwrite``) writes into a
staging folder ``RUN/.staging-<pid>-<random>`` and swaps it in at its first
checkpoint (or when it ends, if it ends before one): an old run's files are
removed only then, so a new run that fails, is interrupted or killed before
its first checkpoint leaves ``RUN`` as it was (the next run removes a killed
run's staging folder), and can simply be started again. The swap is a few
renames with SIGINT/SIGTERM held back; a SIGKILL inside it is the one window
in which old and new files can mix.
Checkpoints are atomic (temporary file + rename); leftovers of a killed
write (``.NAME.RANDOM.tmp``) are removed when the next session starts. Files
in ``RUN`` that are not part of a run are never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import shutil
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchaudio.functional as AF
from tqdm.auto import tqdm

from asr_introspect.audio import load_audio
from asr_introspect.augment import PROFILES, draw_effects, get_profile, simulate_rirs
from asr_introspect.augment.profiles import apply_channel, apply_room, apply_voice
from asr_introspect.corpus import Utterance, batch_plan
from asr_introspect.decoding import error_rates, greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, featurize
from asr_introspect.io import (
    MANIFEST_NAME,
    atomic_path,
    clean_leftovers,
    file_entry,
    file_sha256,
    make_manifest,
    new_staging_dir,
    read_manifest,
    save_json,
    signals_deferred,
    utc_timestamp,
)
from asr_introspect.models import (
    CONFORMER_PRESETS,
    NF4,
    PRESETS,
    QUARTZNET_PRESETS,
    ASRModel,
    build_conformer,
    build_model,
    build_quartznet,
    load_checkpoint,
    rounded_weights,
    save_checkpoint,
)
from asr_introspect.stream import stream_corpus
from asr_introspect.text import Alphabet


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in ``RUN/config.json``)."""

    preset: str = "small"  # a preset of any architecture (ARCHITECTURES): its name says which
    batch_norm: bool | None = None  # None: the preset's choice
    batch_size: int = 16  # global batch (split across processes)
    max_steps: int = 20000
    lr: float = 1e-3  # peak learning rate of AdamW
    warmup_steps: int = 500
    final_lr_fraction: float = 0.05  # cosine decay ends at lr * this
    weight_decay: float = 1e-2
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0
    # augmentation: a profile of asr_introspect.augment.PROFILES (none, light, channels, full);
    # light (speed, white noise, SpecAugment below) is in every profile but none
    augment: str = "light"
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)
    noise_probability: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    freq_masks: int = 2
    freq_mask_width: int = 8
    time_masks_per_second: float = 1.0
    time_mask_width: int = 20
    # quantization-aware training: None, "nf4" or "int8" (see Trainer.rounded_weights)
    quantize_aware: str | None = None
    # bookkeeping
    eval_every: int = 500
    checkpoint_every: int = 250
    eval_batch_size: int = 32
    max_eval_utterances: int = 200

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown training settings: {', '.join(unknown)}")
        d = dict(d)
        for key in ("speed_factors", "noise_snr_db"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def __post_init__(self) -> None:
        if self.quantize_aware not in (None, "nf4", "int8"):
            raise InputError(f"quantize_aware must be None, 'nf4' or 'int8', got {self.quantize_aware!r}")
        if self.augment not in PROFILES:
            raise InputError(f"unknown augmentation profile {self.augment!r}: use one of {', '.join(PROFILES)}")


# ---------------------------------------------------------------------------
# Determinism helpers


def _seed_for(*parts: object) -> int:
    """A 63-bit seed derived from any parts (stable across processes and runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# ---------------------------------------------------------------------------
# Augmentation (on audio, then on features)


def speed_perturb(audio: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
    """Kaldi-style speed perturbation: resample so the clip plays ``factor`` times faster."""
    if factor == 1.0:
        return audio
    new_rate = int(round(sample_rate / factor / 100.0)) * 100
    return AF.resample(audio, sample_rate, new_rate)


def add_noise(audio: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """Add white noise at ``snr_db`` relative to the clip's power."""
    power = audio.pow(2).mean().clamp_min(1e-10)
    noise = torch.randn(audio.shape, generator=generator)
    return audio + noise * torch.sqrt(power / (10.0 ** (snr_db / 10.0)))


def spec_augment(features: torch.Tensor, length: int, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masking (set to 0, the normalized mean) of one utterance.

    features: (F, T); only the first ``length`` frames are valid.
    """
    features = features.clone()
    n_features = features.shape[0]
    for _ in range(config.freq_masks):
        width = int(torch.randint(0, config.freq_mask_width + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(n_features - width, 0) + 1, (1,), generator=generator))
        features[start : start + width, :] = 0.0
    seconds = length * 0.008
    for _ in range(int(config.time_masks_per_second * seconds)):
        width = int(torch.randint(0, config.time_mask_width + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(length - width, 0) + 1, (1,), generator=generator))
        features[:, start : start + width] = 0.0
    return features


# ---------------------------------------------------------------------------
# Data


@dataclass
class EncodedCorpus:
    """A corpus held in memory for training: int16 audio and encoded targets.

    ``rirs``: the run's bank of simulated room impulse responses, made on the
    first batch that needs one (seeded by ``config.seed``), then reused.
    """

    ids: list[str]
    audio: list[np.ndarray]  # int16 (n_samples,) each
    targets: list[list[int]]
    frames: list[int]  # feature frames of the unaugmented audio
    rirs: dict[tuple[int, int, int], list[np.ndarray]] = dataclasses.field(default_factory=dict, repr=False)

    def room_bank(self, seed: int, size: int, sample_rate: int) -> list[np.ndarray]:
        """The RIR bank of a run (``size`` rooms, float32 (L,) each), simulated once per (seed, size, rate)."""
        key = (seed, size, sample_rate)
        if key not in self.rirs:
            self.rirs[key] = simulate_rirs(size, sample_rate, np.random.default_rng(_seed_for("rooms", seed)))
        return self.rirs[key]

    def float_audio(self, i: int) -> np.ndarray:
        """Utterance ``i``'s audio as float32 in [-1, 1]."""
        return self.audio[i].astype(np.float32) / 32767.0

    @classmethod
    def load(
        cls, utterances: Sequence[Utterance], alphabet: Alphabet, feature_config: FeatureConfig, progress: bool = False
    ) -> EncodedCorpus:
        ids, audio, targets, frames = [], [], [], []
        for utt in tqdm(utterances, desc="loading audio", disable=not progress, unit="utt"):
            wave = load_audio(utt.audio_path, sample_rate=feature_config.sample_rate)
            ids.append(utt.id)
            audio.append(np.round(np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16))
            targets.append(alphabet.encode(utt.text, utterance_id=utt.id))
            frames.append(feature_config.frames(len(wave)))
        return cls(ids, audio, targets, frames)

    def batch(
        self, indices: Sequence[int], feature_config: FeatureConfig, config: TrainConfig, epoch: int, augment: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features (B, F, T), frame lengths (B,), targets (sum S,), target lengths (B,).

        With ``augment``, ``config.augment`` names the profile (see
        :mod:`asr_introspect.augment.profiles`): light's speed, white noise and
        SpecAugment draw from a torch generator seeded by (seed, epoch,
        utterance), as before profiles existed; the profile's other effects
        draw from a numpy generator seeded the same way (with another tag).
        """
        profile = get_profile(config.augment)
        augment = augment and profile.base
        rate = feature_config.sample_rate
        rirs = (
            self.room_bank(config.seed, profile.rir_bank_size, rate) if augment and profile.reverb_probability else []
        )
        waves = []
        generators = []
        for i in indices:
            wave = torch.from_numpy(self.float_audio(i))
            gen = torch.Generator().manual_seed(_seed_for("augment", config.seed, epoch, self.ids[i]))
            generators.append(gen)
            if augment:
                plan = None
                if profile.extra:
                    rng = np.random.default_rng(_seed_for("augment-profile", config.seed, epoch, self.ids[i]))
                    plan = draw_effects(profile, rng, n_rirs=len(rirs), n_sources=len(self.audio))
                    wave = torch.from_numpy(apply_voice(wave.numpy(), plan, rate))
                factor = config.speed_factors[int(torch.randint(len(config.speed_factors), (1,), generator=gen))]
                wave = speed_perturb(wave, factor, rate)
                if plan is not None:
                    wave = torch.from_numpy(apply_room(wave.numpy(), plan, rirs))
                if float(torch.rand(1, generator=gen)) < config.noise_probability:
                    low, high = config.noise_snr_db
                    snr = low + (high - low) * float(torch.rand(1, generator=gen))
                    wave = add_noise(wave, snr, gen)
                if plan is not None:
                    wave = torch.from_numpy(apply_channel(wave.numpy(), plan, rate, self.float_audio, exclude=i))
            waves.append(wave)
        features, frame_lengths = featurize(waves, feature_config)
        if augment:
            features = torch.stack(
                [spec_augment(features[b], int(frame_lengths[b]), config, generators[b]) for b in range(len(indices))]
            )
        targets = torch.tensor([t for i in indices for t in self.targets[i]], dtype=torch.long)
        target_lengths = torch.tensor([len(self.targets[i]) for i in indices], dtype=torch.long)
        return features, frame_lengths, targets, target_lengths


# ---------------------------------------------------------------------------
# Loss, schedule, evaluation


def ctc_loss(
    logits: torch.Tensor, out_lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor, blank: int = 0
) -> torch.Tensor:
    """Per-utterance CTC loss divided by its target length.

    logits: (B, C, T_out) -> (B,) losses (impossible alignments give 0, not inf).
    """
    log_probs = F.log_softmax(logits.float(), dim=1).permute(2, 0, 1)  # (T, B, C)
    losses = F.ctc_loss(
        log_probs, targets, out_lengths, target_lengths, blank=blank, reduction="none", zero_infinity=True
    )
    return losses / target_lengths.clamp_min(1)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to ``final_lr_fraction``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(config.max_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.final_lr_fraction + (1.0 - config.final_lr_fraction) * cosine


@torch.no_grad()
def transcribe_features(model: ASRModel, features: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Greedy transcripts of a padded batch. features: (B, F, T), lengths: (B,)."""
    logits, out_lengths = model.logits(features, lengths)
    return greedy_decode(logits, out_lengths, model.alphabet)


def evaluate(model: ASRModel, utterances: Sequence[Utterance], batch_size: int = 32, progress: bool = False) -> dict:
    """Greedy CER/WER of ``model`` on ``utterances`` (one corpus stream, eval mode; modes restored after).

    Returns ``{"cer", "wer", "utterances", "examples": [{"id", "reference", "hypothesis"}]}``
    (examples in stream order: length-bucketed).
    """
    references, hypotheses, examples = [], [], []
    for batch in stream_corpus(model, utterances, batch_size=batch_size, progress=progress, desc="evaluating"):
        texts = greedy_decode(batch.logits, batch.out_lengths, model.alphabet)
        for utt, hyp in zip(batch.utterances, texts):
            references.append(utt.text)
            hypotheses.append(hyp)
            examples.append({"id": utt.id, "reference": utt.text, "hypothesis": hyp})
    cer, wer = error_rates(references, hypotheses)
    return {"cer": cer, "wer": wer, "utterances": len(references), "examples": examples}


def grouped_error_rates(examples: Sequence[dict], group_of: Mapping[str, str]) -> dict[str, dict]:
    """Corpus-level rates per group from :func:`evaluate`'s ``examples``.

    ``group_of``: utterance id -> group (e.g. its speaker). Returns
    ``{group: {"cer", "wer", "utterances"}}`` in order of first appearance.
    """
    pairs: dict[str, tuple[list[str], list[str]]] = {}
    for e in examples:
        refs, hyps = pairs.setdefault(group_of[e["id"]], ([], []))
        refs.append(e["reference"])
        hyps.append(e["hypothesis"])
    return {
        group: dict(zip(("cer", "wer"), error_rates(refs, hyps)), utterances=len(refs))
        for group, (refs, hyps) in pairs.items()
    }


# ---------------------------------------------------------------------------
# Distributed helpers


def _distributed() -> tuple[int, int]:
    """(rank, world size); initializes gloo when launched by torchrun."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------------------
# Run directories: refuse to lose a run, read its files with one-line errors

#: Files that make a directory a training run.
RUN_FILES = ("config.json", "model.safetensors", "best.safetensors", "state.pt", "log.jsonl")
#: What ``state.pt`` holds (``model``: the weights, since state files carry them).
_STATE_KEYS = ("step", "best_cer", "wall_seconds", "optimizer", "torch_rng", "history")
_START_OVER = "restore it from a backup or start the run again with --overwrite"


def existing_run_files(run_dir: str | os.PathLike) -> list[str]:
    """The :data:`RUN_FILES` present in ``run_dir`` (empty: no run there)."""
    run_dir = Path(run_dir)
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def check_run_dir(run_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> list[str]:
    """Check before any work that training may use ``run_dir``; returns the run files already there.

    ``InputError`` (one line) when ``run_dir`` is a file, holds another
    command's results, or holds a run and neither ``resume`` nor ``overwrite``
    is given (or both are).
    """
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise InputError("--resume continues the run in --out and --overwrite replaces it: give only one of them")
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file, not a directory: give a directory for the training run")
    manifest = read_manifest(run_dir)
    if manifest is not None and manifest.get("command") not in (None, "train"):
        raise InputError(
            f"--out {run_dir} holds the results of `{manifest.get('command')}` ({run_dir / MANIFEST_NAME}); "
            "give the training run its own directory"
        )
    found = existing_run_files(run_dir)
    if found and not resume and not overwrite:
        shown = ", ".join(found[:2]) + (", ..." if len(found) > 2 else "")
        raise InputError(
            f"{run_dir} already holds a training run ({shown}): pass --resume to continue it "
            "or --overwrite to replace it"
        )
    return found


def read_run_config(run_dir: str | os.PathLike) -> tuple[dict, TrainConfig, FeatureConfig]:
    """(stored JSON, TrainConfig, FeatureConfig) of ``run_dir/config.json``; one-line InputError if unusable."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{Path(run_dir)}: not a training run (config.json missing); drop --resume to start one")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (corrupt); {_START_OVER}") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {_START_OVER}"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("train"), dict):
        raise InputError(f"{path}: no 'train' settings (not a training run's config.json); {_START_OVER}")
    if not isinstance(stored.get("features"), dict):
        raise InputError(f"{path}: no 'features' settings (not a training run's config.json); {_START_OVER}")
    try:
        config = TrainConfig.from_dict(stored["train"])
        feature_config = FeatureConfig.from_dict(stored["features"])
    except (InputError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: unusable settings ({exc}); {_START_OVER}") from None
    return stored, config, feature_config


def check_resumable(run_dir: str | os.PathLike) -> tuple[dict, TrainConfig, FeatureConfig]:
    """Quick checks for a resume, before any work: ``config.json`` usable, ``state.pt`` present and complete.

    Returns :func:`read_run_config`'s result. ``state.pt`` is only opened as
    an archive here (its directory sits at the end, so a truncated file fails);
    a file that is no archive is read by :func:`read_state` for the precise
    one-line error (e.g. a pickle of other objects, which is never unpickled).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise InputError(f"{run_dir}: not a training run (config.json missing); drop --resume to start one")
    state_path = run_dir / "state.pt"
    if not state_path.is_file():
        raise InputError(
            f"{run_dir}: nothing to resume (state.pt missing: the run stopped before its first "
            "checkpoint); start it again with --overwrite"
        )
    found = read_run_config(run_dir)
    try:
        with zipfile.ZipFile(state_path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        read_state(state_path)  # raises the precise error (or accepts an older, non-archive state)
    return found


def read_state(path: str | os.PathLike) -> dict:
    """A ``state.pt`` loaded with ``torch.load(weights_only=True)``; one-line InputError naming it otherwise.

    Files that are not training states (truncated, corrupt, or a pickle of
    other Python objects) are refused without being unpickled.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise InputError(
            f"{path}: holds Python objects other than tensors, so it was not loaded (not a state.pt "
            f"written by asr-introspect train); {_START_OVER}"
        ) from None
    except FileNotFoundError:
        raise InputError(f"{path}: missing; {_START_OVER}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, IndexError):
        raise InputError(f"{path}: truncated or corrupt (cannot be read as a training state); {_START_OVER}") from None
    missing = [key for key in _STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise InputError(f"{path}: not a training state (no {', '.join(missing)}); {_START_OVER}")
    return state


def write_run_manifest(run_dir: str | os.PathLike, settings: dict, started: str, summary: dict | None = None) -> dict:
    """``run_dir/run.json``: the session's settings, times, version and every run file with size and sha256."""
    run_dir = Path(run_dir)
    files = {name: file_entry(run_dir / name) for name in existing_run_files(run_dir)}
    manifest = make_manifest("train", settings, files, started=started, summary=summary)
    save_json(run_dir / MANIFEST_NAME, manifest)
    return manifest


def _env_rank() -> int:
    """This process's rank under torchrun (before the process group exists), 0 otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return int(os.environ.get("RANK", "0") or 0)
    return 0


# ---------------------------------------------------------------------------
# Architectures and their presets

#: architecture -> its presets, the first being the default (``train --architecture``); preset names are unique
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "wav2letter": ("small", *(name for name in PRESETS if name != "small")),
    "conformer": ("conformer-small", *(name for name in CONFORMER_PRESETS if name != "conformer-small")),
    "quartznet": ("quartznet-5x1", *(name for name in QUARTZNET_PRESETS if name != "quartznet-5x1")),
}


def architecture_of(preset_name: str) -> str:
    """The architecture whose preset ``preset_name`` is; InputError for an unknown preset."""
    for architecture, presets in ARCHITECTURES.items():
        if preset_name in presets:
            return architecture
    known = ", ".join(name for presets in ARCHITECTURES.values() for name in presets)
    raise InputError(f"--preset {preset_name!r} is unknown; choose one of {known}")


def resolve_preset(architecture: str | None, preset_name: str | None) -> str:
    """The preset that ``--architecture`` and ``--preset`` ask for (either may be None).

    No preset: the architecture's default (``small`` without either flag). A preset of
    another architecture than the one given is an InputError.
    """
    if architecture is not None and architecture not in ARCHITECTURES:
        raise InputError(f"--architecture {architecture!r} is unknown; choose one of {', '.join(ARCHITECTURES)}")
    if preset_name is None:
        return ARCHITECTURES[architecture or "wav2letter"][0]
    if architecture is not None and preset_name not in ARCHITECTURES[architecture]:
        if any(preset_name in presets for presets in ARCHITECTURES.values()):
            raise InputError(
                f"--preset {preset_name!r} is a {architecture_of(preset_name)} preset, not a {architecture} one; "
                f"choose one of {', '.join(ARCHITECTURES[architecture])}"
            )
        raise InputError(f"--preset {preset_name!r} is unknown; choose one of {', '.join(ARCHITECTURES[architecture])}")
    architecture_of(preset_name)
    return preset_name


# ---------------------------------------------------------------------------
# The loop


def new_model(
    preset_name: str,
    alphabet: Alphabet,
    feature_config: FeatureConfig | None = None,
    seed: int = 0,
    batch_norm: bool | None = None,
) -> ASRModel:
    """A freshly initialized preset of any architecture (initialization drawn from ``seed``).

    BatchNorm statistics are per process under DistributedDataParallel, so a
    multi-process run equals a single-process one exactly only without it
    (``batch_norm=False``; the Conformer's convolution modules always normalize).
    """
    architecture = architecture_of(preset_name)
    torch.manual_seed(seed)
    if architecture == "conformer":
        if batch_norm is False:
            raise InputError(
                f"--no-batch-norm: preset {preset_name!r} cannot drop its BatchNorm (the Conformer's "
                "convolution modules need it); train it with BatchNorm"
            )
        return build_conformer(preset_name, alphabet, feature_config)
    if architecture == "quartznet":
        return build_quartznet(
            preset_name, alphabet, feature_config, **({} if batch_norm is None else {"batch_norm": batch_norm})
        )
    return build_model(preset_name, alphabet, feature_config, batch_norm=batch_norm)


class Trainer:
    """Stateful CTC training run in ``run_dir`` (see the module docstring)."""

    def __init__(
        self,
        model: ASRModel,
        config: TrainConfig,
        run_dir: str | os.PathLike,
        train: EncodedCorpus,
        valid: Sequence[Utterance] = (),
        data_info: dict | None = None,
    ):
        self.model = model
        self.config = config
        self.run_dir = Path(run_dir)
        self.train_data = train
        self.valid = list(valid)[: config.max_eval_utterances]
        self.data_info = data_info or {}
        self.rank, self.world = _distributed()
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        #: For a new run started by :func:`train`: the run directory that this run (writing into a
        #: staging folder, ``run_dir``, until then) moves into at its first checkpoint (:meth:`take_over`).
        self.replaces: Path | None = None
        self.step = 0
        self.best_cer = math.inf
        self.wall_seconds = 0.0
        self.history: list[dict] = []
        params = [p for p in model.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay)
        self.network: torch.nn.Module = model.module
        if self.world > 1:
            self.network = torch.nn.parallel.DistributedDataParallel(model.module)

    # -- state ---------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.pt"

    def save(self) -> None:
        """Write weights and training state, each file atomically (rank 0 only).

        ``state.pt`` carries the weights too, so a resume reads one consistent
        file even if the process died between the two writes. With
        :attr:`replaces` set, the first save then swaps this run in (:meth:`take_over`).
        """
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metadata = self.metadata()
        save_checkpoint(self.run_dir / "model.safetensors", self.model, metadata=metadata)
        state = {
            "step": self.step,
            "best_cer": self.best_cer,
            "wall_seconds": self.wall_seconds,
            "model": {name: t.detach().cpu().clone() for name, t in self.model.module.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
        }
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)
        if self.replaces is not None:
            self.take_over()

    def take_over(self) -> None:
        """Move this run from its staging folder into :attr:`replaces`, removing the old run's files.

        The old run's files (:data:`RUN_FILES` and ``run.json``) that the new
        run has not written yet are removed after the new files are renamed in;
        SIGINT/SIGTERM wait until the swap is done. Other files stay. Rank 0 only.
        """
        if self.rank != 0 or self.replaces is None:
            return
        final, staging = self.replaces, self.run_dir
        staged = sorted(p.name for p in staging.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
        staged.sort(key=lambda name: name == "config.json")  # the config last: it says "a run is here"
        with signals_deferred():
            for name in staged:
                os.replace(staging / name, final / name)
            for name in sorted((set(RUN_FILES) | {MANIFEST_NAME}) - set(staged)):
                with contextlib.suppress(FileNotFoundError):
                    (final / name).unlink()
            self.run_dir, self.replaces = final, None
        shutil.rmtree(staging, ignore_errors=True)

    def load(self, state: dict | None = None) -> None:
        """Resume from ``run_dir`` (weights, optimizer, step, RNG); one-line InputError for unusable files.

        ``state``: ``state.pt`` already read with :func:`read_state` (default: read it now).
        ``log.jsonl`` is cut back to the evaluations up to the resumed step (a
        killed run may have logged past its last checkpoint).
        """
        if state is None:
            if not self.state_path.is_file():
                raise InputError(
                    f"{self.run_dir}: nothing to resume (state.pt missing: the run stopped before its first "
                    "checkpoint); start it again with --overwrite"
                )
            state = read_state(self.state_path)
        weights = state.get("model")
        if weights is None:  # a state.pt written before it carried the weights: they are in model.safetensors
            ckpt = self.run_dir / "model.safetensors"
            if not ckpt.is_file():
                raise InputError(f"{self.run_dir}: nothing to resume (model.safetensors missing); {_START_OVER}")
            loaded, meta = load_checkpoint(ckpt)
            step = (meta.get("training") or {}).get("step")
            if step is not None and int(step) != int(state["step"]):
                raise InputError(
                    f"{ckpt} is at step {step} but {self.state_path} at step {state['step']} "
                    f"(the run was stopped between the two writes); {_START_OVER}"
                )
            weights = loaded.module.state_dict()
        try:
            self.model.module.load_state_dict(weights)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"{self.state_path}: its weights do not fit the run's model ({first}); {_START_OVER}"
            ) from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            step, best_cer, wall = int(state["step"]), float(state["best_cer"]), float(state["wall_seconds"])
            history = json.loads(state["history"])
            torch.set_rng_state(state["torch_rng"])
        except (ValueError, TypeError, KeyError, RuntimeError, json.JSONDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{self.state_path}: unusable training state ({first}); {_START_OVER}") from None
        self.step, self.best_cer, self.wall_seconds, self.history = step, best_cer, wall, history
        self._trim_log()

    def _trim_log(self) -> None:
        """Keep only the well-formed ``log.jsonl`` lines of evaluations up to the current step (rank 0)."""
        path = self.run_dir / "log.jsonl"
        if self.rank != 0 or not path.is_file():
            return
        kept, dropped = [], False
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                keep = isinstance(entry, dict) and int(entry.get("step", -1)) <= self.step
            except (ValueError, TypeError):
                keep = False
            if keep:
                kept.append(line)
            else:
                dropped = True
        if dropped:
            with atomic_path(path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def metadata(self) -> dict:
        return {
            "training": {
                "config": self.config.to_dict(),
                "step": self.step,
                "wall_seconds": round(self.wall_seconds, 1),
                "processes": self.world,
                "data": self.data_info,
            },
            "metrics": self.history[-1] if self.history else {},
        }

    # -- steps ---------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Length-bucketed, shuffled global batches of one epoch (deterministic)."""
        return batch_plan(
            self.train_data.frames, self.config.batch_size, shuffle=True, seed=self.config.seed, epoch=epoch
        )

    def batches(self) -> Iterator[tuple[int, list[int]]]:
        """(epoch, global batch indices) from the current step on, forever."""
        per_epoch = len(self.epoch_batches(0))
        epoch, position = divmod(self.step, per_epoch)
        while True:
            batches = self.epoch_batches(epoch)
            for batch in batches[position:]:
                if len(batch) >= self.world:  # every process needs at least one utterance
                    yield epoch, batch
            epoch, position = epoch + 1, 0

    def train_step(self, epoch: int, batch: list[int]) -> float:
        """One optimizer step on a global batch; returns the global mean loss."""
        config = self.config
        local = batch[self.rank :: self.world]
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(self.step, config)
        self.network.train()
        features, frame_lengths, targets, target_lengths = self.train_data.batch(
            local, self.model.feature_config, config, epoch, augment=True
        )
        self.optimizer.zero_grad(set_to_none=True)
        with self.rounded_weights():  # gradients at the rounded weights update the float ones
            # exact padding: each utterance is trained as if alone, whatever its batch
            if self.model.takes_lengths:  # the module masks its own padding (attention masks)
                logits = self.network(features, frame_lengths)
            else:
                with self.model.exact_padding(frame_lengths):
                    logits = self.network(features)
            out_lengths = self.model.output_lengths(frame_lengths)
            losses = ctc_loss(logits, out_lengths, targets, target_lengths, blank=self.model.alphabet.blank)
            # DDP averages gradients over processes: scale so the result is the global batch mean.
            loss = losses.sum() * self.world / len(batch)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.module.parameters(), config.grad_clip)
        self.optimizer.step()
        total = losses.detach().sum()
        if self.world > 1:
            dist.all_reduce(total)
        self.step += 1
        return float(total) / len(batch)

    def run(
        self, steps: int | None = None, progress: bool = False, on_eval: Callable[[dict], None] | None = None
    ) -> dict:
        """Train until ``config.max_steps`` (or ``steps`` more steps); returns the last metrics."""
        config = self.config
        stop = config.max_steps if steps is None else min(config.max_steps, self.step + steps)
        bar = tqdm(total=stop, initial=self.step, desc="training", unit="step", disable=not progress or self.rank != 0)
        metrics: dict = self.history[-1] if self.history else {}
        smoothed = None
        started = time.perf_counter()
        for epoch, batch in self.batches():
            if self.step >= stop:
                break
            loss = self.train_step(epoch, batch)
            smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
            bar.update(1)
            postfix = {"loss": f"{smoothed:.3f}"}
            if "cer" in metrics:
                postfix["cer"] = f"{metrics['cer']:.3f}"
            bar.set_postfix(postfix)
            now = time.perf_counter()
            self.wall_seconds += now - started
            started = now
            if self.valid and (self.step % config.eval_every == 0 or self.step == stop):
                metrics = self.evaluate(loss=smoothed)
                if on_eval:
                    on_eval(metrics)
            if self.step % config.checkpoint_every == 0 or self.step == stop:
                self.save()
        bar.close()
        return metrics

    @contextlib.contextmanager
    def rounded_weights(self) -> Iterator[None]:
        """With ``config.quantize_aware``: the weights rounded as that checkpoint dtype stores them.

        The float weights come back on exit. Training steps compute their
        gradients inside (the straight-through estimator: the optimizer moves the
        float weights by the gradient at their rounding), and validation
        measures the rounded model, so ``best.safetensors`` is chosen for how
        it will ship. Without ``quantize_aware`` this does nothing.
        """
        if self.config.quantize_aware is None:
            yield
            return
        state = self.model.module.state_dict()
        rounded = rounded_weights(self.model, {"nf4": NF4, "int8": torch.int8}[self.config.quantize_aware])
        floats = {name: state[name].clone() for name in rounded}
        with torch.no_grad():
            for name, value in rounded.items():
                state[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in floats.items():
                    state[name].copy_(value)

    def evaluate(self, loss: float | None = None) -> dict:
        with self.rounded_weights():
            result = evaluate(self.model, self.valid, batch_size=self.config.eval_batch_size)
        metrics = {
            "step": self.step,
            "loss": loss,
            "cer": result["cer"],
            "wer": result["wer"],
            "utterances": result["utterances"],
            "wall_seconds": round(self.wall_seconds, 1),
        }
        self.history.append(metrics)
        if self.rank == 0:
            with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(metrics) + "\n")
            if result["cer"] < self.best_cer:
                self.best_cer = result["cer"]
                save_checkpoint(self.run_dir / "best.safetensors", self.model, metadata=self.metadata())
        return metrics


def _copy_weights(source: ASRModel, model: ASRModel, path: str | os.PathLike, config: TrainConfig) -> None:
    """Load ``source``'s weights (any dtype) into the fresh ``model``; a clear error if they do not fit."""
    if source.alphabet.symbols != model.alphabet.symbols:
        raise InputError(f"{path}: its alphabet differs from the training alphabet; it cannot be fine-tuned here")
    theirs, ours = source.module.state_dict(), model.module.state_dict()
    mismatched = sorted(
        k for k in set(theirs) | set(ours) if k not in theirs or k not in ours or theirs[k].shape != ours[k].shape
    )
    if mismatched:
        raise InputError(
            f"{path}: its layers do not match preset {config.preset!r} "
            f"(batch_norm={config.batch_norm}): {', '.join(mismatched[:4])}; "
            "pass the --preset (and --no-batch-norm) the checkpoint was trained with"
        )
    with torch.no_grad():
        for name, tensor in ours.items():
            tensor.copy_(theirs[name].to(tensor.dtype))


def train(
    config: TrainConfig,
    train_utterances: Sequence[Utterance],
    run_dir: str | os.PathLike,
    valid_utterances: Sequence[Utterance] = (),
    resume: bool = False,
    feature_config: FeatureConfig | None = None,
    steps: int | None = None,
    progress: bool = False,
    data_info: dict | None = None,
    extend_to: int | None = None,
    init_from: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> tuple[ASRModel, dict]:
    """Train (or resume) a preset on ``train_utterances``; returns (model, last metrics).

    On resume the stored settings win; ``extend_to`` lengthens the schedule to
    that many steps (the cosine decay is recomputed, so the learning rate
    rises again: a warm restart, not an exact continuation).

    ``init_from``: start a new run from the weights of a checkpoint of the same
    architecture (fine-tuning): fresh optimizer and schedule, the checkpoint's
    feature configuration; the run's metadata records the source and its sha256.

    A ``run_dir`` that already holds a run is refused (``InputError``, before
    any work) unless ``resume`` or ``overwrite``. A new run lives in a staging
    folder until its first checkpoint; then it moves in, and with ``overwrite``
    the old run's files go (see the module docstring). When the session ends
    normally, ``run_dir/run.json`` records it.
    """
    run_dir = Path(run_dir)
    alphabet = Alphabet.default()
    config_path = run_dir / "config.json"
    if resume and init_from is not None:
        raise InputError("--init starts a new run and --resume continues one: give only one of them")
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    started = utc_timestamp()
    source = None
    if init_from is not None:
        source, source_meta = load_checkpoint(init_from)
        feature_config = source.feature_config
        data_info = {
            **(data_info or {}),
            "init_from": str(init_from),
            "init_sha256": file_sha256(init_from),
            "init_step": (source_meta.get("training") or {}).get("step"),
        }
    state = None
    if resume:  # every file of the run is read before the corpus is loaded
        stored, config, feature_config = check_resumable(run_dir)
        state = read_state(run_dir / "state.pt")
        stored_data = stored.get("data") if isinstance(stored.get("data"), dict) else {}
        data_info = {**stored_data, **(data_info or {})}  # keeps e.g. init_from
        if extend_to is not None:  # a longer schedule for a finished run (documented restart)
            config.max_steps = max(int(extend_to), config.max_steps)
    model = new_model(config.preset, alphabet, feature_config, seed=config.seed, batch_norm=config.batch_norm)
    if source is not None:
        _copy_weights(source, model, init_from, config)
    corpus = EncodedCorpus.load(train_utterances, alphabet, model.feature_config, progress=progress)
    rank = _env_rank()
    staging, created = None, False
    if rank == 0 and run_dir.is_dir():
        clean_leftovers(run_dir)  # staging folders of killed runs, temporaries of killed checkpoint writes
    if rank == 0 and not resume:  # a new run lives in a staging folder until its first checkpoint
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        staging = new_staging_dir(run_dir)
    try:
        trainer = Trainer(model, config, staging or run_dir, corpus, valid_utterances, data_info=data_info)
        trainer.replaces = run_dir if staging is not None else None
        if resume:
            trainer.load(state)
            if extend_to is not None and trainer.rank == 0:
                save_json(config_path, {**stored, "train": config.to_dict()})
        elif trainer.rank == 0:
            save_json(
                trainer.run_dir / "config.json",
                {"train": config.to_dict(), "features": model.feature_config.to_dict(), "data": data_info or {}},
            )
        metrics = trainer.run(steps=steps, progress=progress)
        trainer.take_over()  # a new run that ended before its first checkpoint replaces the old one now
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                with contextlib.suppress(OSError):
                    run_dir.rmdir()  # only if empty: the run never reached its first checkpoint
        raise
    if trainer.rank == 0:
        settings = {
            "train": config.to_dict(),
            "data": data_info or {},
            "resume": resume,
            "overwrite": overwrite,
            "steps": steps,
        }
        write_run_manifest(run_dir, settings, started, summary=metrics)
    return model, metrics


__all__ = [
    "ARCHITECTURES",
    "RUN_FILES",
    "architecture_of",
    "resolve_preset",
    "EncodedCorpus",
    "TrainConfig",
    "Trainer",
    "ctc_loss",
    "new_model",
    "evaluate",
    "lr_factor",
    "spec_augment",
    "speed_perturb",
    "train",
    "transcribe_features",
    "check_resumable",
    "check_run_dir",
    "existing_run_files",
    "read_run_config",
    "read_state",
]
