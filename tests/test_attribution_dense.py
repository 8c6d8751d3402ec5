"""The gradient family on models with self-attention (tiny random wav2vec2): every frame at once equals a
per-frame autograd loop; LRP and the ReLU rules are refused with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from test_huggingface import VOCAB, tiny_ctc, tiny_whisper_encoder  # noqa: E402

from asr_introspect.attribution import attribute  # noqa: E402
from asr_introspect.attribution.dense import _forward, _local_split  # noqa: E402
from asr_introspect.errors import InputError  # noqa: E402
from asr_introspect.models.huggingface import wrap_hf_ctc, wrap_whisper_encoder  # noqa: E402


@pytest.fixture(scope="module")
def w2v():
    torch.manual_seed(0)
    return wrap_hf_ctc(tiny_ctc("wav2vec2").double(), VOCAB)


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def per_frame(model, x, frames, targets, point=None):
    """Reference: one forward and backward pass per output frame."""
    rows = []
    for frame, target in zip(frames, targets):
        xi = (x if point is None else point).clone().requires_grad_(True)
        logits = model.logits(xi[None])[0][0]
        (grad,) = torch.autograd.grad(logits[target, frame], xi)
        rows.append(grad.numpy())
    return np.stack(rows)


def test_split_is_chosen_and_all_frames_equal_the_per_frame_loop(w2v, x):
    layer, passes = _local_split(w2v)
    # cnn3 (8 channels) rather than the projection (16): receptive field 130 samples at stride 80 -> m = 2
    assert layer == "cnn3" and passes == 8 * 2
    result = attribute(w2v, x, "sensitivity", frames="all")
    assert result.relevance.shape == (len(result.frames), 1, 4000) and not result.cropped
    some = np.array([0, 7, len(result.frames) - 1])
    ref = per_frame(w2v, x, some, result.targets[some])
    np.testing.assert_allclose(result.relevance[some], ref, atol=1e-10)
    # few frames: the per-frame path (no split) gives the same maps
    few = attribute(w2v, x, "sensitivity", frames=[int(f) for f in some])
    np.testing.assert_allclose(few.relevance, ref, atol=1e-10)


def test_each_frame_is_marked_where_its_local_receptive_field_is_centred(w2v, x):
    """Above self-attention every frame sees the whole utterance; the figure marks the frame at the
    centre of what its feature-encoder part sees (autograd support), not at the utterance's centre."""
    frames = np.array([0, 10, 40])
    result = attribute(w2v, x, "sensitivity", frames=frames)
    names = w2v.frame_map.names
    local = names[names.index(w2v.frame_map.first_global) - 1]
    xi = x.clone().requires_grad_(True)
    _, a = _forward(w2v, xi[None], local)
    for i, t in enumerate(frames):
        (grad,) = torch.autograd.grad(a[0, :, t].sum(), xi, retain_graph=True)
        support = np.flatnonzero(grad[0].numpy() != 0)
        assert result.centers[i] == pytest.approx((support[0] + support[-1]) / 2.0, abs=1.0)
    assert result.centers[-1] - result.centers[0] > 0.5 * x.shape[1]


def test_variants_smoothgrad_and_integrated_gradients(w2v, x):
    frames = [3, 11]
    base = attribute(w2v, x, "sensitivity", frames=frames)
    gxi = attribute(w2v, x, "gradient-x-input", frames=frames)
    np.testing.assert_allclose(gxi.relevance, base.relevance * x.numpy()[None], atol=1e-12)
    sq = attribute(w2v, x, "sensitivity-squared", frames=frames)
    np.testing.assert_allclose(sq.relevance, base.relevance**2, atol=1e-12)

    sg = attribute(w2v, x, "smoothgrad", frames=frames, n_samples=2, noise_level=0.1, seed=3)
    gen = torch.Generator().manual_seed(3)
    sigma = 0.1 * float(x.max() - x.min())
    ref = np.zeros_like(sg.relevance)
    for _ in range(2):
        noisy = x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        ref += per_frame(w2v, x, frames, sg.targets, point=noisy) / 2
    np.testing.assert_allclose(sg.relevance, ref, atol=1e-10)

    # a baseline away from silence: layer norms of near-constant frames are steep near 0
    baseline = 0.5 * x.numpy()
    ig = attribute(w2v, x, "integrated-gradients", frames=frames, steps=32, baseline=baseline)
    with torch.no_grad():
        logits = w2v.logits(x[None])[0][0]
        logits0 = w2v.logits(torch.from_numpy(baseline)[None])[0][0]
    for i, (frame, target) in enumerate(zip(ig.frames, ig.targets)):
        gap = float(logits[target, frame] - logits0[target, frame])
        assert ig.relevance[i].sum() == pytest.approx(gap, rel=0.05, abs=1e-3)  # completeness


def test_grad_cam_on_a_transformer_block(w2v, x):
    result = attribute(w2v, x, "grad-cam:block2", frames=[5])
    relevance = result.relevance[0, 0]
    assert relevance.shape == (4000,) and (relevance >= 0).all()
    captured = {}
    handle = w2v.layer_module("block2").register_forward_hook(lambda m, i, o: captured.update(a=o))
    xi = x.clone()
    logits = w2v.logits(xi[None])[0][0]
    handle.remove()
    (grad,) = torch.autograd.grad(logits[result.targets[0], 5], captured["a"])
    cam = torch.relu((grad[0].mean(1)[:, None] * captured["a"][0]).sum(0)).detach().numpy()
    nearest = w2v.frame_map.layer_frame_of_input("block2", np.arange(4000), 4000)
    np.testing.assert_allclose(relevance, cam[nearest], atol=1e-10)


@pytest.mark.parametrize("method", ["lrp-epsilon", "lrp-epsilon-plus", "guided-backprop", "deconvnet"])
def test_lrp_and_relu_rules_are_refused_on_attention(w2v, x, method):
    with pytest.raises(InputError, match="use one of sensitivity"):
        attribute(w2v, x, method, frames=[0])


def test_encoder_without_ctc_head_is_refused():
    model = wrap_whisper_encoder(tiny_whisper_encoder().get_encoder())
    with pytest.raises(InputError, match="without a CTC head"):
        attribute(model, torch.zeros(16, 50), "sensitivity", frames=[0])


def test_attribute_command_on_a_transformers_directory(tmp_path, capsys):
    from test_huggingface import _save_ctc

    from asr_introspect.cli import main
    from asr_introspect.defaults import default_corpus_path

    _save_ctc(tmp_path / "w2v")
    audio = str(sorted(default_corpus_path().rglob("*.flac"))[0])
    out = tmp_path / "attr"
    argv = ["attribute", audio, "--model", str(tmp_path / "w2v"), "--method", "sensitivity", "--frames", "0:4"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 4 and summary["receptive_field"] == "utterance"
    relevance = np.load(out / "relevance.npz")["relevance"]
    assert relevance.shape == (4, 1, summary["n_input_frames"]) and np.abs(relevance).sum() > 0
    assert main([*argv[:-4], "--method", "lrp-epsilon", "--out", str(tmp_path / "lrp")]) == 2
    assert "self-attention" in capsys.readouterr().err and not (tmp_path / "lrp").exists()
