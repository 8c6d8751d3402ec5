"""Augmentation effects and profiles: each effect against a property it must have."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import lfilter, welch

from asr_introspect.audio import load_audio, save_audio
from asr_introspect.augment import (
    PROFILES,
    apply_gain,
    babble,
    band_limit,
    clip,
    coloured_noise,
    draw_effects,
    gsm_like,
    mix_at_snr,
    mu_law_round_trip,
    pitch_shift,
    quantize,
    reverberate,
    snr_db,
    vtlp,
)
from asr_introspect.augment.conditions import CONDITIONS, write_condition_corpus
from asr_introspect.augment.warp import vtlp_warp
from asr_introspect.cli.train import AUGMENT_PROFILES
from asr_introspect.corpus import load_corpus
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.training import EncodedCorpus, TrainConfig, add_noise, spec_augment, speed_perturb

SR = 16000


def band_power(audio: np.ndarray, low: float, high: float) -> float:
    f, p = welch(audio.astype(np.float64), SR, nperseg=1024)
    return float(p[(f >= low) & (f <= high)].sum())


def tones(*freqs: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (sum(0.3 * np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise through a 700 Hz resonance, gated on and off at 4 Hz (a crude syllable rhythm)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    r, theta = np.exp(-np.pi * 100 / SR), 2 * np.pi * 700 / SR
    x = lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], rng.standard_normal(n))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / SR) ** 2
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


# ---------------------------------------------------------------- rooms


def test_reverberation_keeps_length_and_energy_and_rooms_differ_in_decay():
    pra = pytest.importorskip("pyroomacoustics")
    from asr_introspect.augment import simulate_rirs

    dry = speechlike(1.5, 0)
    short = simulate_rirs(3, SR, np.random.default_rng(0), rt60_range=(0.15, 0.2))
    long = simulate_rirs(3, SR, np.random.default_rng(0), rt60_range=(0.7, 0.8))
    for rir in short + long:
        assert rir.dtype == np.float32 and np.argmax(np.abs(rir)) == 0  # starts at the direct path
        assert np.sum(rir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-4)
        wet = reverberate(dry, rir)
        assert wet.shape == dry.shape and np.isfinite(wet).all()
        assert np.sum(wet.astype(np.float64) ** 2) == pytest.approx(np.sum(dry.astype(np.float64) ** 2), rel=1e-3)
        # an impulse comes back as the response itself (scaled to the impulse's energy)
        impulse = np.zeros(SR, dtype=np.float32)
        impulse[0] = 1.0
        echo = reverberate(impulse, rir)
        n = min(len(rir), SR)
        np.testing.assert_allclose(echo[:n], rir[:n] / np.sqrt(np.sum(rir[:n].astype(np.float64) ** 2)), atol=1e-5)
    decay = [pra.experimental.measure_rt60(r, SR) for r in short + long]
    assert max(decay[:3]) < min(decay[3:])


# ---------------------------------------------------------------- channels


def test_band_limit_removes_energy_above_4khz_and_keeps_the_band():
    x = tones(1000.0, 6000.0)
    y = band_limit(x, SR)
    assert y.shape == x.shape
    assert band_power(y, 5500, 6500) < 1e-4 * band_power(x, 5500, 6500)
    assert band_power(y, 900, 1100) == pytest.approx(band_power(x, 900, 1100), rel=0.05)
    assert band_power(y, 4100, 8000) < 1e-4 * band_power(x, 4100, 8000)


def test_gsm_like_keeps_only_the_telephone_band_at_13_bits():
    x = tones(100.0, 1000.0, 5000.0)
    y = gsm_like(x, SR)
    assert y.shape == x.shape
    assert band_power(y, 900, 1100) == pytest.approx(band_power(x, 900, 1100), rel=0.1)
    assert band_power(y, 50, 150) < 0.02 * band_power(x, 50, 150)
    assert band_power(y, 4500, 5500) < 1e-4 * band_power(x, 4500, 5500)
    levels = np.unique(quantize(np.linspace(-1, 1, 100_001), 13))
    assert len(levels) == 2**13 - 1  # 13-bit signed PCM, symmetric


def test_mu_law_round_trip_error_is_within_the_quantization_bound():
    mu, bits = 255, 8
    x = np.linspace(-1.0, 1.0, 20_001).astype(np.float32)
    y = mu_law_round_trip(x, mu=mu, bits=bits)
    # half a step in the companded domain, mapped back through the expander's slope (taken at the
    # larger end of the step)
    half_step = 1.0 / (2**bits - 1)
    bound = (1 + mu * np.abs(x)) * np.log1p(mu) / mu * half_step * np.exp(np.log1p(mu) * half_step)
    assert np.all(np.abs(y - x) <= bound + 1e-6)
    assert np.max(np.abs(y - x) / bound) > 0.9  # the bound is tight: it does quantize that coarsely
    assert len(np.unique(y)) <= 2**bits


# ---------------------------------------------------------------- noise


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
@pytest.mark.parametrize("snr", [0.0, 12.5, 30.0])
def test_mixed_noise_has_the_requested_snr(kind, snr):
    rng = np.random.default_rng(1)
    speech = speechlike(2.0, 3)
    if kind == "babble":
        noise = babble([speechlike(1.3, s) for s in range(4, 9)], speech.size, rng)
    else:
        noise = coloured_noise(speech.size, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng)
    mixed = mix_at_snr(speech, noise, snr)
    assert mixed.shape == speech.shape
    assert abs(snr_db(speech, mixed - speech) - snr) < 0.1


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_coloured_noise_has_the_requested_spectral_slope(beta):
    noise = coloured_noise(2**17, beta, np.random.default_rng(0))
    f, p = welch(noise, SR, nperseg=4096)
    keep = (f > 100) & (f < 6000)
    slope = np.polyfit(np.log(f[keep]), np.log(p[keep]), 1)[0]
    assert abs(slope + beta) < 0.15
    assert noise.std() == pytest.approx(1.0, rel=1e-3)


# ---------------------------------------------------------------- level


def test_gain_and_clipping():
    x = speechlike(0.5, 0)
    np.testing.assert_allclose(apply_gain(x, 6.0), x * 10 ** (6 / 20), rtol=1e-6)
    for fraction in (0.2, 0.7, 1.0):
        y = clip(x, fraction)
        assert np.abs(y).max() == pytest.approx(fraction * np.abs(x).max(), rel=1e-6)
        inside = np.abs(x) <= fraction * np.abs(x).max()
        np.testing.assert_array_equal(y[inside], x[inside])
    with pytest.raises(ValueError, match="clip fraction"):
        clip(x, 0.0)


# ---------------------------------------------------------------- frequency warps


def formant_peak(audio: np.ndarray) -> float:
    f, p = welch(audio.astype(np.float64), SR, nperseg=2048)
    return float(f[np.argmax(p)])


@pytest.mark.parametrize("alpha", [0.9, 1.12])
def test_vtlp_moves_a_planted_formant_by_the_factor(alpha):
    rng = np.random.default_rng(0)
    r, theta = np.exp(-np.pi * 60 / SR), 2 * np.pi * 1200 / SR
    x = lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], rng.standard_normal(3 * SR)).astype(np.float32)
    x /= np.abs(x).max()
    assert formant_peak(x) == pytest.approx(1200, abs=8)
    y = vtlp(x, SR, alpha)
    assert y.shape == x.shape
    assert formant_peak(y) == pytest.approx(1200 * alpha, abs=16)  # two Welch bins
    assert np.sum(y.astype(np.float64) ** 2) == pytest.approx(np.sum(x.astype(np.float64) ** 2), rel=1e-3)
    warp = vtlp_warp(alpha, SR)
    assert warp(np.array([SR / 2]))[0] == pytest.approx(SR / 2)  # the band edge stays
    assert np.all(np.diff(warp(np.linspace(0, SR / 2, 1000))) > 0)


def test_pitch_shift_moves_a_tone_and_keeps_the_duration():
    x = tones(440.0, seconds=2.0)
    y = pitch_shift(x, SR, 4.0)
    assert y.shape == x.shape
    f, p = welch(y, SR, nperseg=8192)
    assert f[np.argmax(p)] == pytest.approx(440 * 2 ** (4 / 12), abs=2 * SR / 8192)


# ---------------------------------------------------------------- profiles and the trainer


def test_profile_names_match_the_cli_and_effects_follow_their_probabilities():
    assert tuple(PROFILES) == AUGMENT_PROFILES
    profile = PROFILES["full"]
    plans = [draw_effects(profile, np.random.default_rng(s), n_rirs=64, n_sources=100) for s in range(3000)]
    assert plans[5] == draw_effects(profile, np.random.default_rng(5), n_rirs=64, n_sources=100)
    rates = {
        "reverb": np.mean([p.rir_index is not None for p in plans]),
        "noise": np.mean([p.noise_kind is not None for p in plans]),
        "vtlp": np.mean([p.vtlp_alpha is not None for p in plans]),
        "channel": np.mean([p.channel is not None for p in plans]),
    }
    expected = {"reverb": 0.3, "noise": 0.4, "vtlp": 0.3, "channel": 0.3}
    for name, rate in rates.items():
        assert abs(rate - expected[name]) < 0.04, name
    snrs = [p.noise_snr_db for p in plans if p.noise_snr_db is not None]
    assert 0.0 <= min(snrs) < 1.0 and 29.0 < max(snrs) <= 30.0
    assert {p.noise_kind for p in plans} == {None, "white", "pink", "brown", "babble"}
    no_rooms = [draw_effects(profile, np.random.default_rng(s), n_rirs=0, n_sources=1) for s in range(200)]
    assert all(p.rir_index is None and p.noise_kind != "babble" for p in no_rooms)


@pytest.fixture(scope="module")
def corpus():
    audio = [np.round(speechlike(1.0 + 0.25 * i, i) * 32767).astype(np.int16) for i in range(4)]
    return EncodedCorpus(
        [f"u{i}" for i in range(4)], audio, [[1, 2, 3]] * 4, [FeatureConfig().frames(len(a)) for a in audio]
    )


def old_batch(corpus, indices, feature_config, config, epoch):
    """The training batch as computed before augmentation profiles existed (the reference for `light`)."""
    from asr_introspect.features import featurize
    from asr_introspect.training import _seed_for

    waves, generators = [], []
    for i in indices:
        wave = torch.from_numpy(corpus.audio[i].astype(np.float32) / 32767.0)
        gen = torch.Generator().manual_seed(_seed_for("augment", config.seed, epoch, corpus.ids[i]))
        generators.append(gen)
        factor = config.speed_factors[int(torch.randint(len(config.speed_factors), (1,), generator=gen))]
        wave = speed_perturb(wave, factor, feature_config.sample_rate)
        if float(torch.rand(1, generator=gen)) < config.noise_probability:
            low, high = config.noise_snr_db
            wave = add_noise(wave, low + (high - low) * float(torch.rand(1, generator=gen)), gen)
        waves.append(wave)
    features, lengths = featurize(waves, feature_config)
    return torch.stack([spec_augment(features[b], int(lengths[b]), config, generators[b]) for b in range(len(waves))])


def test_light_reproduces_the_old_augmentation_and_other_profiles_add_to_it(corpus):
    fc = FeatureConfig()
    old_config = TrainConfig.from_dict({k: v for k, v in TrainConfig().to_dict().items() if k != "augment"})
    assert old_config.augment == "light"  # configs written before profiles load as light
    for epoch in (0, 3):
        light = corpus.batch([0, 1, 2, 3], fc, old_config, epoch, augment=True)[0]
        assert torch.equal(light, old_batch(corpus, [0, 1, 2, 3], fc, old_config, epoch))
    plain = corpus.batch([0, 1], fc, old_config, 0, augment=False)[0]
    assert torch.equal(corpus.batch([0, 1], fc, TrainConfig(augment="none"), 0, augment=True)[0], plain)
    full = TrainConfig(augment="full")
    first = corpus.batch([0, 1, 2, 3], fc, full, 1, augment=True)
    assert all(torch.equal(a, b) for a, b in zip(first, corpus.batch([0, 1, 2, 3], fc, full, 1, augment=True)))
    light = corpus.batch([0, 1, 2, 3], fc, old_config, 1, augment=True)[0]
    assert first[0].shape == light.shape and not torch.equal(first[0], light)
    with pytest.raises(InputError, match="unknown augmentation profile 'loud'"):
        TrainConfig(augment="loud")


def test_condition_corpus_keeps_layout_transcripts_and_alignment(tmp_path):
    source = tmp_path / "src" / "spk" / "0"
    source.mkdir(parents=True)
    lines = []
    for i in range(3):
        save_audio(source / f"spk-0-{i:04d}.flac", speechlike(1.0, i) + tones(6000.0) * 0.3, SR)
        lines.append(f"spk-0-{i:04d} HELLO NUMBER {['ONE', 'TWO', 'THREE'][i]}\n")
    (source / "spk-0.trans.txt").write_text("".join(lines))
    assert "gsm_like" in CONDITIONS and "clean" in CONDITIONS
    out = tmp_path / "gsm"
    info = write_condition_corpus(tmp_path / "src", out, "gsm_like")
    assert info["utterances"] == 3
    before, after = load_corpus(tmp_path / "src"), load_corpus(out)
    assert [(u.id, u.text) for u in before] == [(u.id, u.text) for u in after]
    for a, b in zip(before, after):
        x, y = load_audio(a.audio_path), load_audio(b.audio_path)
        assert x.shape == y.shape
        assert band_power(y, 4500, 8000) < 1e-3 * band_power(x, 4500, 8000)
    with pytest.raises(InputError, match="unknown channel condition 'radio'"):
        write_condition_corpus(tmp_path / "src", tmp_path / "x", "radio")
