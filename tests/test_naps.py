"""NAPs: planted structure, streaming vs one-shot, padding, normalization, weighting, models, CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from planted import tiny_model_with_batchnorm
from shipped import requires_shipped
from sklearn.metrics import adjusted_rand_score

from asr_introspect.aggregate import GroupStats
from asr_introspect.naps import (
    LINKAGES,
    METRICS,
    NAPEstimator,
    NAPs,
    cluster_naps,
    compute_naps,
    cut_tree,
    kmeans_groups,
    layer_quality,
    letter_groups,
    linkage_matrix,
    naps_quality,
    normalize_profiles,
    pairwise_distances,
    phoneme_groups,
)

# ---------------------------------------------------------------------------
# helpers


def _naps_from_frames(values, labels, groups, layer="L", chunks=1, seed=0):
    """NAPs straight from frames (T, N) and labels (T,) (-1: rest), fed in ``chunks`` random pieces."""
    G = len(groups)
    stats = GroupStats(G + 1, values.shape[1])
    labels = np.where(labels < 0, G, labels)
    cuts = (
        np.sort(np.random.default_rng(seed).choice(np.arange(1, len(labels)), chunks - 1, replace=False))
        if chunks > 1
        else []
    )
    for part_v, part_l in zip(np.split(values, cuts), np.split(labels, cuts)):
        stats.update(part_v, part_l)
    return NAPs([layer], groups, {layer: stats}, {"by": "custom"})


def _planted(n_groups=12, n_clusters=3, block=20, frames=150, loud=5, seed=0):
    """Frames where neuron block k fires (+3) for the groups of planted cluster k.

    Neuron scales are log-uniform over 4 decades; ``loud`` extra neurons with a
    scale of 1000 carry random (unplanted) group means. Returns values, labels, planted.
    """
    rng = np.random.default_rng(seed)
    planted = np.arange(n_groups) % n_clusters
    n = n_clusters * block
    pattern = np.zeros((n_groups, n + loud))
    for g in range(n_groups):
        pattern[g, planted[g] * block : (planted[g] + 1) * block] = 3.0
    pattern[:, n:] = rng.normal(0, 3.0, (n_groups, loud))
    labels = np.repeat(np.arange(n_groups), frames)
    labels = np.concatenate([labels, np.full(200, -1)])  # some frames in no group
    rng.shuffle(labels)
    values = pattern[np.clip(labels, 0, None)] + rng.standard_normal((len(labels), n + loud))
    scale = np.concatenate([10 ** rng.uniform(-2, 2, n), np.full(loud, 1000.0)])
    return (values * scale).astype(np.float32), labels, planted


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_with_batchnorm()


@pytest.fixture(scope="module")
def utts(tiny_corpus):
    from asr_introspect.corpus import load_corpus

    return load_corpus(tiny_corpus.root)


CUSTOM_LAYERS, CUSTOM_GROUPS = ["conv1", "conv5", "conv8", "conv11"], list("wxyz")
LETTER_LAYERS = ["conv3", "conv9", "conv10", "conv11"]


@pytest.fixture(scope="module")
def custom_naps(tiny, utts):
    """NAPs of the tiny model with :func:`_custom_labeler`, one padded batch of 7."""
    return compute_naps(tiny, utts, _custom_labeler, CUSTOM_LAYERS, groups=CUSTOM_GROUPS, batch_size=7)


@pytest.fixture(scope="module")
def letter_naps(tiny, utts):
    return compute_naps(tiny, utts, "letter", LETTER_LAYERS, batch_size=3)


@pytest.fixture(scope="module")
def phone_naps(tiny, utts):
    return compute_naps(tiny, utts, "phoneme", ["conv9", "conv10", "conv11"], batch_size=3)


def _features_alone(model, utt):
    from asr_introspect.audio import load_audio
    from asr_introspect.features import compute_features

    audio = load_audio(utt.audio_path, sample_rate=model.feature_config.sample_rate)
    return compute_features(audio, model.feature_config)[None]


def _run_alone(model, utt, layers, grad=False):
    """One utterance, no padding, no batch: (activations {layer: (C, T)}, logits (C, T_out), T_in).

    With ``grad`` the activations keep their batch axis (1, C, T) so they can be differentiated.
    """
    from asr_introspect.hooks import ActivationRecorder

    features = _features_alone(model, utt)
    with torch.set_grad_enabled(grad), ActivationRecorder(model, layers, detach=not grad) as rec:
        logits, _ = rec.run(features)
        acts = {k: rec.activations[k] if grad else rec.activations[k][0] for k in layers}
    return acts, logits[0], features.shape[-1]


def _reference_means(frames_by_layer, n_groups):
    """{layer: (means (G, N), counts (G,))} from lists of (values (T, N), labels (T,), weights)."""
    out = {}
    for layer, parts in frames_by_layer.items():
        v = np.concatenate([p[0] for p in parts]).astype(np.float64)
        lab = np.concatenate([p[1] for p in parts])
        w = np.concatenate([p[2] for p in parts]).astype(np.float64)
        means = np.full((n_groups, v.shape[1]), np.nan)
        counts = np.zeros(n_groups, dtype=np.int64)
        for g in range(n_groups):
            sel = lab == g
            counts[g] = sel.sum()
            if counts[g] and w[sel].sum() > 0:
                means[g] = (w[sel, None] * v[sel]).sum(0) / w[sel].sum()
        out[layer] = (means, counts, v, w)
    return out


def _custom_labeler(utt, layer, n):
    """Deterministic labels with -1 frames: runs of 7 frames cycling through -1, 0, 1, 2, 3."""
    return (np.arange(n) // 7 + len(utt.text)) % 5 - 1


# ---------------------------------------------------------------------------
# planted structure


def test_clustering_recovers_planted_groups_exactly():
    values, labels, planted = _planted()
    naps = _naps_from_frames(values, labels, [f"g{i}" for i in range(12)], chunks=7)
    combos = [(m, d) for m, d in itertools.product(LINKAGES, METRICS) if m != "ward" or d == "euclidean"]
    for method, metric in combos:
        cl = cluster_naps(naps, "L", method=method, metric=metric, n_clusters=3, neurons=False)
        assert adjusted_rand_score(planted, cl.labels) == 1.0, (method, metric)
    assert adjusted_rand_score(planted, cl.kmeans_labels) == 1.0
    # the z-score matters: raw profiles are dominated by the 5 loud, unplanted neurons
    raw = cluster_naps(naps, "L", normalize="none", n_clusters=3, neurons=False)
    assert adjusted_rand_score(planted, raw.labels) < 0.5
    # dendrogram order keeps planted clusters contiguous; clusters are listed by name
    order = planted[cl.leaves]
    assert (np.diff(order) != 0).sum() == 2
    assert sorted(map(sorted, cl.clusters())) == sorted(
        sorted(f"g{i}" for i in range(12) if planted[i] == k) for k in range(3)
    )


def test_quality_scores_planted_phonetic_categories():
    vowels, stops, fricatives = ["aa", "iy", "uw", "eh"], ["p", "t", "k", "b"], ["s", "f", "z", "sh"]
    groups = vowels + stops + fricatives
    values, labels, _ = _planted(n_groups=12, n_clusters=3, loud=0, seed=1)
    # _planted assigns cluster g % 3; relabel the frames so cluster k = manner k
    order = np.concatenate([np.flatnonzero(np.arange(12) % 3 == k) for k in range(3)])
    relabel = np.empty(12, dtype=np.int64)
    relabel[order] = np.arange(12)
    naps = _naps_from_frames(values, np.where(labels < 0, -1, relabel[np.clip(labels, 0, None)]), groups)
    naps.settings["by"] = "phoneme"
    q = layer_quality(naps, "L")
    assert q.ari["manner"] == 1.0 and q.ari_kmeans["manner"] == 1.0
    assert q.category_silhouette["manner"] > 0.5
    assert q.cophenetic > 0.9 and q.specificity > 1.0

    # letters: vowel letters respond with one block, consonants with another
    letters = list("aeioubcdfgkmst")
    is_vowel = np.array([c in "aeiou" for c in letters]).astype(int)
    rng = np.random.default_rng(2)
    lab = np.repeat(np.arange(len(letters)), 80)
    vals = rng.standard_normal((len(lab), 30)) + 2.5 * np.outer(is_vowel[lab], np.r_[np.ones(15), np.zeros(15)])
    vals += 2.5 * np.outer(1 - is_vowel[lab], np.r_[np.zeros(15), np.ones(15)])
    letter_naps = _naps_from_frames(vals.astype(np.float32), lab, letters)
    letter_naps.settings["by"] = "letter"
    assert layer_quality(letter_naps, "L").ari["vowel"] == 1.0

    # the control: unstructured profiles give ARIs near 0, far from 1
    noise = _naps_from_frames(rng.standard_normal((len(lab), 30)).astype(np.float32), lab, letters)
    noise.settings["by"] = "letter"
    assert layer_quality(noise, "L").ari["vowel"] < 0.5


# ---------------------------------------------------------------------------
# normalization


def test_normalization_math():
    rng = np.random.default_rng(0)
    means = rng.normal(5.0, 3.0, (6, 4)) * np.array([1.0, 100.0, 0.01, 1.0])
    means[:, 3] = 7.0  # constant neuron (a dead ReLU would be 0)
    z = normalize_profiles(means)
    np.testing.assert_allclose(z[:, :3].mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[:, :3].std(0), 1.0, rtol=1e-12)
    assert np.all(z[:, 3] == 0.0)
    np.testing.assert_allclose(normalize_profiles(means, "center"), means - means.mean(0), atol=1e-12)
    np.testing.assert_array_equal(normalize_profiles(means, "none"), means)
    mu, sd = np.array([1.0, 2.0, 3.0, 7.0]), np.array([2.0, 4.0, 0.5, 0.0])
    np.testing.assert_allclose(
        normalize_profiles(means, "standardize", mu, sd)[:, :3], (means[:, :3] - mu[:3]) / sd[:3], rtol=1e-12
    )
    assert np.all(normalize_profiles(means, "standardize", mu, sd)[:, 3] == 0.0)
    with pytest.raises(ValueError, match="NaN"):
        normalize_profiles(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="frame_mean"):
        normalize_profiles(means, "standardize")
    with pytest.raises(ValueError, match="normalize must be"):
        normalize_profiles(means, "l2")


def test_standardize_uses_statistics_over_all_frames():
    rng = np.random.default_rng(3)
    values = rng.standard_normal((500, 5)) * [1, 2, 3, 4, 5] + [0, 1, 2, 3, 4]  # float64: exact formulas
    labels = rng.integers(-1, 4, 500)  # -1 frames: in no group, but still frames of the corpus
    naps = _naps_from_frames(values, labels, list("abcd"), chunks=4)
    mean, var = naps.frame_stats("L")
    np.testing.assert_allclose(mean, values.astype(np.float64).mean(0), rtol=1e-10)
    np.testing.assert_allclose(var, values.astype(np.float64).var(0), rtol=1e-9)
    profiles, groups = naps.profiles("L", "standardize")
    group_means = np.stack([values[labels == g].astype(np.float64).mean(0) for g in range(4)])
    np.testing.assert_allclose(profiles, (group_means - mean) / np.sqrt(var), rtol=1e-9)
    assert groups == list("abcd")
    np.testing.assert_array_equal(naps.counts("L"), np.bincount(labels[labels >= 0], minlength=4))


# ---------------------------------------------------------------------------
# the real pipeline: streaming, padding, labels


def test_streaming_equals_one_shot_and_padding_never_counts(tiny, utts, custom_naps):
    layers, groups = CUSTOM_LAYERS, CUSTOM_GROUPS
    batched = custom_naps
    singles = compute_naps(tiny, utts, _custom_labeler, layers, groups=groups, batch_size=1)
    frames = {layer: [] for layer in layers}
    for utt in utts:
        acts, _, _ = _run_alone(tiny, utt, layers)
        for layer in layers:
            a = acts[layer].T.numpy()
            lab = _custom_labeler(utt, layer, a.shape[0])
            frames[layer].append((a, lab, np.ones(len(lab))))
    ref = _reference_means(frames, len(groups))
    for layer in layers:
        means, counts, v, _ = ref[layer]
        for naps in (batched, singles):
            np.testing.assert_array_equal(naps.counts(layer), counts)
            np.testing.assert_allclose(naps.means(layer), means, rtol=1e-5, atol=1e-5)
            mu, var = naps.frame_stats(layer)
            np.testing.assert_allclose(mu, v.mean(0), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(var, v.var(0), rtol=1e-4, atol=1e-5)
        # every valid frame counted once (groups + rest), no padded frame
        assert batched.stats[layer].counts.sum() == len(v)
    assert batched.settings["utterances"] == len(utts)


def test_letter_naps_batched_equal_utterances_alone(tiny, utts):
    from asr_introspect.alignment import forced_align, letter_labels, transfer_labels

    layers = ["conv2", "conv11"]
    naps = compute_naps(tiny, utts, "letter", layers, batch_size=4, letter_mode="span")
    names = naps.groups
    assert names[:26] == list("abcdefghijklmnopqrstuvwxyz") and names[26:] == ["'"]
    index = {tiny.alphabet.index(g): i for i, g in enumerate(names)}
    frames = {layer: [] for layer in layers}
    for utt in utts:
        acts, logits, n_in = _run_alone(tiny, utt, layers)
        lp = torch.log_softmax(logits, dim=0).T.contiguous()
        path = forced_align(lp, tiny.alphabet.encode(utt.text), blank=0)
        out_labels = letter_labels(path, "span")
        for layer in layers:
            raw = transfer_labels(out_labels, tiny.frame_map, "conv11", layer, n_in)
            lab = np.array([index.get(int(x), -1) for x in raw])
            frames[layer].append((acts[layer].T.numpy(), lab, np.ones(len(lab))))
    ref = _reference_means(frames, len(names))
    for layer in layers:
        np.testing.assert_array_equal(naps.counts(layer), ref[layer][1])
        np.testing.assert_allclose(naps.means(layer), ref[layer][0], rtol=1e-5, atol=1e-5)
    # space and blank are not groups: the letters' frames are fewer than all frames
    assert 0 < naps.counts("conv11").sum() < naps.stats["conv11"].counts.sum()


def test_layer_frames_past_the_last_output_frame_take_the_last_letter(tiny, utts):
    """A stride-4, kernel-2 output layer leaves the last frames of the layer below nearer an output
    frame past the end; like transfer_labels, the batched labels clip to the utterance's last frame
    (not to the padded batch's)."""
    from asr_introspect.alignment import letter_labels, transfer_labels
    from asr_introspect.models import wrap_conv_model

    torch.manual_seed(0)
    n_mels, alphabet = tiny.feature_config.n_mels, tiny.alphabet
    module = torch.nn.Sequential(
        torch.nn.Conv1d(n_mels, 8, 1), torch.nn.ReLU(), torch.nn.Conv1d(8, len(alphabet.symbols), 2, stride=4)
    )
    with torch.no_grad():
        module[2].bias[alphabet.index("e")] = 50.0  # every frame predicts "e"
    model = wrap_conv_model(module, alphabet, tiny.feature_config).eval()
    lower, output = model.layer_names
    naps = compute_naps(model, utts, "letter", [lower], source="predicted", batch_size=4)
    counts = np.zeros(len(naps.groups), dtype=np.int64)
    clipped = False
    for utt in utts:
        acts, logits, n_in = _run_alone(model, utt, [lower])
        out_labels = letter_labels(logits.argmax(0).numpy(), "spike")
        raw = transfer_labels(out_labels, model.frame_map, output, lower, n_in)
        for symbol in raw:
            name = alphabet.symbols[symbol]
            if name in naps.groups:
                counts[naps.groups.index(name)] += 1
        n_lower = acts[lower].shape[1]
        clipped |= bool(
            np.any(
                model.frame_map.layer_frame_of_input(output, model.frame_map.center(lower, np.arange(n_lower)))
                >= len(out_labels)
            )
        )
    assert clipped  # the case under test occurs
    assert counts[naps.groups.index("e")] > 0
    np.testing.assert_array_equal(naps.counts(lower), counts)


def test_phoneme_naps_skip_utterances_without_phones(tiny, utts, phone_naps):
    from asr_introspect.alignment import frame_times, phone_labels
    from asr_introspect.text import PHONES

    naps = phone_naps
    with_phones = [u for u in utts if u.phones]
    assert naps.settings["utterances"] == len(with_phones) == 2
    assert sorted(naps.settings["skipped"]) == sorted(u.id for u in utts if not u.phones)
    assert naps.groups == phoneme_groups() and "sil" not in naps.groups
    counts = np.zeros(len(naps.groups), dtype=np.int64)
    for utt in with_phones:
        acts, _, _ = _run_alone(tiny, utt, ["conv9"])
        lab = phone_labels(
            utt.phones, frame_times(tiny.frame_map, "conv9", acts["conv9"].shape[1], tiny.feature_config)
        )
        for p in lab[lab >= 0]:
            name = PHONES[p]
            if name in naps.groups:
                counts[naps.groups.index(name)] += 1
    np.testing.assert_array_equal(naps.counts("conv9"), counts)
    assert counts.sum() > 0


@pytest.mark.parametrize("weighting", ["gradient", "saliency"])
def test_weighted_naps_match_per_utterance_gradients(tiny, utts, custom_naps, weighting):
    layers = ["conv8", "conv11"]
    groups = CUSTOM_GROUPS
    naps = compute_naps(tiny, utts, _custom_labeler, layers, groups=groups, weighting=weighting, batch_size=7)
    frames = {layer: [] for layer in layers}
    for utt in utts:
        acts, logits, _ = _run_alone(tiny, utt, layers, grad=True)
        objective = logits.max(dim=0).values.sum()
        grads = torch.autograd.grad(objective, [acts[k] for k in layers])
        for layer, g in zip(layers, grads):
            a, g = acts[layer][0].detach(), g[0]
            w = g.norm(dim=0) if weighting == "gradient" else (g * a).abs().sum(dim=0)
            frames[layer].append((a.T.numpy(), _custom_labeler(utt, layer, a.shape[1]), w.numpy()))
    ref = _reference_means(frames, len(groups))
    plain = custom_naps
    for layer in layers:
        np.testing.assert_allclose(naps.means(layer), ref[layer][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            naps.weight_sums(layer),
            [ref[layer][3][np.concatenate([f[1] for f in frames[layer]]) == g].sum() for g in range(4)],
            rtol=1e-4,
        )
    assert not np.allclose(naps.means("conv8"), plain.means("conv8"), rtol=1e-3)
    if weighting == "gradient":  # at the output layer the gradient is one-hot: weights are all 1
        np.testing.assert_allclose(naps.means("conv11"), plain.means("conv11"), rtol=1e-5, atol=1e-6)
    assert naps.settings["weighting"] == weighting


def test_estimator_partial_fit_merge_and_save_load(tiny, utts, letter_naps, tmp_path):
    from asr_introspect.stream import fit_estimators, stream_corpus

    layers, whole = LETTER_LAYERS, letter_naps
    fitted = NAPEstimator("letter", layers, batch_size=3).fit(tiny, utts)
    # stream batches in corpus order (not bucketed like fit's), with an extra layer the estimator ignores
    all_ab, half_a, half_b = (NAPEstimator("letter", layers) for _ in range(3))
    for i, ab in enumerate(stream_corpus(tiny, utts, layers + ["conv1"], batch_size=2, bucket=False)):
        all_ab.partial_fit(ab)
        (half_a if i % 2 else half_b).partial_fit(ab)
    merged = half_a.result().merge(half_b.result())
    # one pass for several estimators (letters and phonemes)
    both = fit_estimators(tiny, utts, [NAPEstimator("letter", layers), NAPEstimator("phoneme", layers)], batch_size=3)
    for other in (fitted.result(), all_ab.result(), merged, both[0].result()):
        for layer in layers:
            np.testing.assert_array_equal(other.counts(layer), whole.counts(layer))
            np.testing.assert_allclose(other.means(layer), whole.means(layer), rtol=1e-5, atol=1e-5)
    assert merged.settings["utterances"] == len(utts)
    assert half_a.result().settings["utterances"] < len(utts)
    assert both[1].result().settings["utterances"] == 2
    # fit resets: a second fit gives the same NAPs, not twice the frames
    np.testing.assert_array_equal(fitted.fit(tiny, utts).result().counts("conv9"), whole.counts("conv9"))

    path = whole.save(tmp_path / "naps.npz")
    loaded = NAPs.load(path)
    assert loaded.layers == layers and loaded.groups == whole.groups and loaded.settings == whole.settings
    for layer in layers:
        np.testing.assert_array_equal(loaded.means(layer), whole.means(layer))
        np.testing.assert_array_equal(loaded.counts(layer), whole.counts(layer))
    with np.load(path, allow_pickle=False) as data:  # plain arrays a user can read without the library
        np.testing.assert_array_equal(data["naps@conv10"], whole.means("conv10"))
        assert list(data["layers"]) == layers and list(data["groups"]) == whole.groups


def _stream_estimator(by, weighting):
    if by == "custom":
        return NAPEstimator(
            _custom_labeler, ["conv1", "conv11"], groups=CUSTOM_GROUPS, weighting=weighting, batch_size=3
        )
    return NAPEstimator(by, ["conv2", "conv9", "conv11"], weighting=weighting, batch_size=3)


@pytest.mark.parametrize("weighting", [None, "saliency"])
@pytest.mark.parametrize("by", ["letter", "phoneme", "custom"])
def test_partial_fit_over_stream_batches_equals_fit(tiny, utts, by, weighting):
    """partial_fit over a stream's batches (all at once, and in two halves merged) gives fit's NAPs,
    whatever the batching (fit: bucketed batches of 3; here: corpus order, batches of 2)."""
    from asr_introspect.stream import stream_corpus

    fitted = _stream_estimator(by, weighting).fit(tiny, utts).result()
    one, first, second = (_stream_estimator(by, weighting) for _ in range(3))
    layers = one.stream_layers(tiny)
    for i, batch in enumerate(stream_corpus(tiny, utts, layers, weighting=weighting, batch_size=2, bucket=False)):
        assert (batch.weights is None) == (weighting is None)
        one.partial_fit(batch)
        (first if i % 2 else second).partial_fit(batch)
    assert 0 < first.n_utterances_ < one.n_utterances_ or by == "phoneme"
    merged = first.merge(second).result()
    tol = 1e-5 if weighting is None else 1e-4
    for got in (one.result(), merged):
        assert got.layers == fitted.layers and got.groups == fitted.groups
        assert got.settings["utterances"] == fitted.settings["utterances"]
        assert sorted(got.settings["skipped"]) == sorted(fitted.settings["skipped"])
        assert got.settings["weighting"] == weighting
        for layer in fitted.layers:
            np.testing.assert_array_equal(got.stats[layer].counts, fitted.stats[layer].counts)
            np.testing.assert_allclose(got.stats[layer].weight_sums, fitted.stats[layer].weight_sums, rtol=tol)
            np.testing.assert_allclose(got.stats[layer].means, fitted.stats[layer].means, rtol=tol, atol=tol)
            np.testing.assert_allclose(got.variance(layer), fitted.variance(layer), rtol=10 * tol, atol=tol)
    assert fitted.settings["utterances"] == (2 if by == "phoneme" else len(utts))
    assert fitted.counts("conv11").sum() > 0
    if weighting is not None:  # the weights count: saliency NAPs differ from the plain ones
        plain = _stream_estimator(by, None).fit(tiny, utts).result()
        assert not np.allclose(
            fitted.means("conv9" if by != "custom" else "conv1"),
            plain.means("conv9" if by != "custom" else "conv1"),
            rtol=1e-3,
            equal_nan=True,
        )


def test_fit_on_another_model_uses_that_models_layers(tiny, utts):
    """fit resets the estimator; with layers=None it profiles every layer of the model it is given."""
    from asr_introspect.models import wrap_conv_model

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv1d(tiny.feature_config.n_mels, 8, 1),
        torch.nn.ReLU(),
        torch.nn.Conv1d(8, len(tiny.alphabet.symbols), 1),
    )
    small = wrap_conv_model(module, tiny.alphabet, tiny.feature_config).eval()
    est = NAPEstimator("letter")
    assert est.fit(tiny, utts[:2]).result().layers == list(tiny.layer_names)
    assert est.stream_layers(small) == list(small.layer_names)
    assert est.fit(small, utts[:2]).result().layers == list(small.layer_names)


def test_input_errors(tiny, utts):
    from asr_introspect.errors import AlignmentError, InputError
    from asr_introspect.stream import stream_corpus

    ab = next(iter(stream_corpus(tiny, utts[:2], ["conv11"])))
    # unknown layers: when the estimator meets the model (fit, or the first batch)
    with pytest.raises(InputError, match="conv99"):
        NAPEstimator("letter", ["conv99"]).fit(tiny, utts[:1])
    with pytest.raises(InputError, match="conv99"):
        NAPEstimator("letter", ["conv99"]).partial_fit(ab)
    with pytest.raises(InputError, match="conv9"):  # a layer the stream did not record
        NAPEstimator("letter", ["conv9"]).partial_fit(ab)
    with pytest.raises(InputError, match="no layers"):
        NAPEstimator("letter", [])
    with pytest.raises(InputError, match="xx"):
        NAPEstimator("phoneme", ["conv11"], groups=["aa", "xx"]).partial_fit(ab)
    with pytest.raises(InputError, match="%"):
        NAPEstimator("letter", ["conv11"], groups=["a", "%"]).partial_fit(ab)
    with pytest.raises(InputError, match="duplicate"):
        NAPEstimator("letter", groups=["a", "a"])
    with pytest.raises(InputError, match="groups"):
        NAPEstimator(_custom_labeler)
    with pytest.raises(InputError, match="by must be"):
        NAPEstimator("word")
    with pytest.raises(InputError, match="weighting"):
        NAPEstimator("letter", weighting="lrp")
    with pytest.raises(InputError, match="letter_mode"):
        NAPEstimator("letter", letter_mode="smear")
    with pytest.raises(InputError, match="source"):
        NAPEstimator("letter", source="oracle")
    with pytest.raises(InputError, match="shift"):
        NAPEstimator("letter", shift=0.5)
    with pytest.raises(TypeError, match="mode"):  # the old keyword is gone, not silently ignored
        compute_naps(tiny, utts[:1], "letter", ["conv11"], mode="span")
    with pytest.raises(InputError, match="no batch"):
        NAPEstimator("letter").result()
    # a weighted estimator refuses a stream without weights
    est = NAPEstimator("letter", ["conv11"], weighting="gradient")
    with pytest.raises(InputError, match="weighting='gradient'"):
        est.partial_fit(ab)
    bad = NAPEstimator(lambda u, layer, n: np.full(n, 9), ["conv11"], groups=["a", "b"])
    with pytest.raises(InputError, match=r"\[-1, 2\)"):
        bad.partial_fit(ab)
    short = NAPEstimator(lambda u, layer, n: np.zeros(n - 1, dtype=int), ["conv11"], groups=["a", "b"])
    with pytest.raises(InputError, match="must return"):
        short.partial_fit(ab)
    # different layers or groups do not merge
    a = NAPEstimator("letter", ["conv11"]).partial_fit(ab)
    with pytest.raises(InputError, match="different layers or groups"):
        a.merge(NAPEstimator("letter", ["conv11"], groups=["a", "b"]).partial_fit(ab))
    # skip_errors=False: an unalignable transcript raises instead of being listed
    long_text = dataclasses.replace(utts[0], text="x" * 400)  # more letters than output frames
    with pytest.raises(AlignmentError):
        NAPEstimator("letter", ["conv11"], skip_errors=False).fit(tiny, [long_text])
    skipped = NAPEstimator("letter", ["conv11"]).fit(tiny, [long_text, utts[1]]).result()
    assert skipped.settings["skipped"] == [utts[0].id] and skipped.settings["utterances"] == 1


def test_groups_can_include_space_and_silence(tiny, utts):
    from asr_introspect.stream import stream_corpus

    names = letter_groups(tiny.alphabet, include=[" "])
    assert names[:26] == list("abcdefghijklmnopqrstuvwxyz") and sorted(names[26:]) == [" ", "'"]
    assert phoneme_groups(include_silence=True)[-1] == "sil"
    est = NAPEstimator("letter", ["conv11"], groups=["a", " ", "<blank>"])
    assert est.groups == ["a", " ", "<blank>"]
    for batch in stream_corpus(tiny, utts, ["conv11"], batch_size=4):
        est.partial_fit(batch)
    naps = est.result()
    assert naps.groups == ["a", " ", "<blank>"]
    assert naps.counts("conv11")[2] > 0  # blank frames are a group when asked for
    phones = NAPEstimator("phoneme", ["conv11"], groups=["sil", "aa"]).fit(tiny, utts).result()
    assert phones.groups == ["sil", "aa"] and phones.counts("conv11")[0] > 0


# ---------------------------------------------------------------------------
# clustering details


def test_clustering_edge_cases():
    x = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    for metric in ("correlation", "cosine"):
        d = pairwise_distances(x, metric)
        assert np.all(np.isfinite(d)) and d[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="ward"):
        linkage_matrix(x, "ward", "cosine")
    Z = linkage_matrix(x, "average", "euclidean")
    labels = cut_tree(Z, 2)
    assert labels[0] == 0 and set(labels) == {0, 1}  # numbered by first appearance
    assert list(kmeans_groups(x, 4)) == [0, 1, 2, 3]


def test_quality_across_layers_and_figures(letter_naps, phone_naps, tmp_path):
    import matplotlib.pyplot as plt

    from asr_introspect.plotting.common import save_figure
    from asr_introspect.plotting.naps import (
        plot_dendrogram,
        plot_quality,
        save_clustermap,
    )

    letters, phones = letter_naps, phone_naps
    ql, qp = naps_quality(letters, ["conv9", "conv10", "conv11"]), naps_quality(phones, metric="cosine")
    assert [q.layer for q in ql] == ["conv9", "conv10", "conv11"]
    assert set(ql[0].ari) == {"vowel"} and set(qp[0].ari) == {"vowel", "manner"}
    for q in ql + qp:
        assert -1.0 <= q.silhouette <= 1.0 and -1.0 <= q.cophenetic <= 1.0 and q.specificity >= 0
    cl = cluster_naps(letters, "conv10")
    fig = plot_dendrogram(cl, by="letter")
    colors = {t.get_text(): t.get_color() for t in fig.axes[0].get_xticklabels()}
    assert colors["a"] != colors["b"]
    written = save_figure(fig, tmp_path / "dendro.png")
    written += save_clustermap(cl, tmp_path / "clustermap.png")
    written += save_figure(plot_quality({"letter": ql, "phoneme": qp}), tmp_path / "quality.png")
    assert all(p.is_file() and p.stat().st_size > 1000 for p in written)
    assert plt.get_fignums() == []  # the clustermap's pyplot figure was closed


# ---------------------------------------------------------------------------
# any ASRModel: torchaudio's Wav2Letter


def test_torchaudio_wav2letter_end_to_end(tmp_path):
    from torchaudio.models import Wav2Letter

    from asr_introspect.audio import save_audio
    from asr_introspect.corpus import PhoneSegment, Utterance
    from asr_introspect.features import FeatureConfig
    from asr_introspect.models import wrap_torchaudio_wav2letter
    from asr_introspect.text import Alphabet

    torch.manual_seed(1)
    config = FeatureConfig(n_mels=40)
    model = wrap_torchaudio_wav2letter(
        Wav2Letter(num_classes=29, input_type="mfcc", num_features=40), Alphabet.default(), config
    )
    model.module.eval()
    rng = np.random.default_rng(0)
    sr = config.sample_rate
    texts = ["a tone", "see the sea", "it is"]
    utterances = []
    for i, text in enumerate(texts):
        seconds = 0.6 + 0.2 * i
        t = np.arange(int(seconds * sr)) / sr
        audio = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) * (t > 0.2) + 0.02 * rng.standard_normal(len(t))
        path = save_audio(tmp_path / f"u{i}.wav", audio.astype(np.float32), sr)
        phones = (
            PhoneSegment("sil", 0.0, 0.2),
            PhoneSegment("aa", 0.2, 0.4),
            PhoneSegment("s", 0.4, 0.5),
            PhoneSegment("iy", 0.5, seconds),
        )
        utterances.append(Utterance(f"u{i}", "s", path, text, phones, seconds))
    layers = ["conv9", "conv10", "conv11"]
    letters = compute_naps(model, utterances, "letter", layers, batch_size=3)
    alone = compute_naps(model, utterances, "letter", layers, batch_size=1)
    phones = compute_naps(model, utterances, "phoneme", layers[1:], batch_size=3, weighting="saliency")
    assert letters.means("conv9").shape == (27, 2000) and letters.means("conv11").shape == (27, 29)
    assert phones.counts("conv10")[phones.groups.index("aa")] > 0
    for layer in layers:
        np.testing.assert_array_equal(letters.counts(layer), alone.counts(layer))
        np.testing.assert_allclose(letters.means(layer), alone.means(layer), rtol=1e-4, atol=1e-5)
    cl = cluster_naps(phones, "conv10", metric="correlation", n_clusters=2)
    assert sorted(cl.groups) == ["aa", "iy", "s"] and len(set(cl.labels)) == 2
    assert np.isfinite(layer_quality(letters, "conv9").cophenetic)


# ---------------------------------------------------------------------------
# command line


def test_cli_writes_npz_json_and_figures(tiny, tiny_corpus, letter_naps, tmp_path, capsys):
    from asr_introspect.cli import main
    from asr_introspect.models import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", tiny)
    out = tmp_path / "out"
    code = main(
        [
            "naps",
            "--model",
            str(ckpt),
            "--data",
            str(tiny_corpus.root),
            "--by",
            "both",
            "--layers",
            "conv9,conv11",
            "--out",
            str(out),
            "--linkage",
            "complete",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["by"] == ["letter", "phoneme"] and summary["layers"] == ["conv9", "conv11"]
    assert summary["utterances"] == {"letter": 7, "phoneme": 2}
    assert set(summary["scores"]["phoneme"]["conv9"]) >= {
        "ari_vowel",
        "ari_manner",
        "silhouette",
        "cophenetic",
        "specificity",
    }
    assert set(summary["letter_over_phoneme_specificity"]) == {"conv9", "conv11"}
    assert all(Path(p).is_file() for p in summary["files"])
    names = {Path(p).name for p in summary["files"]}
    assert {
        "naps_letter.npz",
        "naps_letter.json",
        "conv9_dendrogram.png",
        "conv11_clustermap.png",
        "quality.png",
    } <= names
    saved = NAPs.load(out / "naps_letter.npz")
    np.testing.assert_array_equal(saved.counts("conv9"), letter_naps.counts("conv9"))
    np.testing.assert_allclose(saved.means("conv9"), letter_naps.means("conv9"), rtol=1e-5, atol=1e-5)
    report = json.loads((out / "naps_letter.json").read_text())
    clustering = report["layers"]["conv9"]["clustering"]
    assert clustering["linkage_method"] == "complete"
    assert sorted(g for c in clustering["hierarchical_clusters"] for g in c) == sorted(clustering["groups"])

    assert (
        main(
            [
                "naps",
                "--model",
                str(ckpt),
                "--data",
                str(tiny_corpus.root),
                "--layers",
                "conv99",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 2
    )
    assert "conv99" in capsys.readouterr().err
    assert (
        main(
            [
                "naps",
                "--model",
                str(ckpt),
                "--data",
                str(tiny_corpus.root),
                "--linkage",
                "ward",
                "--metric",
                "cosine",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 2
    )


@requires_shipped
def test_shipped_model_letter_naps_cluster_vowels_at_the_output():
    from asr_introspect.loading import load_model_and_corpus

    model, utterances, _, _ = load_model_and_corpus()
    naps = compute_naps(model, utterances[:60], "letter", ["conv10", "conv11"], batch_size=16)
    q = layer_quality(naps, "conv11", min_count=5)
    assert q.n_groups >= 20 and np.isfinite(q.silhouette)
