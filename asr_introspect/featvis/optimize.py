"""The optimization loop: find the feature window that maximizes an objective.

:func:`render` runs Adam on a parameterization of a window ``(B, F, W)`` whose
width ``W`` covers the receptive field of the objective's frames
(:func:`window_frames`). Each step: features from the parameterization ->
regularizers' transforms -> model (eval mode, weights frozen) -> objective;
loss = -objective + sum of weighted penalties (on the untransformed window);
then post-step regularizers (blur). Everything random draws from one
``torch.Generator(seed)``: the same seed gives the same result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from asr_introspect.errors import InputError
from asr_introspect.featvis.objectives import (
    OUTPUT,
    Objective,
    ObjectiveContext,
    centre_frame,
    class_logit,
    parse_objective,
)
from asr_introspect.featvis.param import Parameterization, make_param
from asr_introspect.featvis.prior import GaussianPrior
from asr_introspect.featvis.regularizers import Regularizer, regularizer_set
from asr_introspect.hooks import ActivationRecorder

if TYPE_CHECKING:
    from asr_introspect.models import ASRModel

__all__ = [
    "Result",
    "render",
    "window_frames",
    "evaluate_objective",
    "letter_response",
    "optimal_inputs",
    "grid_objectives",
]


@dataclass
class Result:
    """An optimized window and how the model responds to it.

    features: (F, W), or (B, F, W) for a batch; trace: (steps,) objective value at
    each step (on the transformed input the step used); objective: value on the
    final, untransformed features; response: (C,) or (B, C) softmax over the
    alphabet at the centre output frame; symbols: the alphabet's symbols.
    """

    features: np.ndarray
    trace: np.ndarray
    objective: float
    response: np.ndarray
    symbols: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def top_letters(self, k: int = 3, index: int = 0) -> list[tuple[str, float]]:
        """The ``k`` most probable symbols at the centre output frame (of batch item ``index``)."""
        probs = self.response if self.response.ndim == 1 else self.response[index]
        order = np.argsort(probs)[::-1][:k]
        return [(self.symbols[i], float(probs[i])) for i in order]

    def probability(self, symbol: str, index: int = 0) -> float:
        probs = self.response if self.response.ndim == 1 else self.response[index]
        return float(probs[self.symbols.index(symbol)])

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``save_npz``."""
        return {
            "features": self.features,
            "trace": self.trace,
            "response": self.response,
            "symbols": np.array(self.symbols),
            "objective": np.float64(self.objective),
        }


def _resolve(model: ASRModel, layer: str) -> str:
    return model.output_layer if layer == OUTPUT else layer


def check_spectrogram_input(model: ASRModel) -> None:
    """InputError unless the model takes a spectrogram: feature visualization optimizes one."""
    if model.feature_config.kind == "waveform":
        raise InputError(
            "feature visualization optimizes a spectrogram window and its regularizers are spectral, but this "
            "model takes the raw waveform: study its layers with NAPs or attribution"
        )


#: default window (seconds) for a layer that sees the whole utterance (self-attention)
GLOBAL_WINDOW_SECONDS = 1.0


def window_frames(model: ASRModel, objective: Objective) -> int:
    """Input frames W so that every frame the objective reads has its whole receptive field
    inside the window (for the centre frame: the smallest such W >= the receptive field).
    A layer that sees the whole utterance has no such bound: its window is
    :data:`GLOBAL_WINDOW_SECONDS` long (or its local receptive field, if longer)."""
    width = int(model.min_input_frames)
    if any(
        model.frame_map.is_global(_resolve(model, t.layer))
        for t in objective.targets or ()
        if _resolve(model, t.layer) in model.layer_names
    ):
        width = max(width, round(GLOBAL_WINDOW_SECONDS / model.feature_config.frame_seconds))
    for target in objective.targets or ():
        name = _resolve(model, target.layer)
        if name not in model.layer_names:
            raise InputError(f"unknown layer {name!r}; layers: {', '.join(model.layer_names)}")
        geometry = model.frame_map.layer(name)
        w = max(geometry.receptive_field, width)
        if target.frame is None:
            for _ in range(4 * geometry.stride + 4):
                start, stop = model.frame_map.input_range(name, centre_frame(model, name, w))
                if start >= 0 and stop <= w:
                    break
                w += 1
        else:
            w = max(w, model.frame_map.input_range(name, target.frame)[1])
        width = max(width, w)
    return width


def _record_layers(model: ASRModel, objective: Objective) -> list[str]:
    layers = []
    for layer in objective.layers:
        name = _resolve(model, layer)
        if name != model.output_layer and name not in layers:
            layers.append(name)
    return layers


def _forward(
    model: ASRModel, objective: Objective, features: torch.Tensor, recorder
) -> tuple[torch.Tensor, torch.Tensor]:
    logits, _ = recorder.run(features)
    ctx = ObjectiveContext(model, features, dict(recorder.activations), logits)
    return objective(ctx), logits


class _Adam:
    """Adam (Kingma & Ba; PyTorch's default betas/eps, no weight decay) for a few leaf tensors.

    Written out because ``torch.optim`` imports the ``torch.compile`` machinery on first
    use (seconds on a loaded machine), which dominates a short command-line run.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), betas, float(eps)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(self.beta1).add_(p.grad, alpha=1 - self.beta1)
            v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient also passes where the input is negative but the descent step
    would raise it (Lucid's "redirected ReLU"): gets dead units moving at the start."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > 0) | (grad < 0)).to(grad.dtype)


class _RedirectReLUs:
    """Within the block (while ``on``), every ``nn.ReLU`` of the model uses :class:`_RedirectedReLU`."""

    def __init__(self, model: ASRModel) -> None:
        self.model = model
        self.on = False
        self.handles: list = []

    def _hook(self, module, inputs, output):
        if self.on and torch.is_grad_enabled():
            return _RedirectedReLU.apply(inputs[0])
        return None

    def __enter__(self):
        for m in self.model.module.modules():
            if isinstance(m, torch.nn.ReLU):
                self.handles.append(m.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _dead(value: torch.Tensor, model_input: torch.Tensor) -> bool:
    """True when the objective's gradient w.r.t. the input is exactly zero (units off)."""
    if not value.requires_grad:
        return True
    (grad,) = torch.autograd.grad(value, model_input, retain_graph=True, allow_unused=True)
    return grad is None or not bool(grad.abs().max() > 0)


class _Frozen:
    """Model in eval mode with frozen weights inside the block; restored afterwards."""

    def __init__(self, model: ASRModel) -> None:
        self.model = model

    def __enter__(self):
        module = self.model.module
        self.modes = [(m, m.training) for m in module.modules()]
        self.grads = [(p, p.requires_grad) for p in module.parameters()]
        module.eval()
        for p, _ in self.grads:
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode
        for p, flag in self.grads:
            p.requires_grad_(flag)


@torch.no_grad()
def letter_response(model: ASRModel, features) -> np.ndarray:
    """Softmax over the alphabet at the centre output frame: features (F, W) or (B, F, W) -> (C,) or (B, C)."""
    x = torch.as_tensor(
        np.asarray(features) if not isinstance(features, torch.Tensor) else features, dtype=torch.float32
    )
    single = x.dim() == 2
    x = x[None] if single else x
    with _Frozen(model):
        logits, _ = model.logits(x.to(model.device))
    t = centre_frame(model, model.output_layer, x.shape[-1])
    model.require_ctc("the letter response")
    probs = torch.softmax(logits[:, :, t], dim=1).cpu().numpy()
    return probs[0] if single else probs


def evaluate_objective(model: ASRModel, objective: Objective | str, features) -> float:
    """Value of ``objective`` on ``features`` (F, W) or (B, F, W) (no gradient, model unchanged)."""
    if isinstance(objective, str):
        objective = parse_objective(objective, model)
    x = torch.as_tensor(
        np.asarray(features) if not isinstance(features, torch.Tensor) else features, dtype=torch.float32
    )
    x = (x[None] if x.dim() == 2 else x).to(model.device)
    with torch.no_grad(), _Frozen(model), ActivationRecorder(model, _record_layers(model, objective)) as rec:
        value, _ = _forward(model, objective, x, rec)
    return float(value)


def _width_constraints(param: Parameterization, regularizers: Sequence[Regularizer]) -> list[tuple[str, int]]:
    fixed = []
    if param.width is not None:
        fixed.append((f"the {param.name} parameterization", int(param.width)))
    for reg in regularizers:
        w = getattr(reg, "width", None)
        if w is not None and reg.active:
            fixed.append((f"the {reg.name} regularizer", int(w)))
    return fixed


def _diverged(step: int, steps: int, value: float, lr: float) -> InputError:
    return InputError(
        f"feature visualization diverged at step {step + 1} of {steps} (objective {value}): "
        f"lower the learning rate (lr={float(lr):g}, --lr)"
    )


def render(
    model: ASRModel,
    objective: Objective | str,
    param: str | Parameterization | None = "fourier",
    regularizers: str | Sequence[Regularizer] = (),
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    width: int | None = None,
    batch: int = 1,
    prior: GaussianPrior | None = None,
    init=None,
    redirect_relu: int = 16,
    relative_weights: bool = True,
    progress: Callable[[int, float], None] | None = None,
) -> Result:
    """Optimize a window to maximize ``objective`` (an :class:`Objective` or a spec string).

    ``param``: "raw" | "fourier" | "pca" (needs ``prior``) or a :class:`Parameterization`.
    ``regularizers``: a set name (:data:`REGULARIZATION_SETS`) or a list of :class:`Regularizer`.
    ``width``: input frames W (default :func:`window_frames`; a prior must match it).
    ``batch``: windows optimized together (for ``diversity``). ``init``: optional
    starting features (F, W) or (B, F, W). ``redirect_relu``: in this many first
    steps, when the objective's gradient is exactly zero (its units are off), the
    step is taken with every ``nn.ReLU`` passing gradients that would turn units on
    (Lucid's redirected ReLU; forward values unchanged; 0 disables).
    ``relative_weights``: penalty weights are multiplied by the RMS over the window of
    the objective's gradient at the first step, so a weight means the same for a
    neuron, a logit or a probability and for any model (a penalty of weight w pulls a
    value as hard as w times the objective's typical initial push); False: absolute.
    ``progress(step, value)`` is called after every step.

    Returns a :class:`Result`. The model is left as it was (mode, weights, gradients).
    """
    check_spectrogram_input(model)
    if isinstance(objective, str):
        objective = parse_objective(objective, model)
    param = make_param(param, prior)
    if isinstance(regularizers, str):
        regularizers = regularizer_set(regularizers, prior)
    elif isinstance(regularizers, Regularizer):
        regularizers = [regularizers]
    regularizers = list(regularizers)
    active = [r for r in regularizers if r.active]
    if objective.needs_batch and batch < 2:
        raise InputError(f"objective {objective.name} compares inputs across a batch: pass batch >= 2")
    steps, batch = int(steps), int(batch)
    if steps < 1 or batch < 1:
        raise InputError(f"steps and batch must be >= 1 (got steps={steps}, batch={batch})")
    if not math.isfinite(float(lr)) or float(lr) <= 0:
        raise InputError(f"the learning rate must be a finite number > 0, got lr={lr!r} (--lr)")

    needed = window_frames(model, objective)
    width = int(width) if width is not None else needed
    for what, w in _width_constraints(param, active):
        if w != width:
            raise InputError(
                f"{what} is for windows of {w} frames, but the window has {width} frames "
                f"(the objective's default is {needed}): fit the prior on windows of "
                f"{width} frames or pass width={w}"
            )
    if width < model.min_input_frames:
        raise InputError(f"a window of {width} frames is too short: the model needs at least {model.min_input_frames}")

    device = model.device
    generator = torch.Generator().manual_seed(int(seed))
    shape = (batch, model.n_features, width)
    param.init(shape, generator, device)
    if init is not None:
        start = torch.as_tensor(
            np.asarray(init) if not isinstance(init, torch.Tensor) else init, dtype=torch.float32, device=device
        )
        param.set_features(start.expand(shape) if start.dim() == 2 else start)
    optimizer = _Adam(param.parameters(), lr=float(lr))
    trace = np.zeros(steps, dtype=np.float64)
    scale = 1.0
    began = time.perf_counter()
    with (
        _Frozen(model),
        torch.enable_grad(),
        _RedirectReLUs(model) as redirect,
        ActivationRecorder(model, _record_layers(model, objective), detach=False) as recorder,
    ):
        for step in range(steps):
            optimizer.zero_grad()
            features = param.features()
            model_input = features
            for reg in active:
                model_input = reg.transform(model_input, generator)
            value, _ = _forward(model, objective, model_input, recorder)
            if step < redirect_relu and _dead(value, model_input):
                redirect.on = True
                value, _ = _forward(model, objective, model_input, recorder)
                redirect.on = False
            penalties = [(reg.weight, reg.penalty(features)) for reg in active]
            penalties = [(w, p) for w, p in penalties if p is not None]
            if step == 0 and relative_weights and penalties and value.requires_grad:
                # the push the optimizer sees: d(-value), which a redirected ReLU lets through
                (grad,) = torch.autograd.grad(-value, features, retain_graph=True, allow_unused=True)
                rms = float(grad.square().mean().sqrt()) if grad is not None else 0.0
                scale = rms if rms > 0 and math.isfinite(rms) else 1.0
            loss = -value
            for weight, penalty in penalties:
                loss = loss + (weight * scale) * penalty
            loss.backward()
            optimizer.step()
            for reg in active:
                reg.after_step(param, step)
            trace[step] = float(value.detach())
            if not math.isfinite(trace[step]):
                raise _diverged(step, steps, trace[step], lr)
            if progress is not None:
                progress(step, trace[step])
        with torch.no_grad():
            final = param.features().detach()
            final_value, logits = _forward(model, objective, final, recorder)
        if not (math.isfinite(float(final_value)) and bool(torch.isfinite(final).all())):
            raise _diverged(steps - 1, steps, float(final_value), lr)
    t = centre_frame(model, model.output_layer, width)
    if model.has_ctc_head:
        probs = torch.softmax(logits[:, :, t], dim=1).cpu().numpy()
        letters = tuple(model.alphabet.symbols)
    else:  # an encoder: no letter posteriors at the centre frame
        probs, letters = np.zeros((logits.shape[0], 0), dtype=np.float32), ()
    target_frame = (width - 1) / 2.0
    if objective.targets:
        first = objective.targets[0]
        name = _resolve(model, first.layer)
        frame = first.frame if first.frame is not None else centre_frame(model, name, width)
        target_frame = float(model.frame_map.center(name, frame))
    features_np = final.cpu().numpy().astype(np.float32)
    settings = {
        "objective": objective.spec or objective.name,
        "objective_name": objective.name,
        "param": param.settings(),
        "regularizers": [r.settings() for r in active],
        "steps": steps,
        "lr": float(lr),
        "seed": int(seed),
        "batch": batch,
        "width": width,
        "redirect_relu": int(redirect_relu),
        "penalty_scale": scale,
        "centre_output_frame": t,
        "target_input_frame": target_frame,
        "seconds": round(time.perf_counter() - began, 3),
    }
    return Result(
        features_np[0] if batch == 1 else features_np,
        trace,
        float(final_value),
        probs[0] if batch == 1 else probs,
        letters,
        settings,
    )


def grid_objectives(
    model: ASRModel, first_channel: int = 0, middle_channel: int = 0, letter: str = "e"
) -> dict[str, Objective]:
    """The rows of the "optimal inputs" figure: a first-layer channel, a middle-layer channel
    (layer ``N // 2 + 1`` of N) and the output layer's logit of ``letter`` (centre frame)."""
    first = model.layer_names[0]
    middle = model.layer_names[len(model.layer_names) // 2]
    objectives = {}
    for spec in (f"{first}:{first_channel}", f"{middle}:{middle_channel}"):
        objectives[spec] = parse_objective(spec, model)
    label = f"{model.output_layer}:letter={letter}"
    objectives[label] = class_logit(letter)
    objectives[label].spec = label
    return objectives


def optimal_inputs(
    model: ASRModel,
    objectives: Mapping[str, Objective | str] | None = None,
    regularization: Sequence[str] = ("weak", "strong"),
    param: str = "fourier",
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    prior_for: Callable[[int], GaussianPrior] | None = None,
    progress: Callable[[str, str, int, float], None] | None = None,
) -> dict[str, dict[str, Result]]:
    """Render every objective (rows; default :func:`grid_objectives`) under every regularization
    set (columns): ``{row: {set: Result}}`` for :func:`asr_introspect.plotting.featvis.plot_optimal_inputs`.

    ``prior_for(width) -> GaussianPrior`` supplies a prior for sets that use one
    (a window width per row); without it "strong" runs without the prior penalty.
    """
    objectives = dict(objectives) if objectives is not None else grid_objectives(model)
    grid: dict[str, dict[str, Result]] = {}
    for label, objective in objectives.items():
        if isinstance(objective, str):
            objective = parse_objective(objective, model)
        width = window_frames(model, objective)
        row: dict[str, Result] = {}
        for name in regularization:
            prior = prior_for(width) if prior_for is not None and name in ("strong", "prior") else None
            callback = None
            if progress is not None:

                def callback(step, value, _label=label, _name=name):
                    progress(_label, _name, step, value)

            row[name] = render(
                model,
                objective,
                param=param,
                regularizers=name,
                steps=steps,
                lr=lr,
                seed=seed,
                width=width,
                prior=prior,
                progress=callback,
            )
        grid[label] = row
    return grid
