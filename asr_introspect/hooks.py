"""Record the activations of named layers of a model (forward hooks).

Padded batches are exact: :meth:`ASRModel.logits` with lengths zeroes every
layer beyond each utterance's valid length (``ASRModel.exact_padding``), so the
recorded valid frames equal each utterance run alone. Corpus passes use
:mod:`asr_introspect.stream`, which records through this class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asr_introspect.models import ASRModel
from asr_introspect.models.asr_model import zero_beyond


class ActivationRecorder:
    """Forward hooks on named layers of an :class:`ASRModel`.

    Use as a context manager; after each :meth:`run`, ``activations[name]``
    holds that layer's output ``(B, channels, T_layer)`` (zero beyond each
    utterance's valid length). ``detach=False`` keeps the graph (for
    gradient-based analyses).
    """

    def __init__(self, model: ASRModel, layers: Sequence[str] | None = None, detach: bool = True):
        self.model = model
        self.layers = list(layers) if layers is not None else list(model.layer_names)
        for name in self.layers:
            model.layer_module(name)  # raises KeyError naming the layers
        self.detach = detach
        self.activations: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            self.activations[name] = output.detach() if self.detach else output

        return hook

    def __enter__(self) -> ActivationRecorder:
        for name in self.layers:
            self._handles.append(self.model.layer_module(name).register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def run(self, features: torch.Tensor, lengths: torch.Tensor | None = None):
        """Forward ``features (B, F, T)``; returns ``(logits (B, C, T_out), out_lengths)``.

        A module that masks padding itself (``takes_lengths``, e.g. attention masks) leaves
        its padded frames as they are; with ``detach`` they are zeroed here, as for conv stacks.
        """
        self.activations = {}
        result = self.model.logits(features, lengths)
        if self.detach and self.model.takes_lengths and lengths is not None:
            self.activations = {
                name: zero_beyond(act, torch.as_tensor(self.model.layer_length(name, torch.as_tensor(lengths))))
                for name, act in self.activations.items()
            }
        return result
