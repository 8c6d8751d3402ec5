"""Benchmark: LRP for every output frame of a 10 s utterance, ours vs a per-frame zennit loop.

Ours: ``attribute(model, features, "lrp-epsilon", frames="all", crop=True)`` (one forward pass,
batched receptive-field backward passes). Baseline: zennit's ``Gradient`` attributor with the same
rule (Epsilon 1e-6 on every convolution, BatchNorm merged by zennit's canonizer), one full-utterance
forward + backward per output frame. The zennit loop is timed on a subset of frames (evenly spaced,
both ends included) and extrapolated to all frames; the script says so. Results are compared on that
subset (max |ours - zennit| / max |zennit| per frame).

captum's LRP is tried too: it has no rule for Conv1d (we set EpsilonRule by hand) and fails on the
models' asymmetric zero padding (``ConstantPad1d``); the script reports the error.

Run: ``.venv/bin/python benchmarks/bench_attribution.py [--presets small speechless] [--seconds 10]
[--zennit-frames 8] [--threads N] [--json out.json]``. Default model: the shipped checkpoint if
installed ("small"), else random weights (the cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr_introspect.attribution import CropGeometry, attribute, conv_stack  # noqa: E402
from asr_introspect.defaults import DEFAULT_MODEL  # noqa: E402
from asr_introspect.models import build_model  # noqa: E402


def load(preset: str):
    if preset == "small" and DEFAULT_MODEL.is_file():
        from asr_introspect.models import load_checkpoint

        model, _ = load_checkpoint(DEFAULT_MODEL)
        return model.eval(), "shipped default"
    torch.manual_seed(0)
    return build_model(preset).eval(), "random weights"


def zennit_loop(model, x, frames, targets) -> tuple[np.ndarray, list[float]]:
    """One zennit pass per (frame, target); ``x``: features (F, T) or a list of them, one per frame."""
    from zennit import canonizers, composites, rules
    from zennit.attribution import Gradient

    module = copy.deepcopy(model.module)
    for m in module.modules():  # same function; zennit's BatchNorm merge then leaves an exact identity
        if isinstance(m, nn.BatchNorm1d):
            m.running_var.data += m.eps
            m.eps = 0.0
    names = [f"blocks.{name}.conv" for name in model.layer_names]
    composite = composites.NameLayerMapComposite(
        name_map=[(tuple(names), rules.Epsilon(1e-6))],
        layer_map=composites.layer_map_base(),
        canonizers=[canonizers.SequentialMergeBatchNorm()],
    )
    maps, seconds = [], []
    with Gradient(module, composite) as attributor:
        inputs = x if isinstance(x, list) else [x] * len(frames)
        for inp, t, c in zip(inputs, frames, targets):

            def start(output, t=int(t), c=int(c)):
                grad = torch.zeros_like(output)
                grad[0, c, t] = output[0, c, t]
                return grad

            t0 = time.perf_counter()
            _, relevance = attributor(inp[None].clone(), start)
            seconds.append(time.perf_counter() - t0)
            maps.append(relevance[0].detach().numpy())
    return np.stack(maps), seconds


def zennit_crop_loop(model, x: torch.Tensor, frames, targets, geometry) -> tuple[np.ndarray, list[float]]:
    """zennit on each frame's receptive-field crop (interior frames only): the locality gain alone.

    The crop starts one input frame earlier when needed so that the crop's output grid contains the
    frame (stride 2); the frame's whole dependency cone then lies inside the crop, so the value is exact.
    """
    rf, stride, offset = geometry.receptive_field, geometry.step[0], geometry.start[0]
    shift = (-offset) % stride  # crop output u covers input frames from (crop start) + u*stride + offset
    crops, local = [], []
    for t in frames:
        start = int(t) * stride + offset
        crops.append(x[:, start - shift : start + rf])
        local.append((shift - offset) // stride)
    maps, seconds = zennit_loop(model, crops, local, targets)
    return maps[:, :, shift:], seconds


def captum_try(model, x: torch.Tensor, frame: int, target: int) -> str:
    try:
        from captum.attr import LRP
        from captum.attr._utils.lrp_rules import EpsilonRule, IdentityRule

        stack = conv_stack(model)
        layers: list[nn.Module] = []
        for layer in stack.layers:
            pad = nn.ConstantPad1d((layer.pad_left, layer.pad_right), 0.0)
            pad.rule = IdentityRule()
            conv = nn.Conv1d(layer.in_channels, layer.out_channels, layer.kernel, stride=layer.stride)
            conv.weight.data, conv.bias.data = layer.weight.clone(), layer.bias.clone()
            conv.rule = EpsilonRule(1e-6)
            layers += [pad, conv] + ([nn.ReLU()] if layer.relu else [])
        LRP(nn.Sequential(*layers).eval()).attribute(x[None].clone().requires_grad_(True), target=(target, frame))
        return "ran"
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"


def bench(preset: str, seconds: float, n_zennit: int) -> dict:
    model, source = load(preset)
    config = model.feature_config
    n_in = config.frames(int(seconds * config.sample_rate))
    x = torch.randn(model.n_features, n_in, generator=torch.Generator().manual_seed(0))
    n_out = int(model.output_lengths(n_in))

    attribute(model, x[:, :400], "lrp-epsilon", frames="all", crop=True)  # warm-up (kernel setup)
    t0 = time.perf_counter()
    ours = attribute(model, x, "lrp-epsilon", frames="all", crop=True)
    ours_s = time.perf_counter() - t0

    subset = np.unique(np.linspace(0, n_out - 1, n_zennit).round().astype(int))
    zmaps, zsec = zennit_loop(model, x, subset, ours.targets[subset])
    dense = ours.dense()[subset] if n_out * x.numel() < 4e8 else np.stack([ours.frame(int(t)) for t in subset])
    err = np.abs(dense - zmaps).max(axis=(1, 2)) / np.abs(zmaps).max(axis=(1, 2))
    per_frame = float(np.median(zsec))
    middle = int(subset[len(subset) // 2])

    geometry = CropGeometry(conv_stack(model), n_in)
    interior = [
        int(t)
        for t in np.linspace(0, n_out - 1, n_zennit + 2).round().astype(int)
        if geometry.offsets([t])[0] >= 1 and geometry.offsets([t])[0] + geometry.receptive_field <= n_in
    ]
    cmaps, csec = zennit_crop_loop(model, x, interior, ours.targets[interior], geometry)
    crops = ours.crops()[interior]
    crop_err = np.abs(crops - cmaps).max(axis=(1, 2)) / np.abs(cmaps).max(axis=(1, 2))
    crop_per_frame = float(np.median(csec))
    zennit_total = per_frame * n_out
    result = {
        "preset": preset,
        "weights": source,
        "parameters": sum(p.numel() for p in model.module.parameters()),
        "input_frames": n_in,
        "output_frames": n_out,
        "threads": torch.get_num_threads(),
        "ours_seconds": round(ours_s, 2),
        "ours_ms_per_frame": round(1000 * ours_s / n_out, 2),
        "zennit_frames_timed": int(len(subset)),
        "zennit_seconds_per_frame": round(per_frame, 3),
        "zennit_seconds_all_frames_extrapolated": round(zennit_total, 1),
        "speedup": round(zennit_total / ours_s, 1),
        "max_relative_difference": float(err.max()),
        "median_relative_difference": float(np.median(err)),
        "zennit_crop_frames_timed": len(interior),
        "zennit_crop_seconds_per_frame": round(crop_per_frame, 3),
        "zennit_crop_seconds_all_frames_extrapolated": round(crop_per_frame * n_out, 1),
        "speedup_vs_crops": round(crop_per_frame * n_out / ours_s, 1),
        "crop_max_relative_difference": float(crop_err.max()),
        "captum_lrp": captum_try(model, x, middle, int(ours.targets[middle])),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "speechless"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--zennit-frames", type=int, default=8, help="frames timed in the zennit loop")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for preset in args.presets:
        r = bench(preset, args.seconds, args.zennit_frames)
        results.append(r)
        print(
            f"{preset} ({r['weights']}, {r['parameters'] / 1e6:.2f} M params), {r['output_frames']} output frames, "
            f"{r['threads']} threads:"
        )
        print(f"  ours, all frames:       {r['ours_seconds']:8.2f} s  ({r['ours_ms_per_frame']} ms/frame)")
        print(
            f"  zennit, per frame:      {r['zennit_seconds_per_frame']:8.3f} s  (median of "
            f"{r['zennit_frames_timed']} frames; all frames extrapolated: "
            f"{r['zennit_seconds_all_frames_extrapolated']} s)"
        )
        print(f"  speed-up:               {r['speedup']:8.1f} x")
        print(
            f"  max relative difference {r['max_relative_difference']:.2e} "
            f"(median {r['median_relative_difference']:.2e})"
        )
        print(
            f"  zennit on crops, frame: {r['zennit_crop_seconds_per_frame']:8.3f} s  (median of "
            f"{r['zennit_crop_frames_timed']} interior frames; all frames extrapolated: "
            f"{r['zennit_crop_seconds_all_frames_extrapolated']} s); speed-up {r['speedup_vs_crops']} x, "
            f"max relative difference {r['crop_max_relative_difference']:.2e}"
        )
        print(f"  captum LRP:             {r['captum_lrp']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
