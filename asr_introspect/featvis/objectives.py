"""Feature-visualization objectives that compose like lucent's (add, subtract, scale, negate).

An :class:`Objective` is a differentiable function of one forward pass (an
:class:`ObjectiveContext`: the input window, the recorded activations
``(B, C_l, T_l)`` of the layers it names and the logits ``(B, C, T_out)``)
returning a scalar to be **maximized**; ``loss = -value``. Values are means
over the batch, so a batch of B inputs has the scale of one.

Frames are frames of the objective's layer within the optimized window;
``frame=None`` means the layer frame whose receptive field is centred on the
window (see :meth:`ObjectiveContext.frame`).

Spec strings (:func:`parse_objective`)::

    conv5:17            channel 17 of conv5 (mean over the window's valid frames)
    conv5:17@40         neuron: channel 17 of conv5 at frame 40
    conv11:letter=a     logit of "a" at the centre output frame (@N for frame N)
    conv11:prob=a       softmax probability of "a" at the centre output frame (@N)
    layer:conv3         DeepDream: mean squared activation of conv3
    diversity:conv3     diversity across a batch of inputs
    conv5:17+0.5*layer:conv5   sums of scaled terms
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING

import torch

from asr_introspect.errors import InputError
from asr_introspect.hooks import ActivationRecorder

if TYPE_CHECKING:
    from asr_introspect.models import ASRModel

__all__ = [
    "Objective",
    "ObjectiveContext",
    "Target",
    "neuron",
    "channel",
    "layer_norm",
    "deep_dream",
    "class_logit",
    "class_probability",
    "diversity",
    "parse_objective",
    "OUTPUT",
    "SPEC_FORMS",
    "SPEC_EXAMPLES",
]

#: Layer name meaning "the model's logits" (whatever the output layer is called).
OUTPUT = "output"

SPEC_FORMS = (
    "LAYER:CHANNEL (channel)",
    "LAYER:CHANNEL@FRAME (neuron)",
    "OUTPUT_LAYER:letter=X[@FRAME] (class logit)",
    "OUTPUT_LAYER:prob=X[@FRAME] (class probability)",
    "layer:LAYER (DeepDream)",
    "diversity:LAYER",
    "terms joined by '+', each optionally 'NUMBER*TERM'",
)


@dataclass(frozen=True)
class Target:
    """A (layer, frame) an objective reads; ``frame=None`` is the window's centre frame."""

    layer: str
    frame: int | None = None


class ObjectiveContext:
    """One forward pass: ``features`` (B, F, W), ``activations[name]`` (B, C_l, T_l), ``logits`` (B, C, T_out)."""

    def __init__(
        self, model: ASRModel, features: torch.Tensor, activations: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> None:
        self.model = model
        self.features = features
        self.activations = activations
        self.logits = logits

    @property
    def n_input_frames(self) -> int:
        return int(self.features.shape[-1])

    def layer_name(self, layer: str) -> str:
        return self.model.output_layer if layer == OUTPUT else layer

    def activation(self, layer: str) -> torch.Tensor:
        """(B, C_l, T_l) activation of ``layer`` (``"output"`` or the output layer: the logits)."""
        name = self.layer_name(layer)
        if name == self.model.output_layer:
            return self.logits
        try:
            return self.activations[name]
        except KeyError:
            raise KeyError(f"layer {name!r} was not recorded in this forward pass") from None

    def frame(self, layer: str, frame: int | None) -> int:
        """Frame index on ``layer``'s axis; None -> the frame centred on the window."""
        name = self.layer_name(layer)
        length = int(self.model.layer_length(name, self.n_input_frames))
        if frame is None:
            return centre_frame(self.model, name, self.n_input_frames)
        if not 0 <= frame < length:
            raise InputError(
                f"frame {frame} of {name} is outside the window: {self.n_input_frames} input "
                f"frames give {name} {length} frames (0..{length - 1}); choose another frame "
                f"or a wider window"
            )
        return int(frame)

    def frames(self, layer: str, which: str = "valid") -> slice:
        """Frames of ``layer`` an objective averages over: ``"all"``, or ``"valid"``: those whose
        receptive field lies inside the window (no zero padding seen; at least the centre frame)."""
        name = self.layer_name(layer)
        length = int(self.model.layer_length(name, self.n_input_frames))
        if which == "all":
            return slice(0, length)
        if which != "valid":
            raise ValueError(f"frames must be 'valid' or 'all', got {which!r}")
        g = self.model.frame_map.layer(name)
        lo = max(0, -(g.offset // g.stride))  # ceil(-offset / stride)
        hi = min(length - 1, (self.n_input_frames - g.receptive_field - g.offset) // g.stride)
        if lo > hi:
            centre = self.frame(layer, None)
            return slice(centre, centre + 1)
        return slice(lo, hi + 1)

    def check_channel(self, layer: str, channel: int) -> None:
        n = self.activation(layer).shape[1]
        if not 0 <= channel < n:
            raise InputError(
                f"channel {channel} of {self.layer_name(layer)} does not exist (the layer has channels 0..{n - 1})"
            )


def centre_frame(model: ASRModel, layer: str, n_input_frames: int) -> int:
    """The frame of ``layer`` whose receptive field is centred on an input window of ``n_input_frames``."""
    return int(model.frame_map.layer_frame_of_input(layer, (n_input_frames - 1) / 2.0, n_input_frames))


class Objective:
    """A scalar to maximize, ``fn(ctx) -> Tensor ()``; supports ``+ - *`` scalars and unary ``-``.

    ``targets`` lists the (layer, frame) pairs it reads (they size the window
    and select the layers to record). ``loss(ctx) == -value(ctx)``.
    """

    def __init__(
        self,
        fn: Callable[[ObjectiveContext], torch.Tensor],
        name: str,
        targets: Sequence[Target] = (),
        needs_batch: bool = False,
    ) -> None:
        self.fn = fn
        self.name = name
        self.targets = tuple(targets)
        self.needs_batch = needs_batch
        self.spec: str | None = None  # the spec string it was parsed from, if any

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        return self.fn(ctx)

    value = __call__

    def loss(self, ctx: ObjectiveContext) -> torch.Tensor:
        """``-value(ctx)`` (what the optimizer minimizes)."""
        return -self.fn(ctx)

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names read (``"output"`` for the logits), in first-use order."""
        return tuple(dict.fromkeys(t.layer for t in self.targets))

    # -- arithmetic -------------------------------------------------------------------

    @staticmethod
    def _wrap(other) -> Objective:
        if isinstance(other, Objective):
            return other
        if isinstance(other, Real):
            value = float(other)
            return Objective(lambda ctx: torch.as_tensor(value, dtype=ctx.features.dtype), f"{value:g}")
        return NotImplemented

    def _combine(self, other, sign: float) -> Objective:
        other = self._wrap(other)
        if other is NotImplemented:
            return NotImplemented
        a, b = self, other
        op = "+" if sign > 0 else "-"
        return Objective(
            lambda ctx: a(ctx) + sign * b(ctx),
            f"{a.name} {op} {b.name}",
            a.targets + b.targets,
            a.needs_batch or b.needs_batch,
        )

    def __add__(self, other) -> Objective:
        return self._combine(other, 1.0)

    def __radd__(self, other) -> Objective:
        if isinstance(other, Real) and other == 0:  # sum([...])
            return self
        wrapped = self._wrap(other)
        return NotImplemented if wrapped is NotImplemented else wrapped._combine(self, 1.0)

    def __sub__(self, other) -> Objective:
        return self._combine(other, -1.0)

    def __rsub__(self, other) -> Objective:
        wrapped = self._wrap(other)
        return NotImplemented if wrapped is NotImplemented else wrapped._combine(self, -1.0)

    def __mul__(self, other) -> Objective:
        if not isinstance(other, Real):
            return NotImplemented
        k, a = float(other), self
        return Objective(lambda ctx: k * a(ctx), f"{k:g}*({a.name})", a.targets, a.needs_batch)

    __rmul__ = __mul__

    def __truediv__(self, other) -> Objective:
        if not isinstance(other, Real):
            return NotImplemented
        return self * (1.0 / float(other))

    def __neg__(self) -> Objective:
        a = self
        return Objective(lambda ctx: -a(ctx), f"-({a.name})", a.targets, a.needs_batch)

    def __repr__(self) -> str:
        return f"Objective({self.name})"


# -- the basic objectives -------------------------------------------------------------


def neuron(layer: str, channel: int, frame: int | None = None) -> Objective:
    """``layer[channel, frame]`` (mean over the batch); ``frame=None``: the centre frame."""
    channel = int(channel)

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        ctx.check_channel(layer, channel)
        return ctx.activation(layer)[:, channel, ctx.frame(layer, frame)].mean()

    where = "centre" if frame is None else str(frame)
    return Objective(fn, f"neuron({layer}:{channel}@{where})", [Target(layer, frame)])


def channel(layer: str, channel: int, frames: str = "valid") -> Objective:
    """``layer[channel, :]``: the channel's mean over the window's frames (and the batch).

    ``frames="valid"`` (default): the frames whose receptive field lies inside the
    window (edge frames would respond to the zero padding around it, and the
    optimizer exploits them); a receptive-field-sized window has one such frame,
    a wider ``width`` gives more (and tiled patterns). ``"all"``: every frame.
    """
    index = int(channel)

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        ctx.check_channel(layer, index)
        return ctx.activation(layer)[:, index, ctx.frames(layer, frames)].mean()

    suffix = "" if frames == "valid" else f", {frames}"
    return Objective(fn, f"channel({layer}:{index}{suffix})", [Target(layer, None)])


def layer_norm(layer: str, frames: str = "valid") -> Objective:
    """DeepDream: mean squared activation of ``layer`` (``||layer||^2`` up to a constant)
    over the window's frames (``frames`` as for :func:`channel`)."""
    return Objective(
        lambda ctx: ctx.activation(layer)[:, :, ctx.frames(layer, frames)].square().mean(),
        f"deep_dream({layer})",
        [Target(layer, None)],
    )


deep_dream = layer_norm


def _class_index(ctx: ObjectiveContext, letter: str | int) -> int:
    if isinstance(letter, str):
        return ctx.model.alphabet.index(letter)
    index = int(letter)
    if not 0 <= index < ctx.model.n_classes:
        raise InputError(f"class index {index} outside 0..{ctx.model.n_classes - 1}")
    return index


def class_logit(letter: str | int, frame: int | None = None) -> Objective:
    """Pre-softmax logit of ``letter`` (symbol or index) at output ``frame`` (None: centre)."""

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        k = _class_index(ctx, letter)
        return ctx.logits[:, k, ctx.frame(OUTPUT, frame)].mean()

    return Objective(fn, f"logit({letter!r}@{'centre' if frame is None else frame})", [Target(OUTPUT, frame)])


def class_probability(letter: str | int, frame: int | None = None) -> Objective:
    """Softmax probability of ``letter`` at output ``frame`` (None: centre)."""

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        k = _class_index(ctx, letter)
        t = ctx.frame(OUTPUT, frame)
        return torch.softmax(ctx.logits[:, :, t], dim=1)[:, k].mean()

    return Objective(fn, f"prob({letter!r}@{'centre' if frame is None else frame})", [Target(OUTPUT, frame)])


def diversity(layer: str, frames: str = "all") -> Objective:
    """Diversity across the batch: minus the mean pairwise cosine similarity of the
    inputs' Gram matrices of ``layer`` (channels x channels over ``frames``). Needs batch >= 2;
    add it to another objective, e.g. ``channel("conv5", 3) + 10 * diversity("conv5")``."""

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        acts = ctx.activation(layer)[:, :, ctx.frames(layer, frames)]
        batch = acts.shape[0]
        if batch < 2:
            raise InputError("the diversity objective needs a batch of at least 2 inputs (render(..., batch=N))")
        grams = torch.einsum("bct,bdt->bcd", acts, acts).flatten(1)
        grams = torch.nn.functional.normalize(grams, dim=1)
        sims = grams @ grams.T
        off = sims.sum() - sims.diagonal().sum()
        return -off / (batch * (batch - 1))

    return Objective(fn, f"diversity({layer})", [Target(layer, None)], needs_batch=True)


# -- spec strings ---------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TERM = re.compile(rf"^(?:(?P<coef>{_NUM})\s*\*\s*)?(?P<body>.+)$")
_CHANNEL = re.compile(r"^(?P<layer>[^:@=\s]+):(?P<channel>\d+)(?:@(?P<frame>\d+))?$")
_CLASS = re.compile(r"^(?P<layer>[^:@=\s]+):(?P<kind>letter|prob)=(?P<letter>.+?)(?:@(?P<frame>\d+))?$")
_WHOLE = re.compile(r"^(?P<kind>layer|diversity):(?P<layer>[^:@=\s]+)$")
_NAMED_SYMBOLS = {"space": " ", "apostrophe": "'"}


#: the spec forms by example, short enough for a one-line error message
SPEC_EXAMPLES = (
    "conv5:17 (channel), conv5:17@40 (neuron), conv11:letter=a[@N], conv11:prob=a[@N], layer:conv3, "
    "diversity:conv3, '+'-joined terms, '0.5*TERM'"
)


class _SpecError(InputError):
    """A bad spec term; :func:`parse_objective` adds which spec and flag."""

    def __init__(self, why: str, forms: bool = False) -> None:
        super().__init__(why)
        self.why, self.forms = why, forms


def _bad(spec: str, why: str, forms: bool = False) -> _SpecError:
    """``why`` a spec is bad; ``forms``: also list the valid forms (when the spec could not be read at all;
    a specific complaint, like an unknown layer, names what is valid instead)."""
    return _SpecError(why, forms)


_CHANNELS: weakref.WeakKeyDictionary[ASRModel, dict[str, int]] = weakref.WeakKeyDictionary()


def _layer_channels(model: ASRModel) -> dict[str, int]:
    """Channels of every layer (one probe forward pass on zeros, cached per model)."""
    cached = _CHANNELS.get(model)
    if cached is not None:
        return cached
    features = torch.zeros(1, model.n_features, model.min_input_frames, device=model.device)
    with torch.no_grad(), ActivationRecorder(model, model.layer_names) as recorder:
        training = model.module.training
        model.module.eval()
        try:
            recorder.run(features)
        finally:
            model.module.train(training)
        channels = {name: int(a.shape[1]) for name, a in recorder.activations.items()}
    _CHANNELS[model] = channels
    return channels


def _check_layer(spec: str, model: ASRModel, layer: str) -> str:
    if layer == OUTPUT:
        return model.output_layer
    if layer not in model.layer_names:
        shown = layer if len(layer) <= 30 else layer[:27] + "..."
        raise _bad(spec, f"unknown layer {shown!r} (the model has {', '.join(model.layer_names)} and '{OUTPUT}')")
    return layer


def _parse_term(spec: str, term: str, model: ASRModel) -> Objective:
    m = _WHOLE.match(term)
    if m:
        layer = _check_layer(spec, model, m["layer"])
        return layer_norm(layer) if m["kind"] == "layer" else diversity(layer)
    m = _CLASS.match(term)
    if m:
        layer = _check_layer(spec, model, m["layer"])
        if layer != model.output_layer:
            raise _bad(
                spec,
                f"letter= and prob= objectives read the output layer ({model.output_layer} or '{OUTPUT}'), not {layer}",
            )
        letter = _NAMED_SYMBOLS.get(m["letter"], m["letter"])
        try:
            model.alphabet.index(letter)
        except InputError:
            raise _bad(
                spec,
                f"the alphabet has no symbol {letter!r} (symbols: "
                f"{' '.join(repr(s) for s in model.alphabet.symbols)}; "
                f"'space' and 'apostrophe' name those)",
            ) from None
        frame = int(m["frame"]) if m["frame"] is not None else None
        return class_logit(letter, frame) if m["kind"] == "letter" else class_probability(letter, frame)
    m = _CHANNEL.match(term)
    if m:
        layer = _check_layer(spec, model, m["layer"])
        index = int(m["channel"])
        n = _layer_channels(model)[layer]
        if index >= n:
            raise _bad(spec, f"{layer} has {n} channels (0..{n - 1}), not {index}")
        if m["frame"] is not None:
            return neuron(layer, index, int(m["frame"]))
        return channel(layer, index)
    if term == spec.strip():
        raise _bad(spec, "cannot parse it", forms=True)
    raise _bad(spec, f"cannot parse {term if len(term) <= 30 else term[:27] + '...'!r}", forms=True)


def parse_objective(spec: str, model: ASRModel, name: str = "objective") -> Objective:
    """The :class:`Objective` of a spec string (module docstring); InputError for a bad spec, one line
    starting ``{name} 'SPEC':`` (the command line passes ``name="--objective"``)."""
    text = str(spec)
    shown = repr(text if len(text) <= 40 else text[:37] + "...")
    try:
        if not isinstance(spec, str) or not spec.strip():
            raise _bad(text, "empty objective", forms=True)
        objective: Objective | None = None
        for raw in spec.split("+"):
            term = raw.strip()
            if not term:
                raise _bad(spec, "empty term", forms=True)
            m = _TERM.match(term)
            coef = float(m["coef"]) if m and m["coef"] is not None else None
            body = m["body"].strip() if m else term
            part = _parse_term(spec, body, model)
            if coef is not None:
                if not math.isfinite(coef):
                    raise _bad(spec, f"the scale {m['coef']} is not a finite number")
                part = coef * part
            objective = part if objective is None else objective + part
    except _SpecError as exc:
        forms = f"; valid forms: {SPEC_EXAMPLES}" if exc.forms else ""
        raise InputError(f"{name} {shown}: {exc.why}{forms}") from None
    assert objective is not None
    objective.spec = spec
    return objective
