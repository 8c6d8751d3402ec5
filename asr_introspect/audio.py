"""Audio input/output: load, validate, mix down, resample; save atomically.

Every file problem raises :class:`~asr_introspect.errors.AudioError` whose
message names the file and says what to do. Documented outcomes:

- missing file, directory, unreadable or corrupt file -> ``AudioError``;
- empty file (0 bytes, or a valid header with 0 samples) -> ``AudioError``;
- NaN or infinite samples -> ``AudioError``;
- shorter than ``min_duration`` seconds (callers pass the model's receptive
  field) -> ``AudioError`` that states the minimum;
- several channels -> mixed down to mono by the mean over channels;
- another sample rate -> resampled with ``torchaudio.functional.resample``;
- silence (all-zero samples) is *valid*: it loads as zeros, and its features
  are finite (all zero after normalization, see ``features.compute_features``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf

from .errors import AudioError
from .io import atomic_path

__all__ = ["load_audio", "save_audio", "audio_info", "AudioError"]

_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: audio file not found (check the path)")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file (pass a .wav or .flac file)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"{path}: cannot access the file ({exc.strerror or exc}); check its permissions") from exc
    if size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-export the audio or remove the file")


def _unreadable(path: Path, exc: Exception) -> AudioError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return AudioError(
        f"{path}: cannot read audio ({reason}); the file is corrupt or not a supported format (use WAV or FLAC)"
    )


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """Header facts of an audio file without reading its samples.

    Returns ``(sample_rate, n_frames, channels)``. Raises ``AudioError`` for a
    missing, unreadable or empty file (same messages as :func:`load_audio`).
    """
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise _unreadable(path, exc) from exc
    if info.frames <= 0:
        raise AudioError(f"{path}: audio contains no samples; re-export the audio or remove the file")
    return int(info.samplerate), int(info.frames), int(info.channels)


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, min_duration: float = 0.0) -> np.ndarray:
    """Read a WAV/FLAC file as mono float32 at ``sample_rate``.

    Returns ``audio: (n_samples,)`` float32 (nominally in [-1, 1]). Channels
    are averaged; the file is resampled when its rate differs. ``min_duration``
    (seconds, of the file) rejects clips the model cannot process. Silence is
    valid input. Raises ``AudioError`` (see the module docstring).
    """
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    path = Path(path)
    _check_exists(path)
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise _unreadable(path, exc) from exc
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{path}: audio contains no samples; re-export the audio or remove the file")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int((~finite).sum())
        first = int(np.argwhere(~finite)[0, 0])
        raise AudioError(
            f"{path}: {bad} NaN/inf sample(s), first at {first / file_rate:.3f} s; "
            "fix or re-export the audio, or remove the file"
        )
    duration = data.shape[0] / file_rate
    if duration < min_duration:
        raise AudioError(
            f"{path}: clip is {duration:.3f} s long, shorter than the minimum of "
            f"{min_duration:.3f} s the model needs (its receptive field); use a longer clip "
            "or pad it with silence"
        )
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sample_rate:
        resampled = taf.resample(torch.from_numpy(np.ascontiguousarray(mono)), int(file_rate), sample_rate)
        mono = resampled.numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def save_audio(path: str | os.PathLike, audio, sample_rate: int) -> Path:
    """Write ``audio: (n_samples,)`` as 16-bit PCM WAV or FLAC (from the suffix), atomically.

    Samples are clipped to [-1, 1]. Returns the path written.
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: cannot write audio with suffix {path.suffix!r} (use .wav or .flac)")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must have shape (n_samples,), got {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError(f"{path}: refusing to write audio with NaN/inf samples")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    clipped = np.clip(audio, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), clipped, int(sample_rate), subtype="PCM_16", format=fmt)
    return path
