"""Record the activations of named layers while streaming a corpus through a model.

Padded batches are exact: :meth:`ASRModel.logits` with lengths zeroes every
layer beyond each utterance's valid length (``ASRModel.exact_padding``), so the
recorded valid frames equal each utterance run alone, and padded frames never
reach an accumulator (they are masked out, see :class:`ActivationBatch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from asr_introspect.models import ASRModel


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

    def __enter__(self) -> "ActivationRecorder":
        for name in self.layers:
            self._handles.append(self.model.layer_module(name).register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def run(self, features: torch.Tensor, lengths: torch.Tensor | None = None):
        """Forward ``features (B, F, T)``; returns ``(logits (B, C, T_out), out_lengths)``."""
        self.activations = {}
        return self.model.logits(features, lengths)


@dataclass
class ActivationBatch:
    """One padded batch with the activations of the recorded layers.

    features: (B, F, T_in); feature_lengths: (B,); logits: (B, C, T_out);
    out_lengths: (B,); activations[name]: (B, channels, T_layer);
    lengths[name]: (B,) valid frames of that layer.
    """

    utterances: list
    features: torch.Tensor
    feature_lengths: torch.Tensor
    logits: torch.Tensor
    out_lengths: torch.Tensor
    activations: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    _padded: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def padded_frames(self, name: str) -> np.ndarray:
        """Every frame of the padded batch, frames-major: (B * T_layer, channels) float32 NumPy,
        C-contiguous (frame b*T + t is utterance b, frame t; padding included). Computed once
        per layer and shared by everything that aggregates this batch (e.g. letter and
        phoneme NAPs in one pass); treat it as read-only."""
        if name not in self._padded:
            acts = self.activations[name].detach().to("cpu", torch.float32).numpy()
            B, C, T = acts.shape
            self._padded[name] = np.ascontiguousarray(acts.transpose(0, 2, 1)).reshape(B * T, C)
        return self._padded[name]

    def mask(self, name: str) -> torch.Tensor:
        """(B, T_layer) bool: True on valid (non-padded) frames of layer ``name``."""
        frames = torch.arange(self.activations[name].shape[-1])
        return frames[None, :] < self.lengths[name][:, None]

    def valid(self, name: str, index: int) -> torch.Tensor:
        """Activations of utterance ``index`` without padding: (channels, T_valid)."""
        return self.activations[name][index, :, : int(self.lengths[name][index])]

    def frames(self, name: str) -> torch.Tensor:
        """All valid frames of the batch stacked: (sum of T_valid, channels)."""
        return torch.cat([self.valid(name, b).T for b in range(len(self.utterances))], dim=0)


def stream_activations(model: ASRModel, utterances: Sequence, layers: Sequence[str] | None = None,
                       batch_size: int = 16, progress: bool = False,
                       batches: Iterable | None = None) -> Iterator[ActivationBatch]:
    """Run a corpus through ``model`` batch by batch, yielding :class:`ActivationBatch`.

    Memory is one batch at a time. ``batches`` may supply ready batches (objects
    with ``features``, ``feature_lengths`` and ``utterances``); by default they
    come from :func:`asr_introspect.corpus.iterate_batches` in corpus order.
    """
    from tqdm.auto import tqdm

    from asr_introspect.corpus import iterate_batches

    if batches is None:
        batches = iterate_batches(utterances, model.feature_config, model.alphabet,
                                  batch_size=batch_size, bucket=False)
    bar = tqdm(total=len(utterances), desc="activations", unit="utt", disable=not progress)
    recorder = ActivationRecorder(model, layers)
    with torch.no_grad(), recorder:
        for batch in batches:
            logits, out_lengths = recorder.run(batch.features, batch.feature_lengths)
            lengths = {name: torch.as_tensor(model.layer_length(name, batch.feature_lengths))
                       for name in recorder.layers}
            yield ActivationBatch(list(batch.utterances), batch.features, batch.feature_lengths,
                                  logits, out_lengths, dict(recorder.activations), lengths)
            bar.update(len(batch.utterances))
    bar.close()
