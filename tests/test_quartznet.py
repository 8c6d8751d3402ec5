"""QuartzNet-style residual CTC models: frame map against autograd (residuals included), exact padding
despite the residuals, checkpoints, NAPs against a NumPy reference, training, LRP refused, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_conformer import (
    assert_naps_equal_reference,
    assert_padded_batch_equals_each_utterance_alone,
    first_and_later_losses,
    layer_outputs,
    padded_batch,
    perturb_batch_norm,
)
from test_frame_map import autograd_supports, check_stack
from test_training import tone_utterances
from torch import nn

from asr_introspect.attribution import attribute
from asr_introspect.attribution.lrp import require_lrp_support
from asr_introspect.cli import main
from asr_introspect.corpus import load_corpus
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig
from asr_introspect.models import (
    QUARTZNET_PRESETS,
    QuartzNetConfig,
    build_quartznet,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from asr_introspect.models.quartznet import BlockSpec, ResidualBlock
from asr_introspect.text import Alphabet
from asr_introspect.training import new_model


@pytest.fixture(scope="module")
def tiny(one_thread):
    torch.manual_seed(0)
    model = build_quartznet("quartznet-tiny").eval()
    perturb_batch_norm(model)
    return model


@pytest.fixture(scope="module")
def utts(tiny_corpus):
    return load_corpus(tiny_corpus.root)


def test_presets_layers_and_sizes(tiny):
    assert count_parameters(tiny.module) < 20_000
    small = build_quartznet("quartznet-5x1")
    assert 1_000_000 < count_parameters(small.module) < 2_000_000
    assert small.layer_names == ["prolog", *(f"block{i}" for i in range(1, 6)), "epilog1", "epilog2", "ctc"]
    assert small.receptive_field == 389 and small.frame_map.layer("ctc").stride == 2
    assert tiny.layer_names == ["prolog", "block1.1", "block1", "block2.1", "block2", "epilog1", "epilog2", "ctc"]
    assert tiny.layer_modules["block2"] is tiny.module.blocks[1]
    assert tiny.layer_modules["block2.1"] is tiny.module.blocks[1].subblocks[0]
    assert tiny.takes_lengths and tiny.exact_batch and tiny.frame_map.first_global is None
    for T in (1, 2, 3, 100, 101):
        assert tiny.output_lengths(T) == (T + 1) // 2
    with pytest.raises(ValueError, match="odd"):
        BlockSpec(32, 4)


def test_frame_map_matches_autograd_including_the_residual_branches():
    """Positive weights, BatchNorm shifts and inputs: no ReLU cuts a path, so the support of every frame of
    every layer is exactly the input range the frame map computes (edges and the middle: T_in > 83)."""
    torch.manual_seed(1)
    model = build_quartznet("quartznet-tiny", feature_config=FeatureConfig(n_mels=3)).eval()
    module = model.module.double()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv1d):
                m.weight.uniform_(0.01, 0.1)
                if m.bias is not None:
                    m.bias.uniform_(0.0, 0.1)
            elif isinstance(m, nn.BatchNorm1d):
                m.bias.uniform_(0.0, 0.1)
    x = 0.5 + torch.rand(1, 3, 120, dtype=torch.float64)
    names = model.layer_names
    assert check_stack(layer_outputs(model, names), x, model.frame_map, names) == 60 * len(names)
    # the residual branch alone (the main path's last conv cut) sees only what the block's input sees
    with torch.no_grad():
        module.blocks[0].last.pointwise.weight.zero_()
    frames = list(range(60))
    residual = autograd_supports(layer_outputs(model, ["block1"]), x, 0, frames)
    assert residual == [model.frame_map.input_range("prolog", t, 120) for t in frames]


def test_padded_batch_equals_each_utterance_alone_despite_the_residuals(tiny):
    assert_padded_batch_equals_each_utterance_alone(tiny, [97, 40, 61, 5])
    # without the masks the residual blocks would mix in the padding: the module alone differs
    x = padded_batch(64, [97, 40])
    with torch.no_grad():
        exact, _ = tiny.logits(x, torch.tensor([97, 40]))
        unmasked = tiny.module(x)
    assert (unmasked[1, :, :20] - exact[1, :, :20]).abs().max() > 1e-3


@pytest.mark.parametrize("batch_norm", [True, False])
def test_checkpoint_round_trip(tiny, tmp_path, batch_norm):
    model = tiny if batch_norm else build_quartznet("quartznet-tiny", batch_norm=False).eval()
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.module.modules()) == batch_norm
    path = save_checkpoint(tmp_path / "quartznet.safetensors", model, metadata={"steps": 0})
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"steps": 0} and loaded.model_config["architecture"] == "quartznet"
    assert QuartzNetConfig.from_dict(loaded.model_config["config"]) == model.module.config
    assert loaded.layer_names == model.layer_names and loaded.frame_map == model.frame_map
    x = padded_batch(64, [70, 30])
    with torch.no_grad():
        expected = model.logits(x, torch.tensor([70, 30]))[0]
        torch.testing.assert_close(loaded.logits(x, torch.tensor([70, 30]))[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "by,layers", [("letter", ["prolog", "block1.1", "block2", "ctc"]), ("phoneme", ["block1", "epilog2"])]
)
def test_naps_equal_a_numpy_reference(tiny, utts, by, layers):
    assert_naps_equal_reference(tiny, utts, by, layers)


def test_training_steps_lower_the_loss(tmp_path, one_thread):
    tones = tone_utterances(tmp_path / "tones", 24, seed=0)
    model = new_model("quartznet-tiny", Alphabet.default(), seed=0)
    assert isinstance(model.module.blocks[0], ResidualBlock)
    first, later = first_and_later_losses(model, tones, 30, tmp_path, preset="quartznet-tiny", lr=3e-3)
    assert later < 0.8 * first, (first, later)
    without = new_model("quartznet-tiny", Alphabet.default(), seed=0, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in without.module.modules())


def test_lrp_is_refused_naming_the_residual_additions_and_gradients_apply(tiny):
    with pytest.raises(InputError, match="residual additions") as info:
        require_lrp_support(tiny)
    assert "\n" not in str(info.value) and "gradient method" in str(info.value)
    x = padded_batch(64, [60])[0]
    with pytest.raises(InputError, match="lrp-epsilon"):
        attribute(tiny, x, "lrp-epsilon", frames=[3])
    result = attribute(tiny, x, "sensitivity", frames=[3, 20])
    frame = x.clone().requires_grad_(True)
    logits, _ = tiny.logits(frame[None])
    logits[0, int(result.targets[1]), 20].backward()
    np.testing.assert_allclose(result.relevance[1], frame.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_unknown_preset_is_one_line(tiny_corpus, tmp_path, capsys):
    with pytest.raises(InputError, match="unknown quartznet preset 'quartznet-15x5'; choose one of"):
        build_quartznet("quartznet-15x5")
    argv = ["train", "--architecture", "quartznet", "--preset", "quartznet-15x5", "--data", str(tiny_corpus.root)]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--preset 'quartznet-15x5' is unknown; choose one of quartznet-5x1, quartznet-tiny" in err
    assert "\n" not in err
    assert sorted(QUARTZNET_PRESETS) == ["quartznet-5x1", "quartznet-tiny"]
