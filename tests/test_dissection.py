"""Audio network dissection: planted /s/ detector, kernels against references, the heap against a full sort,
streaming contract, concept ablation, descriptions, workflow files, command-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from shipped import requires_shipped

from asr_introspect.corpus import PhoneSegment, Utterance
from asr_introspect.dissection import (
    ActivationQuantiles,
    ConceptVocabulary,
    Dissection,
    DissectionEstimator,
    TopK,
    ablation_effects,
    concept_ablation,
    describe_neuron,
    summarize_clips,
    top_quantile_thresholds,
    voice_family,
)
from asr_introspect.dissection.ablation import recognized_tokens, zero_channels
from asr_introspect.dissection.kernels import (
    N_BINS,
    ZERO_BIN,
    bin_lower_edges,
    concept_counts_into,
    cooccurrence_into,
    float_bins,
    histogram_into,
)
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, mel_frequencies
from asr_introspect.models import build_model, wrap_conv_model
from asr_introspect.stream import stream_corpus
from asr_introspect.text import PHONE_TO_INDEX, Alphabet

SR = 16000
#: families that need neither CMUdict (position) nor pyin (f0): the quick vocabulary of most tests
QUICK = ["letters", "phones", "features", "silence", "voice", "energy", "centroid"]

# ---------------------------------------------------------------------------
# a planted model: channel 0 of conv1 fires on high-passed noise, the /s/ of a synthetic corpus


def _sound(phone: str, seconds: float, rng) -> np.ndarray:
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    if phone == "sil":
        return np.zeros(n)
    if phone == "s":  # noise above 4 kHz
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum[np.fft.rfftfreq(n, 1 / SR) < 4000] = 0
        return 0.3 * np.fft.irfft(spectrum, n) / np.std(np.fft.irfft(spectrum, n))
    f0 = {"aa": 220.0, "m": 120.0, "ah": 180.0}[phone]
    return 0.3 * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))


#: (text, [(phone, seconds)]) of the planted corpus: letters s sit on /s/, other letters elsewhere
PLANTED = (
    (
        "sa mas",
        [("sil", 0.15), ("s", 0.2), ("aa", 0.25), ("sil", 0.1), ("m", 0.15), ("aa", 0.25), ("s", 0.2), ("sil", 0.15)],
    ),
    ("ma sa", [("sil", 0.1), ("m", 0.2), ("aa", 0.3), ("sil", 0.1), ("s", 0.2), ("ah", 0.3), ("sil", 0.2)]),
    ("mama", [("sil", 0.2), ("m", 0.15), ("aa", 0.2), ("m", 0.15), ("ah", 0.3), ("sil", 0.2)]),
    ("as am", [("sil", 0.1), ("aa", 0.3), ("s", 0.2), ("sil", 0.1), ("ah", 0.25), ("m", 0.2), ("sil", 0.15)]),
)


@pytest.fixture(scope="module")
def planted_corpus(tmp_path_factory):
    """Four utterances (two voices) whose /s/ segments are high-passed noise, the rest tones and silence."""
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(0)
    utts = []
    for i, (text, plan) in enumerate(PLANTED):
        audio = np.concatenate([_sound(p, d, rng) for p, d in plan]).astype(np.float32)
        path = root / f"utt{i}.wav"
        sf.write(str(path), audio, SR, subtype="PCM_16")
        bounds = np.cumsum([0.0] + [d for _, d in plan])
        phones = tuple(PhoneSegment(p, float(a), float(b)) for (p, _), a, b in zip(plan, bounds[:-1], bounds[1:]))
        speaker = f"flite_{'slt' if i % 2 else 'awb'}_d100"
        utts.append(Utterance(f"planted-{i}", speaker, path, text, phones, len(audio) / SR))
    return utts


@pytest.fixture(scope="module")
def planted_model():
    """conv1 (6 channels after ReLU): channel 0 = high mel bands minus low ones; conv2: the logit of 's'
    reads channel 0 (weight 6), the other logits read channels 1..5 only."""
    torch.manual_seed(0)
    config = FeatureConfig(n_mels=32)
    alphabet = Alphabet.default()
    module = torch.nn.Sequential(torch.nn.Conv1d(32, 6, 1), torch.nn.ReLU(), torch.nn.Conv1d(6, len(alphabet), 1))
    freqs = mel_frequencies(config)
    with torch.no_grad():
        w = torch.zeros(32)
        w[torch.as_tensor(freqs > 4500)] = 1.0 / int((freqs > 4500).sum())
        w[torch.as_tensor(freqs < 1000)] = -1.0 / int((freqs < 1000).sum())
        module[0].weight[0, :, 0] = w
        module[0].bias[0] = -0.5
        module[2].weight[:, 0, 0] = 0.0
        module[2].weight[alphabet.index("s"), 0, 0] = 6.0
    return wrap_conv_model(module, alphabet, config).eval()


def _planted_dissection(model, utts, **kwargs) -> Dissection:
    # no acoustic bins: the planted /s/ is noise above 4 kHz, so "centroid 4-8 kHz" would name it as well
    families = ["letters", "phones", "features", "silence", "voice"]
    settings = dict(families=families, quantile=0.3, shift=0, top_k=4, separation=0.05, min_iou=0.7, batch_size=2)
    settings.update(kwargs)
    return DissectionEstimator(["conv1"], **settings).fit(model, utts).result()


def test_planted_s_detector_gets_the_label_s_with_iou_near_one(planted_model, planted_corpus):
    """The issue's planted test: a channel that fires on /s/ (here: on the noise that /s/ is made of, seen
    through the log-mel front end) is labelled /s/ with IoU close to 1, and its top clips are /s/."""
    d = _planted_dissection(planted_model, planted_corpus)
    s = d.scores("conv1")
    k = d.vocabulary.index("phone:s")
    assert int(np.nanargmax(s.iou[0])) == k
    assert s.iou[0, k] > 0.85 and s.recall[0, k] > 0.95 and s.precision[0, k] > 0.85
    assert d.concepts[d.labels("conv1")[0][0]] == "phone:s"
    assert s.selectivity[0, k] > 2.0
    # every top clip of channel 0 peaks inside an /s/ segment (its concepts include phone:s)
    clips = d.top_segments("conv1", 0)
    assert len(clips) == 4 and all("phone:s" in c["concepts"] for c in clips)
    assert len({(c["utterance"], c["frame"]) for c in clips}) == 4
    assert "/s/" in d.describe("conv1", 0)
    # the planted channel is by far the best /s/ neuron (the random channels are partly correlated with it)
    assert s.iou[0, k] > np.nanmax(s.iou[1:, k]) + 0.2


def test_ablating_the_planted_concept_neuron_lowers_that_concept_only(planted_model, planted_corpus):
    """Zeroing channel 0 (the /s/ neuron) drops the log-probability of the 's' tokens (dA) and leaves the
    other tokens as they were (dR ~ 0); zeroing another channel does not single out 's'."""
    variants = {"s neuron": {"conv1": [0]}, "other neuron": {"conv1": [3]}}
    effects, baseline = ablation_effects(planted_model, planted_corpus, "letter:s", variants, batch_size=2)
    s_neuron, other = effects["s neuron"], effects["other neuron"]
    assert baseline["concept_tokens"] == 4 and baseline["utterances"] == 4  # the letters s of the transcripts
    assert s_neuron.d_a > 2.0
    assert abs(s_neuron.d_r) < 0.05 * s_neuron.d_a
    assert s_neuron.selectivity > 5 * abs(other.selectivity)
    # the same through the dissection's labels, against random neurons and the top-mean neurons
    d = _planted_dissection(planted_model, planted_corpus)
    assert d.labelled_with("conv1", "phone:s").tolist() == [0]
    result = concept_ablation(planted_model, planted_corpus, d, "phone:s", seeds=3, batch_size=2)
    rows = {row["method"]: row for row in result["rows"]}
    assert rows["concept"]["ablated"] == [0] and rows["random"]["seeds"] == 3
    assert rows["concept"]["d_a"] > 2.0 and rows["concept"]["d_a_minus_d_r"] > rows["random"]["d_a_minus_d_r"] + 1.0
    assert result["baseline"]["concept_tokens"] > 0


def test_output_channel_of_the_planted_letter_gets_its_own_letter(planted_model, planted_corpus):
    """AND's last-layer check: the planted model's 's' logit (driven by the /s/ neuron) has 'letter:s' as its
    best letter concept; the random logits mostly do not."""
    from asr_introspect.workflows.dissect import output_letter_accuracy

    estimator = DissectionEstimator(["conv2"], families=["letters"], quantile=0.3, shift=0, lag=0)
    result = estimator.fit(planted_model, planted_corpus).result()
    s = result.scores("conv2")  # the vocabulary holds the letter concepts only
    assert s.concepts[int(np.nanargmax(s.iou[planted_model.alphabet.index("s")]))] == "letter:s"
    check = output_letter_accuracy(result, planted_model.alphabet)
    assert check["channels"] == 27 and 1 / 27 <= check["top1"] < 0.5


def test_zero_channels_hook_zeroes_only_those_channels_and_goes_away(planted_model, planted_corpus):
    from asr_introspect.hooks import ActivationRecorder

    batch = next(iter(stream_corpus(planted_model, planted_corpus[:1], ["conv1"])))
    with torch.no_grad():
        with zero_channels(planted_model, {"conv1": [0, 2]}), ActivationRecorder(planted_model, ["conv1"]) as rec:
            ablated_logits, _ = rec.run(batch.features, batch.feature_lengths)
            ablated = rec.activations["conv1"]
        with ActivationRecorder(planted_model, ["conv1"]) as rec:
            logits, _ = rec.run(batch.features, batch.feature_lengths)
            plain = rec.activations["conv1"]
    assert not torch.allclose(logits, ablated_logits)
    assert ablated[:, [0, 2]].abs().sum() == 0 and plain[:, 0].abs().sum() > 0
    torch.testing.assert_close(ablated[:, [1, 3, 4, 5]], plain[:, [1, 3, 4, 5]])


# ---------------------------------------------------------------------------
# kernels and the heap against references


def test_float_bins_are_monotone_and_edges_are_exact():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000) * 10.0 ** rng.uniform(-9, 9, 20000)
    special = [0.0, -0.0, 1.0, -1.0, 2.0**-20, -(2.0**-20), 2.0**-21, 2.0**20, -(2.0**21), np.inf, -np.inf]
    x = np.concatenate([x, special]).astype(np.float32)
    bins = float_bins(x)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(bins[order]) >= 0)
    assert bins.min() >= 0 and bins.max() < N_BINS and float_bins([0.0])[0] == ZERO_BIN
    assert float_bins([np.nan])[0] == ZERO_BIN
    edges = bin_lower_edges()
    for i in [0, 1, ZERO_BIN - 1, ZERO_BIN, ZERO_BIN + 1, N_BINS - 1, *rng.integers(0, N_BINS, 50)]:
        np.testing.assert_array_equal(x >= edges[i], bins >= i)
    # a bin is at most 1/32 of its lower edge wide
    positive = edges[ZERO_BIN + 1 :].astype(np.float64)
    assert np.max(np.diff(positive) / positive[:-1]) <= 1 / 32 + 1e-12


def test_thresholds_keep_ties_whole_and_silence_dead_neurons():
    """An indicator with 6 % ones at q = 0.05 is active exactly on its ones (6 % is nearer 5 % than 0 %);
    with 3 % ones likewise; a constant neuron activates nothing; a continuous one ~q of its frames."""
    rng = np.random.default_rng(1)
    n = 10000
    six, three = (rng.random(n) < 0.06).astype(np.float32), (rng.random(n) < 0.03).astype(np.float32)
    values = np.stack([six, three, np.zeros(n, np.float32), rng.standard_normal(n).astype(np.float32)])
    hist = np.zeros((4, N_BINS), dtype=np.int64)
    histogram_into(values[None], np.array([n]), hist)
    thresholds, fractions = top_quantile_thresholds(hist, 0.05)
    for i in (0, 1):
        np.testing.assert_array_equal(values[i] >= thresholds[i], values[i] == 1)
    assert thresholds[0] == 1.0 and not (values[2] >= thresholds[2]).any()
    assert abs(fractions[3] - 0.05) < 0.003
    assert fractions[3] == (values[3] >= thresholds[3]).mean()


def test_concept_counts_equal_a_reference(planted_model):
    rng = np.random.default_rng(2)
    T, N, G, K = 700, 37, 3, 20
    frames = rng.standard_normal((T, N)).astype(np.float32)
    codes = rng.integers(-1, K, (T, G)).astype(np.int32)
    rows = np.sort(rng.choice(T, 500, replace=False))
    thresholds = rng.normal(0.5, 0.3, N).astype(np.float32)
    active, sums = np.zeros((K, N), np.int64), np.zeros((K, N))
    n_active, total, total_sq = np.zeros(N, np.int64), np.zeros(N), np.zeros(N)
    concept_counts_into(frames, rows, codes, thresholds, active, sums, n_active, total, total_sq)
    ref_active, ref_sums = np.zeros((K, N)), np.zeros((K, N))
    f, c = frames[rows].astype(np.float64), codes[rows]
    for g in range(G):
        ok = c[:, g] >= 0
        np.add.at(ref_active, c[ok, g], (f[ok] >= thresholds).astype(float))
        np.add.at(ref_sums, c[ok, g], f[ok])
    np.testing.assert_array_equal(active, ref_active)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(n_active, (f >= thresholds).sum(0))
    np.testing.assert_allclose(total_sq, (f**2).sum(0), rtol=1e-5)
    per_label, cooc = np.zeros(K, np.int64), np.zeros((K, K), np.int64)
    lengths = np.array([T])
    cooccurrence_into(codes[None], lengths, per_label, cooc)
    np.testing.assert_array_equal(per_label, np.bincount(codes[codes >= 0], minlength=K))
    a, b = codes[:, 0], codes[:, 1]
    both = (a >= 0) & (b >= 0)
    np.testing.assert_array_equal(cooc[a[both], b[both]] >= 1, True)
    assert cooc[3, 5] == sum(1 for row in codes for x in row if x == 3 for y in row if y == 5)


def _reference_peaks(x: np.ndarray, radius: int) -> np.ndarray:
    """Peak mask of one row (module rule of :mod:`dissection.topk`), the slow way."""
    out = np.zeros(len(x), dtype=bool)
    for t in range(len(x)):
        window = x[max(0, t - radius) : t + radius + 1]
        out[t] = radius == 0 or (x[t] >= window.max() and (t == 0 or x[t] > x[t - 1]))
    return out


@pytest.mark.parametrize("radius", [0, 3])
def test_topk_heap_equals_a_full_sort(radius):
    """The issue's heap test: fed batch by batch (with padding), the bounded heap holds exactly the K largest
    peaks of every neuron, in the order of a stable full sort over all frames."""
    rng = np.random.default_rng(radius)
    N, K = 9, 6
    heap = TopK(N, K, n_codes=2)
    entries = [[] for _ in range(N)]  # (value, utterance, frame, codes) in stream order
    first = 0
    for _ in range(4):
        B, T = 3, 40
        lengths = rng.integers(5, T + 1, B)
        acts = rng.standard_normal((B, N, T)).astype(np.float32)
        acts[0, 2, :] = 0.5  # a plateau: one peak with radius > 0
        codes = rng.integers(0, 50, (B, T, 2)).astype(np.int32)
        for b in range(B):
            acts[b, :, lengths[b] :] = 9.0  # padding must never enter
            for n in range(N):
                row = acts[b, n, : lengths[b]]
                for t in np.flatnonzero(_reference_peaks(row, radius)):
                    entries[n].append((float(row[t]), first + b, t, tuple(codes[b, t])))
        heap.update(acts, lengths, radius, first, codes, row_max=acts.max(axis=2))
        first += B
    for n in range(N):
        expected = sorted(entries[n], key=lambda e: -e[0])[:K]  # stable: stream order among ties
        assert heap.values[n].tolist() == pytest.approx([e[0] for e in expected])
        assert heap.utterances[n].tolist() == [e[1] for e in expected]
        assert heap.frames[n].tolist() == [e[2] for e in expected]
        assert [tuple(c) for c in heap.codes[n]] == [e[3] for e in expected]
    if radius:
        assert sum(1 for e in entries[2] if e[0] == 0.5) == 4  # each batch's plateau counted once


def test_heap_merge_and_push_keep_the_k_largest():
    a, b = TopK(2, 3), TopK(2, 3)
    a.push(np.array([[5.0, 1.0], [2.0, 2.0]]), np.array([[0, 1], [0, 1]]), np.array([[7, 8], [1, 2]]))
    b.push(np.array([[3.0, 9.0], [2.0, -1.0]]), np.array([[0, 0], [0, 0]]), np.array([[4, 5], [3, 4]]))
    a.merge(b, utterance_offset=10)
    assert a.values.tolist() == [[9.0, 5.0, 3.0], [2.0, 2.0, 2.0]]
    assert a.utterances.tolist() == [[10, 0, 10], [0, 1, 10]]  # ties: the entries held first stay first
    assert a.count().tolist() == [3, 3]


# ---------------------------------------------------------------------------
# the vocabulary


def test_vocabulary_concepts_derive_from_phones_and_joint_labels():
    v = ConceptVocabulary(
        families=["phones", "features", "silence", "position", "voice", "f0", "energy"], voices=["a", "b"]
    )
    assert {
        "phone:s",
        "manner:fricative",
        "place:alveolar",
        "voicing:voiceless",
        "height:high",
        "backness:back",
    } <= set(v.names)
    assert "phone:sil" not in v.names and "silence" in v.names
    assert v.groups == [("phone",), ("position", "voice"), ("f0", "energy")]
    phone = v.facets.index("phone")
    s_rows = set(np.flatnonzero(v.derivation[v.index("phone:s")]))
    assert s_rows <= set(np.flatnonzero(v.derivation[v.index("manner:fricative")]))
    assert s_rows <= set(np.flatnonzero(v.derivation[v.index("voicing:voiceless")]))
    assert not s_rows & set(np.flatnonzero(v.derivation[v.index("voicing:voiced")]))
    assert {v.components[r, phone] for r in s_rows} == {v.facet_values["phone"].index("phone:s")}
    # joint labels: every (f0, energy) value pair is one base label; a concept of one facet unites a row
    f0_bin = np.flatnonzero(v.derivation[v.index("f0:100-140Hz")])
    energy_bin = np.flatnonzero(v.derivation[v.index("energy:above-12dB")])
    assert len(set(f0_bin) & set(energy_bin)) == 1
    assert len(f0_bin) == len(v.facet_values["energy"]) + 1  # with the energy unknown too
    universe = v.facet_universe()
    assert universe[v.facets.index("f0")].sum() == len(v.facet_values["f0"]) * (len(v.facet_values["energy"]) + 1)
    # word-final and word-initial share one-phone words
    initial, final = (set(np.flatnonzero(v.derivation[v.index(f"position:word-{x}")])) for x in ("initial", "final"))
    assert initial & final
    codes = np.array([v.derivation[v.index("phone:s")].argmax(), -1, -1])
    assert set(v.concepts_of_codes(codes)) == {"phone:s", "manner:fricative", "place:alveolar", "voicing:voiceless"}
    with pytest.raises(InputError, match="phone:zz.*e.g. phone:aa"):
        v.index("phone:zz")
    with pytest.raises(InputError, match="unknown concept family colour"):
        ConceptVocabulary(families=["colour"])
    with pytest.raises(InputError, match="voices"):
        ConceptVocabulary(families=["voice"])
    assert ConceptVocabulary.from_dict(v.to_dict()).names == v.names
    assert voice_family("flite_awb_d085_p150") == "flite_awb" and voice_family("84") == "84"


def test_frame_codes_label_phones_voices_and_energy(planted_model, planted_corpus):
    v = ConceptVocabulary.for_corpus(planted_corpus, families=["phones", "voice", "energy"])
    batch = next(iter(stream_corpus(planted_model, planted_corpus, ["conv1"], batch_size=4, bucket=False)))
    codes = v.frame_codes(batch, "conv1")
    assert v.groups == [("phone",), ("voice",), ("energy",)]
    assert codes.shape == (4, batch.width("conv1"), 3) and codes.dtype == np.int32
    assert (codes[~batch.mask("conv1")] == -1).all()
    phones = batch.phone_labels("conv1")
    s_rows = v.derivation[v.index("phone:s")]
    valid = batch.mask("conv1")
    np.testing.assert_array_equal(s_rows[np.maximum(codes[..., 0], 0)] & valid, phones == PHONE_TO_INDEX["s"])
    voice = v.facets.index("voice")
    for b, utt in enumerate(batch.utterances):
        rows = codes[b, : batch.layer_lengths("conv1")[b], 1]  # the voice group
        assert {v.facet_values["voice"][v.components[r, voice]] for r in rows} == {f"voice:{voice_family(utt.speaker)}"}
    loud = v.derivation[v.index("energy:above-12dB")][np.maximum(codes[..., 2], 0)] & valid
    silent = phones == PHONE_TO_INDEX["sil"]
    vowel = phones == PHONE_TO_INDEX["aa"]
    # vowels are loud, silence is not (but for frames whose 32 ms window reaches into the next sound)
    assert loud[vowel].mean() > 0.8 and loud[silent & valid].mean() < 0.15
    assert v.frame_codes(batch, "conv1") is codes  # cached on the batch


# ---------------------------------------------------------------------------
# the streaming contract


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


@pytest.fixture(scope="module")
def tiny_utts(tiny_corpus):
    from asr_introspect.corpus import load_corpus

    return load_corpus(tiny_corpus.root)


def _clear_entries(estimator, layer: str, neuron: int, floor: float) -> set:
    top = estimator.top_[layer]
    return {
        (estimator.utterance_ids_[u], int(f))
        for u, f, v in zip(top.utterances[neuron], top.frames[neuron], top.values[neuron])
        if v > floor
    }


def test_partial_fit_over_batches_and_merge_equal_fit(tiny, tiny_utts):
    """partial_fit over another batching, and two halves merged, give fit's counts and heaps."""
    layers = ["conv2", "conv9"]
    fitted = DissectionEstimator(layers, families=QUICK, top_k=3, batch_size=3, shift=0).fit(tiny, tiny_utts)
    assert set(fitted.lags_) == set(layers) and fitted.lag_curves_["conv9"]["candidates"][0] < 0
    settings = dict(
        vocabulary=fitted.vocabulary_,
        thresholds=fitted.thresholds_,
        lag=fitted.lags_,
        top_k=3,
        shift=0,
        separation=fitted.separation,
    )
    one, first, second = (DissectionEstimator(layers, **settings) for _ in range(3))
    for i, batch in enumerate(stream_corpus(tiny, tiny_utts, layers, batch_size=2, bucket=False)):
        one.partial_fit(batch)
        (first if i % 2 else second).partial_fit(batch)
    merged = second.merge(first)
    for got in (one, merged):
        assert sorted(got.utterance_ids_) == sorted(fitted.utterance_ids_)
        for layer in layers:
            for name in ("active", "frames", "cooccurrence", "n_frames", "n_active"):
                np.testing.assert_array_equal(getattr(got.counts_[layer], name), getattr(fitted.counts_[layer], name))
            np.testing.assert_allclose(got.counts_[layer].sums, fitted.counts_[layer].sums, rtol=1e-5, atol=1e-5)
            # another batching changes the convolutions' summation order: activations agree to ~1e-6
            np.testing.assert_allclose(got.top_[layer].values, fitted.top_[layer].values, rtol=1e-5, atol=1e-5)
            # the entries clearly above the K-th value are the same (near-ties at the K-th may swap)
            for n, floor in enumerate(fitted.top_[layer].values[:, -1] + 1e-4):
                assert _clear_entries(got, layer, n, floor) == _clear_entries(fitted, layer, n, floor)
    result = fitted.result()
    assert result.scores("conv9").iou.shape == (32, len(result.concepts))  # the tiny preset is 32 wide
    assert abs(result.scores("conv9").active_fraction.mean() - 0.05) < 0.03


def test_result_saves_and_loads(tiny, tiny_utts, tmp_path):
    d = DissectionEstimator(["conv3"], families=["letters", "voice"], top_k=2, shift=0).fit(tiny, tiny_utts).result()
    loaded = Dissection.load(d.save(tmp_path / "d.npz"))
    np.testing.assert_array_equal(loaded.scores("conv3").iou, d.scores("conv3").iou)
    assert loaded.top_segments("conv3", 1) == d.top_segments("conv3", 1)
    assert loaded.unit("conv3", 0) == d.unit("conv3", 0)
    with pytest.raises(InputError, match="not a dissection"):
        np.savez(tmp_path / "x.npz", a=np.zeros(1))
        Dissection.load(tmp_path / "x.npz")


def test_estimator_input_errors(tiny, tiny_utts):
    with pytest.raises(InputError, match="--top-k"):
        DissectionEstimator(top_k=0)
    with pytest.raises(InputError, match="--quantile"):
        DissectionEstimator(quantile=0.9)
    with pytest.raises(InputError, match="unknown concept family"):
        DissectionEstimator(families=["shapes"])
    with pytest.raises(InputError, match="conv99"):
        DissectionEstimator(["conv99"]).fit(tiny, tiny_utts[:1])
    batch = next(iter(stream_corpus(tiny, tiny_utts[:1], ["conv2"])))
    with pytest.raises(InputError, match="vocabulary"):
        DissectionEstimator(["conv2"]).partial_fit(batch)
    v = ConceptVocabulary.for_corpus(tiny_utts, tiny.alphabet, QUICK)
    with pytest.raises(InputError, match="calibrate"):
        DissectionEstimator(["conv2"], vocabulary=v).partial_fit(batch)
    with pytest.raises(InputError, match="no batch"):
        ActivationQuantiles(["conv2"]).result()


# ---------------------------------------------------------------------------
# descriptions, the language-model hook, recognition


def test_descriptions_from_templates():
    names = ["phone:s", "phone:sh", "manner:fricative", "voicing:voiceless", "energy:above-12dB", "energy:below-40dB"]
    names += ["voice:a", "voice:b", "silence"]
    families = ["phones", "phones", "features", "features", "energy", "energy", "voice", "voice", "silence"]
    iou = np.array([0.4, 0.2, 0.3, 0.15, 0.05, 0.0, 0.1, 0.1, 0.0])
    precision = np.array([0.6, 0.3, 0.9, 0.95, 0.7, 0.0, 0.5, 0.5, 0.0])
    base = np.array([0.05, 0.02, 0.2, 0.3, 0.3, 0.2, 0.5, 0.5, 0.2])
    text = describe_neuron(names, families, iou, precision, [0, 2, 1, 3], ["a", "b", "c"], base_rate=base)
    assert text == "voiceless fricatives /s/ /sh/, mostly at high energy (above -12 dB), across voices"
    quiet = describe_neuron(names, families, np.zeros(9), np.zeros(9), [], [])
    assert quiet.startswith("no concept of the vocabulary (closest: phone:s")
    silence = describe_neuron(names, families, iou, np.r_[precision[:-1], 0.9], [8], ["a"] * 4, base_rate=base)
    assert silence.startswith("silence") and "top clips all from voice a" in silence


def test_language_model_hook_gets_the_clip_concepts():
    prompts = []
    summary = summarize_clips(
        [["phone:s", "manner:fricative"], ["phone:z"]], lambda p: prompts.append(p) or " hiss\nmore"
    )
    assert summary == "hiss"
    assert "clip 1: phone:s, manner:fricative" in prompts[0] and "clip 2: phone:z" in prompts[0]
    from asr_introspect.dissection import local_language_model

    with pytest.raises(InputError, match="not a local model directory"):
        local_language_model("/no/such/model")


def test_recognized_tokens_follow_a_minimum_edit_alignment():
    recognized, edits = recognized_tokens([1, 2, 3, 4], [1, 3, 4, 5])
    assert recognized.tolist() == [True, False, True, True] and edits == 2
    recognized, edits = recognized_tokens([7, 7], [])
    assert recognized.tolist() == [False, False] and edits == 2


# ---------------------------------------------------------------------------
# workflow and command line


@pytest.mark.slow
def test_workflow_writes_json_npz_clips_figures_and_ablation(planted_model, planted_corpus, tmp_path):
    from asr_introspect.workflows.dissect import dissect

    run = dissect(
        planted_model,
        planted_corpus,
        tmp_path / "out",
        layers=["conv1"],
        top_k=4,
        quantile=0.3,
        min_iou=0.3,
        ablate=["phone:s"],
        seeds=2,
        clips=2,
        shift_correction="none",
        separation=0.05,
        batch_size=2,
        describe_with=lambda prompt: "hissing noise",
    )
    out = tmp_path / "out"
    report = json.loads((out / "dissection.json").read_text())
    units = report["layers"]["conv1"]["units"]
    assert len(units) == 6 and "phone:s" in units[0]["labels"][:2] and units[0]["summary"] == "hissing noise"
    wavs = [out / p for p in units[0]["wav"]]
    assert len(wavs) == 4 and all(p.is_file() for p in wavs)
    audio, rate = sf.read(wavs[0])
    assert rate == SR and abs(len(audio) - 0.8 * SR) <= 2
    assert {"position", "f0"} <= set(report["vocabulary"]["families"])  # all families by default
    crops = np.load(out / "clips" / "conv1" / "n0_crops.npz")["crops"]
    assert crops.shape == (4, 32, 100)
    for name in ("polysemanticity.png", "label_families.png", "ablation_phone_s.png", "clips/conv1_n0.png"):
        assert (out / "figures" / name).is_file()
    ablation = json.loads((out / "ablation.json").read_text())
    assert ablation["table"]["columns"][:4] == ["concept", "layer", "ablated", "neurons"]
    assert run.summary["per_layer"]["conv1"]["phone_or_feature_labelled"] >= 1
    assert run.summary["ablation"][0]["conv1/concept"]["d_a_minus_d_r"] > 1.0
    assert Dissection.load(out / "dissection.npz").labels("conv1")[0][0] == run.dissection.labels("conv1")[0][0]


@pytest.mark.slow
def test_report_section_has_audio_players_tables_and_figures(planted_model, planted_corpus, tmp_path):
    from asr_introspect.report import validate_summary
    from asr_introspect.workflows.figures import network_dissection

    settings = network_dissection.Settings(
        concepts=("phones", "features", "silence", "voice"),
        top_k=3,
        quantile=0.3,
        min_iou=0.7,
        ablate=("phone:s",),
        seeds=2,
        clips=1,
        audio_neurons=1,
        audio_per_neuron=2,
    )
    section = network_dissection.run(planted_model, planted_corpus, tmp_path / "f", settings)
    assert len(section.audio) == 2 and all(Path(a["path"]).suffix == ".wav" for a in section.audio)
    assert "conv1 #0" in section.audio[0]["caption"]
    assert [t["columns"][0] for t in section.tables] == ["layer", "concept"]
    assert section.tables[1]["rows"][0][:4] == ["phone:s", "conv1", "concept", 1]
    names = {Path(f["path"]).name for f in section.figures}
    assert {"polysemanticity.png", "label_families.png", "ablation_phone_s.png", "conv1_n0.png"} <= names
    summary = {"title": "t", "sections": [section.relative_to(tmp_path).to_dict()]}
    assert validate_summary(summary, tmp_path)["sections"][0]["id"] == "dissection"


def _cli(argv: list[str]) -> int:
    """Exit code of ``asr-introspect dissect ...`` through the real parser class and ``run_command``."""
    from asr_introspect.cli import dissect as cli_dissect
    from asr_introspect.cli._common import OneLineArgumentParser, run_command

    parser = OneLineArgumentParser(prog="asr-introspect")
    cli_dissect.register(parser.add_subparsers(dest="command", parser_class=OneLineArgumentParser))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a flag argparse rejects
        return int(exc.code)
    return run_command(args, argv=argv)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--top-k", "0"], "--top-k: expected an integer >= 1, got 0"),
        (["--layers", "conv99"], "--layers: unknown layer conv99"),
        (["--concepts", "phones,colour"], "unknown concept family colour"),
        (["--ablate", "phone:xx"], "unknown concept 'phone:xx'"),
        (["--quantile", "0.7"], "--quantile: expected a finite number in (0, 0.5]"),
    ],
)
def test_command_line_bad_input_exits_2_with_one_line(flags, message, tiny_corpus, tmp_path, capsys):
    argv = ["dissect", "--data", str(tiny_corpus.root), "--out", str(tmp_path / "o"), "--quiet", *flags]
    assert _cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------
# the shipped model


@requires_shipped
@pytest.mark.slow
def test_shipped_model_deep_neurons_get_phonetic_labels_that_random_weights_do_not():
    """On 32 shipped utterances, conv9 of the trained model has many neurons labelled with phones or phonetic
    features; the same architecture with random weights has far fewer (a randomization baseline)."""
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.models import ASRModel
    from asr_introspect.models.wav2letter import Wav2Letter, Wav2LetterConfig

    model, utts, _, _ = load_model_and_corpus()
    utts = utts[::5]
    settings = dict(families=["letters", "phones", "features", "silence"], shift="auto", calibration=None)
    trained = DissectionEstimator(["conv9"], **settings).fit(model, utts).result()
    torch.manual_seed(0)
    config = Wav2LetterConfig.from_dict(model.model_config["config"])
    random = ASRModel.from_wav2letter(Wav2Letter(config).eval(), model.alphabet, model.feature_config)
    untrained = DissectionEstimator(["conv9"], **settings).fit(random, utts).result()

    def phonetic(d: Dissection) -> int:
        families = d.vocabulary.concept_families
        return sum(any(families[k] in ("phones", "features") for k in m) for m in d.labels("conv9"))

    assert trained.settings["shift_output_frames"] < 0  # letters are emitted after their sound
    assert phonetic(trained) > 100 and phonetic(trained) > 3 * phonetic(untrained)


def test_dissect_subcommand_is_registered(tiny_corpus, tmp_path, capsys):
    from asr_introspect.cli import COMMANDS, main
    from asr_introspect.cli import dissect as cli_dissect

    assert COMMANDS["dissect"] is cli_dissect
    out = tmp_path / "d"
    argv = ["dissect", "--data", str(tiny_corpus.root), "--layers", "conv9", "--concepts", "letters,voice"]
    assert main([*argv, "--clips", "1", "--out", str(out), "--json"]) == 0
    assert "conv9" in json.loads(capsys.readouterr().out)["per_layer"]
    try:
        code = main([*argv, "--top-k", "0", "--out", str(tmp_path / "bad")])
    except SystemExit as exc:  # a flag's type fails in argparse
        code = exc.code
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
