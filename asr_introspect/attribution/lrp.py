"""Layer-wise relevance propagation for sequential Conv1d stacks, with zennit-style rules and composites.

The model is read as a :class:`~.stack.ConvStack` (see :mod:`.stack`): one
Conv1d per layer with BatchNorm folded in, optionally followed by a ReLU.

LRP is an explicit backward pass over the layers. For one layer with input
``x`` (the zero-padded conv input, ``(C_in, T)``), weights ``W`` and bias ``b``
a rule is a list of *terms* ``(input_i, W_i, b_i, group_i)``: every group ``g``
has a denominator ``z_g = sum_{i in g} conv(input_i, W_i, b_i)`` (stabilized
as ``z + eps * sign(z)``, sign(0) = +1, like zennit) and relevance flows as

    R_in = sum_i input_i * conv_transpose(R_out * mask_g / stab(z_g), W_i)

(``input_i = 1`` for flat / w-square, which do not multiply by the input).
The denominators depend only on the forward pass, so they are computed once
per utterance and reused for every target frame (see :mod:`.crops`). The
rules reproduce zennit's definitions term by term, including how biases enter
(``ZPlus``: ``b+`` in the positive term; ``WSquare``: ``b**2``; ``Flat``: no
bias; ``ZBox``: biases cancel). ReLUs pass relevance through unchanged.

Relevance that flows onto zero-padding frames (only the flat, w-square and
z-box rules put relevance there) is dropped, as zennit does for a padding
module, so conservation holds up to biases, stabilizers and padding.

Composites assign rules by layer position: ``first`` (the first conv),
``middle`` (the other convs with kernel > 1), ``dense`` (kernel-1 convs, the
analogue of fully connected layers) and ``output`` (the last conv), plus
per-layer overrides by name.

Where the rules are not right, LRP is refused rather than giving a wrong map
(:func:`require_lrp_support`): models with self-attention (Conformers,
transformers: their softmax and products of activations need attention-aware
rules) and residual conv models (QuartzNet: the backward here has no rule for
the sum of two branches). Gradient methods apply to every model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from asr_introspect.attribution.crops import CropGeometry
from asr_introspect.attribution.stack import ConvLayer, ConvStack, ForwardCache
from asr_introspect.errors import InputError
from asr_introspect.models.quartznet import ResidualBlock

__all__ = [
    "Rule",
    "Epsilon",
    "ZPlus",
    "AlphaBeta",
    "Gamma",
    "Flat",
    "WSquare",
    "ZBox",
    "stabilize",
    "Composite",
    "EpsilonComposite",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha1Beta0",
    "EpsilonGammaBox",
    "COMPOSITES",
    "PreparedRule",
    "LRPBackend",
    "require_lrp_support",
]


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with sign(0) = +1 (zennit's stabilizer)."""
    sign = (z == 0).to(z) + z.sign()
    return z + sign * epsilon


def require_lrp_support(model) -> None:
    """One-line :class:`~asr_introspect.errors.InputError` when LRP's rules do not hold for ``model``.

    Refused: a model with a layer that mixes the whole utterance (self-attention:
    ``model.frame_map.first_global``) and a model with residual blocks
    (:class:`~asr_introspect.models.quartznet.ResidualBlock`). Other models go on to
    :func:`~.stack.conv_stack`, which checks that they are sequential Conv1d stacks.
    """
    architecture = model.model_config.get("architecture", "custom")
    if model.frame_map.first_global is not None:
        raise InputError(
            f"LRP is not available for this {architecture} model: its layer {model.frame_map.first_global} "
            "and those after it mix the whole utterance (self-attention: use a gradient method, e.g. "
            "integrated-gradients or smoothgrad)"
        )
    if any(isinstance(module, ResidualBlock) for module in model.module.modules()):
        raise InputError(
            f"LRP is not available for this {architecture} model: the toolkit's LRP rules cover sequential "
            "Conv1d stacks, not its residual additions (use a gradient method, e.g. integrated-gradients or smoothgrad)"
        )


# ---------------------------------------------------------------------------
# rules


@dataclass
class PreparedRule:
    """A rule evaluated on one layer's full input (see module docstring).

    ``scales[g]``: (C_out, T_out) ``mask_g / stab(z_g)``; ``terms``: per group g, a list
    of ``(input (C_in, T_pad) or None for ones, weight)``; ``weights[g]``: the group's
    weights concatenated along the input-channel axis.
    """

    scales: list[torch.Tensor]
    terms: list[list[tuple[torch.Tensor | None, torch.Tensor]]]
    weights: list[torch.Tensor] = field(default_factory=list)


def _pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def _neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


class Rule:
    """Base class: ``terms(x, W, b)`` lists ``(input, W_i, b_i, group, coef)``; groups are normalized jointly.

    ``x``: the padded layer input (1, C_in, T); ``input`` None means ones.
    """

    stabilizer: float = 1e-6
    zero_bias: bool = False

    def terms(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        raise NotImplementedError

    def group_masks(self, x: torch.Tensor, layer: ConvLayer, weight, bias) -> list[torch.Tensor | None] | None:
        """Optional (1, C_out, T_out) masks per group (the gamma rule's sign split)."""
        return None

    def _bias(self, bias: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(bias) if self.zero_bias else bias

    def prepare(self, x: torch.Tensor, layer: ConvLayer) -> PreparedRule:
        """Evaluate the rule on the padded layer input x (C_in, T_pad)."""
        x = x[None]
        weight, bias = layer.weight, self._bias(layer.bias)
        terms = self.terms(x, weight, bias)
        n_groups = max(t[3] for t in terms) + 1
        masks = self.group_masks(x, layer, weight, bias) or [None] * n_groups
        denominators: list[torch.Tensor | None] = [None] * n_groups
        grouped: list[list[tuple[torch.Tensor | None, torch.Tensor]]] = [[] for _ in range(n_groups)]
        for inp, w, b, g, coef in terms:
            z = layer.conv(torch.ones_like(x) if inp is None else inp, w, b)
            denominators[g] = z if denominators[g] is None else denominators[g] + z
            grouped[g].append((None if inp is None else inp[0], w * coef if coef != 1 else w))
        scales = []
        for g in range(n_groups):
            s = 1.0 / stabilize(denominators[g], self.stabilizer)
            if masks[g] is not None:
                s = s * masks[g]
            scales.append(s[0])
        weights = [torch.cat([w for _, w in grouped[g]], dim=1) for g in range(n_groups)] if layer.groups == 1 else []
        return PreparedRule(scales, grouped, weights)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Epsilon(Rule):
    """z_j + eps*sign(z_j) (LRP-0 with ``epsilon=0``); bias absorbs relevance."""

    def __init__(self, epsilon: float = 1e-6, zero_bias: bool = False) -> None:
        self.epsilon = float(epsilon)
        self.stabilizer = self.epsilon
        self.zero_bias = zero_bias

    def terms(self, x, weight, bias):
        return [(x, weight, bias, 0, 1.0)]


class ZPlus(Rule):
    """Positive contributions only: x+ W+ (+ b+) and x- W- (zennit's z+, i.e. alpha=1 beta=0)."""

    def __init__(self, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def terms(self, x, weight, bias):
        return [(_pos(x), _pos(weight), _pos(bias), 0, 1.0), (_neg(x), _neg(weight), None, 0, 1.0)]


class AlphaBeta(Rule):
    """alpha * positive part - beta * negative part, alpha - beta = 1."""

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6, zero_bias: bool = False
    ) -> None:
        if alpha < 0 or beta < 0 or abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"alpha-beta needs alpha, beta >= 0 and alpha - beta = 1, got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def terms(self, x, weight, bias):
        xp, xn, wp, wn = _pos(x), _neg(x), _pos(weight), _neg(weight)
        terms = [(xp, wp, _pos(bias), 0, self.alpha), (xn, wn, None, 0, self.alpha)]
        if self.beta:
            terms += [(xp, wn, _neg(bias), 1, -self.beta), (xn, wp, None, 1, -self.beta)]
        return terms


class Gamma(Rule):
    """Weights w + gamma*w+ (generalized to negative inputs and outputs as in zennit)."""

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.gamma = float(gamma)
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def terms(self, x, weight, bias):
        g = self.gamma
        xp, xn = _pos(x), _neg(x)
        w_up, w_down = weight + g * _pos(weight), weight + g * _neg(weight)
        b_up, b_down = bias + g * _pos(bias), bias + g * _neg(bias)
        return [
            (xp, w_up, b_up, 0, 1.0),
            (xn, w_down, None, 0, 1.0),
            (xp, w_down, b_down, 1, 1.0),
            (xn, w_up, None, 1, 1.0),
        ]

    def group_masks(self, x, layer, weight, bias):
        z = layer.conv(x, weight, bias)
        return [(z > 0).to(z), (z < 0).to(z)]


class Flat(Rule):
    """Uniform over the receptive field: ones for inputs and weights, no bias."""

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)
        self.zero_bias = True

    def terms(self, x, weight, bias):
        return [(None, torch.ones_like(weight), None, 0, 1.0)]


class WSquare(Rule):
    """Squared weights, inputs ignored (zennit: the bias enters squared unless ``zero_bias``)."""

    def __init__(self, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def terms(self, x, weight, bias):
        return [(None, weight**2, bias**2, 0, 1.0)]


class ZBox(Rule):
    """Bounded input ``low <= x <= high`` (floats or per-feature arrays (C_in,)); for the first layer."""

    def __init__(self, low, high, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.low, self.high = low, high
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def _bound(self, value, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(value, dtype=np.float64)).to(x)
        if t.ndim == 1:
            t = t[None, :, None]
        return t.expand_as(x)

    def prepare(self, x, layer):
        # denominator x W - low W+ - high W- (+ b - b+ - b-); the bound terms enter with a minus sign
        xb = x[None]
        weight, bias = layer.weight, self._bias(layer.bias)
        low, high = self._bound(self.low, xb), self._bound(self.high, xb)
        z = (
            layer.conv(xb, weight, bias)
            - layer.conv(low, _pos(weight), _pos(bias))
            - layer.conv(high, _neg(weight), _neg(bias))
        )
        scale = 1.0 / stabilize(z, self.stabilizer)
        terms = [(x, weight), (low[0], -_pos(weight)), (high[0], -_neg(weight))]
        weights = [torch.cat([w for _, w in terms], dim=1)] if layer.groups == 1 else []
        return PreparedRule([scale[0]], [terms], weights)


# ---------------------------------------------------------------------------
# composites

POSITIONS = ("first", "middle", "dense", "output")


def layer_position(index: int, layer: ConvLayer, n_layers: int) -> str:
    """ "first", "output", "dense" (kernel 1) or "middle"."""
    if index == n_layers - 1:
        return "output"
    if index == 0:
        return "first"
    return "dense" if layer.kernel == 1 else "middle"


class Composite:
    """Rules by layer position (``first``, ``middle``, ``dense``, ``output``) with per-name overrides.

    ``layer_rules``: name -> Rule, taking precedence. A position left None uses ``default``.
    """

    name = "custom"

    def __init__(
        self,
        first: Rule | None = None,
        middle: Rule | None = None,
        dense: Rule | None = None,
        output: Rule | None = None,
        default: Rule | None = None,
        layer_rules: Mapping[str, Rule] | None = None,
    ) -> None:
        self.default = default if default is not None else Epsilon()
        self.positions = {"first": first, "middle": middle, "dense": dense, "output": output}
        self.layer_rules = dict(layer_rules or {})

    def rule(self, index: int, layer: ConvLayer, n_layers: int) -> Rule:
        if layer.name in self.layer_rules:
            return self.layer_rules[layer.name]
        rule = self.positions[layer_position(index, layer, n_layers)]
        return rule if rule is not None else self.default

    def rules(self, stack: ConvStack) -> dict[str, Rule]:
        """Layer name -> rule for ``stack``."""
        return {layer.name: self.rule(i, layer, len(stack)) for i, layer in enumerate(stack.layers)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.positions}, default={self.default}, layer_rules={self.layer_rules})"


class EpsilonComposite(Composite):
    """Epsilon everywhere."""

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6, layer_rules=None) -> None:
        super().__init__(default=Epsilon(epsilon), layer_rules=layer_rules)


class EpsilonPlus(Composite):
    """z+ for the convolutions (first, middle), epsilon for kernel-1 and output layers (zennit's EpsilonPlus)."""

    name = "epsilon-plus"

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, layer_rules=None) -> None:
        z = ZPlus(stabilizer)
        super().__init__(first=z, middle=z, default=Epsilon(epsilon), layer_rules=layer_rules)


class EpsilonPlusFlat(Composite):
    """Flat for the first layer, z+ for the other convolutions, epsilon for kernel-1 and output layers."""

    name = "epsilon-plus-flat"

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, layer_rules=None) -> None:
        super().__init__(
            first=Flat(stabilizer), middle=ZPlus(stabilizer), default=Epsilon(epsilon), layer_rules=layer_rules
        )


class EpsilonAlpha2Beta1(Composite):
    """alpha=2 beta=1 for the convolutions, epsilon for kernel-1 and output layers."""

    name = "epsilon-alpha2-beta1"

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, layer_rules=None) -> None:
        ab = AlphaBeta(2.0, 1.0, stabilizer)
        super().__init__(first=ab, middle=ab, default=Epsilon(epsilon), layer_rules=layer_rules)


class EpsilonAlpha1Beta0(Composite):
    """alpha=1 beta=0 for the convolutions, epsilon for kernel-1 and output layers."""

    name = "epsilon-alpha1-beta0"

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, layer_rules=None) -> None:
        ab = AlphaBeta(1.0, 0.0, stabilizer)
        super().__init__(first=ab, middle=ab, default=Epsilon(epsilon), layer_rules=layer_rules)


class EpsilonGammaBox(Composite):
    """z-box (``low``, ``high``) for the first layer, gamma for the middle convs, epsilon for the rest."""

    name = "epsilon-gamma-box"

    def __init__(
        self, low, high, epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6, layer_rules=None
    ) -> None:
        super().__init__(
            first=ZBox(low, high, stabilizer),
            middle=Gamma(gamma, stabilizer),
            default=Epsilon(epsilon),
            layer_rules=layer_rules,
        )


#: name -> composite class (``EpsilonGammaBox`` needs ``low`` and ``high``)
COMPOSITES: dict[str, Callable[..., Composite]] = {
    "epsilon": EpsilonComposite,
    "epsilon-plus": EpsilonPlus,
    "epsilon-plus-flat": EpsilonPlusFlat,
    "epsilon-alpha2-beta1": EpsilonAlpha2Beta1,
    "epsilon-alpha1-beta0": EpsilonAlpha1Beta0,
    "epsilon-gamma-box": EpsilonGammaBox,
}


# ---------------------------------------------------------------------------
# the explicit backward over receptive-field crops


class LRPBackend:
    """Relevance through every layer of ``stack`` for batches of frame crops (run by :func:`~.crops.propagate`).

    ``geometry`` supplies window sources (crops of full-utterance tensors).
    """

    def __init__(self, stack: ConvStack, cache: ForwardCache, geometry: CropGeometry, composite: Composite) -> None:
        self.stack = stack
        self.rules = composite.rules(stack)
        self.prepared = []
        for l, layer in enumerate(stack.layers):
            x = F.pad(cache.activations[l], (layer.pad_left, layer.pad_right))
            prep = self.rules[layer.name].prepare(x, layer)
            scales = [geometry.source(l + 1, s) for s in prep.scales]
            terms = [
                [(None if inp is None else geometry.source(l, inp, origin=-layer.pad_left), w) for inp, w in group]
                for group in prep.terms
            ]
            self.prepared.append((scales, terms, prep.weights))
        self.valid = [geometry.valid_source(level) for level in range(len(stack) + 1)]

    def backward(self, l: int, relevance: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Relevance at level l+1 crops (N, C_out, n_{l+1}) -> level l crops (N, C_in, n_l)."""
        layer = self.stack.layers[l]
        scales, terms, weights = self.prepared[l]
        out = None
        for g, scale in enumerate(scales):
            grad = relevance * scale.take(frames)
            if weights:
                y = layer.conv_transpose(grad, weights[g])
                parts = torch.split(y, layer.in_channels, dim=1)
            else:
                parts = [layer.conv_transpose(grad, w) for _, w in terms[g]]
            for (source, _), part in zip(terms[g], parts):
                contribution = part if source is None else part * source.take(frames)
                out = contribution if out is None else out + contribution
        return out * self.valid[l].take(frames)
