"""Log-mel front end, normalization, config and inversion (asr_introspect.features)."""

from __future__ import annotations

import dataclasses
import json

import librosa
import numpy as np
import pytest
import torch

from asr_introspect.features import (
    FeatureConfig,
    FeatureStats,
    compute_features,
    invert_features,
    mel_frequencies,
)

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(n: int, seed: int) -> np.ndarray:
    """Noise + harmonics with a changing envelope: a non-trivial test signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)
    signal = sum(np.sin(2 * np.pi * f0 * (k + 1) * t) / (k + 1) for k, f0 in enumerate([150.0] * 5))
    return (0.2 * envelope * signal + 0.02 * rng.standard_normal(n)).astype(np.float32)


# --- FeatureConfig ------------------------------------------------------------------


def test_presets():
    paper = FeatureConfig.paper()
    assert (paper.sample_rate, paper.n_fft, paper.hop_length, paper.n_mels) == (16000, 512, 128, 128)
    assert paper.n_fft / paper.sample_rate == pytest.approx(0.032)
    assert paper.frame_seconds == pytest.approx(0.008)
    small = FeatureConfig.small()
    assert small.n_mels == 64
    assert small.to_dict() | {"n_mels": 128} == paper.to_dict()
    assert FeatureConfig() == paper


def test_config_round_trip_through_json():
    config = FeatureConfig(n_mels=40, fmin=20.0, fmax=7600.0, top_db=None, normalization="none")
    restored = FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert hash(restored) == hash(config)
    assert FeatureConfig.from_dict({}) == FeatureConfig()


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FeatureConfig().n_mels = 3  # type: ignore[misc]


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown key.*n_bands"):
        FeatureConfig.from_dict({"n_bands": 80})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_fft": 0}, "n_fft"),
        ({"hop_length": -1}, "hop_length"),
        ({"n_mels": 0}, "n_mels"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"win_length": 1024}, "win_length"),
        ({"n_mels": 12.5}, "n_mels"),
        ({"fmax": 9000.0}, "fmax"),
        ({"fmin": -1.0}, "fmin"),
        ({"fmin": 8000.0}, "fmin"),
        ({"top_db": 0.0}, "top_db"),
        ({"normalization": "global"}, "normalization"),
        ({"window": "kaiser"}, "window"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"FeatureConfig\.{field}"):
        FeatureConfig(**kwargs)


# --- shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 127, 128, 129, 255, 256, 4000, 4001])
def test_shapes_and_frames(n):
    config = FeatureConfig.small()
    features = compute_features(speechlike(n, seed=n), config)
    assert features.dtype == torch.float32
    assert features.shape == (64, config.frames(n))
    assert config.frames(n) == 1 + n // 128
    assert torch.isfinite(features).all()


def test_accepts_numpy_and_torch_alike():
    audio = speechlike(3000, 0)
    config = FeatureConfig.small()
    a = compute_features(audio, config)
    b = compute_features(torch.from_numpy(audio), config)
    c = compute_features(audio.astype(np.float64), config)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_bad_inputs():
    config = FeatureConfig.small()
    with pytest.raises(ValueError, match="shape"):
        compute_features(np.zeros((1, 2, 300), np.float32), config)
    with pytest.raises(ValueError, match="lengths"):
        compute_features(np.zeros(300, np.float32), config, lengths=[300])
    with pytest.raises(ValueError, match="lengths"):
        compute_features(np.zeros((2, 300), np.float32), config, lengths=[300, 301])
    with pytest.raises(ValueError, match="lengths"):
        compute_features(np.zeros((2, 300), np.float32), config, lengths=[300])


# --- batching -------------------------------------------------------------------------


def test_batch_with_lengths_equals_each_unpadded_utterance():
    config = FeatureConfig.paper()
    lengths = [4000, 2501, 3333, 128]
    n = max(lengths)
    rng = np.random.default_rng(3)
    # padding filled with garbage: it must be ignored
    batch = rng.standard_normal((len(lengths), n)).astype(np.float32)
    for i, length in enumerate(lengths):
        batch[i, :length] = speechlike(length, seed=i)
    features, frame_lengths, stats = compute_features(batch, config, lengths=lengths, return_stats=True)
    assert features.shape == (len(lengths), 128, config.frames(n))
    assert frame_lengths.dtype == torch.int64
    assert frame_lengths.tolist() == [config.frames(length) for length in lengths]
    assert isinstance(stats, FeatureStats) and stats.db_mean.shape == (len(lengths),)
    for i, length in enumerate(lengths):
        single, single_stats = compute_features(batch[i, :length], config, return_stats=True)
        t = config.frames(length)
        torch.testing.assert_close(features[i, :, :t], single, atol=1e-4, rtol=1e-4)
        padded = features[i, :, t:]
        assert padded.numel() == 0 or padded.abs().max() == 0
        torch.testing.assert_close(stats.db_mean[i], single_stats.db_mean)
        torch.testing.assert_close(stats.db_std[i], single_stats.db_std)


def test_batch_without_lengths_returns_features_only():
    config = FeatureConfig.small()
    batch = np.stack([speechlike(2000, 0), speechlike(2000, 1)])
    features = compute_features(batch, config)
    assert isinstance(features, torch.Tensor) and features.shape == (2, 64, config.frames(2000))
    torch.testing.assert_close(features[1], compute_features(batch[1], config))


def test_normalization_mean_zero_std_one_over_valid_frames():
    config = FeatureConfig.paper()
    lengths = [6000, 3100]
    batch = np.zeros((2, 6000), np.float32)
    for i, length in enumerate(lengths):
        batch[i, :length] = speechlike(length, seed=10 + i)
    features, frame_lengths = compute_features(batch, config, lengths=lengths)
    for i in range(2):
        valid = features[i, :, : frame_lengths[i]].double()
        assert valid.mean().item() == pytest.approx(0.0, abs=1e-5)
        assert valid.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert features[1, :, frame_lengths[1] :].abs().max() == 0


def test_stats_undo_the_normalization():
    config = FeatureConfig.paper()
    audio = speechlike(5000, 7)
    features, stats = compute_features(audio, config, return_stats=True)
    db = compute_features(audio, FeatureConfig(normalization="none"))
    torch.testing.assert_close(features * stats.db_std + stats.db_mean, db, atol=1e-3, rtol=1e-5)
    assert stats.db_mean.item() == pytest.approx(db.double().mean().item(), abs=1e-3)


def test_silence_gives_zeros_not_nan():
    config = FeatureConfig.paper()
    features, stats = compute_features(np.zeros(3000, np.float32), config, return_stats=True)
    assert torch.isfinite(features).all() and features.abs().max() == 0
    assert stats.db_mean.item() == pytest.approx(-100.0)
    batch, frames = compute_features(np.zeros((2, 3000), np.float32), config, lengths=[3000, 1000])
    assert torch.isfinite(batch).all() and batch.abs().max() == 0


def test_gain_invariance():
    """Normalized features do not depend on the recording level (top_db is relative)."""
    config = FeatureConfig.paper()
    audio = speechlike(4000, 5)
    torch.testing.assert_close(
        compute_features(audio, config), compute_features(0.1 * audio, config), atol=1e-3, rtol=1e-3
    )


# --- correctness of the spectrogram -----------------------------------------------------


@pytest.mark.parametrize("freq", [250.0, 1000.0, 2500.0, 6000.0])
def test_tone_peaks_in_its_mel_band(freq):
    config = FeatureConfig.paper()
    features = compute_features(tone(freq, 0.5), config)
    profile = features[:, 5:-5].mean(dim=1).numpy()
    peak_band = int(np.argmax(profile))
    # the band whose triangular filter responds most at `freq`
    filters = librosa.filters.mel(sr=SR, n_fft=8192, n_mels=config.n_mels)
    expected_band = int(np.argmax(filters[:, int(round(freq / SR * 8192))]))
    assert abs(peak_band - expected_band) <= 1
    centres = mel_frequencies(config)
    spacing = np.diff(centres)[max(expected_band - 1, 0)]
    assert abs(centres[peak_band] - freq) <= 1.5 * spacing + 1e-6


def test_mel_frequencies_are_the_filter_peaks():
    config = FeatureConfig(n_mels=40, fmin=50.0, fmax=7000.0)
    centres = mel_frequencies(config)
    assert centres.shape == (40,)
    assert np.all(np.diff(centres) > 0) and 50.0 < centres[0] and centres[-1] < 7000.0
    filters = librosa.filters.mel(sr=SR, n_fft=16384, n_mels=40, fmin=50.0, fmax=7000.0)
    peaks = np.argmax(filters, axis=1) * SR / 16384
    np.testing.assert_allclose(peaks, centres, atol=SR / 16384)


@pytest.mark.parametrize(
    "config",
    [FeatureConfig.paper(), FeatureConfig(n_mels=40, fmin=30.0, fmax=7600.0, win_length=400)],
)
def test_agrees_with_librosa_before_normalization(config):
    raw = dataclasses.replace(config, normalization="none")
    audio = speechlike(8000, 11)
    audio[:2000] = 0.0  # exercises the top_db clamp
    ours = compute_features(audio, raw).numpy()
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=config.window,
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        htk=False,
        norm="slaney",
    )
    reference = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=config.top_db)
    assert ours.shape == reference.shape
    assert reference.min() == pytest.approx(reference.max() - 80.0)  # clamp active
    np.testing.assert_allclose(ours, reference, atol=0.02)


# --- inversion --------------------------------------------------------------------------


def test_griffin_lim_inversion_keeps_a_tone_frequency():
    config = FeatureConfig.paper()
    freq = 1000.0
    features, stats = compute_features(tone(freq, 0.5), config, return_stats=True)
    audio = invert_features(features, config, db_mean=stats.db_mean.item(), db_std=stats.db_std.item())
    assert audio.dtype == np.float32
    assert audio.shape == ((features.shape[1] - 1) * config.hop_length,)
    assert np.abs(audio).max() == pytest.approx(0.9, abs=1e-5)
    core = audio[1000:-1000]
    spectrum = np.abs(np.fft.rfft(core * np.hanning(len(core))))
    dominant = np.argmax(spectrum) * SR / len(core)
    assert abs(dominant - freq) < 40.0


def test_inversion_with_default_stats_and_of_silence():
    config = FeatureConfig.small()
    audio = invert_features(compute_features(tone(500.0, 0.25), config), config)
    assert np.isfinite(audio).all() and audio.shape == ((config.frames(4000) - 1) * 128,)
    silence = invert_features(compute_features(np.zeros(2000, np.float32), config), config)
    assert np.isfinite(silence).all()
    with pytest.raises(ValueError, match="shape"):
        invert_features(np.zeros((10, 5), np.float32), config)
