"""Attribution workflow: relevance of the input features for output frames of one audio file
(``asr-introspect attribute``).

Writes ``relevance.npz`` (receptive-field crops ``relevance`` (N, F, RF) with
``offsets``, ``frames``, ``targets``, ``logits``, ``features``, ...), a figure per
frame (the first ``figures``): the utterance with the frame's receptive field and
predicted letter, and the method's map next to a comparison method's, plus
``overview.png`` and ``attribution.json``.

Resources (checked before any backward pass):

- **Memory is bounded, whatever the length of the audio.** The frames are explained in
  blocks (:func:`~asr_introspect.attribution.frames.iter_crops`): each block runs on the
  input span its frames need, and its crops are written straight into ``relevance.npz``
  (the ``relevance`` member is streamed; the file is complete and renamed into place at
  the end), so neither the utterance's forward pass nor the result is ever held whole.
  ``chunk_size`` bounds each backward batch inside a block.
- **The output is bounded by** ``max_output_gib`` (``--max-output-gib``, default
  :data:`DEFAULT_MAX_OUTPUT_GIB` GiB of uncompressed relevance, N * F * RF values): a
  selection above it is refused with the estimated size and the range of frames that
  fits, e.g. ``--frames 0:41000``. Ten minutes at the shipped model's 16 ms per output
  frame are 37,500 frames, 1.7 GiB.
- ``overview.png`` draws at most :data:`OVERVIEW_MAX_ROWS` frames, the first, over the
  input time up to the end of their receptive fields (fewer frames when they are spread
  over long audio, so that its image stays under :data:`OVERVIEW_MAX_CELLS` cells);
  ``figures`` is at most :data:`MAX_FIGURES`.

Wavelet attribution (``--method wam-grad|wam-smoothgrad|wam-ig``, ``--wavelet``, ``--levels``;
:func:`attribute_wavelets`) writes the same files: ``relevance.npz`` then holds each frame's wavelet
band crops (N, n_columns) with their layout, the figures are per-scale maps under the spectrogram
and the letter spikes. See ``docs/wavelets.md``.

Frame selections (:func:`parse_frames`): ``all``, ``N``, ``N,M,...``, ``A:B`` (frames
``A..B-1``) and mixtures (``0,10:20``); output frames count from 0; negative numbers,
empty items, repeats and frames beyond the audio are errors naming ``--frames`` and the
valid range.
"""

from __future__ import annotations

import math
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from asr_introspect.attribution import METHODS, Attribution, conv_stack
from asr_introspect.attribution.crops import MAX_CHUNK_SIZE, CropGeometry
from asr_introspect.attribution.dense import needs_dense
from asr_introspect.attribution.frames import attribute, features_tensor, iter_crops, method_name, select_targets
from asr_introspect.attribution.wavelets import (
    DEFAULT_LEVELS,
    DEFAULT_WAVELET,
    WAVELET_METHODS,
    WaveletAttribution,
    band_frequencies,
    band_geometry,
    band_names,
    check_levels,
    check_wavelet,
    iter_wavelet_crops,
    model_features,
)
from asr_introspect.audio import load_audio
from asr_introspect.decoding import greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.features import featurize_file
from asr_introspect.io import atomic_path, save_json, save_npz
from asr_introspect.plotting.attribution import plot_frame_attribution, plot_relevance_overview
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.wavelets import band_labels, plot_scale_maps, plot_wavelet_overview
from asr_introspect.workflows.common import path_str

#: default limit on the uncompressed relevance written (``--max-output-gib``)
DEFAULT_MAX_OUTPUT_GIB = 2.0
#: most per-frame figures (each takes about a third of a second to draw)
MAX_FIGURES = 500
#: most frames (rows) in ``overview.png``
OVERVIEW_MAX_ROWS = 400
#: most cells (rows x input frames) of ``overview.png``'s image (matplotlib takes ~50 bytes a cell)
OVERVIEW_MAX_CELLS = 1 << 21
#: frame numbers longer than this many digits are refused before any arithmetic
_MAX_DIGITS = 12
_FRAME_FORMS = "use 'all', N, N,M,... or A:B (frames A..B-1), counting output frames from 0"


@dataclass
class AttributeRun:
    """``summary``: what ``attribute --json`` prints; ``result``: the method's :class:`Attribution` of
    the frames drawn (the first ``figures``; every frame's relevance is in ``summary["npz"]``)."""

    summary: dict
    result: Attribution


# ---------------------------------------------------------------------------
# settings


def _shown(text: str, limit: int = 40) -> str:
    """``text`` quoted, shortened to ``limit`` characters (messages stay one short line)."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


@dataclass(frozen=True)
class FrameSpec:
    """A parsed ``--frames`` value: ``ranges`` of output frames ``[start, stop)`` in order, or None for all."""

    text: str
    ranges: tuple[tuple[int, int], ...] | None

    def resolve(self, n_frames: int, source: str = "the audio") -> np.ndarray:
        """(N,) int64 output frames for an utterance of ``n_frames``; InputError naming ``--frames``
        and the valid range when a frame lies beyond it or is selected twice."""
        if self.ranges is None:
            return np.arange(n_frames, dtype=np.int64)
        last = max(stop for _, stop in self.ranges) - 1
        if last >= n_frames:
            raise InputError(
                f"--frames {_shown(self.text)}: selects output frame {last}, but {source} has {n_frames} "
                f"output frames (valid: 0..{n_frames - 1})"
            )
        if sum(b - a for a, b in self.ranges) > n_frames:  # repeats, found without expanding them all
            raise InputError(
                f"--frames {_shown(self.text)}: selects some output frames more than once ({source} has "
                f"{n_frames} output frames)"
            )
        frames = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in self.ranges])
        unique, counts = np.unique(frames, return_counts=True)
        if (counts > 1).any():
            raise InputError(
                f"--frames {_shown(self.text)}: output frame {int(unique[counts > 1][0])} is selected twice"
            )
        return frames


def parse_frames(frames: str | int | Sequence[int] | FrameSpec = "all") -> FrameSpec:
    """``--frames`` -> :class:`FrameSpec` without expanding ranges (``0:10**9`` costs nothing).

    ``frames``: "all", a spec string (``N``, ``N,M,...``, ``A:B`` and mixtures), an int or a
    sequence of ints (>= 0). InputError (naming ``--frames``) for negative numbers, empty
    items, empty ranges or anything else.
    """
    if isinstance(frames, FrameSpec):
        return frames
    if isinstance(frames, (int, np.integer)) and not isinstance(frames, bool):
        frames = [int(frames)]
    if not isinstance(frames, str):
        values = [int(f) for f in np.atleast_1d(np.asarray(frames)).tolist()] if len(frames) else []
        if not values or min(values) < 0:
            raise InputError(f"--frames {values[:5]}: select at least one output frame, all >= 0")
        return FrameSpec(",".join(map(str, values)), tuple((v, v + 1) for v in values))
    text = frames.strip()
    if text == "all":
        return FrameSpec(text, None)
    if not text:
        raise InputError(f"--frames is empty; {_FRAME_FORMS}")
    ranges = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise InputError(f"--frames {_shown(text)}: empty item between commas; {_FRAME_FORMS}")
        if item.startswith("-") or re.search(r"(^|:)\s*-", item):
            raise InputError(
                f"--frames {_shown(text)}: {_shown(item, 20)} is negative; output frames count from 0 (no "
                f"negative numbers)"
            )
        match = re.fullmatch(r"(\d+)(?:\s*:\s*(\d+))?", item)
        if match is None:
            raise InputError(f"--frames {_shown(text)}: {_shown(item, 20)} is not a frame or range; {_FRAME_FORMS}")
        if any(len(g) > _MAX_DIGITS for g in match.groups() if g is not None):
            raise InputError(f"--frames {_shown(text)}: a frame number has more than {_MAX_DIGITS} digits")
        start = int(match[1])
        stop = int(match[2]) if match[2] is not None else start + 1
        if stop <= start:
            raise InputError(f"--frames {_shown(text)}: range {start}:{stop} is empty (A:B selects frames A..B-1)")
        ranges.append((start, stop))
    return FrameSpec(text, tuple(ranges))


#: every ``--method``: the log-mel methods and the wavelet (WAM) methods
ALL_METHODS = tuple(METHODS) + tuple(m for m in WAVELET_METHODS if m not in METHODS)


def _method_list() -> str:
    """The method names, folded (``lrp-{epsilon,...}``, ``[guided-]grad-cam:LAYER``): a message stays one line."""
    lrp = [m[len("lrp-") :] for m in ALL_METHODS if m.startswith("lrp-")]
    rest = [m for m in ALL_METHODS if not m.startswith("lrp-") and m != "guided-grad-cam:LAYER"]
    text = ", ".join([f"lrp-{{{','.join(lrp)}}}"] + rest)
    return text.replace("grad-cam:LAYER", "[guided-]grad-cam:LAYER").replace(
        "sensitivity, sensitivity-squared", "sensitivity[-squared]"
    )


def check_method(name: str, layers: Sequence[str] | None = None, flag: str = "--method") -> None:
    """InputError unless ``name`` is an attribution method; with ``layers`` (the model's), a
    ``grad-cam:LAYER`` must name one of them (the message lists them)."""
    base, _, layer = name.partition(":")
    if name not in ALL_METHODS and base not in ("grad-cam", "guided-grad-cam"):
        raise InputError(f"{flag} {_shown(name, 16)}: unknown; methods: {_method_list()}")
    if base in ("grad-cam", "guided-grad-cam") and layers is not None and layer and layer not in layers:
        raise InputError(
            f"{flag} {_shown(name)}: the model has no layer {_shown(layer, 30)}; layers: {', '.join(layers)}"
        )


def compare_method(method: str, compare: str) -> str | None:
    """The method drawn beside ``method``: ``compare``, or for "auto" sensitivity (LRP) / LRP epsilon-plus
    (for a ``wam-*`` method: none; its comparison is another ``wam-*`` method, drawn as a second map)."""
    if compare == "none":
        return None
    if compare == "auto":
        if method in WAVELET_METHODS:
            return None
        compare = "sensitivity" if method.startswith("lrp") else "lrp-epsilon-plus"
    return None if compare == method else compare


def check_settings(
    *,
    method: str = "lrp-epsilon-plus",
    compare: str = "auto",
    frames="all",
    figures: int = 12,
    chunk_size: int | None = None,
    max_output_gib: float = DEFAULT_MAX_OUTPUT_GIB,
    target: str = "predicted",
    transcript: str | None = None,
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_LEVELS,
) -> FrameSpec:
    """Every check that needs neither the model nor the audio; returns the parsed frames.

    InputError (naming the flag and the valid range) for: an unknown method or comparison,
    a bad frame selection, ``figures`` outside 0..:data:`MAX_FIGURES`, ``chunk_size``
    outside 1..``MAX_CHUNK_SIZE``, ``max_output_gib`` not finite and > 0, ``target="forced"``
    without a transcript; for ``wam-*`` methods a wavelet that is not orthogonal, ``levels`` < 1
    or a comparison that is not another ``wam-*`` method.
    """
    check_method(method)
    other = compare_method(method, compare)
    if other is not None:
        check_method(other, flag="--compare")
    if method in WAVELET_METHODS:
        check_wavelet(wavelet)
        check_levels(levels)
        if other is not None and other not in WAVELET_METHODS:
            raise InputError(
                f"--compare {_shown(other, 24)}: a wam-* method is compared with another wam-* method "
                f"({', '.join(WAVELET_METHODS)}) or 'none'"
            )
    spec = parse_frames(frames)
    if isinstance(figures, bool) or not isinstance(figures, (int, np.integer)) or not 0 <= figures <= MAX_FIGURES:
        raise InputError(f"--figures {figures!r}: must be an integer in 0..{MAX_FIGURES}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or not 1 <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise InputError(f"--chunk-size {chunk_size!r}: must be an integer in 1..{MAX_CHUNK_SIZE} (frames per batch)")
    if not isinstance(max_output_gib, (int, float)) or not math.isfinite(max_output_gib) or max_output_gib <= 0:
        raise InputError(f"--max-output-gib {max_output_gib!r}: must be a finite number > 0 (GiB)")
    if target == "forced" and not transcript:
        raise InputError("--target forced needs --transcript TEXT")
    return spec


def check_output_size(spec: FrameSpec, n_selected: int, per_frame_bytes: int, max_output_gib: float) -> int:
    """Bytes of the relevance of ``n_selected`` frames; InputError with the estimate and a selection that
    fits when over ``max_output_gib``."""
    size = n_selected * per_frame_bytes
    limit = max_output_gib * (1 << 30)
    if size > limit:
        fits = int(limit // per_frame_bytes)
        what = (
            f"select at most {fits} frames (e.g. --frames 0:{fits})"
            if fits
            else f"not one frame fits ({per_frame_bytes / (1 << 20):.2f} MiB each)"
        )
        raise InputError(
            f"--frames {_shown(spec.text)}: {n_selected} output frames of relevance need {size / (1 << 30):.2f} GiB, "
            f"over --max-output-gib {max_output_gib:g}; {what} or raise --max-output-gib"
        )
    return size


# ---------------------------------------------------------------------------
# the npz, streamed


def _write_member(archive: zipfile.ZipFile, name: str, array) -> None:
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def _write_rows(member, rows: np.ndarray, block_bytes: int = 16 << 20) -> None:
    """Append C-ordered ``rows`` to an open .npy member, ``block_bytes`` at a time (no full copy)."""
    rows = np.ascontiguousarray(rows)
    per_row = max(1, rows[0].nbytes if len(rows) else 1)
    step = max(1, block_bytes // per_row)
    for i in range(0, len(rows), step):
        member.write(rows[i : i + step].reshape(-1).view(np.uint8))


# ---------------------------------------------------------------------------
# the workflow


def attribute_audio(
    model,
    audio_path: str | Path,
    out: str | Path,
    *,
    method: str = "lrp-epsilon-plus",
    frames: str | Sequence[int] | FrameSpec = "all",
    target: str = "predicted",
    transcript: str | None = None,
    compare: str = "auto",
    figures: int = 12,
    chunk_size: int | None = None,
    max_output_gib: float = DEFAULT_MAX_OUTPUT_GIB,
    model_path: str | Path | None = None,
    progress: bool = False,
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_LEVELS,
) -> AttributeRun:
    """Explain the output ``frames`` of one audio file and write the files under ``out``.

    ``frames``: "all", a spec string (:func:`parse_frames`) or indices. Memory stays bounded for
    any length of audio; the relevance written is limited to ``max_output_gib`` (refused before
    computing otherwise): see the module docstring. ``wam-*`` methods (``wavelet``, ``levels``)
    write wavelet band crops instead (:func:`attribute_wavelets`).
    """
    spec = check_settings(
        method=method,
        compare=compare,
        frames=frames,
        figures=figures,
        chunk_size=chunk_size,
        max_output_gib=max_output_gib,
        target=target,
        transcript=transcript,
        wavelet=wavelet,
        levels=levels,
    )
    if method in WAVELET_METHODS:
        return attribute_wavelets(
            model,
            audio_path,
            out,
            method=method,
            frames=spec,
            target=target,
            transcript=transcript,
            compare=compare,
            figures=figures,
            chunk_size=chunk_size,
            max_output_gib=max_output_gib,
            model_path=model_path,
            progress=progress,
            wavelet=wavelet,
            levels=levels,
        )
    if needs_dense(model):
        return attribute_dense(
            model,
            audio_path,
            out,
            method=method,
            frames=spec,
            target=target,
            transcript=transcript,
            figures=figures,
            chunk_size=chunk_size,
            max_output_gib=max_output_gib,
            model_path=model_path,
        )
    other_method = compare_method(method, compare)
    started = time.perf_counter()
    stack = conv_stack(model)
    check_method(method, stack.names)
    if other_method is not None:
        check_method(other_method, stack.names, flag="--compare")
    config = model.feature_config
    features = featurize_file(audio_path, config, min_input_frames=model.min_input_frames)
    x = features_tensor(model, features).to(device=stack.device, dtype=stack.dtype)
    logits = stack.forward(x[None])[0]  # (C, T_out), one layer at a time: no full-utterance cache
    geometry = CropGeometry(stack, x.shape[1])
    frames_arr = spec.resolve(logits.shape[1], str(audio_path))
    dtype = torch.empty(0, dtype=stack.dtype).numpy().dtype
    per_frame = stack.n_features * geometry.receptive_field * dtype.itemsize
    size = check_output_size(spec, len(frames_arr), per_frame, max_output_gib)
    targets = select_targets(logits, frames_arr, target, transcript, model.alphabet)
    logits_np = logits.cpu().numpy()
    offsets = geometry.offsets(frames_arr)
    name = method_name(method)

    def attribution(relevance: np.ndarray, rows: slice) -> Attribution:
        return Attribution(
            name,
            relevance,
            frames_arr[rows],
            targets[rows],
            offsets[rows],
            logits_np,
            int(x.shape[1]),
            geometry.receptive_field,
            True,
        )

    n = len(frames_arr)
    n_figures = min(figures, n)
    # overview rows: the first frames, as many as fit OVERVIEW_MAX_ROWS and, drawn up to the end of
    # their receptive fields (the time axis stops there), OVERVIEW_MAX_CELLS
    ends = np.minimum(np.maximum.accumulate(offsets[:OVERVIEW_MAX_ROWS]) + geometry.receptive_field, x.shape[1])
    rows = np.arange(1, len(ends) + 1)
    n_overview = max(1, int(np.count_nonzero(rows * ends <= OVERVIEW_MAX_CELLS))) if n else 0
    overview_frames = int(ends[n_overview - 1]) if n else 0
    shown = np.zeros((n_figures, stack.n_features, geometry.receptive_field), dtype=dtype)
    overview = np.zeros((n_overview, 1, geometry.receptive_field), dtype=dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npz = out / "relevance.npz"
    symbols = np.array([model.alphabet.symbols[int(t)] for t in targets], dtype=np.str_)
    bar = tqdm(total=n, desc=f"attribute ({name})", unit="frame", disable=not progress)
    blocks = 0
    with atomic_path(npz) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        small = attribution(np.zeros((0,)), slice(None)).to_arrays()
        small.pop("relevance")
        for key, value in {**small, "features": features.numpy(), "target_symbols": symbols}.items():
            _write_member(archive, key, value)
        with archive.open("relevance.npy", "w", force_zip64=True) as member:
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (n, stack.n_features, geometry.receptive_field),
            }
            np.lib.format.write_array_header_1_0(member, header)
            for i0, i1, crops in iter_crops(stack, x, frames_arr, targets, method, chunk_size=chunk_size):
                _write_rows(member, crops)
                if i0 < n_figures:
                    shown[i0 : min(i1, n_figures)] = crops[: n_figures - i0]
                if i0 < n_overview:
                    overview[i0 : min(i1, n_overview)] = crops[: n_overview - i0].sum(axis=1, keepdims=True)
                blocks += 1
                bar.update(i1 - i0)
    bar.close()

    result = attribution(shown, slice(0, n_figures))
    written: list[str] = []
    if n_figures:
        other = None
        if other_method is not None:
            pieces = [c for _, _, c in iter_crops(stack, x, result.frames, result.targets, other_method)]
            other = Attribution(
                method_name(other_method),
                np.concatenate(pieces),
                result.frames,
                result.targets,
                result.offsets,
                logits_np,
                result.n_input_frames,
                result.receptive_field,
                True,
            )
        for frame in result.frames:
            fig = plot_frame_attribution(features.numpy(), result, int(frame), config, model.alphabet, compare=other)
            written += [str(p) for p in save_figure(fig, out / f"frame_{int(frame):05d}.png", svg=False)]
        if n > 1:
            shown_overview = attribution(overview, slice(0, n_overview))
            shown_overview.n_input_frames = overview_frames
            fig = plot_relevance_overview(shown_overview, config, model.alphabet)
            written += [str(p) for p in save_figure(fig, out / "overview.png", svg=False)]

    text = greedy_decode(torch.as_tensor(logits_np)[None], None, model.alphabet)[0]
    summary = {
        "audio": str(audio_path),
        "model": path_str(model_path),
        "method": name,
        "compare": other_method,
        "target": target,
        "frames": int(n),
        "n_output_frames": int(logits_np.shape[1]),
        "n_input_frames": int(x.shape[1]),
        "receptive_field": geometry.receptive_field,
        "transcript": text,
        "npz": str(npz),
        "relevance_bytes": int(size),
        "blocks": blocks,
        "overview_frames": int(n_overview) if n > 1 and n_figures else 0,
        "figures": written,
        "seconds": round(time.perf_counter() - started, 3),
    }
    save_json(out / "attribution.json", summary)
    summary["json"] = str(out / "attribution.json")
    return AttributeRun(summary, result)


# ---------------------------------------------------------------------------
# models with self-attention or residual blocks (attribution.dense)


def attribute_dense(
    model,
    audio_path: str | Path,
    out: str | Path,
    *,
    method: str,
    frames: FrameSpec,
    target: str = "predicted",
    transcript: str | None = None,
    figures: int = 12,
    chunk_size: int | None = None,
    max_output_gib: float = DEFAULT_MAX_OUTPUT_GIB,
    model_path: str | Path | None = None,
) -> AttributeRun:
    """:func:`attribute_audio` for transformers, Conformers and residual models: the gradient family,
    dense maps ``(N, F, T_in)`` (every frame's receptive field is the whole utterance), written to
    ``relevance.npz``; per-frame figures for spectrogram inputs (a waveform model's maps are in the npz)."""
    started = time.perf_counter()
    model.require_ctc("attribution of output frames")
    features = featurize_file(audio_path, model.feature_config, min_input_frames=model.min_input_frames)
    x = features_tensor(model, features)
    with torch.no_grad():
        logits = model.logits(x[None])[0][0]
    frames_arr = frames.resolve(logits.shape[1], str(audio_path))
    size = check_output_size(frames, len(frames_arr), x.shape[0] * x.shape[1] * 4, max_output_gib)
    result = attribute(model, x, method, frames=frames_arr, target=target, transcript=transcript, chunk_size=chunk_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npz = out / "relevance.npz"
    symbols = np.array([model.alphabet.symbols[int(t)] for t in result.targets], dtype=np.str_)
    save_npz(npz, **result.to_arrays(), features=features.numpy(), target_symbols=symbols)
    written: list[str] = []
    if model.feature_config.kind != "waveform":
        for frame in result.frames[: min(figures, len(result))]:
            fig = plot_frame_attribution(features.numpy(), result, int(frame), model.feature_config, model.alphabet)
            written += [str(p) for p in save_figure(fig, out / f"frame_{int(frame):05d}.png", svg=False)]
    summary = {
        "audio": str(audio_path),
        "model": path_str(model_path),
        "method": result.method,
        "compare": None,
        "target": target,
        "frames": len(result),
        "n_output_frames": int(logits.shape[1]),
        "n_input_frames": int(x.shape[1]),
        "receptive_field": "utterance",
        "transcript": greedy_decode(logits[None], None, model.alphabet)[0],
        "npz": str(npz),
        "relevance_bytes": int(size),
        "blocks": 1,
        "overview_frames": 0,
        "figures": written,
        "seconds": round(time.perf_counter() - started, 3),
    }
    save_json(out / "attribution.json", summary)
    summary["json"] = str(out / "attribution.json")
    return AttributeRun(summary, result)


# ---------------------------------------------------------------------------
# wavelet attribution (wam-*)


def _wavelet_frame_figure(
    features: np.ndarray,
    maps: dict[str, np.ndarray],
    frame: int,
    target: int,
    model,
    logits: np.ndarray,
    geometry,
    context: int = 40,
):
    """The per-scale map(s) of one output frame around its receptive field (``context`` input frames
    of margin), under the spectrogram and the letter spikes."""
    config, alphabet = model.feature_config, model.alphabet
    layer = model.frame_map.layer(model.output_layer)
    lo = layer.offset + frame * layer.stride
    hi = lo + layer.receptive_field
    a, b = max(0, lo - context), min(features.shape[1], hi + context)
    times = model.frame_map.center(model.output_layer, np.arange(logits.shape[1])) * config.frame_seconds * 1000.0
    labels = band_labels(band_names(geometry.levels), band_frequencies(geometry.levels, config.sample_rate))
    symbol = alphabet.symbols[target] if target != alphabet.blank else "<blank>"
    return plot_scale_maps(
        features[:, a:b],
        {name: values[:, a:b] for name, values in maps.items()},
        labels,
        config,
        alphabet,
        logits.argmax(0),
        times,
        highlight=[frame],
        field=(max(lo, 0), min(hi, features.shape[1])),
        title=f"frame {frame}: '{symbol}' (logit {logits[target, frame]:.2f}); {geometry.wavelet}, "
        f"{geometry.levels} levels; receptive field between the cyan lines",
        start=a,
    )


def attribute_wavelets(
    model,
    audio_path: str | Path,
    out: str | Path,
    *,
    method: str = "wam-grad",
    frames: str | Sequence[int] | FrameSpec = "all",
    target: str = "predicted",
    transcript: str | None = None,
    compare: str = "auto",
    figures: int = 12,
    chunk_size: int | None = None,
    max_output_gib: float = DEFAULT_MAX_OUTPUT_GIB,
    model_path: str | Path | None = None,
    progress: bool = False,
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_LEVELS,
) -> AttributeRun:
    """``attribute --method wam-*``: WAM relevance of the output ``frames`` of one audio file, written
    under ``out`` with the same files and summary as the other methods.

    ``relevance.npz``: ``relevance`` (N, n_columns) each frame's wavelet band crops, concatenated in
    band order (:class:`~asr_introspect.attribution.wavelets.BandGeometry`), with ``band_offsets``
    (N, n_bands) (first coefficient of each crop), ``band_widths``, ``band_lengths``, ``band_names``,
    ``frames``, ``targets``, ``target_symbols``, ``offsets`` (first input frame of each receptive
    field), ``logits``, ``features``, ``wavelet``, ``levels``, ``n_samples``, ``sample_rate``. Figures:
    ``frame_NNNNN.png`` (the per-scale map under the spectrogram and the letter spikes; ``compare``:
    another ``wam-*`` method drawn below) and ``overview.png`` (|relevance| summed over the bands per
    input frame, one row per frame). The crops are streamed into the npz block by block.
    """
    spec = check_settings(
        method=method,
        compare=compare,
        frames=frames,
        figures=figures,
        chunk_size=chunk_size,
        max_output_gib=max_output_gib,
        target=target,
        transcript=transcript,
        wavelet=wavelet,
        levels=levels,
    )
    other_method = compare_method(method, compare)
    wavelet = check_wavelet(wavelet)
    started = time.perf_counter()
    config = model.feature_config
    features = featurize_file(audio_path, config, min_input_frames=model.min_input_frames)
    wave = load_audio(audio_path, sample_rate=config.sample_rate)
    levels = check_levels(levels, len(wave), wavelet)
    with torch.no_grad():
        logits = model.logits(model_features(model, torch.as_tensor(wave)[None]))[0][0]
    logits_np = logits.cpu().numpy()
    frames_arr = spec.resolve(logits.shape[1], str(audio_path))
    geometry = band_geometry(model, len(wave), wavelet, levels)
    size = check_output_size(spec, len(frames_arr), geometry.n_columns * 4, max_output_gib)
    targets = select_targets(logits, frames_arr, target, transcript, model.alphabet)
    layer = model.frame_map.layer(model.output_layer)
    hop = int(round(config.frame_seconds * config.sample_rate))
    n_input = int(features.shape[1])

    def attribution(relevance: np.ndarray, rows: slice, name: str = method) -> WaveletAttribution:
        return WaveletAttribution(
            name, relevance, frames_arr[rows], targets[rows], logits_np, geometry, int(config.sample_rate)
        )

    n = len(frames_arr)
    n_figures = min(figures, n)
    n_overview = min(n, OVERVIEW_MAX_ROWS, max(1, OVERVIEW_MAX_CELLS // max(n_input, 1)))
    shown = np.zeros((n_figures, geometry.n_columns), dtype=np.float32)
    overview = np.zeros((n_overview, 1, n_input), dtype=np.float32)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npz = out / "relevance.npz"
    symbols = np.array([model.alphabet.symbols[int(t)] for t in targets], dtype=np.str_)
    bar = tqdm(total=n, desc=f"attribute ({method})", unit="frame", disable=not progress)
    blocks = 0
    with atomic_path(npz) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        small = attribution(np.zeros((0,)), slice(None)).to_arrays()
        small.pop("relevance")
        extra = {
            "features": features.numpy(),
            "target_symbols": symbols,
            "offsets": layer.offset + frames_arr * layer.stride,
            "n_input_frames": np.int64(n_input),
            "receptive_field": np.int64(layer.receptive_field),
        }
        for key, value in {**small, **extra}.items():
            _write_member(archive, key, value)
        with archive.open("relevance.npy", "w", force_zip64=True) as member:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
            np.lib.format.write_array_header_1_0(member, {**header, "shape": (n, geometry.n_columns)})
            for i0, i1, crops in iter_wavelet_crops(
                model, wave, frames_arr, targets, method, wavelet, levels, chunk_size=chunk_size
            ):
                crops = crops.astype(np.float32, copy=False)
                _write_rows(member, crops)
                if i0 < n_figures:
                    shown[i0 : min(i1, n_figures)] = crops[: n_figures - i0]
                block = attribution(crops, slice(i0, i1))
                for i in range(i0, min(i1, n_overview)):
                    overview[i, 0] = block.scalogram(i - i0, hop, n_input).sum(0)
                blocks += 1
                bar.update(i1 - i0)
    bar.close()

    result = attribution(shown, slice(0, n_figures))
    written: list[str] = []
    if n_figures:
        other = None
        if other_method is not None:
            pieces = [
                c
                for _, _, c in iter_wavelet_crops(
                    model, wave, result.frames, result.targets, other_method, wavelet, levels, chunk_size=chunk_size
                )
            ]
            other = attribution(np.concatenate(pieces), slice(0, n_figures), other_method)
        for i, frame in enumerate(result.frames):
            maps = {method: result.scalogram(i, hop, n_input)}
            if other is not None:
                maps[other_method] = other.scalogram(i, hop, n_input)
            fig = _wavelet_frame_figure(
                features.numpy(), maps, int(frame), int(result.targets[i]), model, logits_np, geometry
            )
            written += [str(p) for p in save_figure(fig, out / f"frame_{int(frame):05d}.png", svg=False)]
        if n > 1:
            fig = plot_wavelet_overview(
                overview[:, 0],
                frames_arr[:n_overview],
                targets[:n_overview],
                config,
                model.alphabet,
                f"{method} ({wavelet}, {levels} levels): |relevance| of every input frame for each output frame",
            )
            written += [str(p) for p in save_figure(fig, out / "overview.png", svg=False)]

    text = greedy_decode(logits[None], None, model.alphabet)[0]
    summary = {
        "audio": str(audio_path),
        "model": path_str(model_path),
        "method": method,
        "compare": other_method,
        "target": target,
        "frames": int(n),
        "n_output_frames": int(logits_np.shape[1]),
        "n_input_frames": n_input,
        "receptive_field": int(layer.receptive_field),
        "transcript": text,
        "npz": str(npz),
        "relevance_bytes": int(size),
        "blocks": blocks,
        "overview_frames": int(n_overview) if n > 1 and n_figures else 0,
        "figures": written,
        "seconds": round(time.perf_counter() - started, 3),
        "wavelet": wavelet,
        "levels": int(levels),
        "bands": band_names(levels),
        "n_samples": int(len(wave)),
    }
    save_json(out / "attribution.json", summary)
    summary["json"] = str(out / "attribution.json")
    return AttributeRun(summary, result)
