"""Additive noise at a set SNR: white or coloured (1/f^beta) noise, or babble of other utterances."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mix_at_snr", "coloured_noise", "babble", "snr_db", "NOISE_COLOURS"]

#: colour -> exponent beta of the power spectrum 1/f^beta
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """``10 log10(P_signal / P_noise)`` with powers as mean squares."""
    return float(10.0 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2)))


def mix_at_snr(audio: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``audio + k * noise`` with ``k`` chosen so that ``snr_db(audio, k * noise) == snr``.

    audio, noise: (N,) (noise is tiled or cut to N). Silent audio or noise is returned unchanged.
    """
    noise = np.resize(noise.astype(np.float64), audio.size)
    p_audio, p_noise = float(np.mean(audio.astype(np.float64) ** 2)), float(np.mean(noise**2))
    if p_audio <= 0.0 or p_noise <= 0.0:
        return audio.copy()
    k = np.sqrt(p_audio / (p_noise * 10.0 ** (snr / 10.0)))
    return (audio + k * noise).astype(audio.dtype)


def coloured_noise(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise (n,) whose power spectrum falls as ``1 / f**beta`` (0 white, 1 pink, 2 brown).

    White noise shaped in the frequency domain (amplitude ``f**(-beta/2)``, DC
    removed), scaled to unit variance.
    """
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spectrum *= f ** (-beta / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    std = noise.std()
    return (noise / std if std > 0 else noise).astype(np.float32)


def babble(sources: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Babble (n,): the sum of ``sources`` (other utterances), each at a random offset, looped to n, unit variance."""
    total = np.zeros(n, dtype=np.float64)
    for source in sources:
        source = source.astype(np.float64)
        if source.size == 0 or not np.any(source):
            continue
        looped = np.resize(np.roll(source, -int(rng.integers(source.size))), n)
        total += looped / np.sqrt(np.mean(looped**2))
    std = total.std()
    return (total / std if std > 0 else total).astype(np.float32)
