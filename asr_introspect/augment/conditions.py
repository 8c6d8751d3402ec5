"""Evaluation copies of a corpus under one channel condition each (for per-condition error rates).

A condition is one deterministic effect at a fixed strength, seeded per
utterance id, so the same corpus and seed always give the same audio:

- ``clean``: unchanged;
- ``reverb``: one of 16 simulated rooms (RT60 0.15-0.9 s, see :mod:`.reverb`);
- ``noise``: pink noise at 10 dB SNR; ``babble``: 5 other utterances of the corpus at 10 dB;
- ``band_limit``: 8 kHz round trip; ``mu_law``: 8 kHz + 8-bit mu-law; ``gsm_like``:
  8 kHz + 300-3400 Hz + 13 bits (see :mod:`.channel`);
- ``clipping``: hard clipping at 30 % of the peak.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from asr_introspect.audio import load_audio, save_audio
from asr_introspect.corpus import load_corpus
from asr_introspect.errors import InputError
from asr_introspect.io import save_json

from .channel import band_limit, gsm_like, mu_law_round_trip
from .level import clip
from .noise import NOISE_COLOURS, babble, coloured_noise, mix_at_snr
from .reverb import reverberate, simulate_rirs

__all__ = ["CONDITIONS", "apply_condition", "write_condition_corpus"]

CONDITIONS = ("clean", "reverb", "noise", "babble", "band_limit", "mu_law", "gsm_like", "clipping")
_SNR_DB = 10.0
_N_ROOMS = 16
_BABBLE_SPEAKERS = 5


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def apply_condition(
    audio: np.ndarray,
    condition: str,
    sample_rate: int,
    rng: np.random.Generator,
    rirs: list[np.ndarray] | None = None,
    others: list[np.ndarray] | None = None,
) -> np.ndarray:
    """``audio`` (N,) under ``condition`` (one of :data:`CONDITIONS`); same length.

    ``rirs``: the room bank for ``reverb``; ``others``: utterances to make
    ``babble`` from (pink noise when fewer than two).
    """
    if condition == "clean":
        return audio.copy()
    if condition == "reverb":
        rirs = rirs or simulate_rirs(_N_ROOMS, sample_rate, np.random.default_rng(0))
        return reverberate(audio, rirs[int(rng.integers(len(rirs)))])
    if condition == "babble" and others is not None and len(others) >= 2:
        chosen = [others[int(i)] for i in rng.choice(len(others), min(_BABBLE_SPEAKERS, len(others)), replace=False)]
        return mix_at_snr(audio, babble(chosen, audio.size, rng), _SNR_DB)
    if condition in ("noise", "babble"):
        return mix_at_snr(audio, coloured_noise(audio.size, NOISE_COLOURS["pink"], rng), _SNR_DB)
    if condition == "band_limit":
        return band_limit(audio, sample_rate)
    if condition == "mu_law":
        return mu_law_round_trip(band_limit(audio, sample_rate))
    if condition == "gsm_like":
        return gsm_like(audio, sample_rate)
    if condition == "clipping":
        return clip(audio, 0.3)
    raise InputError(f"unknown channel condition {condition!r}: use one of {', '.join(CONDITIONS)}")


def write_condition_corpus(
    source: str | os.PathLike,
    out: str | os.PathLike,
    condition: str,
    seed: int = 0,
    sample_rate: int = 16000,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Copy the LibriSpeech-layout corpus ``source`` to ``out`` with every utterance under ``condition``.

    Transcripts (``*.trans.txt``) and TextGrids are copied unchanged (every
    condition keeps the timing); audio is written as 16 kHz FLAC at the same
    relative path. Babble is made from other utterances of the corpus (never
    the utterance itself). Writes ``out/condition.json``; returns its content.
    """
    if condition not in CONDITIONS:
        raise InputError(f"unknown channel condition {condition!r}: use one of {', '.join(CONDITIONS)}")
    source, out = Path(source), Path(out)
    utterances = load_corpus(source)
    rirs = (
        simulate_rirs(_N_ROOMS, sample_rate, np.random.default_rng(_seed("rooms", seed)))
        if condition == "reverb"
        else None
    )
    audio = [load_audio(u.audio_path, sample_rate=sample_rate) for u in utterances]
    for i, utt in enumerate(utterances):
        relative = utt.audio_path.relative_to(source)
        rng = np.random.default_rng(_seed(condition, seed, utt.id))
        others = [a for j, a in enumerate(audio) if j != i] if condition == "babble" else None
        changed = apply_condition(audio[i], condition, sample_rate, rng, rirs=rirs, others=others)
        peak = float(np.max(np.abs(changed))) if changed.size else 0.0
        if peak > 1.0:  # FLAC holds [-1, 1]: scale down rather than clip (clipping is its own condition)
            changed = changed / peak
        target = (out / relative).with_suffix(".flac")
        target.parent.mkdir(parents=True, exist_ok=True)
        save_audio(target, changed.astype(np.float32), sample_rate)
        grid = utt.audio_path.with_suffix(".TextGrid")
        if grid.is_file():
            shutil.copyfile(grid, target.with_suffix(".TextGrid"))
        if progress:
            progress(i + 1, len(utterances))
    for transcript in source.rglob("*.trans.txt"):
        destination = out / transcript.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(transcript, destination)
    info = {"source": str(source), "condition": condition, "seed": seed, "utterances": len(utterances)}
    save_json(out / "condition.json", info)
    return info
