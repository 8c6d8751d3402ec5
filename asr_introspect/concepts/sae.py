"""Sparse autoencoders (TopK or L1) trained on streamed frames.

A frame ``x: (C,)`` is scaled by a fixed ``s`` (the root mean square frame
norm of the first chunk, so the dictionary does not depend on the layer's
units), encoded into ``K`` non-negative concept activations and decoded with
unit-norm atoms ``D: (K, C)``::

    z = sparsify(W_enc^T (x / s - b_dec) + b_enc)        (K,)
    x_hat = s (z D + b_dec)

``sparsify`` is TopK (keep the ``k`` largest pre-activations, ReLU them, zero
the rest: Gao et al., 2024) or a ReLU with an L1 penalty
``l1 * sum_k z_k ||D_k||`` (Bricken et al., 2023). The loss is the mean
squared error of the scaled frames (plus the penalty), minimized with Adam;
after each step the atoms are renormalized.

Streaming: :meth:`StreamedSAE.partial_fit` takes a chunk of frames, shuffles
it with the trainer's own seeded generator and takes one Adam step per
minibatch. Training is deterministic, so ``partial_fit`` over the batches of a
stream, pass after pass, equals ``fit`` over the same batches in the same
order (the sense in which the two agree: SGD depends on the order).
:meth:`StreamedSAE.merge` and :meth:`StreamedSAE.all_reduce` average the
parameters (local SGD / model averaging): with one process they are not
needed, with several they are an approximation, not an identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from asr_introspect.aggregate import torch_distributed
from asr_introspect.errors import InputError

__all__ = ["SparseAutoencoder", "StreamedSAE", "SPARSITIES"]

SPARSITIES = ("topk", "l1")


class SparseAutoencoder(nn.Module):
    """Encoder ``(C -> K)`` and unit-norm decoder atoms ``(K, C)``; see the module docstring.

    encoder_weight: (C, K); encoder_bias: (K,); decoder: (K, C); decoder_bias: (C,); scale: () buffer.
    """

    def __init__(self, n_features: int, n_components: int, sparsity: str = "topk", k: int = 4, seed: int = 0):
        super().__init__()
        if sparsity not in SPARSITIES:
            raise InputError(f"sparsity must be one of {SPARSITIES}, got {sparsity!r}")
        self.sparsity = sparsity
        self.k = int(k)
        generator = torch.Generator().manual_seed(int(seed))
        atoms = torch.randn(n_components, n_features, generator=generator)
        atoms /= atoms.norm(dim=1, keepdim=True)
        self.decoder = nn.Parameter(atoms)
        self.encoder_weight = nn.Parameter(atoms.T.clone())
        self.encoder_bias = nn.Parameter(torch.zeros(n_components))
        self.decoder_bias = nn.Parameter(torch.zeros(n_features))
        self.register_buffer("scale", torch.tensor(1.0))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, C) -> z: (n, K) >= 0."""
        pre = (x / self.scale - self.decoder_bias) @ self.encoder_weight + self.encoder_bias
        if self.sparsity == "l1":
            return torch.relu(pre)
        values, index = pre.topk(min(self.k, pre.shape[1]), dim=1)
        return torch.zeros_like(pre).scatter(1, index, torch.relu(values))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (n, K) -> x_hat: (n, C)."""
        return (z @ self.decoder + self.decoder_bias) * self.scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    @torch.no_grad()
    def normalize_atoms(self) -> None:
        self.decoder /= self.decoder.norm(dim=1, keepdim=True).clamp_min(1e-12)


class StreamedSAE:
    """Trains a :class:`SparseAutoencoder` chunk by chunk (module docstring).

    n_components: concepts K; sparsity: "topk" (``k`` active concepts per frame) or "l1" (weight
    ``l1``); learning_rate: Adam's; minibatch_size: frames per step; seed: initial atoms and the
    shuffling of every chunk.

    Fitted attributes: ``model_`` (the autoencoder), ``components_`` (K, C) its atoms as NumPy,
    ``n_passes_``, ``n_steps_``, ``history_`` (relative reconstruction error ``||x - x_hat|| / ||x||``
    over each finished pass, measured on the minibatches before their step), ``n_features_in_``.
    """

    def __init__(
        self,
        n_components: int,
        *,
        sparsity: str = "topk",
        k: int = 4,
        l1: float = 0.05,
        learning_rate: float = 1e-3,
        minibatch_size: int = 256,
        seed: int = 0,
    ) -> None:
        if sparsity not in SPARSITIES:
            raise InputError(f"sparsity must be one of {SPARSITIES}, got {sparsity!r}")
        for name, value in (("n_components", n_components), ("k", k), ("minibatch_size", minibatch_size)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if sparsity == "topk" and k > n_components:
            raise InputError(f"k must be at most n_components ({n_components}), got {k}")
        for name, value in (("l1", l1), ("learning_rate", learning_rate)):
            if not np.isfinite(value) or value < 0 or (name == "learning_rate" and value == 0):
                raise InputError(f"{name} must be a finite number {'> 0' if name == 'learning_rate' else '>= 0'}")
        self.n_components = int(n_components)
        self.sparsity = sparsity
        self.k = int(k)
        self.l1 = float(l1)
        self.learning_rate = float(learning_rate)
        self.minibatch_size = int(minibatch_size)
        self.seed = int(seed)
        self.reset()

    def __repr__(self) -> str:
        sparsity = f"k={self.k}" if self.sparsity == "topk" else f"l1={self.l1}"
        return (
            f"StreamedSAE(n_components={self.n_components}, sparsity={self.sparsity!r}, {sparsity}, seed={self.seed})"
        )

    def reset(self) -> StreamedSAE:
        """Forget the autoencoder and every statistic."""
        self.model_: SparseAutoencoder | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._generator = torch.Generator().manual_seed(self.seed + 1)
        self.n_features_in_: int | None = None
        self.n_passes_ = 0
        self.n_steps_ = 0
        self.history_: list[float] = []
        self._clear_pass()
        return self

    def _clear_pass(self) -> None:
        self.residual_ = 0.0
        self.energy_ = 0.0
        self.n_frames_ = 0

    def initialize(self, n_features: int, scale: float = 1.0) -> StreamedSAE:
        """Build the autoencoder for ``n_features``-dimensional frames scaled by ``scale`` (no-op when built)."""
        if self.model_ is None:
            self.n_features_in_ = int(n_features)
            self.model_ = SparseAutoencoder(n_features, self.n_components, self.sparsity, self.k, self.seed)
            self.model_.scale.fill_(float(scale) if scale > 0 else 1.0)
            self._optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.learning_rate)
        elif n_features != self.n_features_in_:
            raise InputError(f"frames have {n_features} features, the autoencoder {self.n_features_in_}")
        return self

    def _tensor(self, frames) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(frames, dtype=np.float32))
        if x.ndim != 2:
            raise InputError(f"frames must be (n, C), got shape {tuple(x.shape)}")
        if x.numel() and not torch.isfinite(x).all():
            raise InputError("frames contain NaN/inf values")
        return x

    def partial_fit(self, frames) -> StreamedSAE:
        """One Adam step per minibatch of ``frames: (n, C)``, shuffled with the trainer's generator."""
        x = self._tensor(frames)
        if self.model_ is None:
            rms = float(x.square().sum(dim=1).mean().sqrt()) if len(x) else 1.0
            self.initialize(x.shape[1], rms)
        else:
            self.initialize(x.shape[1])
        if len(x) == 0:
            return self
        model, optimizer = self.model_, self._optimizer
        order = torch.randperm(len(x), generator=self._generator)
        with torch.enable_grad():
            for start in range(0, len(x), self.minibatch_size):
                batch = x[order[start : start + self.minibatch_size]]
                target = batch / model.scale
                z = model.encode(batch)
                error = (z @ model.decoder + model.decoder_bias - target).square().sum(dim=1)
                loss = error.mean()
                if self.sparsity == "l1":
                    loss = loss + self.l1 * (z * model.decoder.norm(dim=1)).sum(dim=1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                model.normalize_atoms()
                self.n_steps_ += 1
                self.residual_ += float(error.detach().sum())
                self.energy_ += float(target.square().sum())
        self.n_frames_ += len(x)
        return self

    def end_pass(self) -> StreamedSAE:
        """Record this pass's reconstruction error and start a new pass."""
        if self.model_ is None:
            raise InputError("the autoencoder has seen no frames (call partial_fit first)")
        if self.n_frames_ == 0:
            raise InputError("no frames in this pass")
        self.history_.append(float(np.sqrt(self.residual_ / max(self.energy_, 1e-12))))
        self.n_passes_ += 1
        self._clear_pass()
        return self

    # -- combining (model averaging) --------------------------------------------------------

    def merge(self, other: StreamedSAE) -> StreamedSAE:
        """Average the parameters with ``other``'s, weighted by the frames each saw in this pass (local
        SGD; an approximation of training on both chunks, not an identity). Returns self."""
        if other.model_ is None or other.n_frames_ == 0:
            return self
        if self.model_ is None:
            raise InputError("merge into an initialized autoencoder (call partial_fit first)")
        total = self.n_frames_ + other.n_frames_
        mine = self.n_frames_ / total
        with torch.no_grad():
            for p, q in zip(self.model_.parameters(), other.model_.parameters()):
                p.mul_(mine).add_(q, alpha=1.0 - mine)
        self.model_.normalize_atoms()
        self.residual_ += other.residual_
        self.energy_ += other.energy_
        self.n_frames_ = total
        self.n_steps_ = max(self.n_steps_, other.n_steps_)
        return self

    def all_reduce(self, group=None) -> StreamedSAE:
        """Average the parameters over all torch.distributed processes, weighted by frames (no-op without a
        group); see :meth:`merge`."""
        dist = torch_distributed()
        if dist is None or self.model_ is None:
            return self
        counts = torch.tensor([float(self.n_frames_), self.residual_, self.energy_], dtype=torch.float64)
        dist.all_reduce(counts, group=group)
        weight = self.n_frames_ / max(float(counts[0]), 1.0)
        with torch.no_grad():
            for p in self.model_.parameters():
                p.mul_(weight)
                dist.all_reduce(p.data, group=group)
        self.model_.normalize_atoms()
        self.n_frames_, self.residual_, self.energy_ = int(counts[0]), float(counts[1]), float(counts[2])
        return self

    # -- whole data -------------------------------------------------------------------------

    def fit(self, frames: np.ndarray | Sequence[np.ndarray], passes: int = 30, chunk_size: int = 4096) -> StreamedSAE:
        """Reset, then ``passes`` passes over ``frames`` (one array, chunked, or a sequence of chunks)."""
        if isinstance(passes, bool) or int(passes) != passes or passes < 1:
            raise InputError(f"passes must be an integer >= 1, got {passes!r}")
        if isinstance(frames, np.ndarray):
            chunks = [frames[i : i + chunk_size] for i in range(0, max(len(frames), 1), chunk_size)]
        else:
            chunks = [np.asarray(c) for c in frames]
        self.reset()
        for _ in range(int(passes)):
            for chunk in chunks:
                self.partial_fit(chunk)
            self.end_pass()
        return self

    def _fitted(self) -> SparseAutoencoder:
        if self.model_ is None:
            raise InputError("the autoencoder is not fitted yet (call fit or partial_fit)")
        return self.model_

    @property
    def components_(self) -> np.ndarray:
        """(K, C) unit-norm decoder atoms."""
        return self._fitted().decoder.detach().numpy().astype(np.float64)

    @torch.no_grad()
    def transform(self, frames) -> np.ndarray:
        """Concept activations ``(n, K)`` of ``frames: (n, C)``."""
        return self._fitted().encode(self._tensor(frames)).numpy()

    @torch.no_grad()
    def inverse_transform(self, codes) -> np.ndarray:
        """Frames ``(n, C)`` of concept activations ``(n, K)``."""
        return self._fitted().decode(torch.as_tensor(np.asarray(codes, dtype=np.float32))).numpy()

    def parameters(self) -> dict[str, np.ndarray]:
        """The autoencoder as arrays: encoder_weight (C, K), encoder_bias (K,), decoder (K, C),
        decoder_bias (C,), scale ()."""
        model = self._fitted()
        return {name: t.detach().numpy().copy() for name, t in model.state_dict().items()}
