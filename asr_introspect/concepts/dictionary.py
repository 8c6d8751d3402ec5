"""The fitted concept dictionary of one layer: encode frames into concept activations, decode them back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_introspect.concepts.nmf import nmf_codes
from asr_introspect.concepts.sae import SparseAutoencoder
from asr_introspect.errors import InputError
from asr_introspect.io import load_npz, save_npz

__all__ = ["ConceptDictionary", "METHODS"]

#: the dictionary learners of :class:`~asr_introspect.concepts.ConceptEstimator`
METHODS = ("nmf", "sae")
_FORMAT = "asr-introspect.concepts/1"


@dataclass
class ConceptDictionary:
    """K concepts of layer ``layer``: ``components`` (K, C) unit-norm atoms (NMF atoms or SAE decoder rows).

    ``method``: "nmf" or "sae"; ``parameters``: what encoding needs besides the atoms (NMF: ``alpha``,
    ``code_iterations``; SAE: the autoencoder's arrays); ``mean_activation`` (C,): the layer's mean frame
    over the corpus (the mean-ablation baseline of :mod:`~asr_introspect.concepts.faithfulness`);
    ``history``: relative reconstruction error per pass; ``settings``: how it was fitted.
    """

    layer: str
    method: str
    components: np.ndarray
    parameters: dict[str, Any]
    mean_activation: np.ndarray
    history: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {self.method!r}")
        self.components = np.asarray(self.components, dtype=np.float64)
        self._autoencoder: SparseAutoencoder | None = None

    def __repr__(self) -> str:
        return f"ConceptDictionary({self.method}, layer={self.layer!r}, {self.n_concepts} concepts x {self.n_channels})"

    @property
    def n_concepts(self) -> int:
        return int(self.components.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.components.shape[1])

    def autoencoder(self) -> SparseAutoencoder:
        """The SAE as a module (method "sae" only)."""
        if self.method != "sae":
            raise InputError("only an SAE dictionary has an autoencoder")
        if self._autoencoder is None:
            p = self.parameters
            model = SparseAutoencoder(self.n_channels, self.n_concepts, p["sparsity"], int(p["k"]))
            model.load_state_dict({k: torch.as_tensor(np.asarray(p[k])) for k in model.state_dict()})
            self._autoencoder = model.eval()
        return self._autoencoder

    # -- frames ---------------------------------------------------------------------------

    def encode(self, frames) -> np.ndarray:
        """Concept activations ``(n, K)`` float32 of ``frames: (n, C)``."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise InputError(f"frames must be (n, {self.n_channels}), got shape {x.shape}")
        if self.method == "nmf":
            p = self.parameters
            return nmf_codes(np.maximum(x, 0.0), self.components, float(p["alpha"]), int(p["code_iterations"]))
        with torch.no_grad():
            return self.autoencoder().encode(torch.from_numpy(x)).numpy()

    def decode(self, codes) -> np.ndarray:
        """Frames ``(n, C)`` float32 of concept activations ``(n, K)``."""
        z = np.asarray(codes, dtype=np.float32)
        if self.method == "nmf":
            return (z @ self.components.astype(np.float32)).astype(np.float32)
        with torch.no_grad():
            return self.autoencoder().decode(torch.from_numpy(z)).numpy()

    # -- layer activations (B, C, T) ------------------------------------------------------

    def encode_activations(self, activations: torch.Tensor) -> torch.Tensor:
        """activations (B, C, T) -> concept activations (B, K, T), on the input's device and dtype."""
        b, c, t = activations.shape
        frames = activations.detach().permute(0, 2, 1).reshape(b * t, c).cpu().numpy()
        codes = torch.from_numpy(self.encode(frames)).reshape(b, t, self.n_concepts).permute(0, 2, 1)
        return codes.to(activations.device, activations.dtype)

    def decode_activations(self, codes: torch.Tensor) -> torch.Tensor:
        """concept activations (B, K, T) -> layer activations (B, C, T)."""
        b, k, t = codes.shape
        frames = codes.detach().permute(0, 2, 1).reshape(b * t, k).cpu().numpy()
        out = torch.from_numpy(self.decode(frames)).reshape(b, t, self.n_channels).permute(0, 2, 1)
        return out.to(codes.device, codes.dtype)

    def reconstruct(self, activations: torch.Tensor) -> torch.Tensor:
        """The layer's activations (B, C, T) passed through the dictionary."""
        return self.decode_activations(self.encode_activations(activations))

    # -- files ----------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """npz-ready arrays: ``components``, ``mean_activation``, ``history``, ``param/<name>`` and JSON
        ``meta`` (layer, method, scalar parameters, settings)."""
        arrays = {
            "format": np.array(_FORMAT),
            "components": self.components,
            "mean_activation": np.asarray(self.mean_activation, dtype=np.float64),
            "history": np.asarray(self.history, dtype=np.float64),
        }
        scalars = {}
        for name, value in self.parameters.items():
            if isinstance(value, np.ndarray):
                arrays[f"param/{name}"] = value
            else:
                scalars[name] = value
        meta = {"layer": self.layer, "method": self.method, "parameters": scalars, "settings": self.settings}
        arrays["meta"] = np.array(json.dumps(meta))
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz, atomically; :meth:`load` reads it back)."""
        return save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> ConceptDictionary:
        try:
            d = load_npz(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read a concept dictionary ({exc})") from exc
        if "format" not in d or str(d["format"]) != _FORMAT:
            raise InputError(f"{path}: not a concept dictionary file (missing or unknown 'format')")
        meta = json.loads(str(d["meta"]))
        parameters = dict(meta["parameters"])
        parameters.update({k[len("param/") :]: v for k, v in d.items() if k.startswith("param/")})
        return cls(
            meta["layer"],
            meta["method"],
            d["components"],
            parameters,
            d["mean_activation"],
            [float(x) for x in d["history"]],
            meta["settings"],
        )
