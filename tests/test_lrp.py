"""LRP: rules and composites agree with zennit (an independent implementation), conserve relevance,
fold BatchNorm correctly, accept foreign sequential stacks and leave the model untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from asr_introspect.attribution import attribute, conv_stack
from asr_introspect.attribution import lrp as L
from asr_introspect.models import build_model, wrap_conv_model

zennit = pytest.importorskip("zennit")
from zennit import canonizers as zcan  # noqa: E402
from zennit import composites as zcomp  # noqa: E402
from zennit import rules as zrules  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


FRAMES = [0, 1, 2, 30, 56, 57, 58]  # both borders (padding inside the receptive field) and the middle
T_IN = 118  # 59 output frames: every receptive field (194) reaches past both ends


def planted_model(batch_norm: bool = True, seed: int = 0, biases: bool = True):
    """A tiny model (float64) with non-trivial BatchNorm statistics and biases."""
    torch.manual_seed(seed)
    model = build_model("tiny", batch_norm=batch_norm)
    for m in model.module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(0.0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.2)
        if isinstance(m, nn.Conv1d) and biases:
            m.bias.data.normal_(0.0, 0.1)
    model.module.eval().double()
    return model


def features(seed: int = 1, n: int = T_IN) -> torch.Tensor:
    return torch.randn(64, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def zennit_rule(rule: L.Rule):
    zero = ["bias"] if rule.zero_bias and not isinstance(rule, L.Flat) else None
    if isinstance(rule, L.Epsilon):
        return zrules.Epsilon(rule.epsilon, zero_params=zero)
    if isinstance(rule, L.ZPlus):
        return zrules.ZPlus(rule.stabilizer, zero_params=zero)
    if isinstance(rule, L.AlphaBeta):
        return zrules.AlphaBeta(rule.alpha, rule.beta, rule.stabilizer, zero_params=zero)
    if isinstance(rule, L.Gamma):
        return zrules.Gamma(rule.gamma, rule.stabilizer, zero_params=zero)
    if isinstance(rule, L.Flat):
        return zrules.Flat(rule.stabilizer)
    if isinstance(rule, L.WSquare):
        return zrules.WSquare(rule.stabilizer, zero_params=zero)
    if isinstance(rule, L.ZBox):  # float64 tensors: zennit turns python floats into float32
        return zrules.ZBox(
            torch.tensor(rule.low, dtype=torch.float64),
            torch.tensor(rule.high, dtype=torch.float64),
            rule.stabilizer,
            zero_params=zero,
        )
    raise TypeError(rule)


def zennit_module(model) -> nn.Module:
    """A copy whose BatchNorm eps is moved into running_var: the same function, but zennit's BatchNorm
    canonizer then leaves an exact identity (it resets running_var to 1 and keeps eps)."""
    module = copy.deepcopy(model.module)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_var.data += m.eps
            m.eps = 0.0
    return module


def zennit_relevance(model, composite: L.Composite, x: torch.Tensor, frames, targets, conv_names=None) -> np.ndarray:
    """(N, F, T_in): one zennit backward pass per frame, output relevance = the target logit."""
    module = zennit_module(model)
    rules = composite.rules(conv_stack(model))
    if conv_names is None:
        conv_names = [f"blocks.{name}.conv" for name in rules]
    name_map = [((module_name,), zennit_rule(rule)) for module_name, rule in zip(conv_names, rules.values())]
    zc = zcomp.NameLayerMapComposite(
        name_map=name_map, layer_map=zcomp.layer_map_base(), canonizers=[zcan.SequentialMergeBatchNorm()]
    )
    out = []
    with Gradient(module, zc) as attributor:
        for t, c in zip(frames, targets):

            def start(output, t=int(t), c=int(c)):
                grad = torch.zeros_like(output)
                grad[0, c, t] = output[0, c, t]
                return grad

            _, relevance = attributor(x[None].clone(), start)
            out.append(relevance[0].detach().numpy())
    return np.stack(out)


def relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max |a - b| / max |b| per frame."""
    axes = tuple(range(1, a.ndim))
    return np.abs(a - b).max(axis=axes) / np.abs(b).max(axis=axes)


def composites(x: torch.Tensor):
    low, high = float(x.min()), float(x.max())
    return {
        "epsilon": L.EpsilonComposite(epsilon=1e-6),
        "epsilon-plus": L.EpsilonPlus(),
        "epsilon-alpha2-beta1": L.EpsilonAlpha2Beta1(),
        "epsilon-alpha1-beta0": L.EpsilonAlpha1Beta0(),
        "epsilon-gamma-box": L.EpsilonGammaBox(low, high, gamma=0.25),
        "epsilon-plus-flat": L.EpsilonPlusFlat(),
        "wsquare-first": L.Composite(first=L.WSquare(), middle=L.Gamma(0.5), default=L.Epsilon(0.01)),
        "zero-bias": L.Composite(first=L.ZPlus(zero_bias=True), default=L.Epsilon(0.1, zero_bias=True)),
    }


@pytest.mark.parametrize("batch_norm", [True, False])
def test_every_composite_matches_zennit(batch_norm):
    model = planted_model(batch_norm=batch_norm)
    x = features()
    for name, composite in composites(x).items():
        ours = attribute(model, x, composite, frames=FRAMES, dtype=torch.float64)
        ref = zennit_relevance(model, composite, x, ours.frames, ours.targets)
        err = relative_error(ours.relevance, ref)
        assert err.max() < 1e-5, (name, err)


def test_method_names_match_their_composites():
    model = planted_model()
    x = features()
    low, high = float(x.min()), float(x.max())
    pairs = {
        "lrp-epsilon": L.EpsilonComposite(),
        "lrp-epsilon-plus": L.EpsilonPlus(),
        "lrp-alpha2beta1": L.EpsilonAlpha2Beta1(),
        "lrp-epsilon-gamma-box": L.EpsilonGammaBox(low, high),
    }
    for name, composite in pairs.items():
        by_name = attribute(model, x, name, frames=[3, 40], dtype=torch.float64)
        by_object = attribute(model, x, composite, frames=[3, 40], dtype=torch.float64)
        np.testing.assert_array_equal(by_name.relevance, by_object.relevance)


def test_float32_matches_zennit_for_the_stable_composites():
    model = planted_model()
    model.module.float()
    x = features().float()
    for composite in (L.EpsilonPlus(), L.EpsilonAlpha2Beta1()):
        ours = attribute(model, x, composite, frames=FRAMES)
        assert ours.relevance.dtype == np.float32
        ref = zennit_relevance(model, composite, x, ours.frames, ours.targets)
        assert relative_error(ours.relevance, ref).max() < 1e-4


def test_sequential_equivalent_gives_the_same_relevance_and_matches_zennit():
    """A plain nn.Sequential built from the same weights (conv padding instead of pad modules, in-place
    ReLUs) goes through the generic stack reader; zennit's canonizer is written for such Sequentials."""
    model = planted_model()
    layers: list[nn.Module] = []
    conv_names = []
    for name in model.layer_names:
        block = model.module.blocks[name]
        left, right = block.pad.padding
        conv = nn.Conv1d(
            block.conv.in_channels,
            block.conv.out_channels,
            block.conv.kernel_size[0],
            stride=block.conv.stride[0],
            padding=0,
        ).double()
        conv.load_state_dict(block.conv.state_dict())
        layers.append(nn.ConstantPad1d((left, right), 0.0))
        conv_names.append(str(len(layers)))
        layers.append(conv)
        if block.bn is not None:
            layers.append(copy.deepcopy(block.bn))
        if isinstance(block.act, nn.ReLU):
            layers.append(nn.ReLU(inplace=True))
    seq = nn.Sequential(*layers).eval()
    wrapped = wrap_conv_model(seq, model.alphabet, model.feature_config)
    x = features()
    composite = L.EpsilonGammaBox(float(x.min()), float(x.max()))
    a = attribute(model, x, composite, frames=FRAMES, dtype=torch.float64)
    b = attribute(wrapped, x, composite, frames=FRAMES, target=a.targets, dtype=torch.float64)
    assert relative_error(b.relevance, a.relevance).max() < 1e-10
    ref = zennit_relevance(wrapped, composite, x, a.frames, a.targets, conv_names=conv_names)
    assert relative_error(b.relevance, ref).max() < 1e-5


def test_conservation_on_a_bias_free_model():
    """Epsilon -> 0 without biases (and without BatchNorm, whose folding adds biases): the relevance
    of every frame sums to its target logit, borders included; with biases it does not."""
    model = planted_model(batch_norm=False, biases=False)
    x = features()
    a = attribute(model, x, L.EpsilonComposite(epsilon=1e-12), dtype=torch.float64)
    np.testing.assert_allclose(a.relevance.sum(axis=(1, 2)), a.scores, rtol=1e-7, atol=1e-12)
    biased = planted_model(batch_norm=False, biases=True)
    b = attribute(biased, x, L.EpsilonComposite(epsilon=1e-12), dtype=torch.float64)
    assert np.abs(b.relevance.sum(axis=(1, 2)) - b.scores).max() > 1e-3


def test_batchnorm_is_folded_exactly():
    model = planted_model()
    stack = conv_stack(model)
    x = features()[None]
    with torch.no_grad():
        ref = model.module(x)
    torch.testing.assert_close(stack.forward(x), ref, rtol=1e-12, atol=1e-12)
    bn = model.module.blocks["conv3"].bn
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))  # stats are real, not identity


def test_model_unchanged_and_inplace_relu_safe():
    model = planted_model()
    for block in model.module.blocks.values():
        if isinstance(block.act, nn.ReLU):
            block.act.inplace = True
    model.module.train()  # attribution uses eval semantics but must not switch modes
    state = copy.deepcopy(model.module.state_dict())
    x = features()
    reference = attribute(planted_model(), x, "lrp-epsilon-plus", frames=[5, 30], dtype=torch.float64)
    for method in (
        "lrp-epsilon",
        "lrp-epsilon-plus",
        "lrp-alpha2beta1",
        "lrp-epsilon-gamma-box",
        "lrp-epsilon-plus-flat",
        "lrp-alpha1beta0",
    ):
        result = attribute(model, x, method, frames=[5, 30], dtype=torch.float64)
        assert np.isfinite(result.relevance).all()
        if method == "lrp-epsilon-plus":
            np.testing.assert_array_equal(result.relevance, reference.relevance)
    assert model.module.training
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, state[key]), key
    for m in model.module.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
        if isinstance(m, nn.ReLU):
            assert m.inplace


def test_unsupported_modules_are_rejected():
    model = planted_model()

    class Doubler(nn.Module):  # a functional op the stack reader cannot see
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * 2.0

    wrapped = wrap_conv_model(Doubler(model.module), model.alphabet, model.feature_config)
    with pytest.raises(ValueError, match="functional"):
        conv_stack(wrapped)

    class InPlace(nn.Module):  # an in-place op keeps the tensor identity: only the output check sees it
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(64, 8, 3, padding=1)
            self.conv2 = nn.Conv1d(8, 29, 1)

        def forward(self, x):
            return self.conv2(self.conv1(x).mul_(2.0))

    wrapped = wrap_conv_model(InPlace(), model.alphabet, model.feature_config)
    with pytest.raises(ValueError, match="reproduce"):
        conv_stack(wrapped)

    seq = nn.Sequential(nn.Conv1d(64, 8, 3, padding=1), nn.Tanh(), nn.Conv1d(8, 29, 1))
    wrapped = wrap_conv_model(seq, model.alphabet, model.feature_config)
    with pytest.raises(ValueError, match="Tanh"):
        conv_stack(wrapped)


def test_rule_validation_and_positions():
    with pytest.raises(ValueError):
        L.AlphaBeta(2.0, 2.0)
    stack = conv_stack(planted_model())
    rules = L.EpsilonGammaBox(-3.0, 3.0).rules(stack)
    assert isinstance(rules["conv1"], L.ZBox)
    assert all(isinstance(rules[f"conv{i}"], L.Gamma) for i in range(2, 10))
    assert isinstance(rules["conv10"], L.Epsilon) and isinstance(rules["conv11"], L.Epsilon)
    custom = L.EpsilonPlus(layer_rules={"conv9": L.Flat()}).rules(stack)
    assert isinstance(custom["conv9"], L.Flat) and isinstance(custom["conv8"], L.ZPlus)
