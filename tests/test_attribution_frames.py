"""The per-frame API: receptive-field crops reproduce full-utterance values (borders included), all
frames batched equal one frame at a time, crops and dense maps agree, and the CLI writes its files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from planted import planted_model as _planted

from asr_introspect.attribution import CropGeometry, attribute, conv_stack, crop_logits
from asr_introspect.attribution.frames import select_frames, select_targets
from asr_introspect.errors import InputError
from asr_introspect.models import build_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def planted_model(seed: int = 0, dtype=torch.float64):
    return _planted(seed, bn_bias_std=0.3, conv_bias_std=0.2, dtype=dtype)


def features(n: int, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(64, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("n_input", [1, 2, 9, 96, 193, 194, 251])
def test_crop_logits_equal_full_logits(n_input):
    """Every frame's crop alone gives its full-utterance logits, also when the receptive field hangs
    over one or both ends (intermediate layers then see their own zero padding inside the crop)."""
    model = planted_model()
    stack = conv_stack(model)
    x = features(n_input)
    geometry = CropGeometry(stack, n_input)
    frames = np.arange(geometry.n_frames)
    assert geometry.n_frames == model.output_lengths(n_input)
    crops = geometry.source(0, x).take(torch.as_tensor(frames))
    assert crops.shape == (len(frames), 64, model.receptive_field)
    # whatever lies outside the utterance in a crop is ignored
    outside = 1.0 - geometry.valid_source(0).take(torch.as_tensor(frames))
    logits = crop_logits(stack, geometry, crops + 50.0 * outside, frames)
    with torch.no_grad():
        full = model.module(x[None])[0]
    torch.testing.assert_close(logits.T, full, rtol=1e-10, atol=1e-10)


def test_offsets_follow_the_frame_map():
    model = planted_model()
    x = features(150)
    result = attribute(model, x, "sensitivity", crop=True)
    fm = model.frame_map
    for i, t in enumerate(result.frames):
        start, stop = fm.input_range(model.output_layer, int(t))
        assert result.offsets[i] == start and stop - start == result.receptive_field
        assert result.input_range(i) == fm.input_range(model.output_layer, int(t), 150)


@pytest.mark.parametrize(
    "method", ["lrp-epsilon-gamma-box", "guided-backprop", "grad-cam:conv7", "integrated-gradients"]
)
def test_all_frames_batched_equal_frame_by_frame(method):
    model = planted_model()
    x = features(120)
    options = {"steps": 3} if method == "integrated-gradients" else {}
    batched = attribute(model, x, method, frames="all", crop=True, **options)
    chunked = attribute(model, x, method, frames="all", crop=True, chunk_size=7, **options)
    np.testing.assert_allclose(chunked.relevance, batched.relevance, rtol=1e-12, atol=1e-14)
    for t in (0, 1, 29, 58, 59):
        single = attribute(model, x, method, frames=t, target=batched.targets[t : t + 1], crop=True, **options)
        np.testing.assert_allclose(single.relevance[0], batched.relevance[t], rtol=1e-12, atol=1e-14)


def test_single_frames_match_full_utterance_autograd():
    """An independent reference for the crop engine at the borders: autograd on the whole utterance."""
    model = planted_model()
    x = features(131)
    result = attribute(model, x, "sensitivity", frames=[0, 1, 2, 33, 63, 64, 65])
    for i, (t, c) in enumerate(zip(result.frames, result.targets)):
        inp = x[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.module(inp)[0, c, t], inp)
        np.testing.assert_allclose(result.relevance[i], grad[0].numpy(), rtol=1e-9, atol=1e-13)


def test_crops_and_dense_maps_agree():
    model = planted_model()
    x = features(140)
    cropped = attribute(model, x, "lrp-epsilon-plus", frames=[0, 35, 69], crop=True)
    dense = attribute(model, x, "lrp-epsilon-plus", frames=[0, 35, 69], crop=False)
    assert cropped.relevance.shape == (3, 64, model.receptive_field)
    assert dense.relevance.shape == (3, 64, 140)
    np.testing.assert_array_equal(cropped.dense(), dense.relevance)
    np.testing.assert_array_equal(dense.crops(), cropped.relevance)
    np.testing.assert_array_equal(cropped.frame(35), dense.relevance[1])
    # columns of the crop outside the utterance are zero
    lo, hi = cropped.input_range(0)
    start = cropped.offsets[0]
    assert start < 0 and not cropped.relevance[0][:, : lo - start].any()
    with pytest.raises(KeyError):
        cropped.index(5)


def test_frame_and_target_selection():
    assert select_frames("all", 4).tolist() == [0, 1, 2, 3]
    assert select_frames(-1, 4).tolist() == [3]
    assert select_frames([0, 2], 4).tolist() == [0, 2]
    for bad in ("some", [4], 1.5, [[0]]):
        with pytest.raises(InputError):
            select_frames(bad, 4)
    logits = torch.tensor([[5.0, 0.0, 0.0], [1.0, 2.0, 0.5], [0.0, 3.0, 0.1]])  # (C=3, T=3)
    frames = np.array([0, 1, 2])
    assert select_targets(logits, frames, "predicted").tolist() == [0, 2, 1]
    assert select_targets(logits, frames, "predicted-letter").tolist() == [1, 2, 1]
    assert select_targets(logits, frames, 2).tolist() == [2, 2, 2]
    assert select_targets(logits, np.array([1]), np.array([0, 1, 2])).tolist() == [1]  # per-utterance-frame array
    for bad in ("best", np.array([0, 3, 1]), np.array([0, 1]), np.array([0.5, 1.0, 1.0])):
        with pytest.raises(InputError):
            select_targets(logits, frames, bad)


def test_forced_targets_follow_the_alignment():
    from asr_introspect.alignment import forced_align

    model = planted_model()
    x = features(200)
    result = attribute(model, x, "sensitivity", frames="all", target="forced", transcript="ab ba", crop=True)
    log_probs = torch.log_softmax(torch.as_tensor(result.logits).double(), dim=0).T.contiguous()
    path = forced_align(log_probs, model.alphabet.encode("ab ba"), blank=0)
    np.testing.assert_array_equal(result.targets, path)
    assert model.alphabet.decode(model.alphabet.ctc_collapse(result.targets.tolist())) == "ab ba"
    with pytest.raises(InputError):
        attribute(model, x, "sensitivity", target="forced")
    with pytest.raises(InputError):
        attribute(model, x, "sensitivity", target="forced", transcript="é!")


def test_bad_input_is_an_input_error():
    model = planted_model()
    with pytest.raises(InputError):
        attribute(model, torch.zeros(63, 50), "sensitivity")
    with pytest.raises(InputError):
        attribute(model, torch.full((64, 50), float("nan")), "sensitivity")
    with pytest.raises(InputError):
        attribute(model, torch.zeros(64, 50), "no-such-method")
    with pytest.raises(TypeError):
        attribute(model, torch.zeros(64, 50), "sensitivity", epsilon=0.1)


def test_float32_default_and_bounded_memory_chunks():
    model = planted_model(dtype=torch.float32)
    x = features(90, dtype=torch.float32)
    a = attribute(model, x, "lrp-epsilon", crop=True)
    b = attribute(model, x, "lrp-epsilon", crop=True, chunk_size=4)
    assert a.relevance.dtype == np.float32
    np.testing.assert_allclose(a.relevance, b.relevance, rtol=1e-4, atol=1e-6 * np.abs(a.relevance).max())


def test_cli_attribute(tmp_path):
    from asr_introspect.cli import main
    from asr_introspect.io import load_npz

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", build_model("tiny"))
    rate = 16000
    t = np.arange(int(0.9 * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    sf.write(tmp_path / "tone.wav", audio, rate)
    out = tmp_path / "out"
    code = main(
        [
            "attribute",
            str(tmp_path / "tone.wav"),
            "--model",
            str(checkpoint),
            "--method",
            "lrp-epsilon",
            "--frames",
            "0,3:5",
            "--out",
            str(out),
            "--figures",
            "2",
            "--quiet",
            "--json",
        ]
    )
    assert code == 0
    arrays = load_npz(out / "relevance.npz")
    assert arrays["relevance"].shape == (3, 64, 194) and arrays["frames"].tolist() == [0, 3, 4]
    assert arrays["offsets"].tolist() == [-95, -89, -87]
    assert str(arrays["method"]) == "lrp-epsilon"
    summary = json.loads((out / "attribution.json").read_text())
    assert summary["frames"] == 3 and summary["compare"] == "sensitivity"
    assert (out / "frame_00000.png").is_file() and (out / "frame_00003.png").is_file()
    assert not (out / "frame_00004.png").exists() and (out / "overview.png").is_file()

    (tmp_path / "broken.wav").write_bytes(b"not audio")
    assert (
        main(
            [
                "attribute",
                str(tmp_path / "broken.wav"),
                "--model",
                str(checkpoint),
                "--out",
                str(tmp_path / "o2"),
                "--quiet",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "attribute",
                str(tmp_path / "tone.wav"),
                "--model",
                str(checkpoint),
                "--out",
                str(tmp_path / "o3"),
                "--frames",
                "1,x",
                "--quiet",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "attribute",
                str(tmp_path / "tone.wav"),
                "--model",
                str(checkpoint),
                "--out",
                str(tmp_path / "o4"),
                "--method",
                "lrp-nothing",
                "--quiet",
            ]
        )
        == 2
    )
