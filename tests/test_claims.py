"""Claims machinery: ARI, planted categories found (and gone under shuffling), the bootstrap from
per-utterance sums against NAPs recomputed on resampled corpora, the nulls, probes, CKA, verdicts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from asr_introspect.claims import (
    UtteranceSums,
    adjusted_rand,
    balanced_accuracy,
    bootstrap_multiplicities,
    cka_matrix,
    collect,
    control_categories,
    cut_into,
    layer_at_depth,
    layer_claims,
    layer_trends,
    linear_cka,
    probe_predictions,
    probe_trends,
    random_weights_model,
    resampled_means,
    shuffle_within_utterances,
    trend_scores,
    utterance_folds,
    verdict_for,
)
from asr_introspect.naps import compute_naps

# ---------------------------------------------------------------------------
# planted data (NumPy only)

PHONES = ["aa", "iy", "uw", "eh", "p", "t", "k", "b", "s", "f", "sh", "z", "m", "n", "ng"]  # vowel, stop, fric, nasal
MANNER = {"aa": 0, "iy": 0, "uw": 0, "eh": 0, "p": 1, "t": 1, "k": 1, "b": 1, "s": 2, "f": 2, "sh": 2, "z": 2}
MANNER.update({"m": 3, "n": 3, "ng": 3})


def _planted_frames(n_utt=40, frames=60, n_feat=24, signal=3.0, seed=0):
    """Frames whose activation carries the manner of their phone (+ a small phone-specific part)."""
    rng = np.random.default_rng(seed)
    category_pattern = rng.normal(0, signal, (4, n_feat))
    phone_pattern = rng.normal(0, 0.3 * signal, (len(PHONES), n_feat))
    utt, lab, X = [], [], []
    for u in range(n_utt):
        g = rng.integers(0, len(PHONES), frames)
        cat = np.array([MANNER[PHONES[i]] for i in g])
        X.append(category_pattern[cat] + phone_pattern[g] + rng.standard_normal((frames, n_feat)))
        utt.append(np.full(frames, u))
        lab.append(g)
    return np.concatenate(utt), np.concatenate(lab), np.concatenate(X).astype(np.float32)


def test_adjusted_rand_equals_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(30):
        a, b = rng.integers(0, 4, 25), rng.integers(0, 6, 25)
        assert adjusted_rand(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand(list("aabb"), [1, 1, 2, 2]) == 1.0


def test_cut_into_k_clusters_equals_scipy_maxclust():
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(0)
    for _ in range(20):
        Z = linkage(rng.standard_normal((30, 5)), "ward")
        for k in (2, 5, 7):
            ours = cut_into(Z, k)
            assert len(np.unique(ours)) == k
            assert adjusted_rand(ours, fcluster(Z, k, "maxclust")) == 1.0


def test_fast_linkage_equals_scipy_linkage():
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    from asr_introspect.claims.layer_trend import LINKAGES, _linkage

    x = np.random.default_rng(1).standard_normal((25, 9))
    for method, metric in LINKAGES.values():
        np.testing.assert_allclose(_linkage(x, method, metric), linkage(pdist(x, metric), method), atol=1e-12)


def test_planted_categories_found_and_gone_when_labels_are_shuffled():
    utt, lab, X = _planted_frames()
    table = UtteranceSums(len(PHONES), X.shape[1], ["model"])
    shuffled = UtteranceSums(len(PHONES), X.shape[1], ["model"])
    rng = np.random.default_rng(1)
    for u in np.unique(utt):
        rows = utt == u
        table.add(utt[rows], lab[rows], {"model": X[rows]})
        shuffled.add(utt[rows], shuffle_within_utterances(lab[rows][None], rng)[0], {"model": X[rows]})
    means, counts = table.totals("model")
    scores = trend_scores(means, counts, PHONES, "phoneme", min_count=50)
    assert scores["manner/ward"] > 0.9 and scores["manner/average-cosine"] > 0.9
    means, counts = shuffled.totals("model")
    null = trend_scores(means, counts, PHONES, "phoneme", min_count=50)
    assert abs(null["manner/ward"]) < 0.35
    # a group with too few frames is left out (no NaN from it)
    counts_rare = counts.copy()
    counts_rare[0] = 3
    assert np.isfinite(trend_scores(means, counts_rare, PHONES, "phoneme", min_count=50)["manner/ward"])


def test_probe_finds_planted_categories_and_the_control_task_does_not():
    utt, lab, X = _planted_frames(signal=1.0)
    folds = utterance_folds(utt, 5, seed=0)
    assert all(len(np.unique(folds[utt == u])) == 1 for u in np.unique(utt))  # folds hold whole utterances
    cats = [{0: "vowel", 1: "stop", 2: "fricative", 3: "nasal"}[MANNER[p]] for p in PHONES]
    control = control_categories(cats, seed=0)
    assert sorted(control) == sorted(cats) and control != cats
    names = sorted(set(cats))
    y = np.array([names.index(cats[g]) for g in lab])
    y_ctrl = np.array([names.index(control[g]) for g in lab])
    y_shuf = shuffle_within_utterances(y.reshape(len(np.unique(utt)), -1), np.random.default_rng(0)).ravel()
    preds = probe_predictions(X, {"real": y, "control": y_ctrl, "shuffled": y_shuf}, folds)
    acc, ctrl = balanced_accuracy(y, preds["real"]), balanced_accuracy(y_ctrl, preds["control"])
    assert acc > 0.9 and acc - ctrl > 0.3
    assert balanced_accuracy(y_shuf, preds["shuffled"]) < 0.4  # chance is 0.25


def test_ridge_probe_matches_a_direct_solve():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    y = (X[:, 0] + 0.3 * rng.standard_normal(120) > 0).astype(int)
    folds = np.repeat(np.arange(4), 30)
    pred = probe_predictions(X, {"t": y}, folds, ridge=0.0)["t"]
    Z = np.c_[(X - X.mean(0)) / X.std(0), np.ones(120)]
    Y = np.eye(2)[y]
    for f in range(4):
        train, test = folds != f, folds == f
        W = np.linalg.lstsq(Z[train], Y[train], rcond=None)[0]
        np.testing.assert_array_equal(pred[test], (Z[test] @ W).argmax(1))


def _hsic_cka(X, Y):
    """Reference: HSIC with explicit centering matrices (sample space)."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def test_cka_equals_reference_and_is_invariant_to_rotation_and_scaling():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 8))
    Y = X @ rng.standard_normal((8, 6)) + 0.5 * rng.standard_normal((50, 6))
    assert linear_cka(X, Y) == pytest.approx(_hsic_cka(X, Y), rel=1e-10)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    assert linear_cka(3.7 * X @ Q, Y) == pytest.approx(linear_cka(X, Y), rel=1e-10)
    assert linear_cka(X, X) == pytest.approx(1.0)
    # not invariant to an arbitrary invertible map
    A = np.diag(np.r_[np.ones(7), 30.0])
    assert abs(linear_cka(X @ A, Y) - linear_cka(X, Y)) > 1e-3
    M = cka_matrix([X, Y, X @ Q])
    assert M[0, 2] == pytest.approx(1.0) and M[0, 1] == pytest.approx(M[1, 0])


def test_verdicts():
    assert verdict_for((0.5, 0.7), (0.0, 0.2)) == "supported"
    assert verdict_for((0.0, 0.2), (0.5, 0.7)) == "not supported"
    assert verdict_for((-0.5, 0.9), (0.0, 0.2)) == "not supported"  # the null's interval inside
    assert verdict_for((0.1, 0.6), (0.0, 0.2)) == "inconclusive"
    assert verdict_for((0.5, np.nan), (0.0, 0.2)) == "inconclusive"
    assert verdict_for((-0.7, -0.5), (0.0, 0.2), "less") == "supported"


def test_layer_at_depth():
    eleven = [f"conv{i}" for i in range(1, 12)]
    assert layer_at_depth(eleven, 9) == "conv9" and layer_at_depth(eleven, 10) == "conv10"
    assert layer_at_depth([f"l{i}" for i in range(1, 23)], 9) == "l18"
    assert layer_at_depth(["a", "b"], 9) == "b"


def test_bootstrap_multiplicities_draw_n_utterances():
    m = bootstrap_multiplicities(7, 50, seed=3)
    assert m.shape == (50, 7) and (m.sum(1) == 7).all() and (m >= 0).all()
    np.testing.assert_array_equal(m, bootstrap_multiplicities(7, 50, seed=3))


# ---------------------------------------------------------------------------
# the tiny model through the one pass


@pytest.fixture(scope="module")
def tiny():
    from asr_introspect.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    for module in model.module.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def utts(tiny_corpus):
    from asr_introspect.corpus import load_corpus

    return load_corpus(tiny_corpus.root)


LAYERS = ["conv2", "conv9", "conv10", "conv11"]


@pytest.fixture(scope="module")
def collected(tiny, utts):
    return collect(tiny, utts, layers=LAYERS, seed=0, max_frames=150, batch_size=3)


def _means_close(a, b):
    np.testing.assert_allclose(np.nan_to_num(a, nan=-9.0), np.nan_to_num(b, nan=-9.0), rtol=1e-4, atol=1e-5)


def test_bootstrap_from_utterance_sums_equals_naps_of_the_resampled_corpus(tiny, utts, collected):
    m = bootstrap_multiplicities(len(utts), 2, seed=5)
    for r in range(2):
        resampled = [u for u, k in zip(utts, m[r]) for _ in range(k)]
        for by in ("letter", "phoneme"):
            if by == "phoneme" and not any(u.phones for u in resampled):
                continue
            reference = compute_naps(tiny, resampled, by, LAYERS, batch_size=4)
            for layer in LAYERS:
                means, counts = resampled_means(collected.tables[(by, layer)], "model", m[r : r + 1])
                np.testing.assert_array_equal(counts[0], reference.counts(layer))
                _means_close(means[0], reference.means(layer))


def test_random_and_layer_random_variants_equal_a_rebuilt_model(tiny, utts, collected):
    random_model = random_weights_model(tiny, seed=0)
    reference = compute_naps(random_model, utts, "phoneme", LAYERS, batch_size=4)
    for layer in LAYERS:
        _means_close(collected.tables[("phoneme", layer)].totals("random")[0], reference.means(layer))
    # conv9 randomized alone (the collector's seed for it: seed + 1 + its index in LAYERS)
    from asr_introspect.claims.nulls import randomize_module

    swapped = copy.copy(tiny)
    swapped.module = copy.deepcopy(tiny.module)
    swapped.module.blocks["conv9"] = randomize_module(tiny.layer_module("conv9"), 0 + 1 + LAYERS.index("conv9"))
    swapped.layer_modules = dict(swapped.module.layer_modules())
    reference = compute_naps(swapped, utts, "phoneme", ["conv9"], batch_size=4)
    _means_close(collected.tables[("phoneme", "conv9")].totals("layer_random")[0], reference.means("conv9"))
    # the nulls leave the trained model as it was (weights swapped back, no hooks left behind)
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    collect(tiny, utts[:2], layers=LAYERS, seed=3, max_frames=20)
    after = tiny.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in tiny.module.modules())


def test_shuffled_sums_keep_rows_and_counts(collected):
    for key, table in collected.tables.items():
        shuffled = collected.shuffled[key]
        np.testing.assert_array_equal(table.counts, shuffled.counts)
        np.testing.assert_array_equal(table.group, shuffled.group)


def test_frame_sample_is_bounded_and_independent_of_batching(tiny, utts, collected):
    assert collected.sample_utterance.size == 150
    other = collect(tiny, list(reversed(utts)), layers=LAYERS, seed=0, max_frames=150, batch_size=7)
    ids = np.array(collected.utterance_ids)
    ids_other = np.array(other.utterance_ids)
    assert sorted(ids[collected.sample_utterance]) == sorted(ids_other[other.sample_utterance])
    for layer in LAYERS:
        assert collected.sample["model"][layer].shape[0] == 150
    for key, table in collected.shuffled.items():  # label shuffles are seeded per utterance too
        _means_close(table.totals("shuffled")[0], other.shuffled[key].totals("shuffled")[0])


def test_trends_probes_and_claims_have_the_promised_shapes(collected):
    trends = layer_trends(collected, n_boot=4, min_count=1, seed=0)
    assert set(trends) >= {"letter/vowel/ward", "phoneme/manner/ward", "phoneme/vowel/average-correlation"}
    entry = trends["letter/vowel/ward"]
    assert set(entry) == {"model", "random", "layer_random", "shuffled"}
    assert entry["model"]["value"].shape == (4,) and entry["model"]["samples"].shape == (4, 4)
    assert np.isnan(trends["letter/vowel/average-cosine"]["model"]["samples"]).all()  # point values only
    probes = probe_trends(collected, n_boot=4, seed=0)
    sel = probes["letter/vowel/selectivity"]["model"]
    np.testing.assert_allclose(
        sel["value"],
        probes["letter/vowel/accuracy"]["model"]["value"] - probes["letter/vowel/control"]["model"]["value"],
    )
    claims = layer_claims(collected, trends, probes, min_count=1)
    assert [c.name for c in claims] == [
        "phoneme_clusters_layer9",
        "phoneme_clusters_sharper_layer10",
        "letters_best_at_output",
    ]
    assert claims[0].details["layer"] == layer_at_depth(LAYERS, 9)
    for c in claims:
        d = c.to_dict()
        assert d["verdict"] in ("supported", "not supported", "inconclusive") and len(d["interval"]) == 2
