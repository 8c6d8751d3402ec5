"""Checkpoints: round trips (fp32, fp16, custom modules) and clear errors for bad files."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from asr_introspect.errors import CheckpointError
from asr_introspect.features import FeatureConfig
from asr_introspect.models import (
    FORMAT_VERSION,
    NF4,
    ASRModel,
    build_model,
    load_checkpoint,
    quantize_int8,
    quantize_nf4,
    read_checkpoint_info,
    save_checkpoint,
    wrap_conv_model,
)
from asr_introspect.models.checkpoint import HEADER_KEY, NF4_LEVELS, _nf4_dequantize, _nf4_parts, tensor_sha256
from asr_introspect.text import Alphabet

METADATA = {"training": {"steps": 12, "preset": "tiny"}, "metrics": {"cer": 0.42, "wer": 0.9}}


def trained_tiny(seed: int = 0) -> ASRModel:
    """A tiny model whose BatchNorm statistics moved away from their defaults."""
    torch.manual_seed(seed)
    model = build_model("tiny")
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.logits(torch.randn(4, 64, 40) * 2 + 1)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, ASRModel]:
    model = trained_tiny()
    path = save_checkpoint(tmp_path / "model.safetensors", model, METADATA)
    return path, model


def logits(model: ASRModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.logits(x)[0]


def rewrite_header(src: Path, dst: Path, edit) -> Path:
    """Copy ``src`` to ``dst`` with ``edit(config)`` applied to the embedded JSON (tensors unchanged)."""
    with safe_open(str(src), framework="pt") as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(header[HEADER_KEY])
    edit(config)
    save_file(tensors, str(dst), metadata={HEADER_KEY: json.dumps(config)})
    return dst


def test_round_trip_fp32(saved) -> None:
    path, model = saved
    x = torch.randn(2, 64, 55)
    loaded, metadata = load_checkpoint(path)
    assert metadata == METADATA
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)
    for key, value in model.module.state_dict().items():  # BatchNorm statistics included
        torch.testing.assert_close(loaded.module.state_dict()[key], value, rtol=0, atol=0)
    assert loaded.frame_map == model.frame_map and loaded.layer_names == model.layer_names
    assert loaded.alphabet.symbols == model.alphabet.symbols
    assert loaded.feature_config == model.feature_config
    assert not loaded.module.training
    info = read_checkpoint_info(path)
    assert info["format_version"] == FORMAT_VERSION and info["dtype"] == "float32"
    assert info["model"]["config"]["preset"] == "tiny" and info["metadata"] == METADATA
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_round_trip_fp16(saved, tmp_path: Path) -> None:
    path32, model = saved
    path16 = save_checkpoint(tmp_path / "half.safetensors", model, METADATA, dtype=torch.float16)
    assert path16.stat().st_size < 0.6 * path32.stat().st_size
    loaded, metadata = load_checkpoint(path16)
    assert metadata == METADATA and read_checkpoint_info(path16)["dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())
    x = torch.randn(2, 64, 55)
    reference = logits(model, x)
    scale = reference.abs().max().item()
    torch.testing.assert_close(logits(loaded, x), reference, rtol=0, atol=0.02 * scale)


def test_round_trip_int8(saved, tmp_path: Path) -> None:
    path32, model = saved
    path8 = save_checkpoint(tmp_path / "int8.safetensors", model, METADATA, dtype=torch.int8)
    assert path8.stat().st_size < 0.35 * path32.stat().st_size
    loaded, metadata = load_checkpoint(path8)
    assert metadata == METADATA and read_checkpoint_info(path8)["dtype"] == "int8"
    # the file loads to exactly what quantize_int8 computes, so a model can be evaluated as shipped
    expected = quantize_int8(copy.deepcopy(model.module)).state_dict()
    for key, value in loaded.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
        if value.dim() >= 2:  # per-output-channel rounding: at most half a step of that channel's scale
            w = model.module.state_dict()[key]
            step = w.abs().reshape(len(w), -1).amax(dim=1) / 127
            assert ((value - w).abs().reshape(len(w), -1).amax(dim=1) <= step / 2 + 1e-7).all(), key
    x = torch.randn(2, 64, 55)
    reference = logits(model, x)
    assert (logits(loaded, x) - reference).norm() < 0.1 * reference.norm()  # random tiny model: ~5 %
    # a scale that does not fit its int8 tensor is rejected with the file's name
    with safe_open(str(path8), framework="pt") as f:
        header = json.loads(f.metadata()[HEADER_KEY])
    tensors = load_file(str(path8))
    name = next(k for k in tensors if k.endswith("@scale"))
    tensors[name] = tensors[name][:-1]
    header["tensor_sha256"] = tensor_sha256(tensors)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={HEADER_KEY: json.dumps(header)})
    with pytest.raises(CheckpointError, match=r"bad.safetensors: .*@scale does not belong"):
        load_checkpoint(bad)


def test_nf4_codes_are_the_nearest_level_per_group() -> None:
    torch.manual_seed(3)
    w = torch.randn(3, 5, 13)  # 65 weights per channel: an odd count and a 1-weight last group
    w[1, :, :] = 0.0  # an all-zero channel stays zero
    packed, scale = _nf4_parts(w)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 33) and scale.shape == (3, 2)
    got = _nf4_dequantize(packed, scale, tuple(w.shape))
    flat = w.reshape(3, -1)
    for c in range(3):
        for g in range(2):
            x = flat[c, 64 * g : 64 * (g + 1)]
            s = scale[c, g].float()
            assert s == (x.abs().max().half().float() if x.abs().max() > 0 else 1.0)
            nearest = NF4_LEVELS[(x[:, None] / s - NF4_LEVELS).abs().argmin(dim=1)] * s
            torch.testing.assert_close(got.reshape(3, -1)[c, 64 * g : 64 * (g + 1)], nearest, rtol=0, atol=1e-6)
    assert not got[1].any()
    # the NF4 levels: 16 ascending values in [-1, 1] with an exact 0 (QLoRA's table)
    assert NF4_LEVELS.shape == (16,) and (NF4_LEVELS.diff() > 0).all() and 0.0 in NF4_LEVELS
    torch.testing.assert_close(
        NF4_LEVELS[[0, 6, 8, 14, 15]], torch.tensor([-1.0, -0.0911, 0.0796, 0.7230, 1.0]), rtol=0, atol=1e-4
    )


def test_round_trip_nf4(saved, tmp_path: Path) -> None:
    path32, model = saved
    path4 = save_checkpoint(tmp_path / "nf4.safetensors", model, METADATA, dtype=NF4)
    path8 = save_checkpoint(tmp_path / "int8.safetensors", model, METADATA, dtype=torch.int8)
    assert path4.stat().st_size < 0.7 * path8.stat().st_size  # the tiny model's header and biases weigh in
    loaded, metadata = load_checkpoint(path4)
    info = read_checkpoint_info(path4)
    assert metadata == METADATA and info["dtype"] == "nf4" and info["nf4"]["group_size"] == 64
    # the output layer's weight is kept in int8, every other weight is nf4 codes
    output = f"blocks.{model.output_layer}.conv.weight"
    assert info["nf4"]["int8"] == [output]
    stored = load_file(str(path4))
    assert stored[output].dtype == torch.int8 and stored[output + "@scale"].shape == (model.n_classes,)
    assert {stored[k].dtype for k in stored if k.endswith(".conv.weight") and k != output} == {torch.uint8}
    # the file loads to exactly what quantize_nf4 computes, so a model can be evaluated as shipped
    expected = quantize_nf4(copy.deepcopy(model)).state_dict()
    int8_expected = quantize_int8(copy.deepcopy(model)).state_dict()
    for key, value in loaded.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
        if key == output:
            torch.testing.assert_close(value, int8_expected[key], rtol=0, atol=0)
        elif value.dim() >= 2:  # at most half the widest level gap (-1 to -0.696) times the largest |w|
            w = model.module.state_dict()[key]
            bound = 0.152 * w.abs().reshape(len(w), -1).amax(dim=1) * 1.001 + 1e-7
            assert ((value - w).abs().reshape(len(w), -1).amax(dim=1) <= bound).all(), key
    with pytest.raises(TypeError, match="needs the ASRModel"):
        quantize_nf4(model.module)
    # (the accuracy cost is measured on the trained model: data_prep/ship_default_model.py --dtype nf4)
    with pytest.raises(ValueError, match="dtype must be"):
        save_checkpoint(tmp_path / "x.safetensors", model, dtype="int4")
    # codes that do not fit the model's weight, or a missing level table: rejected with the file's name
    tensors = load_file(str(path4))
    name = next(k for k in tensors if k.endswith("@scale") and k != output + "@scale")
    tensors[name] = tensors[name][:, :-1].contiguous()
    with safe_open(str(path4), framework="pt") as f:
        header = json.loads(f.metadata()[HEADER_KEY])
    header["tensor_sha256"] = tensor_sha256(tensors)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={HEADER_KEY: json.dumps(header)})
    with pytest.raises(CheckpointError, match=r"bad.safetensors: .*@scale does not belong to nf4 codes"):
        load_checkpoint(bad)
    no_levels = rewrite_header(path4, tmp_path / "no_levels.safetensors", lambda c: c.pop("nf4"))
    with pytest.raises(CheckpointError, match=r"no_levels.safetensors: the nf4 levels"):
        load_checkpoint(no_levels)
    # a header that no longer lists the int8 output layer: its int8 tensor is not nf4 codes
    unlisted = rewrite_header(path4, tmp_path / "unlisted.safetensors", lambda c: c["nf4"].update(int8=[]))
    with pytest.raises(CheckpointError, match=rf"unlisted.safetensors: {output}@scale does not belong to nf4"):
        load_checkpoint(unlisted)
    # one that lists an nf4 weight as int8
    listed = rewrite_header(
        path4, tmp_path / "listed.safetensors", lambda c: c["nf4"].update(int8=[output, "blocks.conv1.conv.weight"])
    )
    with pytest.raises(CheckpointError, match=r"listed.safetensors: blocks.conv1.conv.weight@scale .* an int8"):
        load_checkpoint(listed)


def test_round_trip_custom_module(tmp_path: Path) -> None:
    def make() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv1d(10, 12, 3, padding=1), nn.BatchNorm1d(12), nn.ReLU(), nn.Conv1d(12, 29, 2, stride=2)
        )

    torch.manual_seed(3)
    fc = FeatureConfig(n_mels=10)
    model = wrap_conv_model(make(), Alphabet.default(), fc).eval()
    path = save_checkpoint(tmp_path / "custom.safetensors", model)
    with pytest.raises(CheckpointError, match="custom module.*module="):
        load_checkpoint(path)
    loaded, metadata = load_checkpoint(path, module=make())
    assert metadata == {}
    x = torch.randn(1, 10, 21)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)
    wrong = nn.Sequential(nn.Conv1d(10, 12, 5, padding=2), nn.ReLU(), nn.Conv1d(12, 29, 2, stride=2))
    with pytest.raises(CheckpointError, match="custom.safetensors"):
        load_checkpoint(path, module=wrong)


def test_loading_never_unpickles(saved, monkeypatch) -> None:
    path, _ = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling during load_checkpoint")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    load_checkpoint(path)


def test_missing_and_not_safetensors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="nope.safetensors.*not found"):
        load_checkpoint(missing)
    text = tmp_path / "notes.safetensors"
    text.write_text("this is not a checkpoint at all, just some text")
    with pytest.raises(CheckpointError, match="notes.safetensors"):
        load_checkpoint(text)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(CheckpointError, match="plain.safetensors.*no asr-introspect config"):
        load_checkpoint(plain)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.001])
def test_truncated_file(saved, tmp_path: Path, keep: float) -> None:
    path, _ = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(CheckpointError, match="cut.safetensors.*truncated"):
        load_checkpoint(cut)


def test_flipped_byte_in_tensor_data(saved, tmp_path: Path) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    for position in (8 + header_len + 5, len(data) - 3):  # first and last tensor bytes
        altered = bytearray(data)
        altered[position] ^= 0x01
        bad = tmp_path / "altered.safetensors"
        bad.write_bytes(bytes(altered))
        with pytest.raises(CheckpointError, match="altered.safetensors.*sha256"):
            load_checkpoint(bad)


def test_wrong_config(saved, tmp_path: Path) -> None:
    path, _ = saved

    def wider(config: dict) -> None:
        config["model"]["config"]["layers"][1]["channels"] += 1

    bad = rewrite_header(path, tmp_path / "wider.safetensors", wider)
    with pytest.raises(CheckpointError, match="wider.safetensors.*do not match the embedded model config"):
        load_checkpoint(bad)

    def kernel(config: dict) -> None:
        config["frame_map"]["layers"][0]["kernel"] = 5

    bad = rewrite_header(path, tmp_path / "fmap.safetensors", kernel)
    with pytest.raises(CheckpointError, match="fmap.safetensors.*frame map"):
        load_checkpoint(bad)

    def no_alphabet(config: dict) -> None:
        del config["alphabet"]

    bad = rewrite_header(path, tmp_path / "noalpha.safetensors", no_alphabet)
    with pytest.raises(CheckpointError, match="noalpha.safetensors.*invalid"):
        load_checkpoint(bad)

    def future(config: dict) -> None:
        config["format_version"] = FORMAT_VERSION + 1

    bad = rewrite_header(path, tmp_path / "future.safetensors", future)
    with pytest.raises(CheckpointError, match="future.safetensors.*format version"):
        load_checkpoint(bad)

    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    garbled = tmp_path / "garbled.safetensors"
    save_file(tensors, str(garbled), metadata={HEADER_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="garbled.safetensors.*JSON"):
        load_checkpoint(garbled)


def test_failed_save_keeps_the_old_file(saved) -> None:
    path, model = saved
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, model, {"not json": object()})
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="dtype"):
        save_checkpoint(path, model, dtype=torch.bfloat16)
    assert not list(path.parent.glob(".*.tmp"))
