"""Batches of padded features and CTC targets, with bucketing and deterministic shuffling.

Order rules (``batch_plan``), each utterance exactly once per epoch:

- ``shuffle=False, bucket=False``: the given order, cut into batches;
- ``shuffle=False, bucket=True``: sorted by duration (stable), cut into batches;
- ``shuffle=True, bucket=False``: a permutation from ``(seed, epoch)``;
- ``shuffle=True, bucket=True``: permute, take pools of ``batch_size * pool_batches``
  utterances, sort each pool by duration, cut into batches, then shuffle the
  batches (similar lengths per batch, different batches every epoch).

``max_frames`` caps the padded size of a batch (``B * T_max`` input frames);
an utterance longer than the cap on its own forms a batch of one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from asr_introspect.audio import audio_info, load_audio
from asr_introspect.features import featurize

from .utterance import Utterance

__all__ = ["Batch", "batch_plan", "iterate_batches", "utterance_durations"]


@dataclass
class Batch:
    """``features: (B, F, T)`` float32 zero-padded; ``feature_lengths: (B,)`` int64 valid frames;
    ``targets: (B, S)`` int64 alphabet ids padded with 0 (blank); ``target_lengths: (B,)`` int64;
    ``utterances``: the B records in batch order."""

    features: torch.Tensor
    feature_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    utterances: tuple[Utterance, ...]

    def __len__(self) -> int:
        return len(self.utterances)

    def to(self, device: torch.device | str) -> Batch:
        """A copy with the tensors on ``device``."""
        return Batch(
            self.features.to(device),
            self.feature_lengths.to(device),
            self.targets.to(device),
            self.target_lengths.to(device),
            self.utterances,
        )


def utterance_durations(utterances: Sequence[Utterance]) -> np.ndarray:
    """``(N,)`` float64 seconds: ``utt.duration``, else read from the audio header."""
    out = np.empty(len(utterances), dtype=np.float64)
    for i, utt in enumerate(utterances):
        if utt.duration is not None:
            out[i] = utt.duration
        else:
            rate, frames, _ = audio_info(utt.audio_path)
            out[i] = frames / rate
    return out


def _cut(order: Sequence[int], frames: np.ndarray, batch_size: int, max_frames: int | None) -> list[list[int]]:
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        t = int(frames[i])
        if current and (
            len(current) >= batch_size or (max_frames is not None and max(longest, t) * (len(current) + 1) > max_frames)
        ):
            batches.append(current)
            current, longest = [], 0
        current.append(int(i))
        longest = max(longest, t)
    if current:
        batches.append(current)
    return batches


def batch_plan(
    frames: Sequence[int] | np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    bucket: bool = True,
    max_frames: int | None = None,
    epoch: int = 0,
    pool_batches: int = 50,
) -> list[list[int]]:
    """Index batches over utterances with ``frames: (N,)`` lengths (module docstring rules).

    Deterministic for ``(seed, epoch)``; every index appears exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    frames = np.asarray(frames, dtype=np.int64)
    n = len(frames)
    rng = np.random.default_rng([int(seed), int(epoch)])
    if not shuffle:
        order = np.argsort(frames, kind="stable") if bucket else np.arange(n)
        return _cut(order, frames, batch_size, max_frames)
    perm = rng.permutation(n)
    if not bucket:
        return _cut(perm, frames, batch_size, max_frames)
    pool = max(1, batch_size * pool_batches)
    batches: list[list[int]] = []
    for start in range(0, n, pool):
        chunk = perm[start : start + pool]
        chunk = chunk[np.argsort(frames[chunk], kind="stable")]
        batches.extend(_cut(chunk, frames, batch_size, max_frames))
    return [batches[i] for i in rng.permutation(len(batches))]


def iterate_batches(
    utterances: Sequence[Utterance],
    feature_config,
    alphabet,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    bucket: bool = True,
    max_frames: int | None = None,
    epoch: int = 0,
) -> Iterator[Batch]:
    """Yield :class:`Batch` es over ``utterances`` (order rules in the module docstring).

    Audio is read with ``audio.load_audio`` at ``feature_config.sample_rate``;
    features come from :func:`features.featurize`; targets from ``alphabet.encode`` (``TranscriptError``
    names the utterance; no targets with ``alphabet=None``, an encoder without a CTC head).
    ``epoch`` changes the shuffle for the same ``seed``.
    """
    utterances = list(utterances)
    durations = utterance_durations(utterances)
    sr = feature_config.sample_rate
    frames = np.array([feature_config.frames(int(round(d * sr))) for d in durations], dtype=np.int64)
    for index_batch in batch_plan(
        frames, batch_size, shuffle=shuffle, seed=seed, bucket=bucket, max_frames=max_frames, epoch=epoch
    ):
        utts = tuple(utterances[i] for i in index_batch)
        features, feature_lengths = featurize([load_audio(u.audio_path, sample_rate=sr) for u in utts], feature_config)
        encoded = [alphabet.encode(u.text, utterance_id=u.id) if alphabet is not None else [] for u in utts]
        target_lengths = torch.tensor([len(e) for e in encoded], dtype=torch.int64)
        targets = torch.zeros(len(encoded), max(1, int(target_lengths.max())), dtype=torch.int64)
        for row, ids in enumerate(encoded):
            targets[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        yield Batch(features, feature_lengths, targets, target_lengths, utts)
