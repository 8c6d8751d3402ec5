"""Checkpoints: safetensors weights + one JSON config in the header; never pickle.

File layout: a plain safetensors file holding the module's ``state_dict``
(parameters and buffers, e.g. BatchNorm running statistics) in float32,
float16, int8 or nf4, whose header metadata has one key, ``"asr_introspect"``, a JSON string::

    {"format": "asr-introspect-checkpoint", "format_version": 1,
     "model": {"architecture": "wav2letter", "config": {...}},   # how to rebuild the module; also
                                                                 # "conformer", "quartznet" (their configs)
     "feature_config": {...}, "alphabet": {...}, "frame_map": {...},
     "layer_names": [...], "output_layer": "conv11", "n_features": 64, "n_classes": 29,
     "dtype": "float16", "tensor_sha256": "<hex>", "library_version": "0.1.0",
     "metadata": {...},                                              # training info, metrics
     "integrity": {"version": 1, "parts": {...}, "sha256": "<hex>"}}  # see "Integrity" below

``tensor_sha256`` hashes, in sorted name order, each tensor's name, dtype,
shape and bytes as stored, so altered weights are detected. Files are written
atomically. Loading uses ``safetensors.safe_open`` only and raises
:class:`~asr_introspect.errors.CheckpointError` naming the file for anything
missing, truncated, altered or inconsistent. float16 files are upcast to the
module's dtype (float32) on load.

Integrity: the header also holds ``"integrity": {"version": 1, "parts": {part:
sha256}, "sha256": ...}``. Each part is the sha256 of the canonical JSON
(sorted keys, no spaces, ASCII) of the header fields it covers, and
``"sha256"`` hashes the canonical JSON of ``"parts"``. Every field that changes
what the model computes is covered:

- ``model``: ``"model"`` (architecture, preset, every layer's channels, kernel,
  stride, dilation, activation, batch norm, dropout; n_features, n_classes; a
  custom module's class and settings);
- ``alphabet``: ``"alphabet"`` (the symbols, in order, and the blank index);
- ``feature_config``: ``"feature_config"`` (sample rate, n_fft, win_length,
  hop_length, window, n_mels, fmin, fmax, top_db, normalization);
- ``quantization``: ``"dtype"`` and ``"nf4"`` (format, levels, group size, the
  tensors kept in int8);
- ``layers``: ``"frame_map"``, ``"layer_names"``, ``"output_layer"``,
  ``"n_features"``, ``"n_classes"``;
- ``weights``: ``"tensor_sha256"``, which is checked against the tensors;
- ``other``: every other header field (``"format"``, ``"format_version"`` and
  any field a later version adds).

Not covered, because they do not change the model's behaviour:
``"metadata"`` (training record, metrics, model card), ``"library_version"``
and the integrity record itself. :func:`load_checkpoint` and
:func:`read_checkpoint_info` refuse a header whose covered part was edited,
naming the file and the part ("ckpt.safetensors: the alphabet in the header
does not match its integrity hash (...)"). The hash detects edits and
corruption, not forgery: anyone who edits a field can recompute its hash.

Files written before the integrity record (no ``"integrity"`` key): their
weights are still verified against ``tensor_sha256``. The shipped
``flite_small`` (the default model until #17) is one of them; its covered parts
are recorded in this module (:data:`KNOWN_HEADERS`, keyed by its
``tensor_sha256``), so it is verified in full without rewriting the file. Any other such file loads with one
:class:`CheckpointIntegrityWarning` per file and process saying its config is
not covered; :func:`upgrade_checkpoint` adds the record (tensors unchanged).

int8 files (half the size of float16, for shipping) quantize every weight with
two or more dimensions symmetrically per output channel (dim 0): the file holds
``name`` as int8 in [-127, 127] and ``name@scale`` (float32, one per output
channel), and the weight is ``int8 * scale``; 1-D tensors (biases, BatchNorm)
are stored in float16. :func:`quantize_int8` gives the weights such a file
loads to, so a model can be evaluated exactly as it will ship.

nf4 files (a quarter of float16) store 4-bit NormalFloat codes (Dettmers et al.
2023, QLoRA): each output channel's weights, flattened, are cut into groups of
64; a group's float16 ``name@scale`` is its largest absolute value, and each
weight is the nearest of 16 levels in [-1, 1] (quantiles of a standard normal,
with an exact 0) times that scale. ``name`` holds the codes two per byte
(uint8, ``(C_out, ceil(n / 2))`` for ``n`` weights per channel); the header
records the levels, the group size and the tensors kept in int8
(``"nf4": {"levels": [...], "group_size": 64, "int8": [...]}``). The output
layer's weights are kept in int8, as above: they are few (29 x 448 in the
``small`` preset), and of all layers rounding them to 4 bits cost the most (on
a snapshot of the default model's training, CER on the shipped corpus 0.1296
in float32, 0.1344 all nf4, 0.1301 with the output layer in int8; on a later
snapshot nf4 still cost +0.005, spread over all layers, which
quantization-aware training, ``train --quantize-aware nf4``, reduces). 1-D
tensors are float16. :func:`quantize_nf4` gives the weights such a file
loads to.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors
from torch import nn
from torchaudio.models import Wav2Letter as TAWav2Letter

from asr_introspect.errors import CheckpointError
from asr_introspect.features import FeatureConfig
from asr_introspect.io import to_json, write_bytes_atomic
from asr_introspect.models.adapters import wrap_conv_model, wrap_torchaudio_wav2letter
from asr_introspect.models.asr_model import ASRModel
from asr_introspect.models.conformer import ConformerConfig, ConformerCTC, conformer_model
from asr_introspect.models.frame_map import FrameMap
from asr_introspect.models.quartznet import QuartzNetConfig, QuartzNetCTC, quartznet_model
from asr_introspect.models.wav2letter import PRESETS, Wav2Letter, Wav2LetterConfig
from asr_introspect.text import Alphabet

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_info",
    "upgrade_checkpoint",
    "header_integrity",
    "CheckpointIntegrityWarning",
    "KNOWN_HEADERS",
    "INTEGRITY_PARTS",
    "quantize_int8",
    "quantize_nf4",
    "output_weight_names",
    "rounded_weights",
    "NF4",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_KEY",
]

FORMAT_NAME = "asr-introspect-checkpoint"
FORMAT_VERSION = 1
HEADER_KEY = "asr_introspect"
NF4 = "nf4"  # save_checkpoint(..., dtype=NF4): 4-bit NormalFloat codes, see the module doc
_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.int8: "int8", NF4: "nf4"}
SCALE_SUFFIX = "@scale"  # never part of a PyTorch state_dict key
NF4_GROUP_SIZE = 64

INTEGRITY_VERSION = 1
#: integrity part -> the header fields it covers; "other" covers every field not named here or in NOT_COVERED
INTEGRITY_PARTS: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "alphabet": ("alphabet",),
    "feature_config": ("feature_config",),
    "quantization": ("dtype", "nf4"),
    "layers": ("frame_map", "layer_names", "output_layer", "n_features", "n_classes"),
    "weights": ("tensor_sha256",),
    "other": (),
}
#: header fields outside the integrity hash: they do not change what the model computes
NOT_COVERED = ("metadata", "library_version", "integrity")
_PART_TITLES = {
    "model": "the model config (architecture, preset, layers)",
    "alphabet": "the alphabet",
    "feature_config": "the feature config",
    "quantization": "the quantization settings (dtype, nf4 levels, group size, int8 list)",
    "layers": "the layer map (frame map, layer names, output layer, sizes)",
    "weights": "the weights digest (tensor_sha256)",
}

#: tensor_sha256 -> integrity parts of checkpoints that ship without an integrity record (written
#: before it existed): asr_introspect/data/flite_small.safetensors (the default model until #17),
#: verified in full without rewriting it
KNOWN_HEADERS: dict[str, dict[str, str]] = {
    "451e7a3a5c583100c2242b66b2aae1a35694f7d46fb7a803e7f882f30fd5b7f6": {
        "model": "7e8a5aeea7f5c1d644a4f74fa328b725c697e7f581d4f953550d8cd0ac5f5b45",
        "alphabet": "221a5b63e3b7df4f4b59d40fdfe4bbfebba23776e1dc9e9aaaf598ee1e8fc3db",
        "feature_config": "f1108c51b5c296a2e98e42bbd905bfc7bd20ebf3335c332d5cb035b1967c6133",
        "quantization": "26aff58f5fd10f0c0ae834fd82b189bed689921da1ec5f01d69e5224523f64e0",
        "layers": "2fa4626fb8ec48339ba85f6307c8f898caef554220cd667e20adc1fbfaf9c9d0",
        "weights": "7528f938e619c7114933b65a645a4af4dc039d7ccb0329db5c4b369566d22228",
        "other": "6df9f6acdcae14894f996f05dca8470d6d50d31a0eeaa626cf5f925083b3fe55",
    },
}


def _nf4_levels() -> torch.Tensor:
    """The 16 NF4 levels, ascending in [-1, 1]: 8 positive and 7 negative normal quantiles, and 0."""
    inv = NormalDist().inv_cdf
    top = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))  # outermost quantile, as in QLoRA
    positive = [inv(top - i * (top - 0.5) / 8) for i in range(8)]
    negative = [-inv(top - i * (top - 0.5) / 7) for i in range(7)]
    levels = torch.tensor(sorted(positive + negative + [0.0]), dtype=torch.float64)
    return (levels / levels.abs().max()).float()


NF4_LEVELS = _nf4_levels()


def _int8_parts(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (q int8 like weight, scale float32 (C_out,))."""
    w = weight.detach().float()
    scale = w.abs().reshape(len(w), -1).amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale.view(-1, *([1] * (w.dim() - 1)))).clamp_(-127, 127).to(torch.int8)
    return q, scale


def _dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float().view(-1, *([1] * (q.dim() - 1)))


def _nf4_groups(flat: torch.Tensor, group_size: int) -> torch.Tensor:
    """(C_out, n) -> (C_out, ceil(n / group_size), group_size), zero-padded."""
    pad = -flat.shape[1] % group_size
    return torch.nn.functional.pad(flat, (0, pad)).reshape(len(flat), -1, group_size)


def _nf4_parts(weight: torch.Tensor, group_size: int = NF4_GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed codes uint8 (C_out, ceil(n / 2)), scales float16 (C_out, ceil(n / group_size)))."""
    flat = weight.detach().float().reshape(len(weight), -1)
    n = flat.shape[1]
    groups = _nf4_groups(flat, group_size)
    scale = groups.abs().amax(dim=2).half()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    midpoints = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2
    codes = torch.bucketize(groups / scale.float().unsqueeze(2), midpoints).reshape(len(flat), -1)[:, :n]
    codes = torch.nn.functional.pad(codes, (0, n % 2)).to(torch.uint8)
    return codes[:, 0::2] | (codes[:, 1::2] << 4), scale


def _nf4_dequantize(
    packed: torch.Tensor,
    scale: torch.Tensor,
    shape: tuple[int, ...],
    levels: torch.Tensor = NF4_LEVELS,
    group_size: int = NF4_GROUP_SIZE,
) -> torch.Tensor:
    """float32 weight of ``shape`` from :func:`_nf4_parts`' output."""
    codes = torch.stack([packed & 15, packed >> 4], dim=2).reshape(len(packed), -1).long()
    n = math.prod(shape[1:])
    values = levels[codes[:, :n]]
    groups = _nf4_groups(values, group_size) * scale.float().unsqueeze(2)
    return groups.reshape(len(values), -1)[:, :n].reshape(shape)


def _quantize(module: nn.Module, round_weight) -> nn.Module:
    """Weights (2+ dims) replaced by ``round_weight(name, w)``, other float tensors by their float16 value."""
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if value.is_floating_point() and value.dim() >= 2:
                value.copy_(round_weight(name, value).to(value.dtype))
            elif value.is_floating_point():
                value.copy_(value.half().to(value.dtype))
    return module


def _int8_round(w: torch.Tensor) -> torch.Tensor:
    return _dequantize(*_int8_parts(w))


def _nf4_round(w: torch.Tensor) -> torch.Tensor:
    return _nf4_dequantize(*_nf4_parts(w), tuple(w.shape))


def output_weight_names(asr_model: ASRModel) -> list[str]:
    """The ``state_dict`` names of the output layer's own weights (tensors of 2 or more dimensions)."""
    target = asr_model.layer_module(asr_model.output_layer)
    prefixes = [f"{name}." if name else "" for name, m in asr_model.module.named_modules() if m is target]
    return sorted(
        k for k, v in asr_model.module.state_dict().items() if v.dim() >= 2 and any(k.startswith(p) for p in prefixes)
    )


def rounded_weights(asr_model: ASRModel, dtype: torch.dtype | str) -> dict[str, torch.Tensor]:
    """The weights (``state_dict`` tensors of 2+ dimensions) as a ``dtype`` checkpoint stores them.

    ``dtype``: torch.int8 or ``NF4`` (whose output layer is int8, see the module
    doc). Returns name -> float tensor like the weight; the model is not changed.
    """
    if dtype not in (torch.int8, NF4):
        raise ValueError(f"dtype must be torch.int8 or {NF4!r}, got {dtype!r}")
    int8 = set(output_weight_names(asr_model)) if dtype == NF4 else None
    with torch.no_grad():
        return {
            name: (_int8_round(w) if int8 is None or name in int8 else _nf4_round(w)).to(w.dtype)
            for name, w in asr_model.module.state_dict().items()
            if w.is_floating_point() and w.dim() >= 2
        }


def quantize_int8(model: nn.Module | ASRModel) -> nn.Module:
    """Round the weights in place to what an int8 checkpoint stores (see the module doc); returns the module."""
    module = model.module if isinstance(model, ASRModel) else model
    return _quantize(module, lambda name, w: _int8_round(w))


def quantize_nf4(asr_model: ASRModel) -> nn.Module:
    """Round the weights in place to what an nf4 checkpoint stores (the output layer in int8); returns the module."""
    if not isinstance(asr_model, ASRModel):
        raise TypeError(
            "quantize_nf4 needs the ASRModel (nf4 checkpoints keep its output layer in int8), "
            f"got {type(asr_model).__name__}"
        )
    rounded = rounded_weights(asr_model, NF4)
    return _quantize(asr_model.module, lambda name, w: rounded[name])


def _library_version() -> str:
    try:
        return importlib.metadata.version("asr-introspect")
    except Exception:  # not installed (e.g. run from a source tree)
        return "unknown"


def tensor_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) over sorted (name, dtype, shape, bytes) of ``tensors``."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


class CheckpointIntegrityWarning(UserWarning):
    """A checkpoint written before the integrity record: its weights are verified, its config is not."""


_warned_legacy: set[str] = set()


def _canonical_sha256(value: Any) -> str:
    """sha256 (hex) of ``value`` as canonical JSON: sorted keys, no spaces, ASCII."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _other_fields(config: Mapping[str, Any]) -> list[str]:
    named = {key for keys in INTEGRITY_PARTS.values() for key in keys}
    return sorted(k for k in config if k not in named and k not in NOT_COVERED)


def _part_digests(config: Mapping[str, Any]) -> dict[str, str]:
    """part -> sha256 of the canonical JSON of the header fields it covers (absent fields left out)."""
    digests = {}
    for part, keys in INTEGRITY_PARTS.items():
        fields = _other_fields(config) if part == "other" else keys
        digests[part] = _canonical_sha256({k: config[k] for k in fields if k in config})
    return digests


def header_integrity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"integrity"`` record of a parsed header ``config`` (see the module doc); ``config`` is not changed."""
    parts = _part_digests(config)
    return {"version": INTEGRITY_VERSION, "parts": parts, "sha256": _canonical_sha256(parts)}


def _part_title(part: str, config: Mapping[str, Any]) -> str:
    if part == "other":
        return f"the header fields {', '.join(_other_fields(config)) or '(none)'}"
    return _PART_TITLES[part]


def _recorded_parts(path: Path, record: Any) -> dict[str, str]:
    """The part digests of an integrity record, after checking its form and its own hash."""
    ok = (
        isinstance(record, dict)
        and record.get("version") == INTEGRITY_VERSION
        and isinstance(record.get("parts"), dict)
        and set(record["parts"]) == set(INTEGRITY_PARTS)
        and all(isinstance(v, str) for v in record["parts"].values())
    )
    if not ok:
        version = record.get("version") if isinstance(record, dict) else None
        raise CheckpointError(
            f"{path}: the integrity record in the header is malformed or of another version ({version!r}; this "
            f"asr-introspect reads version {INTEGRITY_VERSION}): the file was edited or corrupted, re-export it"
        )
    if record.get("sha256") != _canonical_sha256(record["parts"]):
        raise CheckpointError(
            f"{path}: the integrity record in the header does not match its own hash "
            f"(the file was edited or corrupted; re-export it)"
        )
    return record["parts"]


def _verify_header(path: Path, config: Mapping[str, Any], warn: bool = True, stacklevel: int = 3) -> None:
    """Refuse a header whose covered fields differ from its integrity record; warn (once) if it has none."""
    if "integrity" in config:
        recorded = _recorded_parts(path, config["integrity"])
    else:
        digest = config.get("tensor_sha256")
        recorded = KNOWN_HEADERS.get(digest) if isinstance(digest, str) else None
        if recorded is None:
            key = str(path.resolve())
            if warn and key not in _warned_legacy:
                _warned_legacy.add(key)
                warnings.warn(
                    f"{path}: written before checkpoints hashed their header: its weights are verified, "
                    f"but not its model config, alphabet or features (seal it with "
                    f"asr_introspect.models.upgrade_checkpoint)",
                    CheckpointIntegrityWarning,
                    stacklevel=stacklevel,  # the caller of load_checkpoint / read_checkpoint_info
                )
            return
    actual = _part_digests(config)
    for part in INTEGRITY_PARTS:
        if actual[part] != recorded[part]:
            raise CheckpointError(
                f"{path}: {_part_title(part, config)} in the header does not match its integrity hash "
                f"(the file was edited or corrupted; re-export it)"
            )


def _preset_name(model_config: Any) -> Any:
    """The preset a wav2letter model config names (None: none, or another architecture)."""
    if isinstance(model_config, Mapping) and model_config.get("architecture") == "wav2letter":
        inner = model_config.get("config")
        if isinstance(inner, Mapping):
            return inner.get("preset")
    return None


def _known_preset(name: Any) -> bool:
    return name is None or (isinstance(name, str) and name in PRESETS)


def save_checkpoint(
    path: str | os.PathLike,
    asr_model: ASRModel,
    metadata: Mapping[str, Any] | None = None,
    dtype: torch.dtype | str = torch.float32,
) -> Path:
    """Write ``asr_model`` (weights in ``dtype``: torch.float32, float16, int8 or ``NF4``) and its config.

    ``metadata`` (JSON-able: training info, metrics, ...) comes back from
    :func:`load_checkpoint`. Returns the path.
    """
    if not isinstance(dtype, (torch.dtype, str)) or dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float32, torch.float16, torch.int8 or {NF4!r}, got {dtype!r}")
    preset_name = _preset_name(asr_model.model_config)
    if not _known_preset(preset_name):
        raise ValueError(
            f"the model config names an unknown preset {preset_name!r} (known: {', '.join(sorted(PRESETS))}); "
            f"set Wav2LetterConfig.preset to None for a layer list of your own"
        )
    quantized = {torch.int8: _int8_parts, NF4: _nf4_parts}.get(dtype)
    int8 = output_weight_names(asr_model) if dtype == NF4 else []
    tensors: dict[str, torch.Tensor] = {}
    for name, value in asr_model.module.state_dict().items():
        t = value.detach().cpu()
        if t.is_floating_point() and quantized is not None and t.dim() >= 2:
            t, tensors[name + SCALE_SUFFIX] = (_int8_parts if name in int8 else quantized)(t)
        elif t.is_floating_point():
            t = t.to(torch.float16 if quantized is not None else dtype)
        tensors[name] = t.contiguous().clone()
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": asr_model.model_config,
        "feature_config": asr_model.feature_config.to_dict(),
        "alphabet": asr_model.alphabet.to_dict(),
        "frame_map": asr_model.frame_map.to_dict(),
        "layer_names": list(asr_model.layer_names),
        "output_layer": asr_model.output_layer,
        "n_features": asr_model.n_features,
        "n_classes": asr_model.n_classes,
        "dtype": _DTYPES[dtype],
        **(
            {"nf4": {"levels": NF4_LEVELS.tolist(), "group_size": NF4_GROUP_SIZE, "int8": int8}} if dtype == NF4 else {}
        ),
        "tensor_sha256": tensor_sha256(tensors),
        "library_version": _library_version(),
        "metadata": dict(metadata) if metadata is not None else {},
    }
    return _write(path, tensors, config)


def _write(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Path:
    """Write ``tensors`` with ``config`` plus its integrity record as the header, atomically."""
    config = json.loads(to_json(config, indent=None))  # hashed exactly as a reader will parse it
    config.pop("integrity", None)
    config["integrity"] = header_integrity(config)
    data = save_safetensors(dict(tensors), metadata={HEADER_KEY: json.dumps(config)})
    return write_bytes_atomic(path, data)


def _one_line(exc: BaseException, limit: int = 100) -> str:
    """``exc``'s message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open(path: Path, with_tensors: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file (pass the .safetensors file in it)")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (check the path, or train/export a model first)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({_one_line(exc)}); "
            f"truncated, corrupt or another format: save or copy it again"
        ) from exc
    if HEADER_KEY not in header:
        raise CheckpointError(
            f"{path}: no asr-introspect config in the safetensors header "
            f"(not written by save_checkpoint; wrap the model and save it with save_checkpoint)"
        )
    try:
        config = json.loads(header[HEADER_KEY])
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise CheckpointError(
            f"{path}: the embedded config is not valid JSON ({_one_line(exc)}); the file is corrupt: save it again"
        ) from exc
    if config.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: the embedded config is not an {FORMAT_NAME} config")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this asr-introspect reads version {FORMAT_VERSION}); use the "
            f"asr-introspect version that wrote it or re-save the model"
        )
    return config, tensors


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The embedded JSON config of a checkpoint (no weights loaded, no model built).

    The header is checked against its integrity record (the weights are not read).
    """
    path = Path(path)
    config = _open(path, with_tensors=False)[0]
    _verify_header(path, config)
    return config


def _build(path: Path, config: dict[str, Any], module: nn.Module | None) -> ASRModel:
    try:
        alphabet = Alphabet.from_dict(config["alphabet"])
        feature_config = FeatureConfig.from_dict(config["feature_config"])
        model_config = config["model"]
        arch = model_config.get("architecture")
        name = _preset_name(model_config)
        if not _known_preset(name):
            raise CheckpointError(
                f"{path}: the model config names an unknown preset {name!r} (this asr-introspect knows "
                f"{', '.join(sorted(PRESETS))}); the file was edited or written by another version: re-export it"
            )
        if arch == "wav2letter":
            return ASRModel.from_wav2letter(
                Wav2Letter(Wav2LetterConfig.from_dict(model_config["config"])), alphabet, feature_config
            )
        if arch == "torchaudio.wav2letter":
            ta = TAWav2Letter(
                num_classes=int(model_config["num_classes"]),
                input_type=model_config.get("input_type", "mfcc"),
                num_features=int(model_config["num_features"]),
            )
            return wrap_torchaudio_wav2letter(ta, alphabet, feature_config)
        if arch == "conformer":
            module = ConformerCTC(ConformerConfig.from_dict(model_config["config"]))
            return conformer_model(module, alphabet, feature_config)
        if arch == "quartznet":
            module = QuartzNetCTC(QuartzNetConfig.from_dict(model_config["config"]))
            return quartznet_model(module, alphabet, feature_config)
        if arch == "custom":
            if module is None:
                raise CheckpointError(
                    f"{path}: saved from a custom module ({model_config.get('class', '?')}); pass an "
                    f"instance of it: load_checkpoint(path, module=...)"
                )
            return wrap_conv_model(
                module,
                alphabet,
                feature_config,
                layer_names=config["layer_names"],
                n_features=int(config["n_features"]),
                model_config=model_config,
            )
        raise CheckpointError(f"{path}: unknown model architecture {arch!r}")
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: the embedded config is invalid ({type(exc).__name__}: {_one_line(exc)}); "
            f"the file was edited or written by another tool: re-save the model"
        ) from exc


def _dequantize_stored(
    path: Path,
    config: dict[str, Any],
    name: str,
    q: torch.Tensor | None,
    scale: torch.Tensor,
    like: torch.Tensor | None,
) -> torch.Tensor:
    """The float32 weight ``name`` from its int8 or nf4 codes and ``name@scale``; CheckpointError if they do not fit."""

    def inconsistent(what: str) -> CheckpointError:
        return CheckpointError(
            f"{path}: {name}{SCALE_SUFFIX} does not belong to {what}: the file is inconsistent, re-save the model"
        )

    if config.get("dtype") == "nf4":
        try:
            levels = torch.tensor(config["nf4"]["levels"], dtype=torch.float32)
            group_size = int(config["nf4"]["group_size"])
            int8 = config["nf4"].get("int8", [])  # files written before the output layer was kept in int8
            if not isinstance(int8, list):
                raise TypeError(f"'int8' is {int8!r}, not a list of names")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{path}: the nf4 levels, group size or int8 list are missing from the "
                f"config or invalid ({exc}): re-save the model"
            ) from exc
    if config.get("dtype") == "nf4" and name not in int8:
        if like is None or q is None or q.dtype != torch.uint8 or levels.shape != (16,) or group_size < 1:
            raise inconsistent(f"nf4 codes {name!r} of a weight of this model")
        n = like[0].numel()
        if q.shape != (len(like), (n + 1) // 2) or scale.shape != (len(like), -(-n // group_size)):
            raise inconsistent(f"nf4 codes {name!r} for a weight of shape {tuple(like.shape)}")
        return _nf4_dequantize(q, scale, tuple(like.shape), levels, group_size)
    if q is None or q.dtype != torch.int8 or scale.shape != (len(q),):
        raise inconsistent(f"an int8 tensor {name!r} with one scale per output channel")
    return _dequantize(q, scale)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", module: nn.Module | None = None
) -> tuple[ASRModel, dict[str, Any]]:
    """(ASRModel in eval mode on ``map_location``, the metadata dict given to save_checkpoint).

    ``module``: an instance to load into, needed only for checkpoints of custom modules.
    """
    return _load(Path(path), map_location, module, warn=True)


def _load(
    path: Path, map_location: str | torch.device, module: nn.Module | None, warn: bool
) -> tuple[ASRModel, dict[str, Any]]:
    config, tensors = _open(path, with_tensors=True)
    _verify_header(path, config, warn=warn, stacklevel=4)
    digest = config.get("tensor_sha256")
    if digest != tensor_sha256(tensors):
        raise CheckpointError(
            f"{path}: the weights do not match their sha256 (the file was altered or corrupted): save or copy it again"
        )
    model = _build(path, config, module)
    expected = model.module.state_dict()
    scales = {k[: -len(SCALE_SUFFIX)]: tensors.pop(k) for k in list(tensors) if k.endswith(SCALE_SUFFIX)}
    for name, scale in scales.items():
        tensors[name] = _dequantize_stored(path, config, name, tensors.get(name), scale, expected.get(name))

    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            parts.append(
                "shape mismatch "
                + ", ".join(
                    f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong[:5]
                )
            )
        raise CheckpointError(
            f"{path}: the tensors do not match the embedded model config ("
            + "; ".join(parts)
            + "): the file is inconsistent, re-save the model"
        )
    try:
        stored_map = FrameMap.from_dict(config["frame_map"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the embedded frame map is invalid ({_one_line(exc)})") from exc
    if stored_map != model.frame_map:
        raise CheckpointError(
            f"{path}: the embedded frame map does not match the model built from "
            f"its config: the file is inconsistent, re-save the model"
        )
    state = {k: tensors[k].to(expected[k].dtype) for k in expected}
    model.module.load_state_dict(state, strict=True)
    model.module.to(map_location)
    model.module.eval()
    metadata = config.get("metadata") or {}
    return model, dict(metadata)


def upgrade_checkpoint(
    path: str | os.PathLike, out: str | os.PathLike | None = None, module: nn.Module | None = None
) -> Path:
    """Add the integrity record to a checkpoint written before it; tensors and header are kept as they are.

    The file must load (weights verified, model built; ``module`` as for
    :func:`load_checkpoint`). Writes ``out`` (default: ``path`` itself,
    atomically) and returns it. Only seal a file you trust: an edit made
    before sealing is sealed with it.
    """
    path = Path(path)
    _load(path, "cpu", module, warn=False)
    config, tensors = _open(path, with_tensors=True)
    return _write(out if out is not None else path, tensors, config)
