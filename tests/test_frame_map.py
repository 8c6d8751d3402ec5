"""FrameMap against autograd: the support of d(layer[:, :, t]) / d(input) is the computed range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from asr_introspect.features import FeatureConfig
from asr_introspect.models import ConvSpec, FrameMap, Wav2Letter, preset, wrap_conv_model
from asr_introspect.models.frame_map import LayerGeometry
from asr_introspect.text import Alphabet


class SpecStack(nn.Module):
    """Linear Conv1d stack with explicit asymmetric zero padding and positive weights."""

    def __init__(self, specs: list[ConvSpec], channels: int = 2, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.specs = specs
        self.convs = nn.ModuleList()
        for s in specs:
            conv = nn.Conv1d(channels, channels, s.kernel, stride=s.stride, dilation=s.dilation)
            with torch.no_grad():
                conv.weight.copy_(0.1 + torch.rand(conv.weight.shape, generator=g))
            self.convs.append(conv.double())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for s, conv in zip(self.specs, self.convs):
            x = conv(nn.functional.pad(x, (s.pad_left, s.pad_right)))
            outs.append(x)
        return outs


def autograd_supports(forward, x0: torch.Tensor, index: int, frames: list[int]) -> list[tuple[int, int]]:
    """[first, last + 1) of input frames with a nonzero gradient of layer[:, :, t].sum(), per t.

    One backward pass: row i of a batch of copies of ``x0`` (1, F, T) gets frame ``frames[i]``.
    """
    x = x0.detach().repeat(len(frames), 1, 1).requires_grad_(True)
    y = forward(x)[index]
    target = y[torch.arange(len(frames)), :, torch.tensor(frames)].sum()
    (grads,) = torch.autograd.grad(target, x)
    support = grads.abs().sum(dim=1).numpy() > 0  # (len(frames), T_in)
    ranges = []
    for row in support:
        nz = np.flatnonzero(row)
        assert nz.size > 0
        assert np.all(np.diff(nz) == 1), "support has holes"
        ranges.append((int(nz[0]), int(nz[-1]) + 1))
    return ranges


def check_stack(forward, x0: torch.Tensor, fmap: FrameMap, names: list[str], frames: list[int] | None = None) -> int:
    """``forward(x)`` returns the outputs of the layers ``names``; compare supports with ``fmap``."""
    T_in = x0.shape[-1]
    with torch.no_grad():
        lengths = [y.shape[-1] for y in forward(x0)]
    checked = 0
    for index, (name, T_layer) in enumerate(zip(names, lengths)):
        assert T_layer == fmap.output_length(name, T_in), name
        ts = list(range(T_layer)) if frames is None else [t for t in frames if t < T_layer]
        for t, support in zip(ts, autograd_supports(forward, x0, index, ts)):
            exact = fmap.input_range(name, t, T_in)
            assert support == exact, (name, t)
            # the closed form (no T_in) contains the exact support
            start, stop = fmap.input_range(name, t)
            assert start <= exact[0] and exact[1] <= stop
            checked += 1
    return checked


CONFIGS = {
    "odd kernels": [
        ConvSpec(3, pad_left=1, pad_right=1),
        ConvSpec(5, pad_left=2, pad_right=2),
        ConvSpec(3, pad_left=1, pad_right=1),
    ],
    "even kernels": [
        ConvSpec(4, pad_left=1, pad_right=2),
        ConvSpec(2, pad_left=0, pad_right=1),
        ConvSpec(6, 2, pad_left=2, pad_right=3),
    ],
    "strides 2 and 3": [
        ConvSpec(5, 2, pad_left=2, pad_right=2),
        ConvSpec(3, 3, pad_left=1, pad_right=1),
        ConvSpec(4, 1, pad_left=1, pad_right=2),
    ],
    "dilation": [
        ConvSpec(3, pad_left=1, pad_right=1),
        ConvSpec(3, 1, 2, pad_left=2, pad_right=2),
        ConvSpec(2, 2, 3, pad_left=1, pad_right=2),
        ConvSpec(4, 1, 2, pad_left=3, pad_right=3),
    ],
    "asymmetric and valid": [
        ConvSpec(3),
        ConvSpec(4, pad_left=3, pad_right=0),
        ConvSpec(5, 2, pad_left=1, pad_right=4),
        ConvSpec(3, pad_left=0, pad_right=2),
    ],
    "floor drops the tail": [ConvSpec(2, 2), ConvSpec(3, pad_left=1, pad_right=1), ConvSpec(3, 3, pad_left=2)],
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("T_in", [23, 24])
def test_frame_map_matches_autograd(name: str, T_in: int) -> None:
    specs = CONFIGS[name]
    stack = SpecStack(specs)
    fmap = FrameMap.from_specs(specs)
    x = 0.5 + torch.rand(1, 2, T_in, dtype=torch.float64)
    assert check_stack(stack, x, fmap, fmap.names) > 10


def test_frame_map_matches_autograd_tiny_preset() -> None:
    torch.manual_seed(0)
    model = Wav2Letter(preset("tiny", n_features=3)).double().eval()
    with torch.no_grad():  # positive weights, biases and inputs: no ReLU ever cuts a path
        for block in model.blocks.values():
            block.conv.weight.uniform_(0.01, 0.1)
            block.conv.bias.uniform_(0.0, 0.1)
    fmap = model.frame_map()
    T_in = 230  # longer than the receptive field (194), so edges and the middle are both tested
    x = 0.5 + torch.rand(1, 3, T_in, dtype=torch.float64)
    names = ["conv1", "conv2", "conv9", "conv11"]

    def forward(h: torch.Tensor) -> list[torch.Tensor]:
        outputs = {}
        for name, block in model.blocks.items():
            h = block(h)
            outputs[name] = h
        return [outputs[n] for n in names]

    assert check_stack(forward, x, fmap, names) > 400
    # for "same" padding the clipped closed form is exact
    for t in range(fmap.output_length("conv11", T_in)):
        start, stop = fmap.input_range("conv11", t)
        assert (max(start, 0), min(stop, T_in)) == fmap.input_range("conv11", t, T_in)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_frame_map_of_wrapped_module_matches_autograd() -> None:
    """ConstantPad1d, ZeroPad1d and padding='same' (even kernel) found by wrap_conv_model."""
    torch.manual_seed(1)
    seq = nn.Sequential(
        nn.ZeroPad1d((3, 1)),
        nn.Conv1d(4, 3, 4, stride=2),
        nn.ReLU(inplace=True),
        nn.Conv1d(3, 3, 4, padding="same", dilation=1),
        nn.ReLU(),
        nn.ConstantPad1d((0, 2), 0.0),
        nn.Conv1d(3, 29, 3, stride=3),
    ).double()
    with torch.no_grad():
        for m in seq:
            if isinstance(m, nn.Conv1d):
                m.weight.uniform_(0.05, 1.0)
                m.bias.uniform_(0.0, 0.1)

    model = wrap_conv_model(seq, Alphabet.default(), FeatureConfig(n_mels=4))
    assert [s.pad_left for s in model.frame_map.specs] == [3, 1, 0]
    assert [s.pad_right for s in model.frame_map.specs] == [1, 2, 2]
    x = 0.5 + torch.rand(1, 4, 31, dtype=torch.float64)

    def forward(h: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for m in seq:
            h = m(h)
            if m in model.layer_modules.values():
                outputs.append(h)
        return outputs

    check_stack(forward, x, model.frame_map, model.layer_names)


def test_paper_geometry() -> None:
    fmap = preset("speechless").frame_map()
    g = fmap.layer("conv11")
    assert g == LayerGeometry(stride=2, receptive_field=194, offset=-95, start_padding=95)
    assert fmap.layer("conv1") == LayerGeometry(2, 48, -23, 23)
    assert fmap.layer("conv9").receptive_field == 48 + 2 * 6 * 7 + 2 * 31
    assert fmap.layer("input") == LayerGeometry(1, 1, 0, 0)
    for T in (1, 2, 3, 100, 101):
        assert fmap.output_length("conv11", T) == math.ceil(T / 2)


def test_center_and_inverse_map() -> None:
    fmap = FrameMap.from_specs(CONFIGS["strides 2 and 3"])
    name = fmap.names[-1]
    g = fmap.layer(name)
    for t in range(20):
        c = fmap.center(name, t)
        assert c == pytest.approx(g.offset + t * g.stride + (g.receptive_field - 1) / 2)
        assert fmap.layer_frame_of_input(name, c) == t
        assert fmap.layer_frame_of_input(name, c + 0.49 * g.stride) == t
    centers = fmap.center(name, np.arange(5))
    assert centers.shape == (5,)
    assert list(fmap.layer_frame_of_input(name, centers)) == list(range(5))
    assert fmap.layer_frame_of_input(name, -1000) == 0
    T_in = 50
    assert fmap.layer_frame_of_input(name, 10_000, T_in=T_in) == fmap.output_length(name, T_in) - 1


def test_output_length_types_and_round_trip() -> None:
    fmap = FrameMap.from_specs(CONFIGS["asymmetric and valid"], names=["a", "b", "c", "d"])
    ints = [fmap.output_length("d", T) for T in range(0, 30)]
    tensor = fmap.output_length("d", torch.arange(0, 30))
    array = fmap.output_length("d", np.arange(0, 30))
    assert tensor.tolist() == ints == array.tolist()
    # batch-sized CPU tensors use the memoized ints; long ones the vectorized formula: same lengths, same dtype
    small = fmap.output_length("c", torch.arange(0, 30, dtype=torch.int32))
    assert small.dtype == torch.int32 and small.tolist() == fmap.output_length("c", np.arange(0, 30)).tolist()
    big = fmap.output_length("c", torch.arange(0, 1500))
    assert big.tolist() == fmap.output_length("c", np.arange(0, 1500)).tolist()
    assert ints[0] == 0  # nothing in, nothing out, despite the padding
    assert ints[29] > 0
    again = FrameMap.from_dict(fmap.to_dict())
    assert again == fmap and again.names == ["a", "b", "c", "d"]
    assert fmap.lengths(29)["d"] == ints[29]
    with pytest.raises(KeyError, match="unknown layer"):
        fmap.layer("conv1")
    with pytest.raises(ValueError):
        FrameMap.from_specs([ConvSpec(3)], names=["a", "b"])


def test_from_model_registration_order() -> None:
    seq = nn.Sequential(
        nn.Conv1d(2, 2, 5, padding=2),
        nn.ReLU(),
        nn.ConstantPad1d((1, 0), 0.0),
        nn.Conv1d(2, 2, 2, stride=2),
        nn.Conv1d(2, 2, 3, padding="valid"),
    )
    fmap = FrameMap.from_model(seq)
    assert fmap.specs == [ConvSpec(5, 1, 1, 2, 2), ConvSpec(2, 2, 1, 1, 0), ConvSpec(3)]
    assert fmap.names == ["conv1", "conv2", "conv3"]
    model = Wav2Letter(preset("tiny"))
    assert FrameMap.from_model(model, model.layer_names) == model.frame_map()
