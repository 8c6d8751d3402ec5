"""Front ends other than the toolkit's log-mel: raw waveforms (wav2vec2, HuBERT, WavLM) and Whisper's log-mel.

A front end turns waveforms into model input ``(B, F, T)``; :func:`features.featurize` is
the one way to call it. Every front end has ``kind``, ``sample_rate``, ``n_channels``
(``F``), ``frame_seconds`` (seconds per input frame), ``frames(n_samples)`` (input
frames for that many samples), ``samples_for(n_frames)`` (the fewest samples that give
them), ``compute(audio (B, n), lengths (B,)) -> (features,
feature_lengths)`` (torch, differentiable with respect to ``audio``) and
``to_dict``/``from_dict``. :class:`~asr_introspect.features.FeatureConfig` (log-mel) is
the third. Each computes one utterance in a batch exactly as it computes it alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np
import torch

__all__ = ["WaveformConfig", "WhisperFeatureConfig", "front_end_from_dict"]


def _check_batch(audio: torch.Tensor, lengths) -> tuple[torch.Tensor, torch.Tensor]:
    """(audio (B, n) float32 with zeros beyond each length, lengths (B,) int64 on the CPU)."""
    x = audio if isinstance(audio, torch.Tensor) else torch.as_tensor(np.asarray(audio))
    x = x.to(torch.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"audio must have shape (B, n) with n >= 1, got {tuple(x.shape)}")
    n = x.shape[1]
    if lengths is None:
        lengths = torch.full((x.shape[0],), n, dtype=torch.int64)
    lengths = torch.as_tensor(lengths).to(torch.int64).cpu().reshape(-1)
    if lengths.shape[0] != x.shape[0] or (lengths < 1).any() or (lengths > n).any():
        raise ValueError(f"lengths must be {x.shape[0]} values in [1, {n}], got {lengths.tolist()}")
    mask = torch.arange(n)[None, :] < lengths[:, None]
    return x * mask.to(x.device, x.dtype), lengths


def _from_dict(cls, d: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in d.items() if k != "kind"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; expected a subset of {sorted(known)}")
    return cls(**fields)


@dataclass(frozen=True)
class WaveformConfig:
    """Raw 16 kHz samples as input ``(B, 1, n)``: one input frame per sample.

    ``normalize``: zero mean and unit variance over each utterance's valid samples (what
    ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does, with its 1e-7 variance floor);
    padding stays 0.
    """

    sample_rate: int = 16000
    normalize: bool = True
    kind: str = dataclasses.field(default="waveform", init=False)

    @property
    def n_channels(self) -> int:
        return 1

    @property
    def frame_seconds(self) -> float:
        return 1.0 / self.sample_rate

    def frames(self, n_samples: int) -> int:
        return int(n_samples)

    def samples_for(self, n_frames: int) -> int:
        return int(n_frames)

    def compute(self, audio, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, n) [, lengths (B,)] -> (waveform input (B, 1, n), lengths (B,))."""
        x, lengths = _check_batch(audio, lengths)
        if self.normalize:
            mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).to(x.device, x.dtype)
            count = lengths.to(x.device, x.dtype)[:, None]
            mean = (x * mask).sum(dim=1, keepdim=True) / count
            var = ((x - mean).square() * mask).sum(dim=1, keepdim=True) / count
            x = (x - mean) / torch.sqrt(var + 1e-7) * mask
        return x[:, None, :], lengths

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WaveformConfig:
        return _from_dict(cls, d)


@dataclass(frozen=True)
class WhisperFeatureConfig:
    """Whisper's log-mel: 25 ms Hann windows every 10 ms, Slaney mels, log10 with an 8-decade floor.

    ``log_mel = (max(log10(mel), M - 8) + 4) / 4`` with ``M`` the utterance's maximum, computed on
    the waveform padded with zeros (as Whisper pads to 30 s). ``frames(n) = ceil((n + n_fft / 2) /
    hop)``: every frame whose window touches the audio; the frames after them see only zeros,
    and the Whisper adapter fills the rest of the 30 s window (``window_frames``) with that
    silence value (``M - 8`` after scaling, i.e. the maximum minus 2).
    """

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    window_frames: int = 3000
    kind: str = dataclasses.field(default="whisper-log-mel", init=False)

    @property
    def n_channels(self) -> int:
        return self.n_mels

    @property
    def fmin(self) -> float:
        """Lowest mel edge (Hz): 0, as Whisper's filterbank."""
        return 0.0

    @property
    def fmax_hz(self) -> float:
        """Highest mel edge (Hz): the Nyquist frequency, as Whisper's filterbank."""
        return self.sample_rate / 2

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def frames(self, n_samples: int) -> int:
        return -(-(int(n_samples) + self.n_fft // 2) // self.hop_length)

    def samples_for(self, n_frames: int) -> int:
        return max((int(n_frames) - 1) * self.hop_length - self.n_fft // 2 + 1, 1)

    def compute(self, audio, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, n) [, lengths (B,)] -> (log-mel (B, n_mels, frames(n)), frame lengths (B,)); 0 beyond."""
        x, lengths = _check_batch(audio, lengths)
        x = torch.nn.functional.pad(x, (0, self.n_fft))  # zeros after the end, as in the 30 s window
        spec = torch.stft(
            x,
            self.n_fft,
            self.hop_length,
            window=torch.hann_window(self.n_fft, device=x.device),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        mel = _whisper_mel_basis(self.sample_rate, self.n_fft, self.n_mels).to(x.device) @ power
        frame_lengths = torch.tensor([self.frames(n) for n in lengths.tolist()], dtype=torch.int64)
        T = int(frame_lengths.max())
        log_mel = torch.log10(mel[..., :T].clamp_min(1e-10))
        valid = (torch.arange(T)[None, :] < frame_lengths[:, None]).to(x.device)[:, None, :]
        peak = log_mel.masked_fill(~valid, -math.inf).amax(dim=(1, 2), keepdim=True)
        log_mel = (torch.maximum(log_mel, peak - 8.0) + 4.0) / 4.0
        return log_mel * valid.to(log_mel.dtype), frame_lengths

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WhisperFeatureConfig:
        return _from_dict(cls, d)


@functools.lru_cache(maxsize=4)
def _whisper_mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Slaney mel filterbank (n_mels, n_fft // 2 + 1), as Whisper's ``mel_filters``."""
    return torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)).to(torch.float32)


def front_end_from_dict(d: dict[str, Any]):
    """The front end described by ``d`` (``kind``; a dict without one is the toolkit's log-mel)."""
    from asr_introspect.features import FeatureConfig

    kinds = {"waveform": WaveformConfig, "whisper-log-mel": WhisperFeatureConfig}
    kind = d.get("kind", "log-mel")
    if kind == "log-mel":
        return FeatureConfig.from_dict({k: v for k, v in d.items() if k != "kind"})
    if kind not in kinds:
        raise ValueError(f"unknown front end kind {kind!r}; expected log-mel, {', '.join(kinds)}")
    return kinds[kind].from_dict(d)
