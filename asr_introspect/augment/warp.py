"""Frequency warping of audio: vocal tract length perturbation (VTLP) and pitch shifting.

Both move every spectral component from frequency ``f`` to ``warp(f)`` while
keeping the duration, with a phase vocoder on the STFT (Hann window, 512
samples, hop 128): each output bin takes the magnitude interpolated at its
source frequency ``warp^-1(f)`` and advances its phase by the warped
instantaneous frequency of the nearest source bin, then the inverse STFT
resynthesizes; the output is scaled to the input's energy.

- :func:`vtlp`: Jaitly & Hinton's (2013) piecewise-linear warp of VTLP
  applied to the audio instead of the mel filterbank (the features then
  equal a warped filterbank's up to the resynthesis): ``f -> alpha f`` below
  ``boundary * min(alpha, 1) / alpha`` and a straight line to Nyquist above,
  so the band edge stays in place. Formants *and* harmonics move, as with a
  warped filterbank.
- :func:`pitch_shift`: ``f -> f * 2**(semitones / 12)`` for all frequencies
  (components pushed past Nyquist are dropped): what resampling does, without
  its change of duration; formants move with the pitch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import istft, stft

__all__ = ["warp_frequencies", "vtlp", "vtlp_warp", "pitch_shift"]

_N_FFT = 512
_HOP = 128


def warp_frequencies(
    audio: np.ndarray, sample_rate: int, warp: Callable[[np.ndarray], np.ndarray], n_fft: int = _N_FFT
) -> np.ndarray:
    """Move each frequency ``f`` (Hz) of ``audio`` (N,) to ``warp(f)``; same length and energy.

    ``warp`` must be increasing on [0, sample_rate / 2] (vectorized, Hz -> Hz).
    """
    if audio.size < n_fft:
        return audio.copy()
    hop = n_fft // 4
    x = audio.astype(np.float32)
    _, _, spec = stft(x, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - hop)  # (K, T) complex64
    n_bins = spec.shape[0]
    bin_hz = sample_rate / n_fft
    freqs = np.arange(n_bins) * bin_hz
    magnitude, phase = np.abs(spec), np.angle(spec)
    # instantaneous frequency (Hz) of every source bin from its phase advance
    expected = (2 * np.pi * hop / n_fft) * np.arange(n_bins, dtype=np.float32)[:, None]
    advance = np.diff(phase, axis=1, prepend=phase[:, :1] - expected) - expected
    advance = np.remainder(advance + np.pi, 2 * np.pi) - np.pi
    inst_hz = (expected + advance) * np.float32(sample_rate / (2 * np.pi * hop))
    # each output bin's source position (inverse of the monotone warp)
    grid = np.linspace(0.0, sample_rate / 2, 4 * n_bins)
    source_hz = np.interp(freqs, warp(grid), grid, right=np.inf)
    position = source_hz / bin_hz
    valid = position <= n_bins - 1
    position = np.where(valid, position, 0.0)
    lo = np.clip(np.floor(position).astype(int), 0, n_bins - 1)
    hi = np.clip(lo + 1, 0, n_bins - 1)
    frac = np.where(valid, position - lo, 0.0).astype(np.float32)[:, None]
    new_magnitude = ((1 - frac) * magnitude[lo] + frac * magnitude[hi]) * valid[:, None]
    nearest = np.clip(np.round(position).astype(int), 0, n_bins - 1)
    step = warp(inst_hz[nearest, 1:]).astype(np.float32) * np.float32(2 * np.pi * hop / sample_rate)
    new_phase = np.concatenate([phase[nearest, :1], step], axis=1).cumsum(axis=1)
    rotation = np.empty(new_phase.shape, dtype=np.complex64)
    rotation.real, rotation.imag = np.cos(new_phase), np.sin(new_phase)
    _, y = istft(new_magnitude * rotation, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - hop)
    y = y[: audio.size] if y.size >= audio.size else np.pad(y, (0, audio.size - y.size))
    energy_in, energy_out = float(np.sum(x.astype(np.float64) ** 2)), float(np.sum(y.astype(np.float64) ** 2))
    if energy_out > 0:
        y *= np.sqrt(energy_in / energy_out)
    return y.astype(audio.dtype)


def vtlp_warp(alpha: float, sample_rate: int, boundary_hz: float = 4800.0) -> Callable[[np.ndarray], np.ndarray]:
    """Jaitly & Hinton's piecewise-linear VTLP warp ``f -> f'`` (Hz) for factor ``alpha``."""
    nyquist = sample_rate / 2
    knee = boundary_hz * min(alpha, 1.0) / alpha

    def warp(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        above = nyquist - (nyquist - boundary_hz * min(alpha, 1.0)) / (nyquist - knee) * (nyquist - f)
        return np.where(f <= knee, alpha * f, above)

    return warp


def vtlp(audio: np.ndarray, sample_rate: int, alpha: float, boundary_hz: float = 4800.0) -> np.ndarray:
    """Vocal tract length perturbation by ``alpha`` (typically 0.9-1.1; > 1 a shorter tract)."""
    return warp_frequencies(audio, sample_rate, vtlp_warp(alpha, sample_rate, boundary_hz))


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift every frequency by ``semitones`` (duration kept; formants move too)."""
    factor = 2.0 ** (semitones / 12.0)
    return warp_frequencies(audio, sample_rate, lambda f: np.asarray(f, dtype=np.float64) * factor)
