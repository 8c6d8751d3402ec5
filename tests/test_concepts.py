"""Concept dictionaries: planted dictionaries are recovered (NMF, SAE), ``partial_fit`` over stream batches
equals ``fit``, grounding and faithfulness against brute-force references, stability, L2I fidelity beats
chance, and bad settings exit 2 with one line."""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import pytest
import torch
from shipped import requires_shipped

from asr_introspect.cli import concepts as concepts_cli
from asr_introspect.cli._common import OneLineArgumentParser, run_command
from asr_introspect.concepts import (
    ConceptDictionary,
    ConceptEstimator,
    ConceptGrounding,
    Grounding,
    ListenableInterpreter,
    StreamedNMF,
    StreamedSAE,
    concept_gram,
    concept_stability,
    faithfulness,
    features_to_magnitude,
    fit_concepts,
    magnitude_to_features,
    match_concepts,
    replaced_layer,
)
from asr_introspect.corpus import load_corpus
from asr_introspect.decoding import error_rates, greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, featurize_file
from asr_introspect.models import build_model
from asr_introspect.stream import fit_estimators, stream_corpus
from asr_introspect.workflows.concepts import concepts

# ---------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def tiny(one_thread):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    for module in model.module.modules():  # non-trivial BatchNorm: padding errors would show
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def utts(tiny_corpus):
    return load_corpus(tiny_corpus.root)


def planted_frames(n: int = 1500, n_atoms: int = 6, channels: int = 40, seed: int = 0):
    """Frames ``X = H D + noise`` with sparse non-negative atoms D (K, C) and 1-2 active atoms per frame."""
    rng = np.random.default_rng(seed)
    atoms = rng.random((n_atoms, channels)) * (rng.random((n_atoms, channels)) < 0.3)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, n_atoms))
    for i in range(n):
        active = rng.choice(n_atoms, size=rng.integers(1, 3), replace=False)
        codes[i, active] = rng.uniform(0.5, 2.0, size=len(active))
    frames = codes @ atoms + 0.01 * rng.random((n, channels))
    return frames.astype(np.float32), atoms


def identity_dictionary(layer: str, channels: int) -> ConceptDictionary:
    """One concept per channel: NMF codes of a non-negative frame on the identity are the frame itself."""
    return ConceptDictionary(layer, "nmf", np.eye(channels), {"alpha": 0.0, "code_iterations": 5}, np.zeros(channels))


# ---------------------------------------------------------------------------
# learners on planted data


def test_nmf_recovers_a_planted_dictionary():
    frames, atoms = planted_frames()
    nmf = StreamedNMF(6, seed=1).fit(frames, passes=30, chunk_size=500)
    _, _, cosine = match_concepts(atoms, nmf.components_)
    assert cosine.min() > 0.99
    assert nmf.history_[-1] < 0.05 < nmf.history_[0]


def test_sae_recovers_a_planted_dictionary():
    frames, atoms = planted_frames()
    sae = StreamedSAE(6, k=2, learning_rate=1e-2, seed=1).fit(frames, passes=25, chunk_size=500)
    _, _, cosine = match_concepts(atoms, sae.components_)
    assert cosine.min() > 0.95
    codes = sae.transform(frames)
    assert codes.min() >= 0 and ((codes > 0).sum(axis=1) <= 2).all()  # TopK: at most k active
    assert np.linalg.norm(sae.inverse_transform(codes) - frames) / np.linalg.norm(frames) < 0.1


def test_nmf_passes_merge_exactly_whatever_the_chunking():
    frames, _ = planted_frames(n=900, seed=3)
    whole = StreamedNMF(5, seed=2).fit(frames, passes=4, chunk_size=900)
    one, two = StreamedNMF(5, seed=2), StreamedNMF(5, seed=2)
    rng = np.random.default_rng(0)
    for _ in range(4):
        order = rng.permutation(len(frames))  # another order and chunking every pass
        parts = np.array_split(frames[order], 7)
        for i, part in enumerate(parts):
            (one if i % 2 else two).partial_fit(part)
        one.merge(two)
        one.end_pass()
        two.components_, two.n_passes_ = one.components_.copy(), one.n_passes_
        two._clear_pass()
    np.testing.assert_allclose(one.components_, whole.components_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(one.history_, whole.history_, rtol=1e-5)


def test_learners_reject_bad_input():
    with pytest.raises(InputError, match="n_components"):
        StreamedNMF(0)
    with pytest.raises(InputError, match="non-negative"):
        StreamedNMF(2).partial_fit(-np.ones((3, 4)))
    with pytest.raises(InputError, match="k must be at most"):
        StreamedSAE(4, k=5)
    with pytest.raises(InputError, match="different dictionaries"):
        StreamedNMF(2, seed=0).partial_fit(np.ones((3, 4))).merge(StreamedNMF(2, seed=1).partial_fit(np.ones((3, 4))))


# ---------------------------------------------------------------------------
# the estimator on the stream


@pytest.mark.parametrize("method", ["nmf", "sae"])
def test_partial_fit_over_stream_batches_equals_fit(tiny, utts, method):
    settings = dict(n_concepts=6, passes=3, seed=4, batch_size=3, minibatch_size=64)
    fitted = ConceptEstimator("conv5", method, **settings).fit(tiny, utts).result()
    streamed = ConceptEstimator("conv5", method, **settings).fit(tiny, utts, cache=False).result()
    by_hand = ConceptEstimator("conv5", method, **settings)
    for _ in range(by_hand.passes):
        for batch in stream_corpus(tiny, utts, by_hand.stream_layers(tiny), batch_size=3):
            by_hand.partial_fit(batch)
        by_hand.end_pass()
    for other in (streamed, by_hand.result()):
        np.testing.assert_allclose(other.components, fitted.components, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(other.history, fitted.history, rtol=1e-5)
    assert fitted.settings["frames"] == sum(
        int(b.lengths["conv5"].sum()) for b in stream_corpus(tiny, utts, ["conv5"], batch_size=3)
    )


def test_nmf_estimator_merges_shards_exactly(tiny, utts):
    fitted = ConceptEstimator("conv9", "nmf", 5, passes=2, batch_size=2).fit(tiny, utts).result()
    first, second = ConceptEstimator("conv9", "nmf", 5, passes=2), ConceptEstimator("conv9", "nmf", 5, passes=2)
    for _ in range(2):
        for i, batch in enumerate(stream_corpus(tiny, utts, ["conv9"], batch_size=2, bucket=False)):
            (first if i % 2 else second).partial_fit(batch)
        first.merge(second).end_pass()
        second.learner_.components_ = first.learner_.components_.copy()
        second.learner_.n_passes_ = second.n_passes_ = first.n_passes_
        second.learner_._clear_pass()
    merged = first.result()
    np.testing.assert_allclose(merged.components, fitted.components, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(merged.mean_activation, fitted.mean_activation, rtol=1e-5, atol=1e-7)


def test_fit_concepts_feeds_several_seeds_from_one_forward_pass(tiny, utts, monkeypatch):
    import asr_introspect.concepts.estimator as estimator_module

    calls = []
    original = estimator_module.fit_estimators
    monkeypatch.setattr(estimator_module, "fit_estimators", lambda *a, **k: calls.append(1) or original(*a, **k))
    estimators = [ConceptEstimator("conv9", "nmf", 4, passes=3, seed=s) for s in (0, 1)]
    fit_concepts(tiny, utts, estimators)
    assert len(calls) == 1 and all(e.n_passes_ == 3 for e in estimators)
    assert not np.allclose(estimators[0].result().components, estimators[1].result().components)


def test_estimator_rejects_bad_settings(tiny, utts):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="n_concepts must be an integer >= 1"):
            ConceptEstimator("conv5", "nmf", bad)
    with pytest.raises(InputError, match="method must be one of"):
        ConceptEstimator("conv5", "pca")
    with pytest.raises(InputError, match=r"unknown layer 'conv99'; the model has conv1, conv2"):
        ConceptEstimator("conv99").fit(tiny, utts)
    with pytest.raises(InputError, match="needs non-negative activations, but layer conv11"):
        ConceptEstimator("conv11", "nmf", 4, passes=1).fit(tiny, utts)
    ConceptEstimator("conv11", "sae", 4, passes=1).fit(tiny, utts)  # the SAE takes real-valued layers


def test_dictionary_round_trips_through_its_file(tiny, utts, tmp_path):
    for method in ("nmf", "sae"):
        dictionary = ConceptEstimator("conv5", method, 4, passes=2).fit(tiny, utts).result()
        loaded = ConceptDictionary.load(dictionary.save(tmp_path / f"{method}.npz"))
        frames = np.abs(np.random.default_rng(0).normal(size=(20, dictionary.n_channels))).astype(np.float32)
        np.testing.assert_array_equal(loaded.encode(frames), dictionary.encode(frames))
        np.testing.assert_allclose(loaded.decode(loaded.encode(frames)), dictionary.decode(dictionary.encode(frames)))
        assert loaded.settings == dictionary.settings and loaded.method == method


# ---------------------------------------------------------------------------
# grounding


def _reference_events(model, utts, layer: str, channel: int, min_distance: int, top_k: int):
    """Brute force: every utterance alone, local maxima of one channel, the top_k by value."""
    events = []
    for utt in utts:
        features = featurize_file(utt.audio_path, model.feature_config)
        gram = concept_gram(model, identity_dictionary(layer, 16), features)
        values = gram.codes[channel]
        for t, v in enumerate(values):
            lo, hi = max(0, t - min_distance), t + min_distance + 1
            if v > 0 and v == values[lo:hi].max():
                events.append((-float(v), utt.id, t))
    return sorted(events)[:top_k]


def test_grounding_top_events_equal_a_brute_force_reference_and_merge(tiny, utts, tmp_path):
    dictionary = identity_dictionary("conv5", 16)
    fitted = ConceptGrounding(dictionary, top_k=5, min_distance=3, window=8).fit(tiny, utts).result()
    first, second = (ConceptGrounding(dictionary, top_k=5, min_distance=3, window=8) for _ in range(2))
    for i, batch in enumerate(stream_corpus(tiny, utts, ["conv5"], batch_size=2, bucket=False)):
        (first if i % 2 else second).partial_fit(batch)
    merged = first.merge(second).result()
    for channel in (0, 7, 15):
        expected = _reference_events(tiny, utts, "conv5", channel, 3, 5)
        got = list(zip(fitted.top_values[channel], fitted.top_utterances[channel], fitted.top_frames[channel]))
        assert [(u, t) for _, u, t in expected] == [(u, int(t)) for _, u, t in got]
        np.testing.assert_allclose([-v for v, _, _ in expected], fitted.top_values[channel], rtol=1e-5)
    for name in ("mass_letters", "mass_phones", "total", "active", "top_values", "patterns"):
        np.testing.assert_allclose(getattr(merged, name), getattr(fitted, name), rtol=1e-5, atol=1e-6)
    assert (merged.top_utterances == fitted.top_utterances).all()
    loaded = Grounding.load(fitted.save(tmp_path / "grounding.npz"))
    assert loaded.table() == fitted.table() and loaded.settings == fitted.settings
    # mass over phones sums the activation of the frames that have a phone
    assert fitted.mass_phones.sum() <= fitted.total.sum() + 1e-6
    assert fitted.frames_phones.sum() > 0 and fitted.frames_letters.sum() == fitted.n_frames


def test_purity_and_lift_follow_their_definitions():
    top_phones = np.array([[0, 0, 0, 1], [2, -1, 2, 2]])
    grounding = Grounding(
        "L",
        ["a", "b"],
        ["p0", "p1", "p2"],
        mass_letters=np.array([[3.0, 1.0], [1.0, 1.0]]),
        mass_phones=np.array([[6.0, 2.0, 0.0], [0.0, 0.0, 4.0]]),
        frames_letters=np.array([1.0, 1.0]),
        frames_phones=np.array([2.0, 1.0, 1.0]),
        total=np.array([8.0, 4.0]),
        active=np.array([4.0, 3.0]),
        n_frames=4,
        top_values=np.ones((2, 4)),
        top_utterances=np.full((2, 4), "u"),
        top_frames=np.zeros((2, 4), dtype=int),
        top_times=np.zeros((2, 4)),
        top_letters=np.full((2, 4), -1),
        top_phones=top_phones,
        patterns=np.zeros((2, 1, 1)),
        feature_mean=np.zeros(1),
    )
    names, purity, labelled = grounding.purity("phone")
    assert names == ["p0", "p2"] and purity.tolist() == [0.75, 1.0] and labelled.tolist() == [4, 3]
    np.testing.assert_allclose(grounding.lift("phone")[0], [(6 / 8) / 0.5, (2 / 8) / 0.25, 0.0])
    assert grounding.purity("letter")[0] == [None, None]


def test_concept_clips_and_grams(tiny, utts, tmp_path):
    from asr_introspect.concepts import save_concept_clips

    dictionary = identity_dictionary("conv5", 16)
    grounding = ConceptGrounding(dictionary, top_k=3).fit(tiny, utts).result()
    alive = [int(k) for k in np.flatnonzero(grounding.active > 0)[:2]]
    dead = [int(k) for k in np.flatnonzero(grounding.active == 0)[:1]]
    written = save_concept_clips(grounding, utts, tmp_path, alive + dead, n_clips=2, seconds=0.2)
    assert set(written) == set(alive)  # a concept that never fires has no clip
    import soundfile as sf

    audio, rate = sf.read(written[alive[0]])
    assert rate == 16000 and 0.39 * rate <= len(audio) <= 0.56 * rate  # 2 clips of 0.2 s + a 0.15 s gap
    features = featurize_file(utts[0].audio_path, tiny.feature_config)
    gram = concept_gram(tiny, dictionary, features)
    batch = next(stream_corpus(tiny, utts[:1], ["conv5"]))
    np.testing.assert_allclose(gram.codes, batch.valid("conv5", 0).numpy(), rtol=1e-5, atol=1e-6)
    assert gram.times.shape == (gram.codes.shape[1],) and np.all(np.diff(gram.times) > 0)


# ---------------------------------------------------------------------------
# stability and faithfulness


def test_stability_matches_a_permuted_dictionary_and_not_the_null():
    rng = np.random.default_rng(0)
    atoms = rng.random((12, 30)) * (rng.random((12, 30)) < 0.3)
    permuted = atoms[rng.permutation(12)] + 0.01 * rng.random((12, 30))
    rows, cols, cosine = match_concepts(atoms, permuted)
    assert cosine.min() > 0.98
    np.testing.assert_allclose(permuted[cols], atoms + 0.0, atol=0.02)
    stability = concept_stability([atoms, permuted, atoms[::-1]], threshold=0.7)
    assert stability.cosines.shape == (3, 12) and stability.share_stable == 1.0
    assert stability.null_share < 0.5
    with pytest.raises(InputError, match="at least 2 seeds"):
        concept_stability([atoms])


def test_faithfulness_of_an_exact_dictionary_and_a_single_concept_ablation(tiny, utts):
    dictionary = identity_dictionary("conv5", 16)
    dictionary.mean_activation = np.full(16, 0.3)
    result = faithfulness(tiny, utts, dictionary, concepts=[3], batch_size=3)
    assert result.cer["reconstruction"] == result.cer["model"]
    assert result.kl["reconstruction"] < 1e-6 and result.agreement["reconstruction"] == 1.0
    assert result.kl["mean"] > 1e-3
    # removing concept 3 of the identity dictionary is zeroing channel 3: compare with a manual hook
    references, hypotheses = [], []
    for batch in stream_corpus(tiny, utts, batch_size=3):

        def zero_channel(a):
            a = a.clone()
            a[:, 3] = 0
            return a

        with torch.no_grad(), replaced_layer(tiny, "conv5", zero_channel, batch.feature_lengths):
            logits, lengths = tiny.logits(batch.features, batch.feature_lengths)
        references += [u.text for u in batch.utterances]
        hypotheses += greedy_decode(logits, lengths, tiny.alphabet)
    assert result.cer["ablate:3"] == pytest.approx(error_rates(references, hypotheses)[0])
    assert result.summary()["ablations"][0]["concept"] == 3
    with pytest.raises(InputError, match="out of range"):
        faithfulness(tiny, utts, dictionary, concepts=[16])


# ---------------------------------------------------------------------------
# L2I


def test_magnitude_conversion_round_trips():
    config = FeatureConfig()
    features = np.random.default_rng(0).normal(size=(config.n_mels, 20))
    np.testing.assert_allclose(magnitude_to_features(features_to_magnitude(features, config), config), features)
    tensor = torch.as_tensor(features)
    back = magnitude_to_features(features_to_magnitude(tensor, config), config)
    np.testing.assert_allclose(back.numpy(), features, atol=1e-9)


@pytest.fixture(scope="module")
def sharp(tiny):
    """The tiny model with its output layer scaled up: posteriors that vary from frame to frame (the
    random tiny model's are nearly uniform, so nothing would be there to reproduce)."""
    model = copy.deepcopy(tiny)
    with torch.no_grad():
        model.layer_module("conv11").conv.weight.mul_(30.0)
    return model


def test_l2i_fidelity_beats_chance_and_interpretations_are_listenable(sharp, utts):
    tiny = sharp
    interpreter = ListenableInterpreter(
        "conv9", 8, nmf_passes=5, epochs=60, learning_rate=1e-2, hidden=0, alpha=0.3, holdout=0.3, batch_size=4
    )
    interpreter.fit(tiny, utts)
    test = interpreter.fidelity_["test"]
    assert interpreter.test_ids_ and test["utterances"] == len(interpreter.test_ids_)
    chance = test["chance_agreement"]
    assert test["frame_agreement"] > chance + 0.5 * (1 - chance)  # half of chance's errors gone, at least
    assert test["kl"] < 0.4 * test["chance_kl"]
    assert interpreter.history_[-1]["fidelity_kl"] < interpreter.history_[0]["fidelity_kl"]
    u = interpreter.collected_test_[0]
    item = interpreter.interpret_frame(tiny, u.features, 10)
    start, stop = item.frames
    assert item.features.shape == (tiny.feature_config.n_mels, stop - start)
    assert item.audio.shape == ((stop - start - 1) * tiny.feature_config.hop_length,)
    assert 0 < len(item.components) <= 3 and all(item.relevance[k] > 0 for k in item.components)
    # the relevances decompose the interpreter's logit exactly
    with torch.no_grad():
        logits, _ = interpreter.interpreter_(torch.from_numpy(u.activations)[None])
    letter = int(logits[0, :, 10].argmax())
    item = interpreter.interpret_frame(tiny, u.features, 10, letter)
    bias = float(interpreter.interpreter_.theta.bias[letter].detach())
    assert item.relevance.sum() + bias == pytest.approx(float(logits[0, letter, 10]), rel=1e-4, abs=1e-4)
    faith = interpreter.faithfulness(tiny, n_cases=3)
    assert faith["cases"] <= 3 and set(faith) >= {"drop_relevant", "drop_random", "faithfulness"}


def test_l2i_rejects_models_and_settings_it_cannot_use(tiny, utts):
    with pytest.raises(InputError, match="kernel must be an odd"):
        ListenableInterpreter("conv9", kernel=4)
    with pytest.raises(InputError, match="unknown layer"):
        fit_estimators(tiny, utts, [ListenableInterpreter("conv99")])


# ---------------------------------------------------------------------------
# workflow and command line


def test_workflow_writes_its_files_and_summary(tiny, utts, tmp_path):
    run = concepts(
        tiny,
        utts,
        tmp_path / "nmf",
        layer="conv5",
        method="nmf",
        n_concepts=4,
        passes=2,
        faithfulness_utterances=3,
        ablate=2,
        gram_utterances=1,
        audio_concepts=2,
    )
    summary = run.summary
    assert summary["n_concepts"] == 4 and summary["passes"] == 2 and 0 <= summary["stable_share"] <= 1
    report = json.loads((tmp_path / "nmf" / "concepts_nmf.json").read_text())
    assert len(report["concepts"]) == 4 and sum("ablation" in row for row in report["concepts"]) == 2
    assert all(__import__("pathlib").Path(p).is_file() for p in summary["files"])
    assert any("conceptgram_" in p for p in summary["files"]) and any(p.endswith(".wav") for p in summary["files"])
    assert ConceptDictionary.load(tmp_path / "nmf" / "concepts_nmf.npz").n_concepts == 4


@pytest.mark.slow
def test_workflow_l2i_writes_audio_and_numbers(sharp, utts, tmp_path):
    run = concepts(sharp, utts, tmp_path, layer="conv9", method="l2i", n_concepts=6, passes=3, epochs=3, l2i_cases=2)
    assert {"fidelity_frame_agreement", "fidelity_chance_agreement", "drop_relevant"} <= set(run.summary)
    assert any(p.endswith(".wav") for p in run.summary["files"])
    assert json.loads((tmp_path / "l2i.json").read_text())["interpretations"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="asr-introspect")
    subparsers = parser.add_subparsers(dest="command", parser_class=OneLineArgumentParser)
    concepts_cli.register(subparsers)
    return parser


@pytest.mark.parametrize("flag", [["--n-concepts", "0"], ["--n-concepts", "-2"], ["--method", "pca"]])
def test_cli_bad_flag_values_exit_2_with_one_line(flag, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["concepts", "--layer", "conv9", "--out", str(tmp_path / "o"), *flag])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag[0] in err


@requires_shipped
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--layer", "conv99"], "--layer: unknown layer conv99; the model has conv1, conv2"),
        (["--layer", "conv11", "--method", "nmf"], "NMF needs a layer after a ReLU"),
        (["--layer", "conv9", "--method", "sae", "--n-concepts", "4", "--k", "9"], "--k 9: more active concepts"),
    ],
)
def test_cli_bad_settings_exit_2_with_one_line_before_any_pass(flags, message, capsys, tmp_path, tiny_corpus):
    argv = ["concepts", "--data", str(tiny_corpus.root), "--out", str(tmp_path / "o"), "--quiet", *flags]
    code = run_command(_parser().parse_args(argv), argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_concepts_subcommand_is_registered_and_checks_its_flags(capsys, tmp_path):
    from asr_introspect.cli import COMMANDS, main
    from asr_introspect.cli import concepts as cli_concepts
    from asr_introspect.concepts import sae
    from asr_introspect.workflows.concepts import CONCEPT_METHODS

    assert COMMANDS["concepts"] is cli_concepts
    assert cli_concepts.METHODS == CONCEPT_METHODS and cli_concepts.SPARSITIES == sae.SPARSITIES
    for argv, needle in (
        (["--layer", "conv99"], "conv1"),
        (["--layer", "conv9", "--n-concepts", "0"], "--n-concepts"),
        (["--layer", "conv11", "--method", "nmf"], "ReLU"),
    ):
        out = tmp_path / "_".join(argv).replace("-", "")
        try:
            code = main(["concepts", *argv, "--out", str(out)])
        except SystemExit as exc:  # a usage error (a flag's type) exits from argparse
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and not out.exists()
