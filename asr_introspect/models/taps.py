"""Layer taps: present any submodule's output as a hookable activation ``(B, channels, T)``.

Analyses read a layer through ``ASRModel.layer_modules[name]``: a module whose forward
output is the activation ``(B, C, T_layer)``, and a forward hook that returns a tensor
replaces it (exact padding, ablation, LRP). Convolutional layers already are such
modules. Transformer blocks are not: they return ``(B, T, C)``, often inside a tuple.
:func:`tap_output` hooks such a submodule and routes the chosen tensor through a
:class:`LayerTap` (an identity module) in the ``(B, C, T)`` layout; whatever the tap's
own hooks return flows back into the model, so masking and ablation at a tap change
the model's computation exactly as they would at a convolution.

``frames``: when the model runs on a fixed-size window (Whisper's 30 s), only the first
``frames()`` time steps are the utterance's; the tap shows those and passes the rest on
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["LayerTap", "tap_output"]


class LayerTap(nn.Identity):
    """The hookable stand-in of one named layer: forward is the identity on ``(B, C, T)``."""


def _pick(output, index: int):
    return output[index] if isinstance(output, (tuple, list)) else output


def _put(output, index: int, value: torch.Tensor):
    if not isinstance(output, (tuple, list)):
        return value
    items = list(output)
    items[index] = value
    return type(output)(items) if isinstance(output, tuple) else items


def tap_output(
    module: nn.Module,
    tap: LayerTap,
    *,
    index: int = 0,
    time_major: bool = True,
    frames: Callable[[], int | None] | None = None,
) -> torch.utils.hooks.RemovableHandle:
    """Route ``module``'s output (``output[index]`` when it returns a tuple) through ``tap``.

    ``time_major``: the tensor is ``(B, T, C)`` (transformers); else already ``(B, C, T)``.
    ``frames``: a callable giving how many leading time steps belong to the utterance
    (None: all). Returns the hook handle.
    """

    def hook(mod, inputs, output):
        value = _pick(output, index)
        if not isinstance(value, torch.Tensor) or value.dim() != 3:
            return None
        keep = frames() if frames is not None else None
        channels_first = value.transpose(1, 2) if time_major else value
        head = channels_first if keep is None else channels_first[..., :keep]
        seen = tap(head)
        if keep is not None and keep < channels_first.shape[-1]:
            seen = torch.cat([seen, channels_first[..., keep:]], dim=-1)
        return _put(output, index, seen.transpose(1, 2) if time_major else seen)

    return module.register_forward_hook(hook)
