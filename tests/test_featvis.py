"""Feature visualization: objectives, parameterizations, regularizers, render, CLI.

Every test uses a tiny model (build_model("tiny") or a planted-detector conv stack) and
synthetic data; torch runs single-threaded here (the machine is shared and tiny convs
are slower with thread contention).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from shipped import requires_shipped
from torch import nn

from asr_introspect import featvis as fv
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.hooks import ActivationRecorder
from asr_introspect.models import build_model, save_checkpoint, wrap_conv_model
from asr_introspect.text import Alphabet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    gen = torch.Generator().manual_seed(1)
    for module in model.module.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    return model


def _corr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


N_MELS, KERNEL, DETECTOR = 16, 9, 2


def _chirp_template() -> np.ndarray:
    """A rising ridge (band 4 -> 12 over 9 frames), zero mean, unit norm: (16, 9)."""
    f = np.arange(N_MELS)[:, None]
    t = np.arange(KERNEL)[None, :]
    template = np.exp(-0.5 * (f - (4 + t)) ** 2)
    template = template - template.mean()
    return template / np.linalg.norm(template)


@pytest.fixture(scope="module")
def planted():
    """(model, template): conv1 channel 2 is a Conv1d filter equal to a time-frequency template."""
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv1d(N_MELS, 4, KERNEL, padding=KERNEL // 2), nn.ReLU(), nn.Conv1d(4, 29, 1))
    template = _chirp_template()
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(net[0].weight.shape, generator=gen) * 0.05)
        net[0].weight[DETECTOR] = torch.as_tensor(template, dtype=torch.float32)
        net[0].bias.zero_()
    model = wrap_conv_model(net, Alphabet.default(), FeatureConfig(n_mels=N_MELS))
    return model.eval(), template


# -- the planted detector -------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["channel", "neuron"])
def test_planted_detector_is_recovered(planted, objective):
    model, template = planted
    obj = fv.channel("conv1", DETECTOR) if objective == "channel" else fv.neuron("conv1", DETECTOR)
    result = fv.render(model, obj, param="raw", regularizers=[fv.L2(0.1)], steps=120, lr=0.05, seed=0)
    assert result.features.shape == (N_MELS, KERNEL)
    assert _corr(result.features, template) >= 0.8
    # a detector of another channel does not give the template
    other = fv.render(model, fv.channel("conv1", 0), param="raw", regularizers=[fv.L2(0.1)], steps=120)
    assert abs(_corr(other.features, template)) < 0.5


def test_planted_detector_fourier_param(planted):
    model, template = planted
    result = fv.render(
        model, fv.channel("conv1", DETECTOR), param="fourier", regularizers=[fv.L2(0.1)], steps=300, lr=0.05, seed=0
    )
    assert _corr(result.features, template) >= 0.8


def test_channel_over_a_wider_window_tiles(planted):
    model, template = planted
    result = fv.render(
        model, fv.channel("conv1", DETECTOR), param="raw", regularizers=[fv.L2(0.1)], steps=60, width=3 * KERNEL
    )
    assert result.features.shape == (N_MELS, 3 * KERNEL)
    assert result.objective > 0


# -- objectives -----------------------------------------------------------------------------


def _ctx(model, objective, features):
    layers = [layer for layer in objective.layers if layer not in (fv.OUTPUT, model.output_layer)]
    with torch.no_grad(), ActivationRecorder(model, layers) as rec:
        logits, _ = rec.run(features)
        return fv.ObjectiveContext(model, features, dict(rec.activations), logits)


def test_objectives_compose_arithmetically(tiny):
    features = torch.randn(2, 64, 195, generator=torch.Generator().manual_seed(3))
    a = fv.channel("conv3", 1)
    b = fv.class_logit("e")
    c = fv.layer_norm("conv5")
    combined = a + 2 * b - c / 4
    ctx = _ctx(tiny, combined, features)
    va, vb, vc = float(a(ctx)), float(b(ctx)), float(c(ctx))
    assert float((a + 2 * b).loss(ctx)) == pytest.approx(float(a.loss(ctx)) + 2 * float(b.loss(ctx)), rel=1e-6)
    assert float(combined(ctx)) == pytest.approx(va + 2 * vb - vc / 4, rel=1e-6)
    assert float((-a)(ctx)) == pytest.approx(-va)
    assert float((3 - a)(ctx)) == pytest.approx(3 - va, rel=1e-6)
    assert float(sum([a, b, c])(ctx)) == pytest.approx(va + vb + vc, rel=1e-6)
    assert float((0.5 * a + b * 0.25)(ctx)) == pytest.approx(0.5 * va + 0.25 * vb, rel=1e-6)
    assert set(combined.layers) == {"conv3", fv.OUTPUT, "conv5"}
    assert va != 0 and vb != 0 and vc != 0
    # evaluate_objective runs the same forward pass
    assert fv.evaluate_objective(tiny, a + 2 * b, features) == pytest.approx(va + 2 * vb, rel=1e-5)


def test_objective_values_read_the_right_entries(tiny):
    features = torch.randn(1, 64, 195, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), ActivationRecorder(tiny, ["conv5"]) as rec:
        logits, _ = rec.run(features)
        conv5 = rec.activations["conv5"]
    ctx = fv.ObjectiveContext(tiny, features, {"conv5": conv5}, logits)
    t_out = ctx.frame(fv.OUTPUT, None)
    assert t_out == tiny.frame_map.layer_frame_of_input("conv11", 97, 195)
    k = tiny.alphabet.index("a")
    assert float(fv.class_logit("a")(ctx)) == pytest.approx(float(logits[0, k, t_out]))
    assert float(fv.class_logit("a", 10)(ctx)) == pytest.approx(float(logits[0, k, 10]))
    assert float(fv.class_probability("a")(ctx)) == pytest.approx(float(torch.softmax(logits[0, :, t_out], 0)[k]))
    assert float(fv.neuron("conv5", 3, 7)(ctx)) == pytest.approx(float(conv5[0, 3, 7]))
    valid = ctx.frames("conv5")
    g = tiny.frame_map.layer("conv5")
    for t in range(valid.start, valid.stop):  # valid frames see no padding
        start, stop = tiny.frame_map.input_range("conv5", t)
        assert start >= 0 and stop <= 195
    assert tiny.frame_map.input_range("conv5", valid.start - 1)[0] < 0 or valid.start == 0
    assert float(fv.channel("conv5", 3)(ctx)) == pytest.approx(float(conv5[0, 3, valid].mean()))
    assert float(fv.channel("conv5", 3, "all")(ctx)) == pytest.approx(float(conv5[0, 3].mean()))
    assert g.stride == 2


def test_diversity_needs_a_batch_and_spreads_inputs(tiny):
    objective = fv.channel("conv3", 2) + 5 * fv.diversity("conv3")
    with pytest.raises(InputError, match="batch"):
        fv.render(tiny, objective, steps=2)
    result = fv.render(tiny, objective, param="raw", steps=30, batch=3, seed=0)
    assert result.features.shape[0] == 3 and result.response.shape == (3, 29)
    assert not np.allclose(result.features[0], result.features[1])


@pytest.mark.parametrize(
    "spec, name, layer, frame",
    [
        ("conv5:17", "channel(conv5:17)", "conv5", None),
        ("conv5:15@40", "neuron(conv5:15@40)", "conv5", 40),
        ("conv11:letter=a", "logit('a'@centre)", "output", None),
        ("conv11:prob=a", "prob('a'@centre)", "output", None),
        ("output:letter=space@12", "logit(' '@12)", "output", 12),
        ("layer:conv3", "deep_dream(conv3)", "conv3", None),
        ("diversity:conv2", "diversity(conv2)", "conv2", None),
    ],
)
def test_parse_objective(tiny, spec, name, layer, frame):
    spec = spec.replace("conv5:17", "conv5:13")  # the tiny model has 16 channels
    name = name.replace("conv5:17", "conv5:13")
    objective = fv.parse_objective(spec, tiny)
    assert objective.name == name
    assert objective.targets[0] == fv.Target(layer, frame)


def test_parsed_sum_equals_composed(tiny):
    features = torch.randn(1, 64, 97, generator=torch.Generator().manual_seed(5))
    parsed = fv.parse_objective("conv5:1 + 0.5*layer:conv5", tiny)
    composed = fv.channel("conv5", 1) + 0.5 * fv.layer_norm("conv5")
    assert fv.evaluate_objective(tiny, parsed, features) == pytest.approx(
        fv.evaluate_objective(tiny, composed, features), rel=1e-6
    )


@pytest.mark.parametrize(
    "spec, why, valid",
    [
        ("conv5", "cannot parse it", "valid forms"),
        ("conv5:1+conv5", "cannot parse 'conv5'", "valid forms"),
        ("conv99:1", "unknown layer 'conv99'", "conv1, conv2, conv3"),
        ("conv5:16", "16 channels", "(0..15)"),
        ("conv5:letter=a", "output layer", "conv11"),
        ("conv11:letter=Q", "no symbol 'Q'", "'a' 'b'"),
        ("layer:", "cannot parse it", "valid forms"),
        ("conv5:1+", "empty term", "valid forms"),
        ("", "empty", "valid forms"),
        ("1e999*conv5:1", "not a finite number", "1e999"),
    ],
)
def test_bad_objective_spec(tiny, spec, why, valid):
    """One line that names the spec, says what is wrong and what is valid: the forms when the spec cannot
    be read, else the layers, channels or symbols; short enough for the command line's one-line errors."""
    with pytest.raises(InputError) as info:
        fv.parse_objective(spec, tiny)
    message = str(info.value)
    assert message.startswith(f"objective {spec!r}: ") and why in message and valid in message
    if valid == "valid forms":
        assert "conv5:17@40" in message and "layer:conv3" in message
    assert "\n" not in message and len(message) <= 250
    with pytest.raises(InputError, match=r"^--objective "):
        fv.parse_objective(spec, tiny, name="--objective")


def test_window_covers_the_receptive_field(tiny):
    for layer in ["conv1", "conv3", "conv9", "conv11"]:
        objective = fv.neuron(layer, 0)
        width = fv.window_frames(tiny, objective)
        g = tiny.frame_map.layer(layer)
        assert g.receptive_field <= width <= g.receptive_field + 2 * g.stride
        centre = fv.objectives.centre_frame(tiny, layer, width)
        start, stop = tiny.frame_map.input_range(layer, centre)
        assert 0 <= start and stop <= width
    width = fv.window_frames(tiny, fv.neuron("conv5", 0, 60))
    assert width >= tiny.frame_map.input_range("conv5", 60)[1]
    assert width == max(
        fv.window_frames(tiny, fv.neuron("conv5", 0, 60)),
        fv.window_frames(tiny, fv.neuron("conv5", 0, 60) + fv.channel("conv1", 0)),
    )


# -- render -----------------------------------------------------------------------------------


def test_objective_increases_and_model_is_unchanged(tiny):
    tiny.module.train()  # render must use eval mode and restore this
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    flags = [p.requires_grad for p in tiny.module.parameters()]
    calls = []
    try:
        result = fv.render(
            tiny,
            "conv11:letter=a",
            param="fourier",
            steps=40,
            lr=0.05,
            seed=0,
            progress=lambda step, value: calls.append((step, value)),
        )
    finally:
        training = tiny.module.training
        tiny.module.eval()
    assert training
    assert result.trace.shape == (40,) and len(calls) == 40 and calls[-1][0] == 39
    assert result.trace[-5:].mean() > result.trace[:5].mean() + 1.0
    zeros = np.zeros_like(result.features)
    assert result.objective > fv.evaluate_objective(tiny, "conv11:letter=a", zeros) + 1.0
    after = tiny.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included
    assert [p.requires_grad for p in tiny.module.parameters()] == flags
    assert all(p.grad is None for p in tiny.module.parameters())
    assert result.response.shape == (29,) and result.response.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(result.response, fv.letter_response(tiny, result.features), atol=1e-5)
    assert result.top_letters(1)[0][0] == "a"


def test_same_seed_same_result(tiny):
    kwargs = dict(param="fourier", regularizers="strong", steps=12, lr=0.05, width=None)
    first = fv.render(tiny, "conv5:4", seed=7, **kwargs)
    second = fv.render(tiny, "conv5:4", seed=7, **kwargs)
    other = fv.render(tiny, "conv5:4", seed=8, **kwargs)
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.trace, second.trace)
    assert not np.allclose(first.features, other.features)


def test_parameterizations_round_trip():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 13, generator=gen)
    for param in (fv.RawParam(), fv.FourierParam(), fv.FourierParam(decay_power=1.5)):
        param.init((2, 8, 13), gen)
        param.set_features(x)
        torch.testing.assert_close(param.features(), x, atol=1e-5, rtol=1e-5)
    # white Fourier coefficients of std s give values of std about s (scale has RMS 1)
    param = fv.FourierParam(sd=1.0)
    param.init((64, 8, 13), gen)
    assert float(param.features().detach().std()) == pytest.approx(1.0, rel=0.1)
    windows = np.random.default_rng(0).standard_normal((40, 3, 5))
    prior = fv.fit_prior(windows, n_components=10)
    pca = fv.PCAParam(prior)
    pca.init((1, 3, 5), gen)
    inside = torch.as_tensor(prior.mean + (np.arange(10.0) @ prior.whitening()[0]).reshape(3, 5), dtype=torch.float32)[
        None
    ]
    pca.set_features(inside)
    torch.testing.assert_close(pca.features(), inside, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pca.z.detach()[0], torch.arange(10.0), atol=1e-3, rtol=1e-3)


def test_gaussian_prior_matches_dense_mahalanobis():
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((12, 12))
    windows = (rng.standard_normal((500, 12)) @ mixing + 3.0).reshape(500, 3, 4)
    prior = fv.fit_prior(windows, n_components=12)
    flat = windows.reshape(500, 12)
    cov = np.cov(flat, rowvar=False)
    x = rng.standard_normal((5, 3, 4)) * 2
    r = x.reshape(5, 12) - flat.mean(0)
    expected = np.sqrt(np.einsum("nd,nd->n", r, np.linalg.solve(cov, r.T).T))
    np.testing.assert_allclose(prior.mahalanobis(x), expected, rtol=1e-4)
    # low rank: equals the dense formula with the PPCA covariance
    low = fv.fit_prior(windows, n_components=4)
    dense = low.covariance()
    expected = np.sqrt(np.einsum("nd,nd->n", r, np.linalg.solve(dense, r.T).T))
    np.testing.assert_allclose(low.mahalanobis(x), expected, rtol=1e-3)
    exact = fv.GaussianPrior.from_covariance(flat.mean(0).reshape(3, 4), cov)
    np.testing.assert_allclose(exact.mahalanobis(x), prior.mahalanobis(x), rtol=1e-4)


def _natural_windows(n: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth random 'spectrograms': blurred noise plus a falling spectral tilt, (n, F, W)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *shape), generator=gen)
    smooth = fv.gaussian_blur(noise, 3.0, 2.0) * 3.0
    tilt = torch.linspace(1.0, -1.0, shape[0])[:, None]
    return (smooth + tilt).numpy()


@pytest.fixture(scope="module")
def baseline(tiny):
    """Unregularized raw-pixel run on a conv3 channel (the reference for the regularizer tests)."""
    return fv.render(tiny, "conv3:1", param="raw", regularizers=[], steps=60, lr=0.05, seed=0)


def _regularized(tiny, regularizers):
    return fv.render(tiny, "conv3:1", param="raw", regularizers=regularizers, steps=60, lr=0.05, seed=0)


@pytest.mark.parametrize("name", ["l1", "l2", "tv", "tv_time", "high_frequency", "blur"])
def test_each_regularizer_reduces_its_target(tiny, baseline, name):
    regularizer, measure = {
        "l1": (fv.L1(0.5), fv.l1_norm),
        "l2": (fv.L2(0.2), fv.l2_norm),
        "tv": (fv.TotalVariation(0.5), fv.total_variation),
        "tv_time": (
            fv.TotalVariation(0.5, time=1.0, frequency=0.0),
            lambda x: fv.total_variation(x, time=1.0, frequency=0.0),
        ),
        "high_frequency": (fv.HighFrequencyPenalty(1.0), fv.high_frequency_energy),
        "blur": (fv.Blur(0.2), fv.high_frequency_energy),
    }[name]
    result = _regularized(tiny, [regularizer])
    assert measure(result.features) < 0.7 * measure(baseline.features)
    # switched off, it is the baseline again
    regularizer.enabled = False
    np.testing.assert_array_equal(_regularized(tiny, [regularizer]).features, baseline.features)


def test_prior_penalty_reduces_mahalanobis_distance(tiny, baseline):
    width = baseline.features.shape[1]
    prior = fv.fit_prior(_natural_windows(120, (64, width)), n_components=60)
    real = _natural_windows(20, (64, width), seed=1)
    assert np.median(prior.normalized_distance(real)) < 3
    result = _regularized(tiny, [fv.PriorPenalty(prior, 1.0)])
    assert prior.normalized_distance(result.features) < 0.5 * prior.normalized_distance(baseline.features)
    pca = fv.render(tiny, "conv3:1", param="pca", prior=prior, steps=60, seed=0)
    assert prior.normalized_distance(pca.features) < 0.5 * prior.normalized_distance(baseline.features)
    with pytest.raises(InputError, match="windows of"):
        fv.render(tiny, "conv3:1", param="raw", regularizers=[fv.PriorPenalty(prior)], width=width + 2, steps=1)


def test_transformation_robustness_makes_the_result_robust(tiny, baseline):
    transform = fv.TransformRobustness(time_shift=6, frequency_shift=2, stretch=0.1, noise=0.2)
    result = _regularized(tiny, [transform])

    def shifted_objective(features):
        x = torch.as_tensor(features)
        values = [fv.evaluate_objective(tiny, "conv3:1", torch.roll(x, s, dims=-1)) for s in (-6, -3, 3, 6)]
        return np.mean(values) / fv.evaluate_objective(tiny, "conv3:1", x)

    assert shifted_objective(result.features) > shifted_objective(baseline.features)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 40, generator=gen)
    y = transform.transform(x, gen)
    assert y.shape == x.shape and not torch.equal(x, y)
    transform.weight = 0.0
    assert not transform.active


def test_regularization_sets(tiny):
    assert [r.name for r in fv.regularizer_set("none")] == []
    assert {"l2", "tv", "high_frequency", "blur", "robustness"} <= {r.name for r in fv.regularizer_set("strong")}
    with pytest.raises(InputError, match="prior"):
        fv.regularizer_set("prior")
    with pytest.raises(InputError, match="unknown regularization"):
        fv.regularizer_set("medium")


# -- CLI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("featvis") / "tiny.safetensors"
    save_checkpoint(path, tiny, {"note": "featvis test"})
    return path


def test_cli_visualize_writes_npz_png_wav_and_json(tiny_checkpoint, tmp_path, capsys):
    from asr_introspect.cli import main

    out = tmp_path / "vis"
    code = main(
        [
            "visualize",
            "--model",
            str(tiny_checkpoint),
            "--objective",
            "conv5:3@20",
            "--out",
            str(out),
            "--steps",
            "4",
            "--regularization",
            "weak",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    files = summary["files"]
    npz = np.load(files["npz"])
    assert npz["features"].shape == (64, summary["width"]) and npz["trace"].shape == (4,)
    audio, rate = sf.read(files["wav"])
    assert rate == 16000 and len(audio) > 0.5 * rate
    assert (out / "conv5_3_at20.png").stat().st_size > 1000 and (out / "conv5_3_at20.svg").is_file()
    assert json.loads((out / "conv5_3_at20.json").read_text())["objective"] == "conv5:3@20"
    assert summary["trace_last"] == pytest.approx(float(npz["trace"][-1]), abs=1e-5)


def test_cli_bad_objective_exits_2(tiny_checkpoint, tmp_path, capsys):
    from asr_introspect.cli import main

    code = main(
        ["visualize", "--model", str(tiny_checkpoint), "--objective", "conv5", "--out", str(tmp_path), "--quiet"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--objective 'conv5'" in err and "valid forms" in err


def test_cli_grid_and_strong_prior(tiny_checkpoint, tiny_corpus, tmp_path, capsys):
    from asr_introspect.cli import main

    out = tmp_path / "grid"
    code = main(
        [
            "visualize",
            "--model",
            str(tiny_checkpoint),
            "--objective",
            "conv11:letter=e",
            "--out",
            str(out),
            "--steps",
            "2",
            "--regularization",
            "strong",
            "--data",
            str(tiny_corpus.root),
            "--grid",
            "--max-windows",
            "50",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["prior_distance"] > 0
    assert (out / "optimal_inputs.png").is_file()
    rows = summary["grid"]["objectives"]
    assert list(rows) == ["conv1:0", "conv6:0", "conv11:letter=e"]
    assert all(list(cols) == ["weak", "strong"] for cols in rows.values())
    assert len(np.load(out / "optimal_inputs.npz").files) == 6


@requires_shipped
def test_default_model_letter_objective_is_reached():
    from asr_introspect.loading import load_model

    model, _ = load_model(None)
    # 80 steps: the default model since #17 still prefers blank after 40 from this seed (0.75 vs e 0.15)
    result = fv.render(model, "conv11:letter=e", param="fourier", regularizers="none", steps=80, seed=0)
    (letter, probability), *_ = result.top_letters(1)
    assert letter == "e" and probability > 0.5


def test_comparison_experiment_runs_on_a_tiny_model(tiny_checkpoint, tiny_corpus, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "featvis_comparison.py"
    spec = importlib.util.spec_from_file_location("featvis_comparison", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        result = module.main(
            [
                "--model",
                str(tiny_checkpoint),
                "--data",
                str(tiny_corpus.root),
                "--out",
                str(tmp_path),
                "--letters",
                "e",
                "--sets",
                "none,strong,pca_param",
                "--steps",
                "3",
                "--max-windows",
                "40",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "featvis_comparison.json").read_text())
    assert set(saved["summary"]) == {"none", "strong", "pca_param"} and len(saved["runs"]) == 3
    assert all(r["distance"] > 0 and 0 <= r["probability"] <= 1 for r in saved["runs"])
    assert (tmp_path / "featvis_comparison.png").is_file() and result["width"] == 195


def test_relative_weights_make_penalties_independent_of_the_objective_scale(tiny):
    regs = [fv.L2(0.2), fv.TotalVariation(0.5)]
    objective = fv.channel("conv3", 1)
    one = fv.render(tiny, objective, param="raw", regularizers=regs, steps=25, seed=0)
    ten = fv.render(tiny, 10 * objective, param="raw", regularizers=regs, steps=25, seed=0)
    np.testing.assert_allclose(one.features, ten.features, atol=1e-4)
    assert ten.settings["penalty_scale"] == pytest.approx(10 * one.settings["penalty_scale"], rel=1e-5)
    absolute = fv.render(tiny, 10 * objective, param="raw", regularizers=regs, steps=25, seed=0, relative_weights=False)
    assert not np.allclose(absolute.features, ten.features, atol=1e-3)


def test_a_unit_that_is_off_at_the_start_is_still_driven_on(planted):
    """A detector whose bias keeps it off for the small random start: the redirected ReLU
    gets it moving, and the penalty weights are scaled by that (redirected) push, not by
    the zero gradient of a unit that is off."""
    model, template = planted
    net = model.module
    bias = net[0].bias.detach().clone()
    try:
        with torch.no_grad():
            net[0].bias[DETECTOR] = -2.0
        zeros = np.zeros((N_MELS, 2 * KERNEL), dtype=np.float32)
        assert fv.evaluate_objective(model, f"conv1:{DETECTOR}", zeros) == 0.0
        result = fv.render(model, f"conv1:{DETECTOR}", param="fourier", regularizers="weak", steps=64, seed=0)
    finally:
        with torch.no_grad():
            net[0].bias.copy_(bias)
    assert 0.0 < result.settings["penalty_scale"] < 0.5
    assert result.objective > 1.0, result.trace[::8]
