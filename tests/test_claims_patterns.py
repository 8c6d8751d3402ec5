"""Claims about letter patterns, spectral centroids and the randomization sanity check: slow references,
planted effects found (and swapped ones rejected), the bootstrap from per-utterance sums."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from asr_introspect.attribution import randomization_test
from asr_introspect.claims.attribution import lrp_randomization_claim, spike_frames
from asr_introspect.claims.patterns import (
    band_widths,
    between_letter_share,
    bootstrap_between_share,
    bootstrap_weights,
    centroid_claim,
    letter_window_sums,
    pattern_claims,
    share_claim_from_sums,
)
from asr_introspect.corpus import PhoneSegment, Utterance, load_corpus
from asr_introspect.features import featurize_file, mel_frequencies
from asr_introspect.models import build_model
from asr_introspect.patterns import PatternAverager

SR = 16000


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = build_model("tiny")
    model.module.eval()
    return model


# --------------------------------------------------------------------------- slow references


def reference_window_sums(features, centers, ids, n_groups, window):
    """Loop over windows and columns; columns outside the utterance count as 0."""
    n_feat, n_in = features.shape
    sums = np.zeros((n_groups, n_feat, window))
    for c, g in zip(centers, ids):
        for w in range(window):
            t = c - window // 2 + w
            if 0 <= t < n_in:
                sums[g, :, w] += features[:, t]
    return sums


def reference_share(windows_by_letter):
    """Between-letter share from the windows themselves: between / (between + common), with the common
    part ||M - mean(M)||^2 of the all-window average M (the decomposition the module states)."""
    all_windows = np.concatenate([w for w in windows_by_letter if len(w)])
    overall = all_windows.mean(0)
    n_total = len(all_windows)
    between = sum(len(w) / n_total * ((w.mean(0) - overall) ** 2).sum() for w in windows_by_letter if len(w))
    common = ((overall - overall.mean()) ** 2).sum()
    return between / (between + common)


def test_window_sums_match_the_loop_reference_at_the_borders():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((5, 40))
    centers = np.array([0, 1, 20, 38, 39, 20, 7])
    ids = np.array([0, 2, 1, 0, 2, 1, 1])
    sums, counts = letter_window_sums(features, centers, ids, 3, 11)
    np.testing.assert_allclose(sums, reference_window_sums(features, centers, ids, 3, 11), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(counts, [2, 3, 2])
    sums_even, _ = letter_window_sums(features, centers, ids, 3, 10)  # even window: [c - 5, c + 5)
    np.testing.assert_allclose(sums_even, reference_window_sums(features, centers, ids, 3, 10), atol=1e-12)


def test_between_letter_share_matches_the_reference_and_a_known_value():
    rng = np.random.default_rng(1)
    windows = [rng.normal(g * 0.3, 1.0, (n, 4, 6)) for g, n in enumerate([5, 9, 1, 0, 13])]
    sums = np.stack([w.sum(0) if len(w) else np.zeros((4, 6)) for w in windows])
    counts = np.array([len(w) for w in windows])
    assert between_letter_share(sums, counts) == pytest.approx(reference_share(windows), rel=1e-12)
    # known value: averages M + d_g with sum_g n_g d_g = 0, so s = sum_g w_g ||d_g||^2 / (that + ||M - a||^2)
    common = rng.standard_normal((4, 6))
    d = rng.standard_normal((3, 4, 6))
    n = np.array([2.0, 3.0, 5.0])
    d -= (n[:, None, None] * d).sum(0) / n.sum()
    between = (n / n.sum() * (d**2).sum((1, 2))).sum()
    want = between / (between + ((common - common.mean()) ** 2).sum())
    assert between_letter_share(n[:, None, None] * (common + d), n) == pytest.approx(want, rel=1e-12)


def test_bootstrap_from_unit_sums_equals_recomputing_each_resample():
    rng = np.random.default_rng(2)
    units, groups, pixels = 7, 4, 30
    counts = rng.integers(0, 5, (units, groups))
    counts[:, 3] = 0
    counts[2, 3] = 4  # letter 3 lives in unit 2 only: resamples without unit 2 lack it
    sums = rng.standard_normal((units, groups, pixels)) * counts[:, :, None] + 0.5 * counts[:, :, None]
    weights = bootstrap_weights(units, 40, seed=3)
    weights[0] = [0, 0, 0, 3, 2, 1, 1]
    for groups_used in (None, [0, 1, 3]):
        got = bootstrap_between_share(sums.astype(np.float32), counts, weights, groups_used)
        cols = list(range(groups)) if groups_used is None else groups_used
        for r, k in enumerate(weights):
            pooled = np.einsum("u,ugp->gp", k, sums.astype(np.float32).astype(np.float64))[cols]
            want = between_letter_share(pooled.reshape(len(cols), 5, 6), k @ counts[:, cols])
            assert got[r] == pytest.approx(want, rel=1e-9), (groups_used, r)
    assert np.all(weights.sum(1) == units) and len({tuple(k) for k in weights}) > 30


# --------------------------------------------------------------------------- planted letter patterns


def planted_letter_sums(letter_effect: float, common: float, n_utts=30, n_feat=8, window=9, seed=0):
    """(sums (2, U, G, F*W), counts (U, G)): noise N(0, 1) features; every letter window gets a common
    bump ``common`` on the lower bands, and letter g gets ``letter_effect`` on band g."""
    rng = np.random.default_rng(seed)
    groups = 4
    sums = np.zeros((2, n_utts, groups, n_feat * window))
    counts = np.zeros((n_utts, groups), np.int64)
    for u in range(n_utts):
        features = rng.standard_normal((n_feat, 200))
        centers = np.arange(10, 190, 12)
        ids = rng.integers(0, groups, centers.size)
        for c, g in zip(centers, ids):
            features[: n_feat // 2, c - 4 : c + 5] += common
            features[2 * g : 2 * g + 2, c - 4 : c + 5] += letter_effect
        real, counts[u] = letter_window_sums(features, centers, ids, groups, window)
        shuffled, _ = letter_window_sums(features, centers, rng.permutation(ids), groups, window)
        sums[0, u], sums[1, u] = real.reshape(groups, -1), shuffled.reshape(groups, -1)
    return sums, counts


@pytest.mark.parametrize(
    ("letter_effect", "common", "verdict"),
    [(0.8, 3.0, ("supported",)), (0.0, 3.0, ("inconclusive", "not supported")), (3.0, 0.2, ("not supported",))],
)
def test_planted_letter_patterns_give_the_expected_verdict(letter_effect, common, verdict):
    """Letter-specific bands under a strong common bump: supported; no letter effect: the share's interval
    overlaps the shuffled null's; letter bands without a common bump: the averages do not look alike
    (share > 1/2)."""
    sums, counts = planted_letter_sums(letter_effect, common)
    claim = share_claim_from_sums(sums, counts, list("abcd"), 8, n_boot=100, min_count=5)
    assert claim.verdict in verdict, claim
    lo, hi = claim.interval
    assert lo <= claim.value <= hi and claim.null_interval[0] <= claim.null <= claim.null_interval[1]
    if letter_effect == 0.0:
        assert claim.interval[0] < claim.null_interval[1] and claim.null_interval[0] < claim.interval[1]
    if verdict == ("supported",):
        assert claim.details["correlation_before"] > 0.8 > 0.2 > claim.details["correlation_after"]
        assert claim.value < 0.5 and claim.null < claim.value / 3


def test_letter_claim_equals_the_pattern_averager_on_a_tiny_model(tiny_model, tiny_corpus):
    """The claim's streamed window sums are the PatternAverager's (forced spikes, all frames)."""
    utterances = load_corpus(tiny_corpus.root)
    letter, centroid = pattern_claims(tiny_model, utterances, n_boot=20, min_count=1, n_blocks=100)
    result = PatternAverager(by="letter", source="forced").fit(tiny_model, utterances).result()
    kept = result.counts > 0
    want = between_letter_share(result.sums[kept], result.counts[kept])
    assert letter.value == pytest.approx(want, rel=1e-5)
    assert letter.details["bootstrap_unit"] == "utterance" and letter.details["window"] == result.window
    assert {k: v["windows"] for k, v in letter.details["per_letter"].items()} == {
        n: int(c) for n, c in zip(result.names, result.counts) if c
    }
    assert sum(v["share"] for v in letter.details["per_letter"].values()) == pytest.approx(letter.value)
    assert centroid.name == "fricative_centroids_exceed_vowels" and centroid.details["n_utterances"] == 2


# --------------------------------------------------------------------------- planted spectra


def _tone(seconds, rng):
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((220, 440, 660), 1))


def _hiss(seconds, rng):
    noise = rng.standard_normal(int(seconds * SR))
    return np.real(np.fft.irfft(np.fft.rfft(noise) * (np.fft.rfftfreq(noise.size, 1 / SR) > 4000), noise.size))


def planted_speech(directory, swapped: bool, n=5):
    """Utterances alternating /s/ and /aa/ (0.15 s each) with silence around: /s/ is high-band hiss and
    /aa/ a low harmonic tone, or the reverse when ``swapped``."""
    rng = np.random.default_rng(4)
    utterances = []
    for i in range(n):
        pieces, segments, t = [np.zeros(int(0.1 * SR))], [PhoneSegment("sil", 0.0, 0.1)], 0.1
        for k in range(6):
            phone = "s" if k % 2 == 0 else "aa"
            high = (phone == "s") != swapped
            pieces.append(0.3 * (_hiss(0.15, rng) if high else _tone(0.15, rng)))
            segments.append(PhoneSegment(phone, t, t + 0.15))
            t += 0.15
        pieces.append(np.zeros(int(0.1 * SR)))
        segments.append(PhoneSegment("sil", t, t + 0.1))
        path = directory / f"u{i}.wav"
        sf.write(path, np.concatenate(pieces).astype(np.float32), SR)
        utterances.append(Utterance(f"u{i}", "s", path, "sa", tuple(segments), t + 0.1))
    return utterances


@pytest.mark.parametrize(("swapped", "verdict"), [(False, "supported"), (True, "not supported")])
def test_planted_spectra_give_the_expected_centroid_verdict(tmp_path, tiny_model, swapped, verdict):
    utterances = planted_speech(tmp_path, swapped)
    claim = centroid_claim(tiny_model, utterances, n_boot=100, fricatives=["s"])
    assert claim.verdict == verdict, claim
    assert (claim.value > 2000) != swapped and abs(claim.null) < abs(claim.value) / 4
    assert claim.details["front_end"] == "the model's log-mel"
    assert claim.details["frames"]["fricative"] >= 5 * 3 * 18  # 5 utterances, 3 /s/ of 0.15 s at 8 ms


def test_phone_centroid_is_the_mean_of_frame_centroids_of_a_librosa_spectrogram(tmp_path, tiny_model):
    """Independent reference: librosa's mel power spectrogram, band powers, one centroid per frame."""
    utterances = planted_speech(tmp_path, swapped=False, n=2)
    claim = centroid_claim(tiny_model, utterances, n_boot=10, fricatives=["s"])
    config = tiny_model.feature_config
    freqs, widths = mel_frequencies(config), band_widths(config)
    frame_centroids = {"s": [], "aa": []}
    for utt in utterances:
        y, _ = sf.read(utt.audio_path, dtype="float32")
        power = librosa.feature.melspectrogram(
            y=y, sr=SR, n_fft=512, hop_length=128, n_mels=config.n_mels, center=True, pad_mode="constant", power=2.0
        )
        bands = power * widths[:, None]
        with np.errstate(invalid="ignore"):  # digital silence between the phones
            centroid = freqs @ bands / bands.sum(0)
        times = np.arange(power.shape[1]) * config.frame_seconds
        for seg in utt.phones:
            if seg.phone in frame_centroids:
                frame_centroids[seg.phone].extend(centroid[(times >= seg.start) & (times < seg.end)])
    for phone in ("s", "aa"):
        got = claim.details["per_phone"][phone]["centroid_hz"]
        assert got == pytest.approx(np.mean(frame_centroids[phone]), rel=1e-3), phone
    assert claim.value == pytest.approx(np.mean(frame_centroids["s"]) - np.mean(frame_centroids["aa"]), rel=1e-3)


# --------------------------------------------------------------------------- randomization sanity check


def noise_utterances(directory, n=3, seconds=1.0):
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        path = directory / f"n{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
        out.append(Utterance(f"n{i}", "s", path, "a"))
    return out


def band_limited_model(bands=slice(10, 13)):
    """A tiny model whose first convolution reads only a few mel bands: its maps live on those bands,
    those of a randomized copy (Gaussian first-layer weights on every band) do not."""
    torch.manual_seed(1)
    model = build_model("tiny")
    first = next(m for m in model.module.modules() if isinstance(m, nn.Conv1d))
    with torch.no_grad():
        keep = torch.zeros(first.weight.shape[1], dtype=torch.bool)
        keep[bands] = True
        first.weight[:, ~keep] = 0.0
    model.module.eval()
    return model


@pytest.mark.parametrize("method", ["sensitivity", "lrp-epsilon-plus"])
def test_band_limited_maps_fail_to_survive_randomization(tmp_path, method):
    """Planted dependence on the parameters: the randomized model's maps are unrelated (similarity near 0),
    two maps of the model under input noise nearly equal: supported."""
    claim = lrp_randomization_claim(
        band_limited_model(), noise_utterances(tmp_path), n_utterances=3, method=method, n_frames=6, n_boot=50
    )
    assert claim.verdict == "supported", claim
    assert abs(claim.value) < 0.1 and claim.null > 0.9
    assert claim.details["method"] == method and len(claim.details["utterances"]) == 3


def test_zplus_maps_of_a_random_model_do_not_depend_on_its_weights(tmp_path, tiny_model):
    """LRP z+ (epsilon-plus) maps are nearly the same after every layer is redrawn (similarity above the
    noise null): not supported; the plain gradient changes far more."""
    utterances = noise_utterances(tmp_path)
    lrp = lrp_randomization_claim(tiny_model, utterances, n_utterances=3, n_frames=6, n_boot=50)
    grad = lrp_randomization_claim(tiny_model, utterances, n_utterances=3, method="sensitivity", n_frames=6, n_boot=50)
    assert lrp.verdict == "not supported" and lrp.value > 0.9, lrp
    assert grad.value < lrp.value - 0.2


def test_per_frame_similarities_are_the_cascade_end_of_randomization_test(tmp_path, tiny_model):
    utterances = noise_utterances(tmp_path, n=1)
    claim = lrp_randomization_claim(
        tiny_model, utterances, n_utterances=1, n_frames=5, n_boot=20, noise_level=0.0, cascade=True
    )
    row = claim.details["utterances"][0]
    x = featurize_file(utterances[0].audio_path, tiny_model.feature_config)
    with torch.no_grad():
        logits = tiny_model.logits(x[None])[0][0].numpy()
    frames = spike_frames(logits, 5, tiny_model.alphabet.blank)
    assert row["frames"] == frames.tolist()
    reference = randomization_test(tiny_model, x, methods=("lrp-epsilon-plus",), frames=frames, seed=0)
    np.testing.assert_allclose(row["randomized"], reference.spearman_abs[0, -1], rtol=1e-6, atol=1e-9)
    assert list(claim.details["cascade"]) == reference.steps  # output layer first, down to the first
    np.testing.assert_allclose(list(claim.details["cascade"].values()), reference.spearman_abs[0].mean(1), rtol=1e-6)
    assert claim.details["cascade"][reference.steps[-1]] == pytest.approx(claim.value)
    assert claim.null == 1.0 and claim.null_interval == (1.0, 1.0)  # no noise: the same map twice


def test_models_without_lrp_rules_are_checked_with_the_gradient(tmp_path):
    from asr_introspect.models import build_conformer

    torch.manual_seed(0)
    model = build_conformer("conformer-tiny").eval()
    claim = lrp_randomization_claim(model, noise_utterances(tmp_path, n=2), n_utterances=2, n_frames=3, n_boot=20)
    assert claim.details["method"] == "sensitivity" and "sensitivity" in claim.details["note"]
    assert np.isfinite(claim.value) and -1.0 <= claim.value < claim.null <= 1.0


def test_waveform_models_get_an_inconclusive_letter_claim_and_a_default_log_mel_centroid(tmp_path):
    from types import SimpleNamespace

    from asr_introspect.claims.patterns import letter_pattern_claim
    from asr_introspect.frontends import WaveformConfig

    model = SimpleNamespace(feature_config=WaveformConfig())
    utterances = planted_speech(tmp_path, swapped=False, n=3)
    letter = letter_pattern_claim(model, utterances)
    assert letter.verdict == "inconclusive" and "waveform" in letter.details["reason"] and np.isnan(letter.value)
    centroid = centroid_claim(model, utterances, n_boot=20, fricatives=["s"])
    assert centroid.details["front_end"] == "the toolkit's default log-mel (128 bands)"
    assert centroid.value > 2000
