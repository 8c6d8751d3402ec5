"""Nulls for the layer-trend measures: random weights, one layer randomized, labels shuffled.

- :func:`random_weights_model`: the same architecture with every parameter
  re-drawn by its module's own initializer (``reset_parameters`` of each
  ``nn.Conv1d``, ``nn.Linear``, ``nn.LayerNorm``, ...; BatchNorm running
  statistics reset to mean 0, variance 1), seeded. What the measures give
  here is what the input and the architecture give without training
  (Adebayo et al. 2018).
- :class:`LayerRandomizer`: each layer randomized *in turn and independently*
  (not cascading): layer ``l``'s module alone is re-initialized and applied
  to the input the trained layer ``l`` received, within the trained model's
  forward pass (a forward pre-hook keeps that input). The measure at ``l``
  then says what a random layer ``l`` makes of the trained layers below it,
  so "the layer adds separation" is tested against "the separation was
  already there". Costs one extra forward of each layer (one forward pass in
  total) and no second pass over the audio. Exact for layers whose module
  maps its inputs to its output (conv blocks, residual blocks); layers that
  are parameterless taps (the transformers and Conformer adapters) have no
  module of their own to randomize, and this null is left undefined (NaN).
- :func:`shuffle_within_utterances`: each utterance's labelled frames keep
  their activations but get a random permutation of their labels: which
  groups occur, and how often, is unchanged per utterance; the link between
  a frame and its label is broken.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from asr_introspect.models.asr_model import ASRModel, zero_beyond

__all__ = [
    "LayerRandomizer",
    "randomize_module",
    "random_weights",
    "random_weights_model",
    "shuffle_within_utterances",
]


def randomize_module(module: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``module`` re-initialized from ``seed`` by its modules' own initializers.

    The outermost module that defines ``reset_parameters`` wins (a model-level initializer such as
    :meth:`Wav2Letter.reset_parameters` over PyTorch's per-layer defaults); modules without one are
    searched further down. BatchNorm running statistics are reset everywhere."""
    out = copy.deepcopy(module)

    def reset(m: nn.Module) -> None:
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
            return
        for child in m.children():
            reset(child)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reset(out)
        for sub in out.modules():
            if callable(getattr(sub, "reset_running_stats", None)):
                sub.reset_running_stats()
    return out


def random_weights_model(model: ASRModel, seed: int = 0) -> ASRModel:
    """``model`` with random weights (:func:`randomize_module` on its whole module): same frame map,
    layer names and vocabulary; its layer modules point into the new module. For modules whose
    layer taps are fed by hooks on other submodules (the transformers adapters) use
    :func:`random_weights` instead, which swaps the weights of the model itself."""
    module = randomize_module(model.module, seed)
    names = {id(m): q for q, m in model.module.named_modules()}
    layer_modules = {}
    for name, m in model.layer_modules.items():
        if id(m) not in names:
            raise ValueError(f"layer {name}: its module is not a submodule of the model; cannot randomize it")
        layer_modules[name] = module.get_submodule(names[id(m)])
    out = copy.copy(model)
    out.module = module
    out.layer_modules = layer_modules
    out.module.eval()
    return out


@contextlib.contextmanager
def random_weights(
    model: ASRModel, state: dict[str, torch.Tensor], restore: dict[str, torch.Tensor] | None = None
) -> Iterator[None]:
    """Within the block ``model`` carries the parameters and buffers ``state`` (e.g.
    ``randomize_module(model.module, seed).state_dict()``); after it, ``restore`` (default: a copy of
    its own, taken on entry; pass one copy when swapping once per batch). Works for any adapter,
    hooks and taps included, because the module itself runs."""
    if restore is None:
        restore = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    model.module.load_state_dict(state)
    try:
        yield
    finally:
        model.module.load_state_dict(restore)


class LayerRandomizer:
    """Each of ``layers`` randomized alone, evaluated on the trained model's input to that layer.

    Use as a context manager around the trained model's forward pass (e.g. a corpus stream): a
    forward pre-hook keeps each layer's input; :meth:`outputs` then returns what the randomized
    copy of each layer makes of it, ``{layer: (B, channels, T_layer)}``, zeroed beyond ``lengths``.
    """

    def __init__(self, model: ASRModel, layers: Sequence[str], seed: int = 0) -> None:
        self.model = model
        self.layers = list(layers)
        #: layers whose module owns parameters; a parameterless module (a tap that only mirrors another
        #: module's output, as in the transformers and Conformer adapters) has nothing to randomize
        self.available = [n for n in self.layers if any(True for _ in model.layer_module(n).parameters())]
        self.random = {
            name: randomize_module(model.layer_module(name), seed + 1 + i).eval()
            for i, name in enumerate(self.layers)
            if name in self.available
        }
        self._inputs: dict[str, tuple] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, args, kwargs):
            self._inputs[name] = (
                tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
                dict(kwargs),
            )

        return hook

    def __enter__(self) -> LayerRandomizer:
        for name in self.available:
            handle = self.model.layer_module(name).register_forward_pre_hook(self._hook(name), with_kwargs=True)
            self._handles.append(handle)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inputs.clear()

    @torch.no_grad()
    def outputs(self, feature_lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: randomized layer's output on the last batch's input}, (B, C, T_layer), zero beyond
        each utterance's valid frames (``feature_lengths``: (B,) input frames); available layers only."""
        out = {}
        for name in self.available:
            args, kwargs = self._inputs[name]
            y = self.random[name](*args, **kwargs)
            if isinstance(y, (tuple, list)):
                y = y[0]
            lengths = torch.as_tensor(self.model.layer_length(name, torch.as_tensor(feature_lengths)))
            out[name] = zero_beyond(y.detach(), lengths)
        return out


def shuffle_within_utterances(labels: np.ndarray, rng: np.random.Generator, rest: int | None = None) -> np.ndarray:
    """labels (B, T) int (-1: no label; ``rest``: valid frame in no group, left in place) -> a copy in
    which each row's labelled frames carry a random permutation of that row's labels."""
    out = np.array(labels, copy=True)
    for b in range(out.shape[0]):
        idx = np.flatnonzero((out[b] >= 0) & (out[b] != (-2 if rest is None else rest)))
        out[b, idx] = out[b, idx[rng.permutation(idx.size)]]
    return out
