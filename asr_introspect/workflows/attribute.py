"""Attribution workflow: relevance of the input features for output frames of one audio file
(``asr-introspect attribute``).

Writes ``relevance.npz`` (receptive-field crops ``relevance`` (N, F, RF) with
``offsets``, ``frames``, ``targets``, ``logits``, ``features``, ...), a figure per
frame (the first ``figures``): the utterance with the frame's receptive field and
predicted letter, and the method's map next to a comparison method's, plus
``overview.png`` (all frames) and ``attribution.json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_introspect.attribution import METHODS, Attribution, attribute
from asr_introspect.audio import load_audio
from asr_introspect.decoding import greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.features import compute_features
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.attribution import plot_frame_attribution, plot_relevance_overview
from asr_introspect.plotting.common import save_figure
from asr_introspect.workflows.common import path_str


@dataclass
class AttributeRun:
    """``summary``: what ``attribute --json`` prints; ``result``: the method's :class:`Attribution`."""

    summary: dict
    result: Attribution


def check_method(name: str) -> None:
    """InputError unless ``name`` is an attribution method (``grad-cam:LAYER`` with any layer)."""
    base = name.split(":", 1)[0]
    if name not in METHODS and base not in ("grad-cam", "guided-grad-cam"):
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")


def compare_method(method: str, compare: str) -> str | None:
    """The method drawn beside ``method``: ``compare``, or for "auto" sensitivity (LRP) / LRP epsilon-plus."""
    if compare == "none":
        return None
    if compare == "auto":
        compare = "sensitivity" if method.startswith("lrp") else "lrp-epsilon-plus"
    return None if compare == method else compare


def attribute_audio(
    model,
    audio_path: str | Path,
    out: str | Path,
    *,
    method: str = "lrp-epsilon-plus",
    frames: str | Sequence[int] = "all",
    target: str = "predicted",
    transcript: str | None = None,
    compare: str = "auto",
    figures: int = 12,
    chunk_size: int | None = None,
    model_path: str | Path | None = None,
    progress: bool = False,
) -> AttributeRun:
    """Explain the output frames ``frames`` ("all" or indices) of one audio file; write the files under ``out``."""
    check_method(method)
    compare = compare_method(method, compare)
    if compare is not None:
        check_method(compare)
    started = time.perf_counter()
    config = model.feature_config
    audio = load_audio(
        audio_path, sample_rate=config.sample_rate, min_duration=model.min_input_frames * config.frame_seconds
    )
    features = compute_features(audio, config)
    result = attribute(
        model,
        features,
        method,
        frames=frames,
        target=target,
        transcript=transcript,
        crop=True,
        chunk_size=chunk_size,
        progress=progress,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    symbols = np.array([model.alphabet.symbols[int(t)] for t in result.targets], dtype=np.str_)
    npz = save_npz(out / "relevance.npz", **result.to_arrays(), features=features.numpy(), target_symbols=symbols)

    figure_frames = result.frames[:figures]
    written: list[str] = []
    if len(figure_frames):
        other = None
        if compare is not None:
            other = attribute(
                model,
                features,
                compare,
                frames=figure_frames,
                target=result.targets[:figures],
                crop=True,
                chunk_size=chunk_size,
            )
        for frame in figure_frames:
            fig = plot_frame_attribution(features.numpy(), result, int(frame), config, model.alphabet, compare=other)
            written += [str(p) for p in save_figure(fig, out / f"frame_{int(frame):05d}.png", svg=False)]
        if len(result.frames) > 1:
            fig = plot_relevance_overview(result, config, model.alphabet)
            written += [str(p) for p in save_figure(fig, out / "overview.png", svg=False)]

    text = greedy_decode(torch.as_tensor(result.logits)[None], None, model.alphabet)[0]
    summary = {
        "audio": str(audio_path),
        "model": path_str(model_path),
        "method": result.method,
        "compare": compare,
        "target": target,
        "frames": int(len(result.frames)),
        "n_output_frames": int(result.logits.shape[1]),
        "n_input_frames": result.n_input_frames,
        "receptive_field": result.receptive_field,
        "transcript": text,
        "npz": str(npz),
        "figures": written,
        "seconds": round(time.perf_counter() - started, 3),
    }
    save_json(out / "attribution.json", summary)
    summary["json"] = str(out / "attribution.json")
    return AttributeRun(summary, result)
