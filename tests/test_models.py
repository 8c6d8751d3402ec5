"""Wav2Letter presets, output lengths, and the ASRModel protocol for three kinds of model."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.models import (
    ASRModel,
    ConvBlock,
    LayerSpec,
    Wav2Letter,
    Wav2LetterConfig,
    build_model,
    count_parameters,
    preset,
    wrap_conv_model,
    wrap_torchaudio_wav2letter,
)
from asr_introspect.text import Alphabet

ALPHABET = Alphabet.default()


def features(n_mels: int) -> FeatureConfig:
    return dataclasses.replace(FeatureConfig.paper(), n_mels=n_mels)


# -- presets ----------------------------------------------------------------------------


def test_speechless_parameter_count() -> None:
    config = preset("speechless", n_classes=29)
    model = Wav2Letter(config)  # built once, never run
    n = count_parameters(model)
    assert abs(n - 24.6e6) / 24.6e6 < 0.02, n
    assert n == 24_662_529
    assert config.n_features == 128 and len(config.layers) == 11
    assert not any(s.batch_norm for s in config.layers)
    assert [s.kernel for s in config.layers] == [48] + [7] * 7 + [32, 1, 1]
    assert [s.channels for s in config.layers] == [250] * 8 + [2000, 2000, 29]
    assert model.frame_map().layer("conv11").receptive_field == 194


def test_small_and_tiny_parameter_counts() -> None:
    small = Wav2Letter(preset("small"))
    n = count_parameters(small)
    assert 3.5e6 <= n <= 4.5e6 and n <= 6e6, n
    floats = sum(t.numel() for t in small.state_dict().values() if t.is_floating_point())
    assert floats * 2 <= 9e6  # fp16 weights + BatchNorm statistics fit in 9 MB
    assert small.config.n_features == 64 and small.layer_names == [f"conv{i}" for i in range(1, 12)]
    assert all(s.batch_norm for s in small.config.layers[:-1]) and not small.config.layers[-1].batch_norm
    tiny = Wav2Letter(preset("tiny"))
    assert count_parameters(tiny) < 150_000 and len(tiny.layer_names) == 11


def test_block_structure_and_init() -> None:
    model = Wav2Letter(preset("tiny"))
    assert list(model.blocks) == [f"conv{i}" for i in range(1, 12)]
    for name, block in model.blocks.items():
        assert isinstance(block, ConvBlock) and isinstance(block.conv, nn.Conv1d)
        if name == "conv11":
            assert isinstance(block.act, nn.Identity) and block.bn is None
        else:
            assert isinstance(block.act, nn.ReLU) and not block.act.inplace
            assert isinstance(block.bn, nn.BatchNorm1d)
        assert torch.all(block.conv.bias == 0)
    w = model.blocks["conv2"].conv.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (16 * 7)), rel=0.2)  # kaiming, fan-in


@pytest.mark.parametrize(
    "layers",
    [
        [LayerSpec(8, 48, 2), LayerSpec(8, 7), LayerSpec(5, 1, activation="none")],
        [
            LayerSpec(8, 4, 3),
            LayerSpec(8, 3, dilation=2),
            LayerSpec(8, 6, 2, dilation=3),
            LayerSpec(5, 2, activation="none"),
        ],
    ],
)
def test_output_lengths_odd_and_even(layers: list[LayerSpec]) -> None:
    model = Wav2Letter(Wav2LetterConfig(n_features=3, layers=layers, n_classes=5)).eval()
    stride = math.prod(s.stride for s in layers)
    lengths = list(range(1, 20)) + [100, 101, 102]
    for T in lengths:
        with torch.no_grad():
            out = model(torch.randn(2, 3, T))
        assert out.shape == (2, 5, model.output_lengths(T)), T
        assert out.shape[-1] == math.ceil(T / stride)
    as_tensor = model.output_lengths(torch.tensor(lengths))
    assert as_tensor.tolist() == [math.ceil(T / stride) for T in lengths]


def test_config_round_trip_and_validation() -> None:
    config = preset("small", dropout=0.1)
    again = Wav2LetterConfig.from_dict(config.to_dict())
    assert again == config and again.preset == "small"
    assert config.layers[0].dropout == 0.1 and config.layers[-1].dropout == 0.0
    assert preset("tiny", n_features=40).n_features == 40
    assert not any(s.batch_norm for s in preset("small", batch_norm=False).layers)
    assert all(s.batch_norm for s in preset("speechless", batch_norm=True).layers[:-1])
    assert preset("small", batch_norm=None) == preset("small")
    with pytest.raises(ValueError, match="n_classes"):
        Wav2LetterConfig(3, [LayerSpec(4, 1)], n_classes=5)
    with pytest.raises(ValueError, match="activation"):
        LayerSpec(4, 3, activation="gelu")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="features"):
        Wav2Letter(preset("tiny"))(torch.randn(1, 63, 10))


# -- the ASRModel protocol ----------------------------------------------------------------


@pytest.fixture(scope="module")
def torchaudio_model():
    torchaudio = pytest.importorskip("torchaudio")
    torch.manual_seed(0)
    return torchaudio.models.Wav2Letter(num_classes=29, input_type="mfcc", num_features=20)


def make_models(torchaudio_model) -> dict[str, ASRModel]:
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv1d(20, 16, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.Conv1d(16, 16, 4, stride=2, padding=1),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Conv1d(16, 29, 1),
    )
    return {
        "wav2letter": build_model("tiny", ALPHABET, features(20), n_features=20),
        "torchaudio": wrap_torchaudio_wav2letter(torchaudio_model, ALPHABET, features(20)),
        "sequential": wrap_conv_model(seq, ALPHABET, features(20)),
    }


@pytest.mark.parametrize("kind", ["wav2letter", "torchaudio", "sequential"])
def test_asr_model_protocol(kind: str, torchaudio_model) -> None:
    model = make_models(torchaudio_model)[kind].eval()
    assert model.n_classes == len(ALPHABET) == 29 and model.n_features == 20
    assert model.output_layer == model.layer_names[-1]
    assert all(name in model.frame_map for name in model.layer_names)
    T = 37
    x = torch.randn(3, 20, T)
    recorded: dict[str, torch.Tensor] = {}
    handles = [
        model.layer_modules[name].register_forward_hook(
            lambda mod, inp, out, name=name: recorded.__setitem__(name, out.detach().clone())
        )
        for name in model.layer_names
    ]
    try:
        with torch.no_grad():
            logits, out_lengths = model.logits(x, torch.tensor([T, 30, 9]))
    finally:
        for h in handles:
            h.remove()
    T_out = model.output_lengths(T)
    assert logits.shape == (3, 29, T_out)
    assert out_lengths.tolist() == [T_out, model.output_lengths(30), model.output_lengths(9)]
    assert out_lengths.dtype == torch.int64
    assert list(recorded) == model.layer_names
    for name, act in recorded.items():
        assert act.shape[0] == 3 and act.shape[-1] == model.layer_length(name, T), name
    torch.testing.assert_close(recorded[model.output_layer], logits)
    # hidden layers hook post-ReLU activations
    assert recorded[model.layer_names[0]].min() >= 0
    # no lengths: every utterance is full length; the shortest input still runs
    _, full = model.logits(x)
    assert full.tolist() == [T_out] * 3
    n = model.min_input_frames
    with torch.no_grad():
        short, _ = model.logits(torch.randn(1, 20, n))
    assert short.shape[-1] >= 1
    if n > 1:
        with pytest.raises(InputError, match="too short"):
            model.logits(torch.randn(1, 20, n - 1))
    with pytest.raises(InputError, match="features"):
        model.logits(torch.randn(1, 21, T))
    assert model.eval() is model and model.to("cpu") is model
    assert model.device.type == "cpu"


def test_torchaudio_adapter_keeps_the_model(torchaudio_model) -> None:
    model = make_models(torchaudio_model)["torchaudio"].eval()
    x = torch.randn(2, 20, 50)
    with torch.no_grad():
        logits, _ = model.logits(x)
        reference = torchaudio_model.eval()(x)
    torch.testing.assert_close(torch.log_softmax(logits, dim=1), reference)
    assert model.layer_names == [f"conv{i}" for i in range(1, 12)]
    assert all(not m.inplace for m in model.layer_modules.values())
    assert model.min_input_frames == 2
    assert model.output_lengths(50) == 26  # symmetric padding of the even kernels: floor(T/2) + 1
    # parameters are shared, not copied
    assert next(model.module.parameters()) is next(torchaudio_model.parameters())


def test_wrap_conv_model_layers_and_errors(torchaudio_model) -> None:
    model = make_models(torchaudio_model)["sequential"]
    seq = model.module
    assert model.layer_modules == {"conv1": seq[1], "conv2": seq[5], "conv3": seq[6]}
    assert not seq[1].inplace  # made out-of-place for hooks
    renamed = wrap_conv_model(seq, ALPHABET, features(20), layer_names=["a", "b", "c"])
    assert renamed.layer_names == ["a", "b", "c"] and renamed.frame_map.names == ["a", "b", "c"]
    pooled = nn.Sequential(nn.Conv1d(20, 8, 3, padding=1), nn.MaxPool1d(2), nn.Conv1d(8, 29, 1))
    with pytest.raises(ValueError, match="sequential"):
        wrap_conv_model(pooled, ALPHABET, features(20))
    with pytest.raises(ValueError, match="alphabet"):
        wrap_conv_model(nn.Sequential(nn.Conv1d(20, 5, 1)), ALPHABET, features(20))
    with pytest.raises(ValueError, match="n_mels"):
        build_model("tiny", ALPHABET, features(64), n_features=20)
    with pytest.raises(ValueError, match="waveform"):
        torchaudio = pytest.importorskip("torchaudio")
        wrap_torchaudio_wav2letter(torchaudio.models.Wav2Letter(29, "waveform", 1), ALPHABET, features(1))


def test_training_mode_untouched_by_wrapping() -> None:
    seq = nn.Sequential(nn.Conv1d(20, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 29, 1))
    seq.train()
    before = seq[1].running_mean.clone()
    wrap_conv_model(seq, ALPHABET, features(20))
    assert seq.training and seq[1].training
    torch.testing.assert_close(seq[1].running_mean, before)  # the trace ran in eval mode
