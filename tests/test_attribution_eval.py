"""Sanity checks and faithfulness: randomization changes the maps, deletion/insertion curves are scored
exactly (checked against full-utterance forward passes), and on the shipped model LRP's deletion curve
falls faster than random."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from planted import planted_model as _planted
from scipy.stats import spearmanr
from shipped import requires_shipped

from asr_introspect.attribution import attribute, conv_stack
from asr_introspect.attribution.evaluation import (
    auc,
    faithfulness,
    perturbation_curves,
    randomization_test,
    randomize_stack,
    rank_correlation,
)
from asr_introspect.defaults import DEFAULT_CORPUS

pytestmark = pytest.mark.usefixtures("one_thread")


def planted_model(seed: int = 0):
    return _planted(seed, bn_bias_std=0.3)


def features(n: int = 110, seed: int = 1) -> torch.Tensor:
    return torch.randn(64, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_rank_correlation_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3, 20)), rng.normal(size=(4, 3, 20))
    b[1] = a[1] * 2 + 0.01 * b[1]
    mask = rng.random((4, 3, 20)) > 0.3
    got = rank_correlation(a, b, mask)
    for i in range(4):
        assert got[i] == pytest.approx(spearmanr(a[i][mask[i]], b[i][mask[i]]).statistic, abs=1e-12)
    assert np.isnan(rank_correlation(np.ones((1, 5)), np.arange(5.0)[None]))[0]


def test_randomize_stack_redraws_only_the_listed_layers():
    stack = conv_stack(planted_model())
    same = randomize_stack(stack, [])
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(stack.layers, same.layers))
    top = randomize_stack(stack, ["conv11", "conv10"], seed=3)
    changed = [not torch.equal(a.weight, b.weight) for a, b in zip(stack.layers, top.layers)]
    assert changed == [False] * 9 + [True, True]
    w = top.layers[-1].weight
    assert float(w.std()) == pytest.approx(float(stack.layers[-1].weight.std()), rel=0.3)


def test_cascading_randomization_changes_lrp_and_gradient_maps():
    model = planted_model()
    state = copy.deepcopy(model.module.state_dict())
    x = features()
    methods = ["lrp-epsilon", "lrp-epsilon-plus", "sensitivity", "guided-backprop"]
    result = randomization_test(model, x, methods, frames=[3, 27, 51])
    assert result.steps == [f"conv{i}" for i in range(11, 0, -1)]
    assert result.spearman.shape == (4, 11, 3)
    final = np.nanmean(result.spearman[:, -1], axis=-1)
    assert (final < 0.5).all(), dict(zip(methods, final))
    # a control: "randomizing" nothing keeps every map (correlation 1)
    control = randomization_test(model, x, ["lrp-epsilon"], frames=[3], layers=[])
    assert control.spearman.shape == (1, 0, 1)
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, state[key])
    summary = result.summary()
    assert set(summary) == set(methods) and set(summary["sensitivity"]["spearman"]) == set(result.steps)


def full_logprob(model, x: torch.Tensor, frame: int, target: int) -> float:
    with torch.no_grad():
        logits = model.module(x[None])[0]
    return float(torch.log_softmax(logits[:, frame], dim=0)[target])


@pytest.mark.parametrize("unit", ["frame", "bin"])
def test_curves_are_exact_full_utterance_scores(unit):
    model = planted_model()
    x = features()
    attr = attribute(model, x, "lrp-epsilon", frames=[0, 30, 54], crop=True)
    deletion = perturbation_curves(model, x, attr, "deletion", unit, n_steps=4, n_random=2)
    insertion = perturbation_curves(model, x, attr, "insertion", unit, n_steps=4, n_random=2)
    stack = conv_stack(model)
    for i, (t, c) in enumerate(zip(attr.frames, attr.targets)):
        assert deletion.curves[i, 0] == pytest.approx(full_logprob(model, x, t, c), abs=1e-9)
        blank = torch.zeros_like(x)  # every unit of the field at the baseline: only the field matters
        assert deletion.curves[i, -1] == pytest.approx(full_logprob(model, blank, t, c), abs=1e-9)
        assert insertion.curves[i, 0] == pytest.approx(deletion.curves[i, -1], abs=1e-9)
        assert insertion.curves[i, -1] == pytest.approx(deletion.curves[i, 0], abs=1e-9)
        # an intermediate step: delete the top half of the units in the full utterance by hand
        lo, hi = attr.input_range(i)
        rel = attr.crops()[i][:, lo - attr.offsets[i] : hi - attr.offsets[i]]
        deleted = x.clone()
        if unit == "frame":
            scores = rel.sum(0)
            top = np.argsort(-scores, kind="stable")[: int(round(0.5 * len(scores)))]
            deleted[:, lo + top] = 0.0
        else:
            flat = rel.reshape(-1)
            top = np.argsort(-flat, kind="stable")[: int(round(0.5 * len(flat)))]
            f_idx, t_idx = np.unravel_index(top, rel.shape)
            deleted[f_idx, lo + t_idx] = 0.0
        assert deletion.curves[i, 2] == pytest.approx(full_logprob(model, deleted, t, c), abs=1e-9)
        assert deletion.n_units[i] == (hi - lo) * (1 if unit == "frame" else 64)
    assert deletion.random.shape == deletion.curves.shape
    np.testing.assert_allclose(deletion.random[:, 0], deletion.curves[:, 0])
    assert stack is not None


def test_auc_and_faithfulness_table():
    assert auc(np.linspace(0, 1, 5), np.ones((2, 5))).tolist() == [1.0, 1.0]
    assert auc(np.array([0.0, 1.0]), np.array([0.0, 2.0])) == pytest.approx(1.0)
    model = planted_model()
    x = features()
    table = faithfulness(model, x, ["lrp-epsilon", "sensitivity"], frames=[10, 40], n_steps=3, n_random=1)
    assert set(table) == {"random", "lrp-epsilon", "sensitivity"}
    for row in table.values():
        assert set(row) == {"deletion/frame", "deletion/bin", "insertion/frame", "insertion/bin"}
        assert all(np.isfinite(v) for v in row.values())


@requires_shipped
def test_lrp_deletion_falls_faster_than_random_on_the_shipped_model():
    from asr_introspect.audio import load_audio
    from asr_introspect.corpus import load_corpus
    from asr_introspect.features import compute_features
    from asr_introspect.loading import load_model

    model, _ = load_model(None)
    utterances = sorted(load_corpus(DEFAULT_CORPUS), key=lambda u: u.id)[:2]
    gains = {"lrp-epsilon": [], "lrp-epsilon-plus": []}
    for utt in utterances:
        audio = load_audio(utt.audio_path, model.feature_config.sample_rate)
        x = compute_features(audio, model.feature_config)
        with torch.no_grad():
            logits = model.logits(x[None])[0][0]
        letters = np.flatnonzero(logits.argmax(0).numpy() != model.alphabet.blank)[:24]
        assert len(letters) >= 3, utt.id
        for method in gains:
            attr = attribute(model, x, method, frames=letters, crop=True)
            curve = perturbation_curves(model, x, attr, "deletion", "frame", n_steps=10, n_random=3)
            gains[method].append(curve.random_auc - curve.auc)
    for method, values in gains.items():
        assert np.mean(values) > 0, (method, values)
