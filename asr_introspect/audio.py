"""Audio input/output: load, validate, mix down, resample; save atomically.

Formats. Reading goes through libsndfile (the ``soundfile`` package), so
every format it decodes is accepted: WAV (PCM 8/16/24/32-bit, float,
mu-law/A-law, ADPCM; also WAVEX, RF64, W64), FLAC, AIFF/AIFC, AU, CAF,
OGG Vorbis and Opus, MP3 (libsndfile >= 1.1) and the rarer ones listed by
``soundfile.available_formats()``. WAV and FLAC are the tested formats and
the only ones the LibriSpeech-layout reader looks for (``.wav``/``.flac``);
others can be listed in a manifest or passed to ``transcribe``/``attribute``.
Writing (:func:`save_audio`) produces 16-bit PCM WAV or FLAC.

Every file problem raises :class:`~asr_introspect.errors.AudioError` whose
message names the file and says what to do. Documented outcomes:

- missing file, directory, unreadable or corrupt file -> ``AudioError``;
- a truncated file (the header promises more audio than the file holds: a
  WAV/AIFF data chunk longer than the file, a FLAC stream that stops
  decoding, fewer samples than the header's frame count) -> ``AudioError``
  naming the file; :func:`audio_info` finds truncated WAV/AIFF files from
  their chunk sizes and truncated FLAC files by decoding their last sample,
  other formats only when :func:`load_audio` decodes them (an OGG file cut
  short at a page boundary looks complete and cannot be detected);
- empty file (0 bytes, or a valid header with 0 samples) -> ``AudioError``;
- NaN or infinite samples -> ``AudioError``;
- shorter than ``min_duration`` seconds -> ``AudioError`` that states the
  minimum (``features.featurize_file`` checks the model's receptive field in
  input frames and states it in frames and seconds);
- several channels -> mixed down to mono by the mean over channels;
- another sample rate -> resampled with ``torchaudio.functional.resample``;
- silence (all-zero samples) is *valid*: it loads as zeros, and its features
  are finite (all zero after normalization, see ``features.compute_features``).
"""

from __future__ import annotations

import os
import struct
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


#: bytes per sample of the PCM/float subtypes whose data size gives an exact frame count
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
#: MPEG frames carry 1152 samples; their headers' frame counts may be estimates
_MP3_SLACK = 2 * 1152


def _declared_data_bytes(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` sizes of the sample data of a RIFF/RIFX WAV or AIFF file, else None.

    Walks the chunk headers only. A declared size of 0 or 0xFFFFFFFF (streamed
    writers that never filled it in) is not a promise and gives None.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12:
                return None
            if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
                order, wanted, extra = ("<" if head[:4] == b"RIFF" else ">"), b"data", 0
            elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                order, wanted, extra = ">", b"SSND", 8  # SSND: offset + block size before the samples
            else:
                return None
            pos = 12
            for _ in range(1024):
                f.seek(pos)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                declared = struct.unpack(order + "I", chunk[4:])[0]
                if chunk[:4] == wanted:
                    if declared in (0, 0xFFFFFFFF):
                        return None
                    return declared - extra, max(size - pos - 8 - extra, 0)
                pos += 8 + declared + (declared & 1)
    except OSError:
        return None
    return None


def _truncated(path: Path, promised_s: str, present_s: str) -> AudioError:
    return AudioError(
        f"{path}: truncated file: the header promises {promised_s} of audio but the file holds {present_s}; "
        "re-export or re-copy the file, or remove it"
    )


def _check_chunk_sizes(path: Path, info) -> None:
    """AudioError when a WAV/AIFF data chunk is longer than what the file holds (libsndfile reads the rest)."""
    sizes = _declared_data_bytes(path)
    if sizes is None or sizes[0] <= sizes[1]:
        return
    declared, present = sizes
    width = _SAMPLE_BYTES.get(info.subtype)
    if width is None:
        raise _truncated(path, f"{declared} bytes", f"{present} bytes")
    block = width * info.channels
    promised, held = declared // block, present // block
    rate = info.samplerate
    raise _truncated(path, f"{promised / rate:.3f} s ({promised} frames)", f"{held / rate:.3f} s ({held} frames)")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """Header facts of an audio file without reading its samples.

    Returns ``(sample_rate, n_frames, channels)``. Raises ``AudioError`` for a
    missing, unreadable or empty file, and for a WAV/AIFF file whose header
    promises more samples than it holds (same messages as :func:`load_audio`).
    """
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise _unreadable(path, exc) from exc
    if info.frames <= 0:
        raise AudioError(f"{path}: audio contains no samples; re-export the audio or remove the file")
    _check_chunk_sizes(path, info)
    if info.format == "FLAC":
        _check_flac_end(path, info)
    return int(info.samplerate), int(info.frames), int(info.channels)


def _check_flac_end(path: Path, info) -> None:
    """AudioError unless the last sample the FLAC header promises can be decoded (a seek: ~1 ms)."""
    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(int(info.frames) - 1)
            if f.read(1, dtype="float32").shape[0] == 1:
                return
    except (sf.SoundFileError, RuntimeError, OSError):
        pass
    raise AudioError(
        f"{path}: truncated file: the header promises {info.frames / info.samplerate:.3f} s of audio but its "
        "last sample cannot be decoded; re-export or re-copy the file, or remove it"
    )


def _read(path: Path) -> tuple[np.ndarray, int]:
    """``(data (n, channels) float32, rate)``; AudioError for unreadable or truncated files."""
    try:
        with sf.SoundFile(str(path)) as f:
            promised, file_rate, fmt = int(f.frames), int(f.samplerate), f.format
            try:
                data = f.read(dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise AudioError(
                    f"{path}: the header promises {promised / file_rate:.3f} s of audio but decoding stops ({reason}): "
                    "the file is truncated or corrupt; re-export or re-copy it, or remove it"
                ) from exc
            _check_chunk_sizes(path, f)
    except AudioError:
        raise
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise _unreadable(path, exc) from exc
    slack = _MP3_SLACK if fmt == "MP3" else 0
    if data.shape[0] > 0 and data.shape[0] + slack < promised:
        held = data.shape[0]
        raise _truncated(
            path, f"{promised / file_rate:.3f} s ({promised} frames)", f"{held / file_rate:.3f} s ({held} frames)"
        )
    return data, file_rate


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, min_duration: float = 0.0) -> np.ndarray:
    """Read an audio file (WAV, FLAC, ...: see the module docstring) as mono float32 at ``sample_rate``.

    Returns ``audio: (n_samples,)`` float32 (nominally in [-1, 1]). Channels
    are averaged; the file is resampled when its rate differs. ``min_duration``
    (seconds, of the file) rejects shorter clips. Silence is valid input.
    Raises ``AudioError`` (see the module docstring).
    """
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    path = Path(path)
    _check_exists(path)
    data, file_rate = _read(path)
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
            f"{path}: clip is {duration:.3f} s long, shorter than the required minimum of "
            f"{min_duration:.3f} s; use a longer clip or pad it with silence"
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
