"""The gradient family agrees with captum (an independent implementation) and with plain autograd,
and leaves the model as it was."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from planted import planted_model as _planted

from asr_introspect.attribution import FEATURE_METHODS, attribute, relu_backward

captum_attr = pytest.importorskip("captum.attr")
pytestmark = [
    pytest.mark.filterwarnings("ignore:Setting backward hooks:UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]


FRAMES = [0, 1, 31, 57, 58]
T_IN = 117  # odd: the last frames' receptive fields end inside the right padding


def planted_model(seed: int = 0):
    return _planted(seed, bn_bias_std=0.2, conv_bias_std=0.1)


def features(seed: int = 1) -> torch.Tensor:
    return torch.randn(64, T_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def captum_maps(attr_cls, model, x, frames, targets, **kwargs) -> np.ndarray:
    attributor = attr_cls(model.module)
    return np.stack(
        [
            attributor.attribute(x[None].clone().requires_grad_(True), target=(int(c), int(t)), **kwargs)[0]
            .detach()
            .numpy()
            for t, c in zip(frames, targets)
        ]
    )


def autograd_maps(model, x, frames, targets, rule: str) -> np.ndarray:
    out = []
    for t, c in zip(frames, targets):
        inp = x[None].clone().requires_grad_(True)
        with relu_backward(model.module, rule):
            (grad,) = torch.autograd.grad(model.module(inp)[0, int(c), int(t)], inp)
        out.append(grad[0].numpy())
    return np.stack(out)


def assert_close(a, b, rtol=1e-9):
    scale = np.abs(b).max()
    assert scale > 0
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


@pytest.mark.parametrize(
    "method, captum_name, kwargs, rule",
    [
        ("sensitivity", "Saliency", {"abs": False}, "gradient"),
        ("guided-backprop", "GuidedBackprop", {}, "guided"),
        ("deconvnet", "Deconvolution", {}, "deconvnet"),
    ],
)
def test_matches_captum_and_autograd(method, captum_name, kwargs, rule):
    model = planted_model()
    x = features()
    ours = attribute(model, x, method, frames=FRAMES, dtype=torch.float64)
    assert_close(
        ours.relevance, captum_maps(getattr(captum_attr, captum_name), model, x, ours.frames, ours.targets, **kwargs)
    )
    assert_close(ours.relevance, autograd_maps(model, x, ours.frames, ours.targets, rule))


def test_rules_differ_from_each_other():
    model = planted_model()
    x = features()
    maps = {
        m: attribute(model, x, m, frames=[30], dtype=torch.float64).relevance
        for m in ("sensitivity", "guided-backprop", "deconvnet")
    }
    assert not np.allclose(maps["sensitivity"], maps["guided-backprop"])
    assert not np.allclose(maps["sensitivity"], maps["deconvnet"])
    assert not np.allclose(maps["guided-backprop"], maps["deconvnet"])


def test_derived_gradient_maps():
    model = planted_model()
    x = features()
    sens = attribute(model, x, "sensitivity", frames=FRAMES, dtype=torch.float64)
    sq = attribute(model, x, "sensitivity-squared", frames=FRAMES, dtype=torch.float64)
    gxi = attribute(model, x, "gradient-x-input", frames=FRAMES, dtype=torch.float64)
    np.testing.assert_allclose(sq.relevance, sens.relevance**2, rtol=1e-12)
    np.testing.assert_allclose(gxi.relevance, sens.relevance * x.numpy()[None], rtol=1e-12, atol=1e-15)
    # no noise: SmoothGrad is the gradient; noise: seeded, and different
    np.testing.assert_allclose(
        attribute(model, x, "smoothgrad", frames=FRAMES, dtype=torch.float64, noise_level=0.0, n_samples=2).relevance,
        sens.relevance,
        rtol=1e-12,
    )
    a = attribute(model, x, "smoothgrad", frames=FRAMES, dtype=torch.float64, n_samples=3, seed=5)
    b = attribute(model, x, "smoothgrad", frames=FRAMES, dtype=torch.float64, n_samples=3, seed=5)
    np.testing.assert_array_equal(a.relevance, b.relevance)
    assert not np.allclose(a.relevance, sens.relevance)


def test_smoothgrad_is_the_mean_gradient_over_the_same_noise():
    model = planted_model()
    x = features()
    ours = attribute(model, x, "smoothgrad", frames=[2, 30], dtype=torch.float64, n_samples=3, noise_level=0.1, seed=7)
    gen = torch.Generator().manual_seed(7)
    sigma = 0.1 * float(x.max() - x.min())
    total = 0.0
    for _ in range(3):
        noisy = x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        total = total + autograd_maps(model, noisy, ours.frames, ours.targets, "gradient")
    assert_close(ours.relevance, total / 3)


def test_integrated_gradients_matches_captum_and_is_complete():
    model = planted_model()
    x = features()
    ours = attribute(model, x, "integrated-gradients", frames=FRAMES, dtype=torch.float64, steps=48)
    ref = np.stack(
        [
            captum_attr.IntegratedGradients(model.module)
            .attribute(x[None], target=(int(c), int(t)), n_steps=48, method="riemann_middle")[0]
            .numpy()
            for t, c in zip(ours.frames, ours.targets)
        ]
    )
    assert_close(ours.relevance, ref, rtol=1e-6)  # captum's alphas are float32
    with torch.no_grad():
        at_baseline = model.module(torch.zeros_like(x)[None])[0].numpy()
    gap = ours.scores - at_baseline[ours.targets, ours.frames]
    np.testing.assert_allclose(ours.relevance.sum(axis=(1, 2)), gap, atol=0.05 * np.abs(gap).max())


def test_grad_cam_matches_captum_inside_the_receptive_field():
    """captum averages the gradient over the whole layer; ours over the frame's receptive field (the
    gradient is zero elsewhere), so the layer maps agree up to that positive factor, inside the field."""
    model = planted_model()
    x = features()
    layer = "conv5"
    ours = attribute(model, x, f"grad-cam:{layer}", frames=FRAMES, dtype=torch.float64, crop=True)
    gc = captum_attr.LayerGradCam(model.module, model.module.blocks[layer])
    fm = model.frame_map
    n_layer = fm.output_length(layer, T_IN)
    for t, c in zip(ours.frames, ours.targets):
        cam = gc.attribute(x[None], target=(int(c), int(t)), relu_attributions=False)[0, 0].detach().numpy()
        lo, hi = fm.input_range(model.output_layer, int(t))  # unclipped receptive field
        inside = [j for j in range(n_layer) if lo <= fm.input_range(layer, j)[0] and fm.input_range(layer, j)[1] <= hi]
        dense = ours.frame(int(t))
        assert np.allclose(dense, dense[:1])  # constant over frequency
        # each layer frame's value sits on the input frame nearest to its receptive-field centre
        centres = [int(round(fm.center(layer, j))) for j in inside]
        keep = [k for k, i in enumerate(centres) if 0 <= i < T_IN]
        got = np.array([dense[0, centres[k]] for k in keep])
        want = np.maximum(cam[[inside[k] for k in keep]], 0.0)
        assert want.max() > 0
        scale = got.max() / want.max()
        np.testing.assert_allclose(got, want * scale, rtol=1e-8, atol=1e-12 * want.max())
        # input frames outside the receptive field get nothing
        outside = np.ones(T_IN, dtype=bool)
        outside[max(lo, 0) : min(hi, T_IN)] = False
        assert not dense[:, outside].any()


def test_guided_grad_cam_is_the_product():
    model = planted_model()
    x = features()
    cam = attribute(model, x, "grad-cam:conv9", frames=FRAMES, dtype=torch.float64, crop=True)
    guided = attribute(model, x, "guided-backprop", frames=FRAMES, dtype=torch.float64, crop=True)
    both = attribute(model, x, "guided-grad-cam:conv9", frames=FRAMES, dtype=torch.float64, crop=True)
    np.testing.assert_allclose(both.relevance, cam.relevance * guided.relevance, rtol=1e-12)
    default = attribute(model, x, "grad-cam", frames=FRAMES, dtype=torch.float64, crop=True)
    np.testing.assert_array_equal(default.relevance, cam.relevance)  # conv9: last wide ReLU layer


def test_every_method_leaves_the_model_unchanged():
    model = planted_model()
    model.module.blocks["conv2"].act.inplace = True
    model.module.train()
    state = copy.deepcopy(model.module.state_dict())
    x = features()
    for method in FEATURE_METHODS:
        method = method.replace(":LAYER", ":conv4")
        options = {"smoothgrad": {"n_samples": 2}, "integrated-gradients": {"steps": 2}}.get(method, {})
        result = attribute(model, x, method, frames=[0, 30], dtype=torch.float64, **options)
        assert result.relevance.shape == (2, 64, T_IN) and np.isfinite(result.relevance).all(), method
    assert model.module.training and model.module.blocks["conv2"].act.inplace
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, state[key]), key
    for m in model.module.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks


def test_relu_backward_context_restores_the_module():
    model = planted_model()
    model.module.blocks["conv3"].act.inplace = True
    x = features()[None].requires_grad_(True)
    with relu_backward(model.module, "deconvnet"):
        assert not model.module.blocks["conv3"].act.inplace
        model.module(x)[0, 3, 10].backward()
    assert model.module.blocks["conv3"].act.inplace
    for m in model.module.modules():
        assert not m._backward_hooks
        assert not getattr(m, "_is_full_backward_hook", None)
    with pytest.raises(ValueError):
        with relu_backward(model.module, "nonsense"):
            pass
