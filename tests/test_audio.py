"""Bad and unusual audio: each case gives its documented outcome (asr_introspect.audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_introspect.audio import audio_info, load_audio, save_audio
from asr_introspect.errors import AudioError, InputError
from asr_introspect.features import FeatureConfig, compute_features, featurize_file


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * sr / len(audio))


def test_audio_error_is_an_input_error():
    assert issubclass(AudioError, InputError)
    assert issubclass(AudioError, ValueError)


def test_round_trip_wav_and_flac(tmp_path):
    audio = tone(440, 0.5, 16000)
    for suffix in (".wav", ".flac"):
        path = save_audio(tmp_path / f"a{suffix}", audio, 16000)
        assert path.exists()
        assert list(tmp_path.glob(".*.tmp")) == []  # no temp file left behind
        loaded = load_audio(path)
        assert loaded.dtype == np.float32 and loaded.shape == audio.shape
        np.testing.assert_allclose(loaded, audio, atol=2 / 32768)
        assert audio_info(path) == (16000, len(audio), 1)
        assert sf.info(str(path)).subtype == "PCM_16"


def test_save_clips_and_rejects_bad_suffix(tmp_path):
    path = save_audio(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], np.float32), 16000)
    np.testing.assert_allclose(load_audio(path), [1.0, -1.0, 0.5], atol=1e-4)
    with pytest.raises(AudioError, match=r"\.mp3"):
        save_audio(tmp_path / "x.mp3", np.zeros(10, np.float32), 16000)
    assert not (tmp_path / "x.mp3").exists()


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="nope.wav.*not found"):
        load_audio(path)
    with pytest.raises(AudioError, match="nope.wav.*not found"):
        audio_info(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="corrupt.wav.*cannot read audio"):
        load_audio(path)
    with pytest.raises(AudioError, match="corrupt.wav.*cannot read audio"):
        audio_info(path)


def test_truncated_header(tmp_path):
    good = save_audio(tmp_path / "good.wav", tone(440, 0.1, 16000), 16000)
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(good.read_bytes()[:20])
    with pytest.raises(AudioError, match="truncated.wav"):
        load_audio(bad)


def test_empty_files(tmp_path):
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match="zero.wav.*empty"):
        load_audio(zero_bytes)
    no_samples = tmp_path / "nosamples.wav"
    sf.write(str(no_samples), np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="nosamples.wav.*no samples"):
        load_audio(no_samples)
    with pytest.raises(AudioError, match="nosamples.wav.*no samples"):
        audio_info(no_samples)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path):
    rng = np.random.default_rng(1)
    stereo = (rng.uniform(-0.5, 0.5, (8000, 2))).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), stereo, 16000, subtype="FLOAT")
    assert audio_info(path) == (16000, 8000, 2)
    mono = load_audio(path)
    assert mono.shape == (8000,)
    np.testing.assert_allclose(mono, stereo.mean(axis=1), atol=1e-7)


def test_44k1_is_resampled_to_16k(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(str(path), tone(440, 1.0, 44100), 44100, subtype="FLOAT")
    audio = load_audio(path, sample_rate=16000)
    assert audio.dtype == np.float32
    assert audio.shape == (16000,)
    assert abs(dominant_frequency(audio, 16000) - 440) <= 2.0
    # amplitude preserved away from the edges
    assert abs(np.abs(audio[1000:-1000]).max() - 0.5) < 0.02


def test_silence_is_valid_and_its_features_are_zero(tmp_path):
    path = save_audio(tmp_path / "silence.flac", np.zeros(16000, np.float32), 16000)
    audio = load_audio(path, min_duration=0.5)
    assert audio.shape == (16000,) and not audio.any()
    for config in (FeatureConfig.paper(), FeatureConfig.small()):
        features = compute_features(audio, config)
        assert torch.isfinite(features).all()
        assert features.abs().max() == 0


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(tmp_path, bad_value):
    audio = tone(440, 0.25, 16000)
    audio[1600] = bad_value
    path = tmp_path / "broken.wav"
    sf.write(str(path), audio, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"broken.wav.*NaN/inf.*0\.100 s"):
        load_audio(path)


def test_too_short_clip_names_the_minimum(tmp_path):
    path = save_audio(tmp_path / "short.wav", tone(440, 0.2, 16000), 16000)
    with pytest.raises(AudioError, match=r"short.wav.*0\.200 s.*minimum of 1\.550 s"):
        load_audio(path, min_duration=1.55)
    assert load_audio(path, min_duration=0.2).shape == (3200,)


def test_save_rejects_non_finite_and_multichannel(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "n.wav", np.array([0.0, np.nan], np.float32), 16000)
    with pytest.raises(ValueError, match="shape"):
        save_audio(tmp_path / "s.wav", np.zeros((10, 2), np.float32), 16000)
    assert list(tmp_path.iterdir()) == []


def test_save_accepts_torch_tensors(tmp_path):
    path = save_audio(tmp_path / "t.wav", torch.full((100,), 0.25), 8000)
    assert audio_info(path) == (8000, 100, 1)
    np.testing.assert_allclose(load_audio(path, sample_rate=8000), 0.25, atol=1e-4)


# ---------------------------------------------------------------- formats and truncated files

#: (suffix, subtype, whether audio_info sees the truncation from the header alone)
FORMATS = [
    ("wav", "PCM_16", True),
    ("wav", "FLOAT", True),
    ("flac", "PCM_16", True),
    ("aiff", "PCM_16", True),
    ("mp3", "MPEG_LAYER_III", False),
]


def _format_available(suffix: str) -> bool:
    return {"wav": "WAV", "flac": "FLAC", "aiff": "AIFF", "mp3": "MP3"}[suffix] in sf.available_formats()


@pytest.mark.parametrize("suffix, subtype, header_check", FORMATS)
def test_documented_formats_load_and_a_truncated_file_is_an_error(tmp_path, suffix, subtype, header_check):
    if not _format_available(suffix):
        pytest.skip(f"this libsndfile cannot write {suffix}")
    audio = tone(440, 2.0, 16000, amp=0.3)
    good = tmp_path / f"good.{suffix}"
    sf.write(str(good), audio, 16000, subtype=subtype)
    assert audio_info(good)[:2] == (16000, 32000)
    loaded = load_audio(good)
    assert loaded.shape == (32000,) and abs(dominant_frequency(loaded, 16000) - 440) <= 2.0

    data = good.read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=rf"cut\.{suffix}: .*(truncated|decoding stops)") as info:
        load_audio(cut)
    assert "2.000 s" in str(info.value) and "\n" not in str(info.value)
    if header_check:
        with pytest.raises(AudioError, match=rf"cut\.{suffix}: truncated file: the header promises 2.000 s"):
            audio_info(cut)


def _wav_with(tmp_path, name: str, data_size: int | None = None, trailer: bytes = b"") -> Path:
    path = tmp_path / name
    sf.write(str(path), tone(440, 0.5, 16000), 16000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data")
    if data_size is not None:
        raw[data_at + 4 : data_at + 8] = data_size.to_bytes(4, "little")
    path.write_bytes(bytes(raw) + trailer)
    return path


def test_wav_chunk_sizes_streamed_and_trailing_chunks_are_not_truncation(tmp_path):
    # a streaming writer that never filled in the data size (0xFFFFFFFF): libsndfile reads to the end
    streamed = _wav_with(tmp_path, "streamed.wav", data_size=0xFFFFFFFF)
    assert load_audio(streamed).shape == (8000,)
    # a chunk after the data (e.g. LIST metadata) is extra bytes, not missing ones
    trailing = _wav_with(tmp_path, "trailing.wav", trailer=b"LIST\x04\x00\x00\x00INFO")
    assert load_audio(trailing).shape == (8000,) and audio_info(trailing)[1] == 8000
    # one sample promised more than present is caught
    short = _wav_with(tmp_path, "short.wav", data_size=8001 * 2)
    with pytest.raises(
        AudioError, match=r"short\.wav: truncated file: .* 0\.500 s \(8001 frames\).* 0\.500 s \(8000 frames\)"
    ):
        audio_info(short)


# ---------------------------------------------------------------- clips shorter than the receptive field


@pytest.mark.parametrize("n_samples", [1, 800, 193 * 128 - 1])
def test_a_clip_shorter_than_the_receptive_field_states_it_in_frames_and_seconds(tmp_path, n_samples):
    config = FeatureConfig.small()
    path = save_audio(tmp_path / "short.wav", tone(440, n_samples / 16000, 16000), 16000)
    frames = config.frames(n_samples)
    with pytest.raises(AudioError) as info:
        featurize_file(path, config, min_input_frames=194)
    message = str(info.value)
    assert message.startswith(f"{path}: clip is {n_samples / 16000:.3f} s ({frames} input frame(s))")
    assert "minimum of 194 input frames (1.544 s at 8 ms per frame)" in message
    assert "0.008 s" not in message and "\n" not in message


def test_featurize_file_accepts_exactly_one_receptive_field(tmp_path):
    config = FeatureConfig.small()
    audio = tone(300, 193 * 128 / 16000, 16000)
    path = save_audio(tmp_path / "exact.wav", audio, 16000)
    features = featurize_file(path, config, min_input_frames=194)
    assert features.shape == (config.n_mels, 194)
    assert torch.allclose(features, compute_features(load_audio(path), config), atol=1e-6)
    assert featurize_file(path, config).shape == (config.n_mels, 194)  # no minimum by default


def test_the_shipped_model_rejects_a_one_sample_clip_with_its_real_receptive_field(tmp_path):
    from asr_introspect.loading import load_model

    model, _ = load_model()
    assert model.receptive_field == 194
    path = save_audio(tmp_path / "one.wav", np.array([0.1], np.float32), 16000)
    with pytest.raises(AudioError, match=r"one\.wav: .*minimum of 194 input frames \(1\.544 s"):
        featurize_file(path, model.feature_config, min_input_frames=model.receptive_field)
