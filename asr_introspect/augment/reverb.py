"""Reverberation: simulated room impulse responses (pyroomacoustics) and their convolution.

Rooms are shoeboxes simulated with the image source method: a random size
(length and width 2.5-12 m, height 2.4-4 m), a target reverberation time
RT60 (0.15-0.9 s) turned into a wall absorption with Sabine's formula
(``pyroomacoustics.inverse_sabine``), a source and a microphone at least
0.5 m from the walls and from each other. The image order is capped at 30 so
one room takes ~25 ms; for the largest, most reverberant rooms this shortens
the simulated tail (measured RT60 ~1.0 s for a target of 0.9 s in a 12 x 10
x 4 m room, 0.5 s for 0.5 s in 6 x 5 x 3 m).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

__all__ = ["simulate_rirs", "reverberate", "ROOM_SIZE_RANGE", "RT60_RANGE"]

#: (min, max) room dimensions in metres: (length, width, height)
ROOM_SIZE_RANGE = ((2.5, 2.5, 2.4), (12.0, 10.0, 4.0))
#: (min, max) target reverberation time in seconds
RT60_RANGE = (0.15, 0.9)
_MAX_ORDER = 30
_WALL_MARGIN = 0.5


def _position(dims: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(_WALL_MARGIN, dims - _WALL_MARGIN)


def simulate_rirs(
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    room_size_range: tuple[tuple[float, float, float], tuple[float, float, float]] = ROOM_SIZE_RANGE,
    rt60_range: tuple[float, float] = RT60_RANGE,
) -> list[np.ndarray]:
    """``n`` room impulse responses, each float32 ``(L_i,)`` normalized to unit energy.

    Every response starts at its direct path (the propagation delay is cut), so
    convolving does not shift speech against its transcript or phone times.
    """
    import pyroomacoustics as pra  # optional dependency, imported when reverberation is used

    low, high = np.asarray(room_size_range[0], float), np.asarray(room_size_range[1], float)
    rirs = []
    while len(rirs) < n:
        dims = rng.uniform(low, high)
        rt60 = float(rng.uniform(*rt60_range))
        try:
            absorption, order = pra.inverse_sabine(rt60, dims.tolist())
        except ValueError:  # the room is too small for this RT60: draw another
            continue
        room = pra.ShoeBox(
            dims.tolist(), fs=sample_rate, materials=pra.Material(absorption), max_order=min(order, _MAX_ORDER)
        )
        source, mic = _position(dims, rng), _position(dims, rng)
        while np.linalg.norm(source - mic) < _WALL_MARGIN:
            mic = _position(dims, rng)
        room.add_source(source.tolist())
        room.add_microphone(mic.tolist())
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float64)
        rir = rir[int(np.argmax(np.abs(rir))) :]
        rirs.append((rir / np.sqrt(np.sum(rir**2))).astype(np.float32))
    return rirs


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``audio`` (N,) convolved with ``rir`` (L,), cut to N samples and scaled to the input's energy.

    The tail beyond the clip is dropped (the clip keeps its length and
    alignment); the level stays that of the dry clip (gain is a separate effect).
    """
    if audio.size == 0:
        return audio
    wet = fftconvolve(audio.astype(np.float64), rir.astype(np.float64))[: audio.size]
    dry_energy, wet_energy = float(np.sum(audio.astype(np.float64) ** 2)), float(np.sum(wet**2))
    if wet_energy <= 0.0:
        return audio.copy()
    return (wet * np.sqrt(dry_energy / wet_energy)).astype(audio.dtype)
