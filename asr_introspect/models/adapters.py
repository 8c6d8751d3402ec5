"""Wrap foreign models as :class:`ASRModel`: torchaudio's Wav2Letter and any Conv1d stack.

Assumptions of :func:`wrap_conv_model` (checked where possible):

- the module maps features ``(B, F, T)`` to ``(B, C, T')`` through a *sequential*
  stack of ``nn.Conv1d`` layers (no skip connections, pooling or resampling in
  between; the lengths of every layer are checked against the frame map);
- padding is the convolutions' own ``padding`` or an ``nn.ConstantPad1d`` /
  ``nn.ZeroPad1d`` module run before a convolution (``F.pad`` calls are
  invisible);
- element-wise modules (BatchNorm, ReLU, dropout, ...) that directly consume a
  convolution's output belong to its layer, and the layer's activation is the
  output of the last of them; activations applied with functional calls
  (``F.relu``) are not seen, so such a layer's activation is its convolution's
  output (pre-activation).

Layers are named ``conv1`` ... ``convN`` in forward order (the order the
convolutions run, found by one forward pass on zeros in eval mode) unless
``layer_names`` is given. In-place activations in a layer (``ReLU(inplace=True)``)
are switched to out-of-place so hooks see clean tensors; outputs are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from asr_introspect.models.asr_model import ASRModel
from asr_introspect.models.frame_map import ConvSpec, FrameMap

if TYPE_CHECKING:
    from asr_introspect.features import FeatureConfig
    from asr_introspect.text import Alphabet

__all__ = ["wrap_conv_model", "wrap_torchaudio_wav2letter", "TorchaudioWav2LetterLogits"]


class TorchaudioWav2LetterLogits(nn.Module):
    """torchaudio ``Wav2Letter`` without its final ``log_softmax``: (B, F, T) -> (B, C, T_out).

    torchaudio's output convolution is followed by a ReLU, so these logits are
    non-negative; ``log_softmax(logits, dim=1)`` is exactly torchaudio's output.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.acoustic_model(features)


def _trace(module: nn.Module, n_features: int) -> tuple[list[dict[str, Any]], torch.Tensor, int]:
    """Run ``module`` once on zeros (eval, no grad); record the leaf-module calls.

    Returns (records, output, T_in).
    """
    leaves = [(name, m) for name, m in module.named_modules() if next(m.children(), None) is None]
    try:
        ref = next(module.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    modes = [(m, m.training) for m in module.modules()]
    last_error: Exception | None = None
    try:
        module.eval()
        for T in (257, 1031, 4099):
            records: list[dict[str, Any]] = []

            def hook(mod, inputs, output, _records=records):
                x = inputs[0] if inputs else None
                _records.append({"module": mod, "input": x, "output": output})

            handles = [m.register_forward_hook(hook) for _, m in leaves]
            try:
                with torch.no_grad():
                    out = module(torch.zeros(1, n_features, T, device=device, dtype=dtype))
                return records, out, T
            except RuntimeError as exc:  # too short for an unpadded stack: try longer
                last_error = exc
            finally:
                for h in handles:
                    h.remove()
    finally:
        for m, mode in modes:
            m.training = mode
    raise ValueError(f"cannot run {type(module).__name__} on features (1, {n_features}, T): {last_error}")


def wrap_conv_model(
    module: nn.Module,
    alphabet: Alphabet,
    feature_config: FeatureConfig,
    layer_names: Sequence[str] | None = None,
    n_features: int | None = None,
    model_config: dict[str, Any] | None = None,
) -> ASRModel:
    """Wrap any Conv1d stack mapping features (B, F, T) to logits (B, C, T') (see module docstring).

    ``n_features`` defaults to the ``in_channels`` of the first registered Conv1d.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv1d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no nn.Conv1d layers")
    n_features = int(n_features if n_features is not None else convs[0].in_channels)
    records, out, T = _trace(module, n_features)
    if not isinstance(out, torch.Tensor) or out.dim() != 3:
        raise ValueError(
            f"{type(module).__name__} must return a tensor (B, C, T'), got {getattr(out, 'shape', type(out).__name__)}"
        )

    layers: list[dict[str, Any]] = []
    pad_left = pad_right = 0
    seen: set[int] = set()
    for rec in records:
        mod = rec["module"]
        if isinstance(mod, nn.Conv1d):
            if id(mod) in seen:
                raise ValueError(f"{type(module).__name__} calls a Conv1d twice; only plain stacks are supported")
            seen.add(id(mod))
            layers.append(
                {
                    "conv": mod,
                    "spec": ConvSpec.from_conv(mod, pad_left, pad_right),
                    "last": mod,
                    "out": rec["output"],
                    "chain": [],
                }
            )
            pad_left = pad_right = 0
        elif isinstance(mod, nn.ConstantPad1d):
            left, right = mod.padding
            pad_left, pad_right = pad_left + left, pad_right + right
        elif (
            layers
            and rec["input"] is layers[-1]["out"]
            and isinstance(rec["output"], torch.Tensor)
            and rec["output"].shape == rec["input"].shape
        ):
            layers[-1]["last"] = mod
            layers[-1]["out"] = rec["output"]
            layers[-1]["chain"].append(mod)
    if len(seen) != len(convs):
        raise ValueError(f"{type(module).__name__} has {len(convs)} Conv1d modules but its forward ran {len(seen)}")

    names = list(layer_names) if layer_names is not None else [f"conv{i + 1}" for i in range(len(layers))]
    if len(names) != len(layers):
        raise ValueError(f"{len(names)} layer names for {len(layers)} Conv1d layers")
    frame_map = FrameMap([layer["spec"] for layer in layers], names)
    for name, layer in zip(names, layers):
        expected = frame_map.output_length(name, T)
        if layer["out"].shape[-1] != expected:
            raise ValueError(
                f"{type(module).__name__} is not a sequential Conv1d stack: layer {name} has "
                f"{layer['out'].shape[-1]} frames for {T} input frames, the frame map expects "
                f"{expected} (pooling, resampling, skip connections or F.pad?)"
            )
    if out.shape[-1] != frame_map.output_length(names[-1], T):
        raise ValueError(
            f"{type(module).__name__} returns {out.shape[-1]} frames for {T} input frames, "
            f"its last Conv1d gives {frame_map.output_length(names[-1], T)}"
        )
    for layer in layers:
        for mod in layer["chain"]:
            if getattr(mod, "inplace", False) is True:
                mod.inplace = False
    layer_modules = {name: layer["last"] for name, layer in zip(names, layers)}
    config = (
        dict(model_config)
        if model_config is not None
        else {"architecture": "custom", "class": f"{type(module).__module__}.{type(module).__qualname__}"}
    )
    return ASRModel(
        module,
        alphabet,
        feature_config,
        frame_map,
        names,
        layer_modules,
        names[-1],
        n_features=n_features,
        n_classes=int(out.shape[1]),
        model_config=config,
    )


def wrap_torchaudio_wav2letter(model: nn.Module, alphabet: Alphabet, feature_config: FeatureConfig) -> ASRModel:
    """Wrap ``torchaudio.models.Wav2Letter`` (``input_type`` "mfcc" or "power_spectrum").

    The ASRModel's module is :class:`TorchaudioWav2LetterLogits` (sharing the
    model's parameters): it skips torchaudio's final ``log_softmax``, so logits
    are the output layer's activations (non-negative: torchaudio ends with a
    ReLU). Layers ``conv1`` ... ``conv11``; the activation of a layer is its ReLU
    (made out-of-place). Note torchaudio pads its even kernels symmetrically
    (48 with 23, 32 with 16), so ``T_out = floor(T_in / 2) + 1`` for T_in >= 2.
    """
    acoustic = getattr(model, "acoustic_model", None)
    if not isinstance(acoustic, nn.Sequential):
        raise ValueError("expected a torchaudio.models.Wav2Letter (with an acoustic_model)")
    if isinstance(acoustic[0], nn.Sequential):
        raise ValueError(
            "torchaudio Wav2Letter with input_type='waveform' takes raw audio; wrap a "
            "model built with input_type='mfcc' or 'power_spectrum' (features (B, F, T))"
        )
    convs = [m for m in acoustic.modules() if isinstance(m, nn.Conv1d)]
    config = {
        "architecture": "torchaudio.wav2letter",
        "num_classes": convs[-1].out_channels,
        "num_features": convs[0].in_channels,
        "input_type": "mfcc",
    }
    return wrap_conv_model(TorchaudioWav2LetterLogits(model), alphabet, feature_config, model_config=config)
