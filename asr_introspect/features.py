"""Log-mel front end, per-utterance normalization, and an approximate inverse.

Pipeline of :func:`compute_features` (the paper's front end, see METHODS.md):

1. STFT with ``center=True`` and zero ("constant") padding of ``n_fft // 2``
   at both ends (librosa >= 0.10's default; unlike reflection it works for any
   length and makes a zero-padded batch equal to its unpadded utterances),
   periodic window, power 2.0;
2. mel filterbank: Slaney mel scale with Slaney (area) normalization, i.e.
   librosa's defaults (``htk=False, norm="slaney"``);
3. power to dB: ``10 * log10(max(x, 1e-10))``, then clamped from below at
   ``max - top_db`` (max over the utterance's valid frames), i.e.
   ``librosa.power_to_db(x, ref=1.0, amin=1e-10, top_db=top_db)``;
4. ``normalization="utterance"``: z-normalization with one mean and one
   (population) std over all bins of the utterance's valid frames; the std is
   floored at 1e-5 so silence gives zeros, never NaN. Padded frames are 0.

``frames(n) = 1 + n // hop_length`` frames for ``n`` samples.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import librosa
import numpy as np
import torch
import torchaudio.functional as taf

from asr_introspect.audio import load_audio
from asr_introspect.errors import AudioError

__all__ = [
    "FeatureConfig",
    "FeatureStats",
    "compute_features",
    "invert_features",
    "mel_frequencies",
]

AMIN = 1e-10
STD_FLOOR = 1e-5
_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
}
_NORMALIZATIONS = ("utterance", "none")


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes features; stored in checkpoints (``to_dict``/``from_dict``).

    ``fmax=None`` means ``sample_rate / 2``; ``top_db=None`` disables the clamp.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 512
    hop_length: int = 128
    window: str = "hann"
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    normalization: str = "utterance"

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"FeatureConfig.{name} must be an integer, got {value!r}")
            if value <= 0:
                raise ValueError(f"FeatureConfig.{name} must be positive, got {value}")
            object.__setattr__(self, name, int(value))
        if self.win_length > self.n_fft:
            raise ValueError(f"FeatureConfig.win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.window not in _WINDOWS:
            raise ValueError(f"FeatureConfig.window must be one of {sorted(_WINDOWS)}, got {self.window!r}")
        for name in ("fmin", "fmax", "top_db"):
            value = getattr(self, name)
            if value is None and name != "fmin":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"FeatureConfig.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"FeatureConfig.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        nyquist = self.sample_rate / 2
        if self.fmin < 0:
            raise ValueError(f"FeatureConfig.fmin must be >= 0, got {self.fmin}")
        if self.fmax is not None and self.fmax > nyquist:
            raise ValueError(f"FeatureConfig.fmax ({self.fmax} Hz) must be <= sample_rate / 2 ({nyquist} Hz)")
        if self.fmin >= self.fmax_hz:
            raise ValueError(f"FeatureConfig.fmin ({self.fmin} Hz) must be below fmax ({self.fmax_hz} Hz)")
        if self.top_db is not None and self.top_db <= 0:
            raise ValueError(f"FeatureConfig.top_db must be positive or None, got {self.top_db}")
        if self.normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"FeatureConfig.normalization must be one of {_NORMALIZATIONS}, got {self.normalization!r}"
            )

    @classmethod
    def paper(cls) -> FeatureConfig:
        """The original work's front end: 16 kHz, n_fft 512 (32 ms), hop 128 (8 ms), 128 mels."""
        return cls(sample_rate=16000, n_fft=512, win_length=512, hop_length=128, n_mels=128)

    @classmethod
    def small(cls) -> FeatureConfig:
        """The CPU-sized preset: as :meth:`paper` but 64 mel bands."""
        return dataclasses.replace(cls.paper(), n_mels=64)

    @property
    def fmax_hz(self) -> float:
        """Upper mel edge in Hz (``fmax`` or the Nyquist frequency)."""
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2

    @property
    def kind(self) -> str:
        """The front end's name (see :mod:`asr_introspect.frontends` for the others)."""
        return "log-mel"

    @property
    def n_channels(self) -> int:
        """Input channels ``F`` (the mel bands)."""
        return self.n_mels

    def compute(self, audio, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, n) [, lengths (B,)] -> (features (B, n_mels, T), frame lengths (B,)): :func:`compute_features`."""
        x = audio if isinstance(audio, torch.Tensor) else torch.as_tensor(np.asarray(audio))
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[-1], dtype=torch.int64)
        return compute_features(x, self, lengths=lengths)

    @property
    def frame_seconds(self) -> float:
        """Seconds between frames (``hop_length / sample_rate``)."""
        return self.hop_length / self.sample_rate

    def frames(self, n_samples: int) -> int:
        """Number of feature frames for ``n_samples`` samples (``1 + n // hop``)."""
        return 1 + int(n_samples) // self.hop_length

    def samples_for(self, n_frames: int) -> int:
        """The fewest samples that give ``n_frames`` frames: ``(n_frames - 1) * hop``."""
        return max(int(n_frames) - 1, 0) * self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"FeatureConfig: unknown key(s) {unknown}; expected a subset of {sorted(known)} "
                "(was the config written by another version?)"
            )
        return cls(**d)


class FeatureStats(NamedTuple):
    """Per-utterance dB statistics used by the normalization: shape () or (B,)."""

    db_mean: torch.Tensor
    db_std: torch.Tensor


@functools.lru_cache(maxsize=16)
def _mel_basis(config: FeatureConfig) -> torch.Tensor:
    """Slaney mel filterbank ``(n_mels, n_fft // 2 + 1)`` float32 (cached per config)."""
    fb = taf.melscale_fbanks(
        n_freqs=config.n_fft // 2 + 1,
        f_min=config.fmin,
        f_max=config.fmax_hz,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.T.contiguous().to(torch.float32)


@functools.lru_cache(maxsize=16)
def _window(config: FeatureConfig) -> torch.Tensor:
    """Periodic analysis window ``(win_length,)`` float32 (cached per config)."""
    return _WINDOWS[config.window](config.win_length, periodic=True, dtype=torch.float32)


def _power_mel(audio: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """``audio: (B, n)`` -> mel power ``(B, n_mels, 1 + n // hop)`` float32."""
    window = _window(config).to(audio.device)
    spec = torch.stft(
        audio,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    return torch.matmul(_mel_basis(config).to(audio.device), power)


def compute_features(audio, config: FeatureConfig, lengths=None, return_stats: bool = False):
    """Log-mel features, z-normalized per utterance over its valid frames.

    ``audio``: (n,) or (B, n), NumPy or torch, float samples at ``config.sample_rate``.
    ``lengths``: (B,) valid samples per row (batch only); samples beyond are ignored.

    Returns ``features: (F, T)`` for (n,) input or ``(B, F, T)`` for (B, n),
    float32 on the input's device, ``T = config.frames(n)``; with ``lengths``
    also ``frame_lengths: (B,)`` int64 (padded frames are 0); with
    ``return_stats`` also a :class:`FeatureStats` (dB mean and the std used,
    shape () or (B,)) for :func:`invert_features`.
    """
    x = audio if isinstance(audio, torch.Tensor) else torch.from_numpy(np.asarray(audio))
    if not (x.is_floating_point() or x.dtype in (torch.int16, torch.int32, torch.int64)):
        raise ValueError(f"audio must be real-valued samples, got dtype {x.dtype}")
    x = x.to(torch.float32)
    single = x.ndim == 1
    if single:
        if lengths is not None:
            raise ValueError("lengths is only for batched audio (B, n)")
        x = x.unsqueeze(0)
    elif x.ndim != 2:
        raise ValueError(f"audio must have shape (n,) or (B, n), got {tuple(x.shape)}")
    batch, n = x.shape
    if n == 0:
        raise ValueError("audio has no samples")

    if lengths is None:
        sample_lengths = torch.full((batch,), n, dtype=torch.int64)
    else:
        sample_lengths = torch.as_tensor(lengths).to(torch.int64).cpu().reshape(-1)
        if sample_lengths.shape[0] != batch:
            raise ValueError(f"lengths has {sample_lengths.shape[0]} entries for a batch of {batch}")
        if (sample_lengths < 1).any() or (sample_lengths > n).any():
            raise ValueError(f"lengths must be in [1, {n}], got {sample_lengths.tolist()}")
        sample_mask = torch.arange(n)[None, :] < sample_lengths[:, None]
        x = x * sample_mask.to(x.device, x.dtype)  # beyond a length: zeros, as if unpadded
    frame_lengths = 1 + sample_lengths // config.hop_length

    mel = _power_mel(x, config)  # (B, F, T)
    n_frames = mel.shape[-1]
    valid = (torch.arange(n_frames)[None, :] < frame_lengths[:, None]).to(mel.device)  # (B, T)
    valid3 = valid[:, None, :]

    db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
    if config.top_db is not None:
        peak = db.masked_fill(~valid3, -math.inf).amax(dim=(1, 2), keepdim=True)
        db = torch.maximum(db, peak - config.top_db)

    db64 = db.to(torch.float64)
    mask64 = valid3.to(torch.float64)
    count = frame_lengths.to(mel.device, torch.float64)[:, None, None] * mel.shape[1]
    mean = (db64 * mask64).sum(dim=(1, 2), keepdim=True) / count
    var = (((db64 - mean) * mask64).square()).sum(dim=(1, 2), keepdim=True) / count
    std = var.clamp_min(STD_FLOOR**2).sqrt()
    if config.normalization == "utterance":
        out = ((db64 - mean) / std * mask64).to(torch.float32)
    else:
        out = (db64 * mask64).to(torch.float32)

    stats = FeatureStats(mean.reshape(batch).to(torch.float32), std.reshape(batch).to(torch.float32))
    if single:
        out = out[0]
        stats = FeatureStats(stats.db_mean[0], stats.db_std[0])
    result: tuple = (out,)
    if lengths is not None:
        result += (frame_lengths.to(out.device),)
    if return_stats:
        result += (stats,)
    return result[0] if len(result) == 1 else result


def mel_frequencies(config: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band ``(n_mels,)``, for plot axes.

    These are the peaks of the filters: ``n_mels + 2`` points equally spaced on
    the Slaney mel scale from fmin to fmax, without the two edges.
    """
    edges = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmin=config.fmin, fmax=config.fmax_hz, htk=False)
    return np.asarray(edges[1:-1], dtype=np.float64)


def invert_features(
    features,
    config: FeatureConfig,
    db_mean: float = -40.0,
    db_std: float = 15.0,
    n_iter: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Approximate audio for ``features: (F, T)`` (for listening to patterns).

    Undoes the normalization (``dB = features * db_std + db_mean``; ignored
    when ``config.normalization == "none"``), converts mel power to a linear
    magnitude spectrogram (``librosa.feature.inverse.mel_to_stft``, NNLS) and
    runs Griffin-Lim (``n_iter`` iterations, seeded). Returns
    ``audio: ((T - 1) * hop_length,)`` float32 scaled to a peak of 0.9
    (silence stays zero). Whisper's log-mel (:class:`~asr_introspect.frontends.WhisperFeatureConfig`)
    is read on its own scale, ``dB = 40 * (features - 1)``.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] != config.n_mels:
        raise ValueError(f"features must have shape ({config.n_mels}, T), got {feats.shape}")
    if not np.isfinite(feats).all():
        raise ValueError("features contain NaN/inf values")
    if config.kind == "whisper-log-mel":
        db = 40.0 * (feats - 1.0)  # features = (log10(power) + 4) / 4
    elif config.normalization == "utterance":
        db = feats * float(db_std) + float(db_mean)
    else:
        db = feats
    mel_power = np.power(10.0, db / 10.0)
    magnitude = librosa.feature.inverse.mel_to_stft(
        mel_power,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        power=2.0,
        fmin=config.fmin,
        fmax=config.fmax_hz,
        htk=False,
        norm="slaney",
    )
    n_frames = feats.shape[1]
    length = max(n_frames - 1, 1) * config.hop_length
    audio = librosa.griffinlim(
        magnitude,
        n_iter=n_iter,
        hop_length=config.hop_length,
        win_length=getattr(config, "win_length", config.n_fft),
        n_fft=config.n_fft,
        window=getattr(config, "window", "hann"),
        center=True,
        pad_mode="constant",
        length=length,
        random_state=seed,
    )
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * (0.9 / peak)
    return audio.astype(np.float32)


def featurize(waves, config: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The toolkit's one way from waveforms to model input: pad, compute, zero the padding.

    waves: a sequence of B mono float waveforms ``(n_b,)`` at ``config.sample_rate``;
    config: the model's front end (this log-mel, or one of :mod:`asr_introspect.frontends`).
    Returns ``features: (B, F, T)`` float32 (zero beyond each utterance's frames) and
    ``feature_lengths: (B,)`` int64. One waveform gives exactly what it gives alone;
    in a batch only the last frames' STFT windows see zeros instead of reflection.
    """
    waves = [torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in waves]
    if not waves:
        raise ValueError("featurize needs at least one waveform")
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)
    audio = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
    for row, wave in enumerate(waves):
        audio[row, : len(wave)] = wave
    features, feature_lengths = config.compute(audio, lengths)
    mask = torch.arange(features.shape[-1])[None, :] < feature_lengths[:, None]
    features = features * mask[:, None, :].to(features.dtype)
    return features.contiguous(), feature_lengths.to(torch.int64)


def featurize_file(path, config: FeatureConfig, min_input_frames: int = 0) -> torch.Tensor:
    """Features ``(F, T)`` of one audio file (:func:`featurize` of :func:`audio.load_audio`).

    ``min_input_frames``: the fewest input frames the caller accepts (e.g.
    ``model.min_input_frames``, what the convolutions need for one output frame,
    or ``model.receptive_field`` for every output frame to see real audio). A
    clip with ``T = config.frames(n_samples) < min_input_frames`` raises
    ``AudioError`` naming the file and stating the minimum in input frames and
    in seconds (``(min_input_frames - 1) * hop_length`` samples, the shortest
    clip that yields that many frames).
    """
    wave = load_audio(path, sample_rate=config.sample_rate)
    n_frames = config.frames(len(wave))
    if n_frames < min_input_frames:
        need = config.samples_for(int(min_input_frames)) / config.sample_rate
        raise AudioError(
            f"{path}: clip is {len(wave) / config.sample_rate:.3f} s ({n_frames} input frame(s)), shorter than the "
            f"minimum of {int(min_input_frames)} input frames ({need:.3f} s at "
            f"{config.frame_seconds * 1000:g} ms per frame); use a longer clip or pad it with silence"
        )
    return featurize([wave], config)[0][0]
