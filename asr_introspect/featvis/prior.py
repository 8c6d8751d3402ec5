"""A learned prior over feature windows: a Gaussian fitted to real (F, W) log-mel windows.

The covariance of ``D = F*W`` dimensions (12,416 for 64 mels x 194 frames) is
too large to store densely, so :func:`fit_prior` fits a probabilistic-PCA
Gaussian: the top ``k`` principal directions ``U`` (k, D) keep their sample
variances ``lambda`` (k,), and the remaining ``D - k`` directions share one
variance ``sigma^2`` (their mean eigenvalue)::

    C = U^T diag(lambda) U + sigma^2 (I - U^T U)
    d^2(x) = sum_i (U_i . r)^2 / lambda_i + (|r|^2 - |U r|^2) / sigma^2,   r = x - mean

With ``k = D`` (or :meth:`GaussianPrior.from_covariance`) this is the exact
Mahalanobis distance. Typical real windows have ``d^2 / D`` near 1 (somewhat
above for windows the prior was not fitted on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from asr_introspect.errors import InputError
from asr_introspect.stream import stream_corpus

if TYPE_CHECKING:
    from asr_introspect.models import ASRModel

__all__ = ["GaussianPrior", "fit_prior", "feature_windows"]


@dataclass
class GaussianPrior:
    """Gaussian over windows ``(F, W)``: ``mean`` (F, W), ``components`` (k, F*W) orthonormal rows,
    ``variances`` (k,) along them, ``noise_variance`` for every other direction."""

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    noise_variance: float
    n_samples: int = 0

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        if self.mean.ndim != 2:
            raise ValueError(f"mean must be (F, W), got {self.mean.shape}")
        self.components = np.asarray(self.components, dtype=np.float32).reshape(-1, self.mean.size)
        self.variances = np.asarray(self.variances, dtype=np.float32).reshape(-1)
        if len(self.variances) != len(self.components):
            raise ValueError("components and variances must have the same length")
        if self.noise_variance <= 0 or np.any(self.variances <= 0):
            raise ValueError("variances must be positive")
        self.noise_variance = float(self.noise_variance)

    @property
    def shape(self) -> tuple[int, int]:
        """(F, W) of the windows."""
        return tuple(self.mean.shape)  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    @property
    def n_components(self) -> int:
        return int(len(self.variances))

    @classmethod
    def from_covariance(cls, mean, covariance, floor: float = 1e-6) -> GaussianPrior:
        """Exact prior from a dense ``covariance`` (D, D), D = F*W; eigenvalues floored at ``floor``."""
        mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(covariance, dtype=np.float64)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        values = np.maximum(values[order], floor)
        return cls(mean, vectors[:, order].T, values, float(values[-1]))

    def covariance(self) -> np.ndarray:
        """Dense covariance (D, D) (only for small windows)."""
        u = self.components.astype(np.float64)
        cov = self.noise_variance * (np.eye(self.dim) - u.T @ u)
        return cov + u.T @ (self.variances.astype(np.float64)[:, None] * u)

    def _tensors(self, device, dtype):
        key = (str(device), dtype)
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] != key:
            cache = (
                key,
                torch.as_tensor(self.mean, device=device, dtype=dtype).flatten(),
                torch.as_tensor(self.components, device=device, dtype=dtype),
                torch.as_tensor(self.variances, device=device, dtype=dtype),
            )
            self._cache = cache
        return cache[1:]

    def squared_mahalanobis(self, features: torch.Tensor) -> torch.Tensor:
        """features (..., F, W) tensor -> d^2 (...) (differentiable)."""
        if tuple(features.shape[-2:]) != self.shape:
            raise ValueError(f"the prior is for windows {self.shape}, got {tuple(features.shape[-2:])}")
        mean, comps, variances = self._tensors(features.device, features.dtype)
        r = features.flatten(-2) - mean
        p = r @ comps.T
        rest = (r.square().sum(-1) - p.square().sum(-1)).clamp_min(0.0)
        return (p.square() / variances).sum(-1) + rest / self.noise_variance

    def mahalanobis(self, features) -> np.ndarray | float:
        """Mahalanobis distance ``d`` of windows (..., F, W) (array or tensor) -> (...) numpy / float."""
        x = torch.as_tensor(
            np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features), dtype=torch.float64
        )
        d = self.squared_mahalanobis(x).sqrt().numpy()
        return float(d) if d.ndim == 0 else d

    def normalized_distance(self, features) -> np.ndarray | float:
        """``d / sqrt(D)``: about 1 for typical real windows, larger for unnatural ones."""
        return self.mahalanobis(features) / math.sqrt(self.dim)

    def whitening(self) -> tuple[np.ndarray, np.ndarray]:
        """(basis (k, F*W) = components scaled by sqrt(variances), mean (F*W,)): x = mean + z @ basis."""
        return self.components * np.sqrt(self.variances)[:, None], self.mean.ravel()

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean,
            "components": self.components,
            "variances": self.variances,
            "noise_variance": np.float32(self.noise_variance),
            "n_samples": np.int64(self.n_samples),
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> GaussianPrior:
        return cls(
            arrays["mean"],
            arrays["components"],
            arrays["variances"],
            float(arrays["noise_variance"]),
            int(arrays.get("n_samples", 0)),
        )


def fit_prior(windows, n_components: int | None = None, min_variance: float = 1e-4) -> GaussianPrior:
    """Fit a :class:`GaussianPrior` to real windows (N, F, W).

    ``n_components`` (default ``min(N - 1, 256)``) principal directions keep
    their variances; the rest share their mean variance (floored at
    ``min_variance`` times the mean variance per dimension).
    """
    x = torch.as_tensor(np.asarray(windows), dtype=torch.float64)
    if x.dim() != 3 or x.shape[0] < 2:
        raise InputError(f"fit_prior needs at least 2 windows (N, F, W), got {tuple(x.shape)}")
    n, f, w = x.shape
    d = f * w
    mean = x.mean(0)
    centred = (x - mean).reshape(n, d)
    total = float(centred.square().sum()) / (n - 1)
    k = min(n - 1, d, 256) if n_components is None else int(n_components)
    if not 1 <= k <= min(n - 1, d):
        raise ValueError(f"n_components must be in 1..{min(n - 1, d)} for {n} windows of {d} values, got {k}")
    if n <= d:  # eigenvectors of the Gram matrix (n, n)
        gram = centred @ centred.T / (n - 1)
        values, vectors = torch.linalg.eigh(gram)
        values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
        values = values.clamp_min(1e-12)
        components = (centred.T @ vectors / torch.sqrt(values * (n - 1))).T
    else:
        cov = centred.T @ centred / (n - 1)
        values, vectors = torch.linalg.eigh(cov)
        values, components = values.flip(0)[:k], vectors.flip(1)[:, :k].T
    floor = min_variance * total / d
    rest = (total - float(values.sum())) / (d - k) if d > k else floor
    noise = max(rest, floor)
    values = values.clamp_min(noise)
    return GaussianPrior(mean.numpy(), components.numpy(), values.numpy(), noise, n)


def feature_windows(
    model: ASRModel,
    utterances: Sequence,
    width: int,
    hop: int | None = None,
    max_windows: int | None = 2000,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Real feature windows (N, F, width) cut from a corpus with ``model``'s front end.

    Windows start every ``hop`` frames (default ``width // 4``) inside each
    utterance; an utterance shorter than ``width`` gives one window centred and
    zero padded (zeros are what the model's own padding feeds it). At most
    ``max_windows`` are kept, a random subset drawn with ``seed``.
    """
    width = int(width)
    hop = max(1, int(hop) if hop is not None else width // 4)
    out: list[np.ndarray] = []
    # one utterance per batch: each utterance's features exactly as it gives alone
    for batch in stream_corpus(
        model, utterances, batch_size=1, bucket=False, forward=False, progress=progress, desc="windows"
    ):
        feats = batch.utterance_features(0)
        n_frames = feats.shape[1]
        if n_frames < width:
            padded = np.zeros((feats.shape[0], width), dtype=np.float32)
            left = (width - n_frames) // 2
            padded[:, left : left + n_frames] = feats
            out.append(padded)
            continue
        starts = range(0, n_frames - width + 1, hop)
        out.extend(np.ascontiguousarray(feats[:, s : s + width], dtype=np.float32) for s in starts)
    if not out:
        raise InputError("no feature windows: the corpus is empty")
    windows = np.stack(out)
    if max_windows is not None and len(windows) > max_windows:
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), size=int(max_windows), replace=False))
        windows = windows[keep]
    return windows
