"""Narrow-band channels: a round trip through 8 kHz, mu-law, and a GSM-like telephone channel.

All functions take and return float audio (N,) at ``sample_rate`` with the
same length. ``gsm_like`` is *not* the GSM 06.10 codec (no LPC/RPE-LTP
coding): it is the codec's front end, i.e. what a GSM call passes at best:
8 kHz sampling, a 300-3400 Hz telephone band-pass and 13-bit linear PCM.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

__all__ = ["band_limit", "mu_law_round_trip", "band_pass", "quantize", "gsm_like", "TELEPHONE_BAND"]

#: the telephone band in Hz
TELEPHONE_BAND = (300.0, 3400.0)


def _fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    return audio[:n] if audio.size >= n else np.pad(audio, (0, n - audio.size))


def band_limit(audio: np.ndarray, sample_rate: int, channel_rate: int = 8000) -> np.ndarray:
    """Resample to ``channel_rate`` and back (polyphase, Kaiser-windowed anti-aliasing filter).

    Removes the energy above ``channel_rate / 2`` (4 kHz for 8 kHz).
    """
    g = int(np.gcd(sample_rate, channel_rate))
    down = resample_poly(audio.astype(np.float64), channel_rate // g, sample_rate // g)
    up = resample_poly(down, sample_rate // g, channel_rate // g)
    return _fit_length(up, audio.size).astype(audio.dtype)


def mu_law_round_trip(audio: np.ndarray, mu: int = 255, bits: int = 8) -> np.ndarray:
    """G.711-style mu-law companding to ``bits`` bits and back (input clipped to [-1, 1]).

    The quantization step in the companded domain is ``2 / (2**bits - 1)``, so
    the error at amplitude ``|x|`` is at most about
    ``(1 + mu |x|) ln(1 + mu) / mu / (2**bits - 1)``.
    """
    x = np.clip(audio.astype(np.float64), -1.0, 1.0)
    levels = 2**bits - 1
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    code = np.round((companded + 1.0) / 2.0 * levels)
    y = code / levels * 2.0 - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(audio.dtype)


def band_pass(audio: np.ndarray, sample_rate: int, band: tuple[float, float] = TELEPHONE_BAND) -> np.ndarray:
    """4th-order Butterworth band-pass (causal, as a channel is)."""
    sos = butter(4, band, btype="bandpass", fs=sample_rate, output="sos")
    return sosfilt(sos, audio.astype(np.float64)).astype(audio.dtype)


def quantize(audio: np.ndarray, bits: int) -> np.ndarray:
    """Uniform quantization of [-1, 1] to ``bits``-bit signed integers and back (clipped)."""
    scale = 2 ** (bits - 1) - 1
    return (np.round(np.clip(audio.astype(np.float64), -1.0, 1.0) * scale) / scale).astype(audio.dtype)


def gsm_like(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """8 kHz + 300-3400 Hz band-pass + 13-bit PCM, back at ``sample_rate`` (see the module docstring)."""
    g = int(np.gcd(sample_rate, 8000))
    narrow = resample_poly(audio.astype(np.float64), 8000 // g, sample_rate // g)
    narrow = quantize(band_pass(narrow, 8000), 13)
    return _fit_length(resample_poly(narrow, sample_rate // g, 8000 // g), audio.size).astype(audio.dtype)
