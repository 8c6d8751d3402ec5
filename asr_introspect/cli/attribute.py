"""``asr-introspect attribute``: relevance of the input features for output frames of one audio file.

Writes ``DIR/relevance.npz`` (receptive-field crops ``relevance`` (N, F, RF) with
``offsets``, ``frames``, ``targets``, ``logits``, ``features``, ...), a figure per
requested frame (the first ``--figures``): the utterance with the frame's
receptive field and predicted letter, and the method's map next to a
comparison method's (sensitivity for LRP, LRP epsilon-plus otherwise), plus
``overview.png`` (all frames) and ``attribution.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from asr_introspect.cli._common import add_common, progress_enabled, set_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    from asr_introspect.attribution.frames import METHODS

    parser = subparsers.add_parser("attribute",
                                   help="per-frame relevance maps (LRP, sensitivity, ...) for an audio file")
    add_common(parser, model=True, out="required")
    parser.add_argument("audio", type=Path, help="WAV or FLAC file")
    parser.add_argument("--method", default="lrp-epsilon-plus",
                        help=f"attribution method: {', '.join(METHODS)} (default: lrp-epsilon-plus)")
    parser.add_argument("--frames", default="all",
                        help="output frames: 'all', a list 'N,M,...' or a range 'A:B' (default: all)")
    parser.add_argument("--target", default="predicted",
                        choices=("predicted", "predicted-letter", "forced"),
                        help="class explained at each frame: the arg-max (often blank), the best letter, "
                             "or the forced alignment of --transcript (default: predicted)")
    parser.add_argument("--transcript", default=None, help="transcript for --target forced")
    parser.add_argument("--compare", default="auto",
                        help="second method drawn beside the first ('auto': sensitivity for LRP methods, "
                             "lrp-epsilon-plus otherwise; 'none': off)")
    parser.add_argument("--figures", type=int, default=12, help="figures for at most this many frames (default 12)")
    parser.add_argument("--chunk-size", type=int, default=None, help="frames per backward batch (memory bound)")
    set_runner(parser, run)


def parse_frames(text: str):
    """'all' | 'N,M,...' | 'A:B' -> "all" or a list of ints (InputError otherwise)."""
    from asr_introspect.errors import InputError

    text = text.strip()
    if text == "all":
        return "all"
    frames: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if ":" in part:
                a, b = part.split(":", 1)
                frames.extend(range(int(a), int(b)))
            elif part:
                frames.append(int(part))
    except ValueError:
        raise InputError(f"--frames {text!r}: use 'all', 'N,M,...' or 'A:B'") from None
    if not frames:
        raise InputError(f"--frames {text!r} selects no frames")
    return frames


def _compare_method(method: str, compare: str) -> str | None:
    if compare == "none":
        return None
    if compare == "auto":
        compare = "sensitivity" if method.startswith("lrp") else "lrp-epsilon-plus"
    return None if compare == method else compare


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    from asr_introspect.attribution import attribute
    from asr_introspect.attribution.frames import METHODS
    from asr_introspect.audio import load_audio
    from asr_introspect.decoding import greedy_decode
    from asr_introspect.errors import InputError
    from asr_introspect.features import compute_features
    from asr_introspect.io import save_json, save_npz
    from asr_introspect.loading import load_model
    from asr_introspect.plotting.attribution import plot_frame_attribution, plot_relevance_overview
    from asr_introspect.plotting.common import save_figure

    def check_method(name: str) -> None:
        base = name.split(":", 1)[0]
        if name not in METHODS and base not in ("grad-cam", "guided-grad-cam"):
            raise InputError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")

    check_method(args.method)
    compare = _compare_method(args.method, args.compare)
    if compare is not None:
        check_method(compare)
    if args.figures < 0:
        raise InputError("--figures must be >= 0")
    if args.target == "forced" and not args.transcript:
        raise InputError("--target forced needs --transcript TEXT")
    frames = parse_frames(args.frames)

    started = time.perf_counter()
    model, model_path = load_model(args.model)
    config = model.feature_config
    audio = load_audio(args.audio, sample_rate=config.sample_rate,
                       min_duration=model.min_input_frames * config.frame_seconds)
    features = compute_features(audio, config)
    progress = progress_enabled(args)
    result = attribute(model, features, args.method, frames=frames, target=args.target,
                       transcript=args.transcript, crop=True, chunk_size=args.chunk_size, progress=progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    symbols = np.array([model.alphabet.symbols[int(t)] for t in result.targets], dtype=np.str_)
    npz = save_npz(out / "relevance.npz", **result.to_arrays(), features=features.numpy(),
                   target_symbols=symbols)

    figure_frames = result.frames[: args.figures]
    figures: list[str] = []
    if len(figure_frames):
        other = None
        if compare is not None:
            other = attribute(model, features, compare, frames=figure_frames, target=result.targets[: args.figures],
                              crop=True, chunk_size=args.chunk_size)
        for frame in figure_frames:
            fig = plot_frame_attribution(features.numpy(), result, int(frame), config, model.alphabet, compare=other)
            figures += [str(p) for p in save_figure(fig, out / f"frame_{int(frame):05d}.png", svg=False)]
        if len(result.frames) > 1:
            fig = plot_relevance_overview(result, config, model.alphabet)
            figures += [str(p) for p in save_figure(fig, out / "overview.png", svg=False)]

    import torch

    text = greedy_decode(torch.as_tensor(result.logits)[None], None, model.alphabet)[0]
    summary = {
        "audio": str(args.audio), "model": str(model_path), "method": result.method, "compare": compare,
        "target": args.target, "frames": int(len(result.frames)), "n_output_frames": int(result.logits.shape[1]),
        "n_input_frames": result.n_input_frames, "receptive_field": result.receptive_field,
        "transcript": text, "npz": str(npz), "figures": figures,
        "seconds": round(time.perf_counter() - started, 3),
    }
    save_json(out / "attribution.json", summary)
    summary["json"] = str(out / "attribution.json")
    return summary
