"""Conformer CTC: torchaudio's blocks, frame map against autograd, exact padding, taps, checkpoints,
NAPs against a NumPy reference, training, LRP refused, bad input in one line.

The helpers ``layer_outputs``, ``nap_reference`` and ``first_and_later_losses`` are shared with
``test_quartznet.py``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_frame_map import autograd_supports, check_stack
from test_training import small_config, tone_utterances
from torch import nn
from torchaudio.models import Conformer

from asr_introspect.alignment import forced_align, frame_times, letter_labels, phone_labels, transfer_labels
from asr_introspect.attribution import attribute
from asr_introspect.attribution.lrp import require_lrp_support
from asr_introspect.audio import load_audio
from asr_introspect.corpus import load_corpus
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, compute_features
from asr_introspect.hooks import ActivationRecorder
from asr_introspect.models import (
    CONFORMER_PRESETS,
    ConformerConfig,
    build_conformer,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
    wrap_conformer,
)
from asr_introspect.models.conformer import conformer_config
from asr_introspect.naps import NAPEstimator
from asr_introspect.text import PHONES, Alphabet
from asr_introspect.training import ARCHITECTURES, EncodedCorpus, Trainer, new_model, resolve_preset

# ---------------------------------------------------------------------------
# helpers (also used by test_quartznet.py)


def perturb_batch_norm(model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine terms, so padding errors would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.module.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=g) - 0.5)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(module.running_var.shape, generator=g))
                module.bias.copy_(torch.rand(module.bias.shape, generator=g) - 0.5)


def layer_outputs(model, names: list[str]):
    """``forward(x (B, F, T)) -> [activation of each layer in names]`` (no padding, graph kept)."""

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        with ActivationRecorder(model, names, detach=False) as recorder:
            recorder.run(x)
            return [recorder.activations[name] for name in names]

    return forward


def padded_batch(n_features: int, lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Random features (B, F, max(lengths)), zero beyond each length (as featurize pads)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), n_features, max(lengths), generator=g)
    return x * (torch.arange(max(lengths))[None, None, :] < torch.tensor(lengths)[:, None, None])


def assert_padded_batch_equals_each_utterance_alone(model, lengths: list[int]) -> None:
    """Every layer's valid frames (and the logits) of a padded batch equal the utterance alone; padding is 0."""
    x = padded_batch(model.n_features, lengths)
    n = torch.tensor(lengths)
    with torch.no_grad(), ActivationRecorder(model) as recorder:
        logits, out_lengths = recorder.run(x, n)
        batched = dict(recorder.activations)
        for b, length in enumerate(lengths):
            alone_logits, _ = recorder.run(x[b : b + 1, :, :length], n[b : b + 1])
            torch.testing.assert_close(logits[b, :, : out_lengths[b]], alone_logits[0], rtol=1e-5, atol=1e-5)
            for name in model.layer_names:
                valid = int(model.layer_length(name, length))
                alone = recorder.activations[name][0]
                assert alone.shape[-1] == valid, name
                torch.testing.assert_close(batched[name][b, :, :valid], alone, rtol=1e-5, atol=1e-5, msg=name)
                assert not batched[name][b, :, valid:].any(), f"{name}: padded frames are not zero"


def features_alone(model, utt) -> torch.Tensor:
    """One utterance's features (1, F, T), computed on its own."""
    audio = load_audio(utt.audio_path, sample_rate=model.feature_config.sample_rate)
    return compute_features(audio, model.feature_config)[None]


def nap_reference(model, utterances, by: str, layers: list[str], groups: list[str]) -> dict[str, tuple]:
    """{layer: (means (G, N) with NaN for empty groups, counts (G,))} in NumPy, one utterance at a time.

    Letters: the forced alignment of the transcript on the output axis ("span" mode), moved to each
    layer with ``transfer_labels``; phonemes: the segment under each frame's centre. ``utterances``
    should hold only those the estimator kept.
    """
    if by == "letter":
        index = {model.alphabet.index(g): i for i, g in enumerate(groups)}
    else:
        index = {PHONES.index(g): i for i, g in enumerate(groups)}
    frames: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {layer: [] for layer in layers}
    for utt in utterances:
        x = features_alone(model, utt)
        with torch.no_grad(), ActivationRecorder(model, layers) as recorder:
            logits, _ = recorder.run(x)
        if by == "letter":
            log_probs = torch.log_softmax(logits[0], dim=0).T.contiguous()
            path = forced_align(log_probs, model.alphabet.encode(utt.text), blank=model.alphabet.blank)
            on_output = letter_labels(path, "span", blank=model.alphabet.blank)
        for layer in layers:
            acts = recorder.activations[layer][0].T.numpy().astype(np.float64)  # (T_layer, N)
            if by == "letter":
                raw = transfer_labels(on_output, model.frame_map, model.output_layer, layer, x.shape[-1])
            else:
                raw = phone_labels(utt.phones, frame_times(model.frame_map, layer, len(acts), model.feature_config))
            labels = np.array([index.get(int(s), -1) for s in raw], dtype=np.int64)
            frames[layer].append((acts, labels))
    out = {}
    for layer, parts in frames.items():
        acts = np.concatenate([a for a, _ in parts])
        labels = np.concatenate([lab for _, lab in parts])
        counts = np.bincount(labels[labels >= 0], minlength=len(groups))
        means = np.full((len(groups), acts.shape[1]), np.nan)
        for g in np.flatnonzero(counts):
            means[g] = acts[labels == g].mean(axis=0)
        out[layer] = (means, counts)
    return out


def assert_naps_equal_reference(model, utterances, by: str, layers: list[str]) -> None:
    """NAPEstimator over padded batches of 3 equals :func:`nap_reference`; nothing is skipped but
    utterances without phone segments (by phoneme)."""
    estimator = NAPEstimator(by, layers, letter_mode="span", batch_size=3).fit(model, utterances)
    naps = estimator.result()
    skipped = {sid for sid, _ in estimator.skipped_}
    assert skipped == ({u.id for u in utterances if not u.phones} if by == "phoneme" else set())
    kept = [u for u in utterances if u.id not in skipped]
    reference = nap_reference(model, kept, by, layers, naps.groups)
    for layer in layers:
        means, counts = reference[layer]
        assert counts.sum() > 0, layer
        np.testing.assert_array_equal(naps.counts(layer), counts, err_msg=layer)
        np.testing.assert_allclose(naps.means(layer), means, rtol=1e-4, atol=1e-5, err_msg=layer)


def first_and_later_losses(model, utterances, steps: int, run_dir, **config) -> tuple[float, float]:
    """Mean loss over the first epoch's batches, and over an epoch's after about ``steps`` steps.

    ``config``: :class:`TrainConfig` fields over ``test_training.small_config``; nothing is written.
    """
    corpus = EncodedCorpus.load(utterances, model.alphabet, model.feature_config)
    trainer = Trainer(model, small_config(max_steps=steps, **config), run_dir, corpus)
    first = [trainer.train_step(0, batch) for batch in trainer.epoch_batches(0)]
    epoch = 1
    while trainer.step < steps:
        for batch in trainer.epoch_batches(epoch):
            trainer.train_step(epoch, batch)
        epoch += 1
    later = [trainer.train_step(epoch, batch) for batch in trainer.epoch_batches(epoch)]
    return float(np.mean(first)), float(np.mean(later))


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def tiny(one_thread):
    torch.manual_seed(0)
    model = build_conformer("conformer-tiny").eval()
    perturb_batch_norm(model)
    return model


@pytest.fixture(scope="module")
def utts(tiny_corpus):
    return load_corpus(tiny_corpus.root)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return tone_utterances(tmp_path_factory.mktemp("tones"), 24, seed=0)


# ---------------------------------------------------------------------------
# presets, layers, torchaudio's computation


def test_presets_layers_and_sizes(tiny):
    assert count_parameters(tiny.module) < 100_000
    small = build_conformer("conformer-small")
    assert 2_000_000 < count_parameters(small.module) < 5_000_000
    assert small.feature_config == dataclasses.replace(FeatureConfig.paper(), n_mels=80)
    names = tiny.layer_names
    assert names[:2] == ["subsample1", "subsample2"] and names[-1] == "ctc" == tiny.output_layer
    assert names[2:7] == ["block1.ffn1", "block1.attn", "block1.conv", "block1.ffn2", "block1"]
    assert len(names) == 2 + 5 * CONFORMER_PRESETS["conformer-tiny"]["n_layers"] + 1
    swapped = conformer_config("conformer-tiny", convolution_first=True)
    assert swapped.layer_names[2:7] == ["block1.ffn1", "block1.conv", "block1.attn", "block1.ffn2", "block1"]
    fmap = tiny.frame_map
    assert fmap.first_global == "block1.attn"
    assert [fmap.is_global(n) for n in names[:4]] == [False, False, False, True]
    assert all(fmap.is_global(n) for n in names[3:])
    assert fmap.layer("ctc").stride == 4 and tiny.output_lengths([1, 4, 5, 101]).tolist() == [1, 1, 2, 26]
    assert tiny.takes_lengths and tiny.exact_batch
    assert "the whole utterance" in repr(tiny)
    # a front end with other mel bands sets the input channels
    other = build_conformer("conformer-tiny", feature_config=FeatureConfig(n_mels=40))
    assert other.n_features == 40 and other.module.config.n_features == 40


@pytest.mark.parametrize("convolution_first", [False, True])
def test_forward_is_torchaudios_conformer_with_the_subsampling_and_head(convolution_first):
    torch.manual_seed(1)
    model = build_conformer("conformer-tiny", convolution_first=convolution_first).eval()
    perturb_batch_norm(model)
    module = model.module
    x = torch.randn(1, 64, 73)
    with torch.no_grad():
        h = module.subsample2(module.subsample1(x)).transpose(1, 2)  # (1, T', d)
        encoded, _ = module.conformer(h, torch.tensor([h.shape[1]]))
        expected = module.ctc.linear(encoded).transpose(1, 2)
        logits, out_lengths = model.logits(x)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    assert out_lengths.tolist() == [19]


# ---------------------------------------------------------------------------
# frame map against autograd


def test_local_layers_match_autograd_and_global_layers_depend_on_every_frame():
    torch.manual_seed(2)
    model = build_conformer("conformer-tiny", feature_config=FeatureConfig(n_mels=3)).eval()
    model.module.double()
    with torch.no_grad():  # positive subsampling weights and inputs: no ReLU cuts a path
        for sub in (model.module.subsample1, model.module.subsample2):
            sub.conv.weight.uniform_(0.01, 0.1)
            sub.conv.bias.uniform_(0.0, 0.1)
        for norm in model.module.modules():  # with unit gains a LayerNorm's channel sum would be constant
            if isinstance(norm, nn.LayerNorm):
                norm.weight.uniform_(0.5, 1.5)
    x = 0.5 + torch.rand(1, 3, 41, dtype=torch.float64)
    local = ["subsample1", "subsample2", "block1.ffn1"]
    assert check_stack(layer_outputs(model, local), x, model.frame_map, local) == 21 + 11 + 11
    T_in = x.shape[-1]
    for name in ["block1.attn", "block1.conv", "block2", "ctc"]:
        frames = list(range(model.layer_length(name, T_in)))
        index = model.layer_names.index(name)
        supports = autograd_supports(layer_outputs(model, model.layer_names), x, index, frames)
        assert supports == [(0, T_in)] * len(frames), name
        assert all(model.frame_map.input_range(name, t, T_in) == (0, T_in) for t in frames)


# ---------------------------------------------------------------------------
# exact padding, taps


def test_padded_batch_equals_each_utterance_alone(tiny):
    assert_padded_batch_equals_each_utterance_alone(tiny, [97, 40, 61, 5])


def test_gradients_of_a_padded_batch_equal_each_utterance_alone(tiny):
    lengths = [80, 33]
    x = padded_batch(64, lengths, seed=3).requires_grad_(True)
    logits, out_lengths = tiny.logits(x, torch.tensor(lengths))
    valid = torch.arange(logits.shape[-1])[None, :] < out_lengths[:, None]
    (logits.logsumexp(dim=1) * valid).sum().backward()
    for b, length in enumerate(lengths):
        alone = x.detach()[b : b + 1, :, :length].clone().requires_grad_(True)
        alone_logits, _ = tiny.logits(alone, torch.tensor([length]))
        alone_logits.logsumexp(dim=1).sum().backward()
        torch.testing.assert_close(x.grad[b, :, :length], alone.grad[0], rtol=1e-4, atol=1e-6)


def test_group_norm_model_declares_that_it_cannot_be_batched_exactly():
    model = build_conformer("conformer-tiny", use_group_norm=True)
    assert not model.exact_batch and model.takes_lengths


def test_hooks_at_block_layers_change_what_flows_on(tiny):
    x = padded_batch(64, [50])
    last = f"block{tiny.module.config.n_layers}"
    with torch.no_grad():
        reference, _ = tiny.logits(x)
        handle = tiny.layer_modules[last].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
        try:
            ablated, _ = tiny.logits(x)
        finally:
            handle.remove()
        bias = tiny.module.ctc.linear.bias
        torch.testing.assert_close(ablated, bias[None, :, None].expand_as(ablated))
        handle = tiny.layer_modules["block1.attn"].register_forward_hook(lambda m, i, out: out * 0.0)
        try:
            no_attention, _ = tiny.logits(x)
        finally:
            handle.remove()
        assert not torch.allclose(no_attention, reference)
        again, _ = tiny.logits(x)
    torch.testing.assert_close(again, reference, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# checkpoints


def test_checkpoint_round_trip(tiny, tmp_path):
    path = save_checkpoint(tmp_path / "conformer.safetensors", tiny, metadata={"note": "tiny"})
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"note": "tiny"}
    assert loaded.model_config["architecture"] == "conformer"
    assert ConformerConfig.from_dict(loaded.model_config["config"]) == tiny.module.config
    assert loaded.layer_names == tiny.layer_names and loaded.frame_map == tiny.frame_map
    assert loaded.frame_map.is_global("ctc") and loaded.takes_lengths
    x = padded_batch(64, [70, 30])
    with torch.no_grad():
        expected = tiny.logits(x, torch.tensor([70, 30]))[0]
        torch.testing.assert_close(loaded.logits(x, torch.tensor([70, 30]))[0], expected, rtol=0, atol=0)


def test_wrap_a_torchaudio_conformer_of_your_own(tmp_path):
    torch.manual_seed(4)
    conformer = Conformer(
        input_dim=24, num_heads=3, ffn_dim=40, num_layers=2, depthwise_conv_kernel_size=5, convolution_first=True
    )
    head = nn.Linear(24, 29)
    subsample = (nn.Conv1d(16, 24, 5, stride=2, padding=2), nn.Conv1d(24, 24, 5, stride=2, padding=2))
    model = wrap_conformer(conformer, head, Alphabet.default(), FeatureConfig(n_mels=16), subsample).eval()
    assert model.module.conformer is conformer and model.module.ctc.linear is head
    config = model.module.config
    assert (config.d_model, config.n_heads, config.ffn_dim, config.n_layers) == (24, 3, 40, 2)
    assert (config.conv_kernel, config.subsample_kernel, config.convolution_first) == (5, 5, True)
    assert_padded_batch_equals_each_utterance_alone(model, [45, 12])
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "own.safetensors", model))
    x = padded_batch(16, [45])
    with torch.no_grad():
        torch.testing.assert_close(loaded.logits(x)[0], model.logits(x)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="stride=2"):
        wrap_conformer(conformer, head, Alphabet.default(), FeatureConfig(n_mels=16), (subsample[0], head))
    with pytest.raises(ValueError, match="must both have kernel 5"):
        other = nn.Conv1d(24, 24, 3, stride=2, padding=1)
        wrap_conformer(conformer, head, Alphabet.default(), FeatureConfig(n_mels=16), (subsample[0], other))
    with pytest.raises(ValueError, match="takes 10 features"):
        wrap_conformer(conformer, nn.Linear(10, 29), Alphabet.default(), FeatureConfig(n_mels=16))


# ---------------------------------------------------------------------------
# NAPs on the stream against a NumPy reference


@pytest.mark.parametrize("by,layers", [("letter", ["subsample2", "block1.attn", "ctc"]), ("phoneme", ["block2"])])
def test_naps_equal_a_numpy_reference(tiny, utts, by, layers):
    assert_naps_equal_reference(tiny, utts, by, layers)


# ---------------------------------------------------------------------------
# training


def test_training_steps_lower_the_loss(tones, tmp_path, one_thread):
    model = new_model("conformer-tiny", Alphabet.default(), seed=0)
    first, later = first_and_later_losses(model, tones, 45, tmp_path, preset="conformer-tiny", lr=3e-3, warmup_steps=10)
    assert later < 0.8 * first, (first, later)


def test_train_command_builds_and_saves_a_conformer(tiny_corpus, tmp_path):
    from asr_introspect.cli import main

    out = tmp_path / "run"
    argv = ["train", "--architecture", "conformer", "--preset", "conformer-tiny", "--data", str(tiny_corpus.root)]
    argv += ["--valid", str(tiny_corpus.root), "--steps", "2", "--batch-size", "4", "--eval-every", "2"]
    argv += ["--checkpoint-every", "2", "--no-augment", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    model, metadata = load_checkpoint(out / "model.safetensors")
    assert model.model_config["architecture"] == "conformer"
    assert model.module.config.preset == "conformer-tiny" and metadata["training"]["step"] == 2
    assert json.loads((out / "config.json").read_text())["train"]["preset"] == "conformer-tiny"


# ---------------------------------------------------------------------------
# refusals and bad input


def test_lrp_is_refused_naming_self_attention_and_gradients_apply(tiny):
    with pytest.raises(InputError, match=r"self-attention: use a gradient method") as info:
        require_lrp_support(tiny)
    assert "\n" not in str(info.value)
    x = padded_batch(64, [60])[0]
    with pytest.raises(InputError, match="lrp-epsilon"):
        attribute(tiny, x, "lrp-epsilon", frames=[3])
    result = attribute(tiny, x, "sensitivity", frames=[2, 11])
    frame = x.clone().requires_grad_(True)
    logits, _ = tiny.logits(frame[None])
    logits[0, int(result.targets[1]), 11].backward()
    np.testing.assert_allclose(result.relevance[1], frame.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_unknown_presets_and_mismatched_flags_are_one_line(tiny_corpus, tmp_path, capsys):
    from asr_introspect.cli import main
    from asr_introspect.cli.train import ARCHITECTURES as CLI_ARCHITECTURES

    assert CLI_ARCHITECTURES == tuple(ARCHITECTURES)
    with pytest.raises(InputError, match="unknown conformer preset 'conformer-huge'; choose one of"):
        build_conformer("conformer-huge")
    assert resolve_preset(None, None) == "small" and resolve_preset("conformer", None) == "conformer-small"
    assert resolve_preset(None, "conformer-tiny") == "conformer-tiny"
    with pytest.raises(InputError, match="'quartznet-tiny' is a quartznet preset, not a conformer one"):
        resolve_preset("conformer", "quartznet-tiny")
    with pytest.raises(InputError, match="--no-batch-norm"):
        new_model("conformer-tiny", Alphabet.default(), batch_norm=False)
    cases = [
        (["--architecture", "conformer", "--preset", "small"], "--preset 'small' is a wav2letter preset"),
        (["--preset", "conformer-huge"], "--preset 'conformer-huge' is unknown"),
        (["--preset", "conformer-tiny", "--no-batch-norm"], "--no-batch-norm: preset 'conformer-tiny'"),
    ]
    for flags, message in cases:
        argv = ["train", "--data", str(tiny_corpus.root), "--out", str(tmp_path / "bad"), *flags]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
        assert not (tmp_path / "bad").exists()
