"""Letter/phoneme-averaged patterns: planted signatures, streaming, borders, normalizations, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from shipped import requires_shipped

from asr_introspect.alignment import letter_labels
from asr_introspect.corpus import Utterance
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, mel_frequencies
from asr_introspect.models import build_model
from asr_introspect.patterns import (
    PatternAverager,
    PatternResult,
    label_runs,
    save_sonifications,
    sonify_pattern,
    spectral_centroid,
    vowel_fricative_centroids,
)
from asr_introspect.stream import StreamBatch, align_corpus, stream_corpus
from asr_introspect.text import PHONE_TO_INDEX, PHONES, Alphabet

CLOSE = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = build_model("tiny")
    model.module.eval()
    return model


def corr(a, b) -> float:
    a = np.asarray(a, np.float64).ravel() - np.mean(a)
    b = np.asarray(b, np.float64).ravel() - np.mean(b)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# --------------------------------------------------------------------------- a slow reference


def reference_sums(utterances, n_groups, window, frames, axis="input", frame_map=None, exclude=(), border="pad"):
    """Loop-by-loop per-label window sums; centres from the closed-form receptive field."""
    n_feat = utterances[0][0].shape[0]
    sums = np.zeros((n_groups, n_feat, window))
    sums_sq = np.zeros_like(sums)
    counts = np.zeros(n_groups, np.int64)
    position_counts = np.zeros((n_groups, window), np.int64)
    half = window // 2
    for features, labels in utterances:
        n_in = features.shape[1]
        labels = [(-1 if (g < 0 or g in exclude) else int(g)) for g in labels]
        items = []  # (position on the label axis, doubled to stay integer, label)
        if frames == "all":
            items = [(2 * t, g) for t, g in enumerate(labels) if g >= 0]
        else:
            t = 0
            while t < len(labels):
                u = t
                while u + 1 < len(labels) and labels[u + 1] == labels[t]:
                    u += 1
                if labels[t] >= 0:
                    items.append((t + u, labels[t]))
                t = u + 1
        for doubled, g in items:
            if axis == "input":
                c = (doubled + 1) // 2  # half frames round up
            else:  # the window is the receptive field of (possibly half-integer) position doubled / 2
                geometry = frame_map.layer(frame_map.output_layer)
                assert window == geometry.receptive_field and (doubled * geometry.stride) % 2 == 0
                c = geometry.offset + doubled * geometry.stride // 2 + half
            if not 0 <= c < n_in:
                continue
            start = c - half
            if border == "skip" and (start < 0 or start + window > n_in):
                continue
            counts[g] += 1
            for w in range(window):
                t = start + w
                if 0 <= t < n_in:
                    sums[g, :, w] += features[:, t]
                    sums_sq[g, :, w] += features[:, t].astype(np.float64) ** 2
                    position_counts[g, w] += 1
    return sums, sums_sq, counts, position_counts


def random_utterances(rng, n, n_feat, n_groups, axis="input", frame_map=None, lengths=(30, 90)):
    out = []
    for _ in range(n):
        n_in = int(rng.integers(*lengths))
        n_axis = n_in if axis == "input" else int(frame_map.output_length(frame_map.output_layer, n_in))
        runs = np.repeat(rng.integers(-1, n_groups, n_axis), rng.integers(1, 4, n_axis))[:n_axis]
        out.append((rng.standard_normal((n_feat, n_in)).astype(np.float32), runs.astype(np.int64)))
    return out


# --------------------------------------------------------------------------- planted signatures


def planted_corpus(rng, n_utts=120, n_frames=300, n_feat=30, seg=5):
    """Each of 10 phones owns 3 mel bands (+1 during its segments); every segment also gets a
    strong common low-band bump (+2, the "being a phone at all" pattern); noise N(0, 0.4)."""
    phones = ["aa", "iy", "s", "sh", "f", "m", "n", "z", "k", "t"]
    bands = {PHONE_TO_INDEX[p]: slice(3 * i, 3 * i + 3) for i, p in enumerate(phones)}
    ids = list(bands)
    utterances = []
    for _ in range(n_utts):
        x = rng.normal(0.0, 0.4, (n_feat, n_frames)).astype(np.float32)
        labels = np.full(n_frames, -1, np.int64)
        t = int(rng.integers(0, 4))
        while t + seg <= n_frames:
            g = ids[int(rng.integers(len(ids)))]
            labels[t : t + seg] = g
            x[: n_feat // 2, t : t + seg] += 2.0
            x[bands[g], t : t + seg] += 1.0
            t += seg + int(rng.integers(0, 3))
        utterances.append((x, labels))
    return phones, bands, utterances


@pytest.mark.parametrize("frames", ["centers", "all"])
def test_planted_signatures_are_recovered_after_subtraction(frames):
    rng = np.random.default_rng(0)
    window, seg = 21, 5
    phones, bands, utterances = planted_corpus(rng, seg=seg)
    averager = PatternAverager(by="phoneme", window=window, frames=frames)
    for x, labels in utterances:
        averager.add(x, labels)
    result = averager.result()
    offsets = np.arange(window) - window // 2
    # where the labelled segment lies relative to the window centre
    if frames == "centers":
        profile = (np.abs(offsets) <= seg // 2).astype(float)
    else:
        profile = np.clip((seg - np.abs(offsets)) / seg, 0.0, None)
    averages = []
    for name in phones:
        g = result.index(name)
        signature = np.zeros((30, window))
        signature[bands[PHONE_TO_INDEX[name]]] = profile
        assert corr(result.subtracted[g], signature) >= 0.9, name
        assert corr(result.averages[g], signature) < 0.5, name  # hidden before subtraction
        averages.append(result.averages[g].ravel())
    # before subtraction the averages all look alike
    assert np.corrcoef(averages).min() > 0.9
    # every segment was counted once per window
    n_segments = sum(len(label_runs(lab)[0]) for _, lab in utterances)
    n_frames = sum(int((lab >= 0).sum()) for _, lab in utterances)
    assert result.counts.sum() == (n_segments if frames == "centers" else n_frames)


# --------------------------------------------------------------------------- streaming, reference


@pytest.mark.parametrize("frames", ["all", "centers"])
@pytest.mark.parametrize("axis", ["input", "output"])
def test_streaming_equals_one_pass_and_the_reference(frames, axis, tiny_model):
    rng = np.random.default_rng(1)
    fm = tiny_model.frame_map
    n_groups = len(PHONES)
    utts = random_utterances(rng, 9, 6, n_groups, axis, fm, lengths=(20, 70))
    window = fm.layer(fm.output_layer).receptive_field if axis == "output" else 11
    sil = PHONE_TO_INDEX["sil"]

    def make():
        return PatternAverager(by="phoneme", window=window, frames=frames, axis=axis)

    one = make()
    for x, lab in utts:
        one.add(x, lab, model=fm)
    # padded batches of 4 with lengths
    batched = make()
    for a in range(0, len(utts), 4):
        chunk = utts[a : a + 4]
        t_max = max(x.shape[1] for x, _ in chunk)
        l_max = max(len(lab) for _, lab in chunk)
        feats = np.zeros((len(chunk), 6, t_max), np.float32)
        labels = np.full((len(chunk), l_max), 7, np.int64)  # junk beyond each length must be ignored
        for b, (x, lab) in enumerate(chunk):
            feats[b, :, : x.shape[1]] = x
            labels[b, : len(lab)] = lab
        batched.add(torch.from_numpy(feats), labels, lengths=[x.shape[1] for x, _ in chunk], model=fm)
    # two halves merged
    first, second = make(), make()
    for i, (x, lab) in enumerate(utts):
        (first if i % 2 else second).add(x, lab, model=fm)
    merged = first.merge(second)

    sums, sums_sq, counts, position_counts = reference_sums(utts, n_groups, window, frames, axis, fm, exclude=(sil,))
    keep = [i for i in range(n_groups) if i != sil]
    for averager in (one, batched, merged):
        r = averager.result()
        assert r.names == tuple(p for p in PHONES if p != "sil")
        np.testing.assert_array_equal(r.counts, counts[keep])
        np.testing.assert_array_equal(r.position_counts, position_counts[keep])
        np.testing.assert_allclose(r.sums, sums[keep], **CLOSE)
        np.testing.assert_allclose(r.sums_sq, sums_sq[keep], **CLOSE)
    assert counts.sum() > 0


def test_output_frame_window_is_its_receptive_field(tiny_model):
    fm = tiny_model.frame_map
    rf = fm.layer(fm.output_layer).receptive_field
    n_in = 400
    features = np.arange(n_in, dtype=np.float32)[None, :] + 1000 * np.arange(3, dtype=np.float32)[:, None]
    n_out = fm.output_length(fm.output_layer, n_in)
    labels = np.full(n_out, -1)
    t = 120
    labels[t] = PHONE_TO_INDEX["s"]
    averager = PatternAverager(by="phoneme", axis="output").add(features, labels, model=fm)
    r = averager.result()
    assert r.window == rf
    start, stop = fm.input_range(fm.output_layer, t)
    np.testing.assert_array_equal(r.averages[r.index("s")], features[:, start:stop])


def one_letter_batch(model, n_in=600, at=150, letter="a"):
    """A hand-made StreamBatch of one utterance (text ``letter``) whose logits put ``letter`` at output frame
    ``at`` and blank everywhere else, so the forced and the greedy path are the same; features: the frame index."""
    fm = model.frame_map
    alphabet = model.alphabet
    n_out = fm.output_length(fm.output_layer, n_in)
    features = torch.arange(n_in, dtype=torch.float32)[None, None, :].repeat(1, model.n_features, 1)
    logits = torch.zeros(1, len(alphabet.symbols), n_out)
    logits[0, alphabet.blank] = 10.0
    logits[0, alphabet.blank, at] = 0.0
    logits[0, alphabet.index(letter), at] = 20.0
    utterance = Utterance("one-letter", "spk", "one-letter.flac", letter)
    return StreamBatch(model, [utterance], features, torch.tensor([n_in]), logits, torch.tensor([n_out]), {}, {})


def test_shift_moves_letters_by_output_frames(tiny_model):
    fm = tiny_model.frame_map
    blank = tiny_model.alphabet.blank
    at = 150
    batch = one_letter_batch(tiny_model, at=at)
    features = batch.utterance_features(0)
    for source in ("forced", "predicted"):
        path = batch.output_paths(source)[0]
        assert np.flatnonzero(path != blank).tolist() == [at]
        for shift in (-3, 0, 3):  # shift=-3: the old shift_correction=3, 3 output frames earlier
            averager = PatternAverager(by="letter", source=source, shift=shift)
            r = averager.partial_fit(batch).result()
            start, stop = fm.input_range(fm.output_layer, at + shift)
            np.testing.assert_array_equal(r.averages[r.index("a")], features[:, start:stop])
            assert r.counts.sum() == 1 and averager.n_utterances_ == 1 and averager.skipped_ == []
        # the frames vacated at the end are blank (excluded by default), not -1
        shifted = batch.letter_labels(fm.output_layer, source, "spike", -3)[0]
        assert (shifted[-3:] == blank).all() and np.flatnonzero(shifted != blank).tolist() == [at - 3]


def test_utterances_without_a_forced_path_are_skipped(tiny_model):
    batch = one_letter_batch(tiny_model)
    n_out = int(batch.out_lengths[0])
    batch.utterances[0] = Utterance("too-long", "spk", "too-long.flac", "a" * n_out)  # needs 2 * n_out - 1 frames
    forced = PatternAverager(by="letter", source="forced").partial_fit(batch)
    assert forced.skipped_ == ["too-long"] and forced.n_utterances_ == 0
    assert forced.result().counts.sum() == 0 and batch.skipped("letters", "forced")[0][0] == "too-long"
    assert (batch.letter_labels(tiny_model.output_layer, "forced") == -1).all()
    predicted = PatternAverager(by="letter", source="predicted").partial_fit(batch)
    assert predicted.skipped_ == [] and predicted.result().counts.sum() == 1


# --------------------------------------------------------------------------- borders, exclusion


def test_counts_and_positions_at_the_borders():
    n_in, window = 20, 9
    x = np.random.default_rng(2).standard_normal((2, n_in)).astype(np.float32)
    a, b = PHONE_TO_INDEX["aa"], PHONE_TO_INDEX["b"]
    labels = np.full(n_in, -1)
    labels[0] = a  # window columns 0..3 lie before the input
    labels[19] = a  # columns 5..8 lie after it
    labels[10] = b  # fully inside
    pad = PatternAverager(by="phoneme", window=window).add(x, labels).result()
    ga, gb = pad.index("aa"), pad.index("b")
    assert pad.counts[ga] == 2 and pad.counts[gb] == 1
    np.testing.assert_array_equal(pad.position_counts[ga], [1, 1, 1, 1, 2, 1, 1, 1, 1])
    np.testing.assert_array_equal(pad.position_counts[gb], np.ones(window))
    np.testing.assert_allclose(pad.averages[ga][:, :4], x[:, 15:19])  # only the frame-19 window
    np.testing.assert_allclose(pad.averages[ga][:, 4], (x[:, 0] + x[:, 19]) / 2)
    np.testing.assert_allclose(pad.averages[ga][:, 5:], x[:, 1:5])  # only the frame-0 window
    skip = PatternAverager(by="phoneme", window=window, border="skip").add(x, labels).result()
    assert skip.counts[ga] == 0 and skip.counts[gb] == 1
    assert np.isnan(skip.averages[ga]).all()
    # a label nobody has: NaN, count 0, no effect on the mean
    assert pad.counts[pad.index("zh")] == 0 and np.isnan(pad.averages[pad.index("zh")]).all()
    np.testing.assert_allclose(pad.mean[:, 4], (x[:, 0] + x[:, 19] + x[:, 10]) / 3)


def test_centres_of_runs_touching_the_borders():
    n_in, window = 12, 3
    x = np.arange(n_in, dtype=np.float32)[None, :]
    a, b = PHONE_TO_INDEX["aa"], PHONE_TO_INDEX["b"]
    labels = np.array([a, a, a, -1, b, b, -1, -1, -1, -1, a, a])
    r = PatternAverager(by="phoneme", window=window, frames="centers").add(x, labels).result()
    assert r.counts[r.index("aa")] == 2 and r.counts[r.index("b")] == 1
    # centres: run 0..2 -> 1; run 4..5 -> 4.5 -> 5; run 10..11 -> 10.5 -> 11 (column 2 outside)
    np.testing.assert_allclose(r.averages[r.index("b")][0], [4, 5, 6])
    np.testing.assert_allclose(r.averages[r.index("aa")][0], [(0 + 10) / 2, (1 + 11) / 2, 2])
    np.testing.assert_array_equal(r.position_counts[r.index("aa")], [2, 2, 1])


def test_last_output_frame_beyond_the_input_is_dropped(tiny_model):
    fm = tiny_model.frame_map
    n_in = 64
    n_out = fm.output_length(fm.output_layer, n_in)
    assert fm.center(fm.output_layer, n_out - 1) > n_in - 1  # sits half a frame past the input
    labels = np.full(n_out, PHONE_TO_INDEX["s"])
    x = np.zeros((4, n_in), np.float32)
    averager = PatternAverager(by="phoneme", axis="output").add(x, labels, model=fm)
    assert averager.result().counts.sum() == n_out - 1 and averager.n_dropped_ == 1


def test_default_exclusions_and_unknown_names():
    alphabet = Alphabet.default()
    x = np.ones((2, 10), np.float32)
    letters = np.array([alphabet.blank, alphabet.space, alphabet.index("a")] * 3 + [alphabet.index("'")])
    r = PatternAverager(by="letter", axis="input", window=3).add(x, letters).result()
    assert "<blank>" not in r.names and " " not in r.names and r.counts.sum() == 4
    r = PatternAverager(by="letter", axis="input", window=3, exclude=()).add(x, letters).result()
    assert r.counts[r.index("<blank>")] == 3 and r.counts.sum() == 10
    phones = np.array([PHONE_TO_INDEX["sil"]] * 5 + [PHONE_TO_INDEX["s"]] * 5)
    r = PatternAverager(by="phoneme", window=3).add(x, phones).result()
    assert "sil" not in r.names and r.counts.sum() == 5
    with pytest.raises(ValueError, match="unknown"):
        PatternAverager(by="phoneme", window=3, exclude=("xx",)).add(x, phones)
    with pytest.raises(ValueError, match="labels"):
        PatternAverager(by="phoneme", window=3).add(x, phones[:-1])
    with pytest.raises(ValueError, match="window"):
        PatternAverager(by="phoneme").add(x, phones)
    with pytest.raises(InputError, match="letter"):
        PatternAverager(by="phoneme", shift=-2)
    for bad in ({"source": "greedy"}, {"letter_mode": "peak"}, {"shift": 1.5}, {"frames": "some"}):
        with pytest.raises(InputError, match=next(iter(bad))):
            PatternAverager(**bad)


# --------------------------------------------------------------------------- normalizations


def test_normalizations_match_their_definitions():
    rng = np.random.default_rng(3)
    window, n_feat = 5, 4
    utts = [
        (rng.normal(0, 1 + np.arange(n_feat)[:, None], (n_feat, 40)).astype(np.float32), rng.integers(-1, 3, 40))
        for _ in range(5)
    ]
    r = PatternAverager(by="phoneme", window=window, border="skip")
    for x, lab in utts:
        r.add(x, lab)
    r = r.result()
    # collect the windows explicitly
    windows = {g: [] for g in range(3)}
    for x, lab in utts:
        for t, g in enumerate(lab):
            if g >= 0 and 2 <= t < 38:
                windows[g].append(x[:, t - 2 : t + 3].astype(np.float64))
    every = np.stack([w for ws in windows.values() for w in ws])
    mean, std = every.mean(axis=0), every.std(axis=0)
    band_mean = every.mean(axis=(0, 2))
    band_std = every.transpose(1, 0, 2).reshape(n_feat, -1).std(axis=1)
    standardized = (every - band_mean[None, :, None]) / band_std[None, :, None]
    for g in range(3):
        row = r.index(PHONES[g])
        avg = np.mean(windows[g], axis=0)
        np.testing.assert_allclose(r.averages[row], avg, **CLOSE)
        np.testing.assert_allclose(r.subtracted[row], avg - mean, **CLOSE)
        np.testing.assert_allclose(r.zscores()[row], (avg - mean) / std, **CLOSE)
        n = len(windows[g])
        np.testing.assert_allclose(r.zscores(standard_error=True)[row], (avg - mean) / (std / np.sqrt(n)), **CLOSE)
        # frequency-balanced: standardize each band over all windows, then average and subtract
        own = (np.stack(windows[g]) - band_mean[None, :, None]) / band_std[None, :, None]
        np.testing.assert_allclose(r.balanced()[row], own.mean(axis=0) - standardized.mean(axis=0), **CLOSE)
    np.testing.assert_allclose(r.mean, mean, **CLOSE)
    np.testing.assert_allclose(r.normalized("none"), r.averages, equal_nan=True)
    with pytest.raises(ValueError):
        r.normalized("bogus")


# --------------------------------------------------------------------------- spectral centroid


def test_spectral_centroid_finds_the_planted_band():
    config = FeatureConfig.small()
    freqs = mel_frequencies(config)
    pattern = np.full((64, 9), -0.1)
    pattern[50, 2:7] = 1.0  # only around the centre column 4
    assert spectral_centroid(pattern, freqs) == pytest.approx(freqs[50])
    assert np.isnan(spectral_centroid(pattern, freqs, half_width=0, center=0))  # nothing positive there
    pattern[10, :] = 1.0
    assert spectral_centroid(pattern, freqs) == pytest.approx((freqs[10] + freqs[50]) / 2)
    energy = np.zeros((64, 9))
    energy[40] = 2.0  # 30 dB above the other bands
    assert abs(spectral_centroid(energy, freqs, kind="energy") - freqs[40]) < 0.05 * freqs[40]
    assert spectral_centroid(np.zeros(64), freqs, kind="energy") == pytest.approx(freqs.mean())
    check = vowel_fricative_centroids({"s": 5000.0, "z": 4000.0, "aa": 900.0, "iy": 1800.0, "m": 200.0})
    assert check["fricative_min"] == 4000.0 and check["vowel_max"] == 1800.0


# --------------------------------------------------------------------------- model and corpus


def test_fit_on_a_tiny_model_counts_letters_and_phones(tiny_model, tiny_corpus):
    from asr_introspect.alignment import phone_labels
    from asr_introspect.corpus import load_corpus

    utts = load_corpus(tiny_corpus.root)
    alphabet = tiny_model.alphabet
    # forced letters, one window per span: exactly the transcript's letters (no space)
    averager = PatternAverager(by="letter", source="forced", frames="centers").fit(tiny_model, utts)
    r = averager.result()
    assert r.window == tiny_model.receptive_field and averager.skipped_ == []
    text = "".join(u.text.replace(" ", "") for u in utts)
    want = {name: text.count(name) for name in r.names}
    got = {name: int(c) for name, c in zip(r.names, r.counts)}
    assert sum(want.values()) == sum(got.values()) + averager.n_dropped_
    assert all(got[n] <= want[n] for n in r.names) and averager.n_dropped_ <= len(utts)
    # streaming the same alignments by hand (label arrays of the stream) gives the same sums
    again = PatternAverager(by="letter", source="forced", frames="centers")
    for batch in stream_corpus(tiny_model, utts, batch_size=3):
        labels = batch.letter_labels(tiny_model.output_layer, "forced")
        again.add(batch.features, labels, lengths=batch.feature_lengths, model=tiny_model)
    np.testing.assert_allclose(again.result().sums, r.sums, **CLOSE)
    assert alphabet.blank not in r.label_ids

    # phones: one window per segment / per labelled input frame
    for frames in ("centers", "all"):
        averager = PatternAverager(by="phoneme", frames=frames).fit(tiny_model, utts)
        r = averager.result()
        with_phones = [u for u in utts if u.phones]
        assert sorted(averager.skipped_) == sorted(u.id for u in utts if not u.phones)
        want = dict.fromkeys(r.names, 0)
        for u in with_phones:
            if frames == "centers":
                for seg in u.phones:
                    if seg.phone != "sil":
                        want[seg.phone] += 1
            else:
                n_in = tiny_model.feature_config.frames(round(u.duration * 16000))
                for g in phone_labels(u.phones, np.arange(n_in) * tiny_model.feature_config.frame_seconds):
                    if g >= 0 and PHONES[g] != "sil":
                        want[PHONES[g]] += 1
        assert {n: int(c) for n, c in zip(r.names, r.counts)} == want


STREAM_SETTINGS = [
    {"by": "letter", "source": "forced"},
    {"by": "letter", "source": "forced", "frames": "centers", "letter_mode": "span", "shift": -2},
    {"by": "letter", "source": "predicted"},
    {"by": "letter", "source": "predicted", "axis": "input", "frames": "centers"},
    {"by": "phoneme"},
    {"by": "phoneme", "axis": "output", "frames": "centers"},
]


def assert_same_sums(got: PatternAverager, want: PatternAverager) -> None:
    a, b = got.result(), want.result()
    assert a.names == b.names and a.window == b.window
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.position_counts, b.position_counts)
    np.testing.assert_allclose(a.sums, b.sums, **CLOSE)
    np.testing.assert_allclose(a.sums_sq, b.sums_sq, **CLOSE)
    assert got.n_utterances_ == want.n_utterances_ and got.n_dropped_ == want.n_dropped_
    assert sorted(got.skipped_) == sorted(want.skipped_)


@pytest.mark.parametrize("settings", STREAM_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
def test_partial_fit_on_stream_batches_equals_fit(settings, tiny_model, tiny_corpus):
    from asr_introspect.corpus import load_corpus

    utts = load_corpus(tiny_corpus.root)
    fitted = PatternAverager(**settings).fit(tiny_model, utts)
    assert fitted.result().counts.sum() > 0
    if settings["by"] == "phoneme":
        assert sorted(fitted.skipped_) == sorted(u.id for u in utts if not u.phones)
    one = PatternAverager(**settings)
    first, second = PatternAverager(**settings), PatternAverager(**settings)
    # other batches than fit's (batch_size 16), in corpus order: padding is exact, so the sums agree
    for i, batch in enumerate(stream_corpus(tiny_model, utts, batch_size=3, bucket=False)):
        one.partial_fit(batch)
        (first if i % 2 else second).partial_fit(batch)
    assert_same_sums(one, fitted)
    assert_same_sums(first.merge(second), fitted)


def test_stream_letter_labels_are_the_forced_path_of_align_corpus(tiny_model, tiny_corpus):
    from asr_introspect.corpus import load_corpus

    utts = load_corpus(tiny_corpus.root)
    model = tiny_model
    blank = model.alphabet.blank
    alignments = {a.utterance.id: a for a in align_corpus(model, utts, batch_size=2)}
    assert sorted(alignments) == sorted(u.id for u in utts)
    seen = []
    for batch in stream_corpus(model, utts, batch_size=3):
        assert batch.letter_rows("forced").all() and batch.skipped("letters", "forced") == []
        lengths = batch.layer_lengths(model.output_layer)
        for mode in ("spike", "span"):
            labels = batch.letter_labels(model.output_layer, "forced", mode)
            assert labels.shape == (len(batch), batch.width(model.output_layer)) and labels.dtype == np.int64
            for b, utt in enumerate(batch.utterances):
                path = alignments[utt.id].frame_tokens
                assert lengths[b] == len(path)
                np.testing.assert_array_equal(labels[b, : len(path)], letter_labels(path, mode, blank=blank))
                assert (labels[b, len(path) :] == -1).all()  # padding
        seen += [u.id for u in batch.utterances]
    assert sorted(seen) == sorted(alignments)


def test_save_load_and_merge_round_trip(tmp_path, tiny_model):
    rng = np.random.default_rng(4)
    utts = random_utterances(rng, 4, 64, len(PHONES), lengths=(200, 260))
    averager = PatternAverager(by="phoneme", window=15)
    for x, lab in utts:
        averager.add(x, lab, model=tiny_model)
    r = averager.result()
    path = r.save(tmp_path / "p.npz")
    back = PatternResult.load(path)
    assert back.names == r.names and back.feature_config == tiny_model.feature_config
    np.testing.assert_array_equal(back.sums, r.sums)
    np.testing.assert_allclose(back.subtracted, r.subtracted, equal_nan=True)
    assert back.settings["window"] == 15
    np.testing.assert_allclose(back.times_ms[[0, 7, 14]], [-56.0, 0.0, 56.0])
    doubled = r.merge(back)
    np.testing.assert_array_equal(doubled.counts, 2 * r.counts)
    np.testing.assert_allclose(doubled.averages, r.averages, equal_nan=True)


# --------------------------------------------------------------------------- figures and audio


def _pattern_result(tiny_model, n=3, window=15):
    rng = np.random.default_rng(5)
    averager = PatternAverager(by="phoneme", window=window)
    for _ in range(3):
        averager.add(rng.standard_normal((64, 120)).astype(np.float32), rng.integers(0, n, 120), model=tiny_model)
    return averager.result()


def test_figures_share_one_colour_scale_per_panel_set(tmp_path, tiny_model):
    from asr_introspect.plotting.common import save_figure
    from asr_introspect.plotting.patterns import before_after, centroid_chart, pattern_grid

    r = _pattern_result(tiny_model)
    fig = before_after(r)
    top, bottom = fig.subfigs
    top_images = [ax.images[0] for ax in top.axes if ax.images]
    bottom_images = [ax.images[0] for ax in bottom.axes if ax.images]
    assert len(top_images) == 4 and len(bottom_images) == 3  # mean + 3 labels; 3 labels
    assert len({im.get_clim() for im in top_images}) == 1
    assert len({im.get_clim() for im in bottom_images}) == 1
    lo, hi = bottom_images[0].get_clim()
    assert lo == -hi  # diverging, centred on 0
    extent = top_images[0].get_extent()
    assert extent[0] == pytest.approx(-7.5 * 8.0) and extent[1] == pytest.approx(7.5 * 8.0)  # ms
    assert top.axes[0].get_ylabel() == "frequency (Hz)"
    grid = pattern_grid(r, "zscore", labels=["aa", "ae"])
    assert len([ax for ax in grid.axes if ax.images]) == 2
    written = save_figure(fig, tmp_path / "ba.png", svg=False)
    written += save_figure(centroid_chart(r), tmp_path / "c.png", svg=False)
    assert all(p.stat().st_size > 1000 for p in written)


def test_save_figure_writes_png_and_svg_and_restores_the_layout_engine(tmp_path, tiny_model):
    from asr_introspect.plotting.common import save_figure
    from asr_introspect.plotting.patterns import before_after

    fig = before_after(_pattern_result(tiny_model))
    engine = fig.get_layout_engine()
    written = save_figure(fig, tmp_path / "ba.png")
    assert [p.name for p in written] == ["ba.png", "ba.svg"]
    assert all(p.stat().st_size > 1000 for p in written)
    svg = written[1].read_text()
    assert svg.count("<image") >= sum(len(ax.images) for ax in fig.get_axes()) == 7  # every panel drawn
    assert fig.get_layout_engine() is engine  # the SVG reused the PNG's layout, then the engine came back
    assert not list(tmp_path.glob("*.tmp*"))


def test_sonification_writes_audible_wavs(tmp_path, tiny_model):
    import soundfile as sf

    r = _pattern_result(tiny_model, n=2)
    audio = sonify_pattern(r.subtracted[0], tiny_model.feature_config, n_iter=4)
    assert audio.shape == ((r.window - 1) * 128,) and np.isfinite(audio).all() and np.abs(audio).max() > 0.1
    paths = save_sonifications(r, tmp_path, labels=["ae"], n_iter=4)
    data, rate = sf.read(paths[0])
    assert paths[0].name == "phoneme_subtract_ae.wav" and rate == 16000 and len(data) == len(audio)


# --------------------------------------------------------------------------- command line


def test_cli_writes_npz_json_and_figures(tmp_path, tiny_model, tiny_corpus, capsys):
    from asr_introspect.cli import main
    from asr_introspect.models import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    out = tmp_path / "out"
    code = main(
        [
            "patterns",
            "--by",
            "phoneme",
            "--model",
            str(ckpt),
            "--data",
            str(tiny_corpus.root),
            "--out",
            str(out),
            "--frames",
            "centers",
            "--window",
            "31",
            "--no-audio",
            "--quiet",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["window"] == 31 and summary["utterances"] == 2 and summary["skipped"] == 5
    data = np.load(out / "patterns_phoneme.npz")
    for key in ("averages", "counts", "mean", "subtracted", "names"):
        assert key in data.files
    assert data["averages"].shape == (39, 64, 31) and int(data["counts"].sum()) == summary["windows"] == 18
    report = json.loads((out / "patterns_phoneme.json").read_text())
    assert report["counts"]["z"] == 2 and set(report["spectral_centroid_hz"]) >= {"positive", "energy"}
    assert len(summary["figures"]) == 3 and all(Path(name).is_file() for name in summary["figures"])
    code = main(
        [
            "patterns",
            "--by",
            "phoneme",
            "--model",
            str(ckpt),
            "--data",
            str(tiny_corpus.root),
            "--out",
            str(out),
            "--shift-correction",
            "3",
            "--quiet",
        ]
    )
    assert code == 2 and "letter" in capsys.readouterr().err


# --------------------------------------------------------------------------- the shipped model


@requires_shipped
def test_shipped_phoneme_patterns_put_fricatives_above_vowels():
    """Validation: s, sh, z, f have a higher spectral centroid than every vowel."""
    from asr_introspect.loading import load_model_and_corpus

    model, utterances, _, _ = load_model_and_corpus()
    with_phones = [u for u in utterances if u.phones][:300]
    result = PatternAverager(by="phoneme", frames="centers").fit(model, with_phones).result()
    centroids = result.spectral_centroids("positive")
    check = vowel_fricative_centroids(centroids)
    assert all(np.isfinite(c) for c in check["fricatives"].values()), check
    assert check["fricative_min"] > check["vowel_max"], check
