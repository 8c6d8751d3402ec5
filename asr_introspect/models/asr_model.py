"""ASRModel: what every analysis takes (module + alphabet + front end + frame map + named layers).

The protocol, for every model family the toolkit opens:

- **input**: ``feature_config`` is the front end that turns waveforms into the module's
  input ``(B, F, T_in)``: the toolkit's log-mel (:class:`~asr_introspect.features.FeatureConfig`),
  raw samples (:class:`~asr_introspect.frontends.WaveformConfig`, ``F = 1``) or Whisper's
  log-mel; :func:`~asr_introspect.features.featurize` runs it.
- **output**: the module maps that input to logits ``(B, C, T_out)`` over ``alphabet``
  (pre-softmax where the architecture allows). An encoder without a CTC head has
  ``alphabet=None``: its last layer is the output and CTC analyses refuse it
  (:meth:`ASRModel.require_ctc`).
- **layers**: ``layer_modules[name]`` is an ``nn.Module`` whose forward output is the
  activation ``(B, channels, T_layer)`` of layer ``name`` (hook it; a hook's returned tensor
  replaces it). Transformer blocks are presented this way through
  :mod:`~asr_introspect.models.taps`.
- **frame map**: ``frame_map`` relates every layer's frames to input frames (stride, offset,
  receptive field; "the whole utterance" after self-attention).
- **exact padding**: a padded batch gives, on each utterance's valid frames, what the
  utterance gives alone. Convolutional stacks get it from :meth:`ASRModel.exact_padding`
  (every layer zeroed beyond its length); a module with ``takes_lengths = True`` is called
  as ``module(features, lengths)`` and masks itself (attention masks). A module with
  ``exact_batch = False`` (e.g. wav2vec2 with group normalization over time) cannot be
  batched exactly: the stream then runs it one utterance at a time.

Build one with :meth:`ASRModel.from_wav2letter`, :func:`build_model`, the adapters
``wrap_torchaudio_wav2letter`` / ``wrap_conv_model``, :mod:`~asr_introspect.models.huggingface`,
:mod:`~asr_introspect.models.conformer` or :mod:`~asr_introspect.models.quartznet`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.models.frame_map import FrameMap
from asr_introspect.models.wav2letter import Wav2Letter, preset
from asr_introspect.text import Alphabet

__all__ = ["ASRModel", "build_model", "zero_beyond"]


def zero_beyond(output: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """output (B, C, T) with frames ``t >= lengths[b]`` set to 0 (a new tensor)."""
    frames = torch.arange(output.shape[-1], device=output.device)
    keep = frames[None, :] < lengths.to(output.device)[:, None]
    return output * keep[:, None, :].to(output.dtype)


class ASRModel:
    """A CTC model with the metadata analyses need.

    Attributes: ``module`` (nn.Module, features (B, F, T) -> logits (B, C, T_out)),
    ``alphabet``, ``feature_config``, ``frame_map``, ``layer_names`` (forward
    order), ``layer_modules`` (name -> hookable module), ``output_layer`` (name),
    ``n_features``, ``n_classes``, ``model_config`` (how to rebuild the module:
    ``{"architecture": "wav2letter" | "torchaudio.wav2letter" | "custom", ...}``).
    """

    def __init__(
        self,
        module: nn.Module,
        alphabet: Alphabet | None,
        feature_config: FeatureConfig,
        frame_map: FrameMap,
        layer_names: Sequence[str] | None = None,
        layer_modules: Mapping[str, nn.Module] | None = None,
        output_layer: str | None = None,
        n_features: int | None = None,
        n_classes: int | None = None,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        self.module = module
        self.alphabet = alphabet
        self.feature_config = feature_config
        self.frame_map = frame_map
        self.layer_names = list(layer_names) if layer_names is not None else list(frame_map.names)
        if layer_modules is None:
            if not hasattr(module, "layer_modules"):
                raise ValueError("pass layer_modules (name -> module whose output is the layer's activation)")
            layer_modules = module.layer_modules()
        self.layer_modules = dict(layer_modules)
        self.output_layer = output_layer if output_layer is not None else self.layer_names[-1]
        for name in self.layer_names:
            if name not in self.layer_modules:
                raise ValueError(f"layer {name!r} has no entry in layer_modules")
            if name not in frame_map:
                raise ValueError(f"layer {name!r} is not in the frame map ({frame_map.names})")
        if self.output_layer not in self.layer_names:
            raise ValueError(f"output layer {self.output_layer!r} is not one of {self.layer_names}")
        convs = [m for m in module.modules() if isinstance(m, nn.Conv1d)]
        if (n_features is None or (n_classes is None and alphabet is not None)) and not convs:
            raise ValueError("pass n_features and n_classes: the module has no Conv1d to read them from")
        self.n_features = int(n_features if n_features is not None else convs[0].in_channels)
        if alphabet is None:
            n_classes = 0
        self.n_classes = int(n_classes if n_classes is not None else convs[-1].out_channels)
        self.model_config = dict(model_config) if model_config is not None else {"architecture": "custom"}
        #: a CTC model whose forced alignment labels this model's frames with letters, by time
        #: (for an encoder without a CTC head; see :meth:`require_letters`)
        self.aligner: ASRModel | None = None
        #: the module is called as ``module(features, lengths)`` and masks padding itself
        self.takes_lengths = bool(getattr(module, "takes_lengths", False))
        #: False: a padded batch is not exact (the stream runs one utterance at a time)
        self.exact_batch = bool(getattr(module, "exact_batch", True))
        if alphabet is not None and len(alphabet) != self.n_classes:
            raise ValueError(
                f"the model has {self.n_classes} output classes but the alphabet has {len(alphabet)} symbols"
            )
        channels = getattr(feature_config, "n_channels", None)
        if channels is not None and channels != self.n_features:
            raise ValueError(
                f"the model takes {self.n_features} features per frame but its front end "
                f"({feature_config.kind}) gives {channels}"
                + (f" (n_mels={channels})" if hasattr(feature_config, "n_mels") else "")
            )

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_wav2letter(cls, module: Wav2Letter, alphabet: Alphabet, feature_config: FeatureConfig) -> ASRModel:
        """Wrap a :class:`Wav2Letter`: layers ``conv1`` ... ``convN`` (its ConvBlocks)."""
        return cls(
            module,
            alphabet,
            feature_config,
            module.frame_map(),
            module.layer_names,
            module.layer_modules(),
            module.layer_names[-1],
            module.n_features,
            module.n_classes,
            {"architecture": "wav2letter", "config": module.config.to_dict()},
        )

    # -- running --------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    def output_lengths(self, lengths):
        """Output frames for input frames ``lengths`` (int, sequence or tensor (B,))."""
        if isinstance(lengths, (list, tuple)):
            lengths = torch.as_tensor(lengths, dtype=torch.long)
        return self.frame_map.output_length(self.output_layer, lengths)

    def layer_length(self, name: str, length):
        """Frames of layer ``name`` for ``length`` input frames."""
        return self.frame_map.output_length(name, length)

    @property
    def has_ctc_head(self) -> bool:
        """True when the model outputs CTC logits over :attr:`alphabet` (False: an encoder only)."""
        return self.alphabet is not None

    def require_ctc(self, what: str) -> None:
        """InputError unless the model has a CTC head; ``what`` names the analysis that needs it."""
        if not self.has_ctc_head:
            raise InputError(
                f"{what} needs CTC outputs, but this {self.model_config.get('architecture', 'model')} is an encoder "
                f"without a CTC head: use an analysis of its layers (NAPs by phoneme, patterns, feature "
                f"visualization), with letters from another model's alignment"
            )

    @property
    def letter_alphabet(self) -> Alphabet | None:
        """The alphabet of this model's letter labels: its own, or its :attr:`aligner`'s."""
        if self.has_ctc_head:
            return self.alphabet
        return self.aligner.alphabet if self.aligner is not None else None

    def require_letters(self, what: str) -> None:
        """InputError unless frames can be labelled with letters (a CTC head, or an :attr:`aligner`)."""
        if not self.has_ctc_head and self.aligner is None:
            raise InputError(
                f"{what} need letters, but this {self.model_config.get('architecture', 'model')} is an encoder "
                "without a CTC head: pass a CTC model to align the transcripts (--aligner MODEL), or use phonemes"
            )

    def logits(self, features: torch.Tensor, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, F, T_in) [, lengths (B,)] -> (logits (B, C, T_out), out_lengths (B,) int64).

        With ``lengths`` a padded batch is exact (see :meth:`exact_padding`). Gradients flow (wrap in
        ``torch.no_grad()`` for inference); features are moved to the model's device. For an encoder
        without a CTC head (``alphabet=None``) the "logits" are its output layer ``(B, channels, T_out)``.
        """
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or features.shape[1] != self.n_features:
            shape = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
            raise InputError(f"features must be a tensor (B, {self.n_features}, T), got {shape}")
        T = features.shape[-1]
        if T < self.min_input_frames:
            raise InputError(f"input of {T} frames is too short: the model needs at least {self.min_input_frames}")
        device = self.device
        if features.device != device:
            features = features.to(device)
        padded = lengths is not None and features.shape[0] > 1 and not self.takes_lengths
        with self.exact_padding(lengths if padded else None):
            if self.takes_lengths:
                lengths_in = torch.as_tensor(lengths, dtype=torch.long) if lengths is not None else None
                out = self.module(features, lengths_in)
            else:
                out = self.module(features)
        expected = self.frame_map.output_length(self.output_layer, T)
        classes_ok = out.dim() == 3 and (out.shape[1] == self.n_classes or not self.has_ctc_head)
        if out.dim() != 3 or out.shape[-1] != expected or not classes_ok:
            raise RuntimeError(
                f"the module returned {tuple(out.shape)}, the frame map expects "
                f"(B, {self.n_classes or 'channels'}, {expected}) for {T} input frames"
            )
        if lengths is None:
            out_lengths = torch.full((out.shape[0],), expected, dtype=torch.long, device=out.device)
        else:
            lengths = torch.as_tensor(lengths, dtype=torch.long, device=out.device)
            if lengths.shape != (out.shape[0],):
                raise InputError(f"lengths must have shape ({out.shape[0]},), got {tuple(lengths.shape)}")
            out_lengths = self.frame_map.output_length(self.output_layer, lengths).clamp(max=expected)
        return out, out_lengths

    @contextlib.contextmanager
    def exact_padding(self, lengths) -> Iterator[None]:
        """Within the block, every layer's output is zeroed beyond each utterance's valid length.

        That is what the next convolution's own zero padding sees for the
        utterance alone, so the valid frames of a zero-padded batch equal each
        utterance run by itself (BatchNorm in eval mode included). The hooks run
        before any other forward hook, so recorders see masked activations.
        ``lengths``: (B,) valid input frames, or None (no masking).
        """
        if lengths is None:
            yield
            return
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        handles = []

        def masker(name: str):
            layer_lengths = self.layer_length(name, lengths)
            return lambda module, inputs, output: zero_beyond(output, layer_lengths)

        try:
            for name in self.layer_names:
                handles.append(self.layer_modules[name].register_forward_hook(masker(name), prepend=True))
            yield
        finally:
            for handle in handles:
                handle.remove()

    @property
    def min_input_frames(self) -> int:
        """Fewest input frames for which every layer has at least one frame."""
        if not hasattr(self, "_min_input_frames"):

            def ok(n: int) -> bool:
                return min(self.frame_map.lengths(n).values()) >= 1

            hi = 1
            while not ok(hi):
                hi *= 2
                if hi > 1 << 24:
                    raise ValueError("no input length gives every layer an output frame")
            lo = hi // 2  # ok(lo) is False or lo == 0
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if ok(mid) else (mid, hi)
            self._min_input_frames = hi
        return self._min_input_frames

    @property
    def receptive_field(self) -> int:
        """Input frames seen by one output frame (for a global model: the local part, see
        :meth:`FrameMap.is_global`)."""
        return self.frame_map.layer(self.output_layer).receptive_field

    def layer_module(self, name: str) -> nn.Module:
        try:
            return self.layer_modules[name]
        except KeyError:
            raise KeyError(f"unknown layer {name!r}; layers: {self.layer_names}") from None

    def eval(self) -> ASRModel:
        self.module.eval()
        return self

    def train(self, mode: bool = True) -> ASRModel:
        self.module.train(mode)
        return self

    def to(self, *args, **kwargs) -> ASRModel:
        self.module.to(*args, **kwargs)
        return self

    def __repr__(self) -> str:
        output = f"{self.n_classes} classes" if self.has_ctc_head else "no CTC head"
        field = (
            "the whole utterance" if self.frame_map.is_global(self.output_layer) else f"{self.receptive_field} frames"
        )
        return (
            f"ASRModel({self.model_config.get('architecture')}, {self.feature_config.kind} input "
            f"({self.n_features} channels) -> {output}, layers {self.layer_names[0]}..{self.layer_names[-1]}, "
            f"receptive field {field})"
        )


def build_model(
    preset_name: str = "small",
    alphabet: Alphabet | None = None,
    feature_config: FeatureConfig | None = None,
    **preset_kwargs: Any,
) -> ASRModel:
    """A freshly initialized :class:`Wav2Letter` preset as an ASRModel.

    Defaults: ``Alphabet.default()`` and a ``FeatureConfig`` with the preset's mel bands.
    """
    alphabet = alphabet if alphabet is not None else Alphabet.default()
    config = preset(preset_name, n_classes=len(alphabet), **preset_kwargs)
    if feature_config is None:
        feature_config = dataclasses.replace(FeatureConfig.paper(), n_mels=config.n_features)
    return ASRModel.from_wav2letter(Wav2Letter(config), alphabet, feature_config)
