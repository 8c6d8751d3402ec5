"""Parameterizations of the optimized feature window ``(B, F, W)`` (z-normalized log-mel).

- :class:`RawParam`: the values themselves.
- :class:`FourierParam`: 2-D real-FFT coefficients over (frequency band, time
  frame) scaled by ``1 / max(|f|, 1/max(F, W))^decay_power`` (|f| the radial
  spatial frequency in cycles per band/frame), inverted with an orthonormal
  ``irfft2``. The 1/f scaling decorrelates neighbouring values (natural
  spectrograms, like images, have roughly 1/f spectra), so gradient steps
  favour smooth structure. The scale is normalized so that white
  coefficients of std ``s`` give values of std ``s`` (as for raw).
- :class:`PCAParam`: whitened coordinates ``z`` (k,) in a PCA basis learned
  from real windows: ``x = mean + z @ (sqrt(lambda) * U)`` (a
  :class:`~asr_introspect.featvis.prior.GaussianPrior`); ``z ~ N(0, I)`` are
  typical real windows. Results lie in the span of the k components.

Every parameterization is initialized for a shape with ``init(shape,
generator)``, exposes its leaf tensors with ``parameters()``, produces the
features with ``features()`` and can be moved to given features with
``set_features(x)`` (an exact inverse for raw/Fourier, a projection for PCA;
used by the blur step and for initialization from a real window).
"""

from __future__ import annotations

from typing import Any

import torch

from asr_introspect.errors import InputError
from asr_introspect.featvis.prior import GaussianPrior

__all__ = ["Parameterization", "RawParam", "FourierParam", "PCAParam", "make_param", "PARAMS"]

PARAMS = ("raw", "fourier", "pca")


class Parameterization:
    """Base class: ``init`` -> ``parameters`` / ``features`` (B, F, W) / ``set_features``."""

    name = "base"
    #: window width the parameterization requires (None: any)
    width: int | None = None

    def __init__(self, sd: float = 0.01) -> None:
        self.sd = float(sd)
        self.shape: tuple[int, int, int] | None = None

    def init(self, shape: tuple[int, int, int], generator: torch.Generator, device: torch.device | str = "cpu") -> None:
        raise NotImplementedError

    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def features(self) -> torch.Tensor:
        raise NotImplementedError

    def set_features(self, features: torch.Tensor) -> None:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "sd": self.sd}

    def _check(self) -> None:
        if self.shape is None:
            raise RuntimeError(f"{type(self).__name__}.init(shape, generator) was not called")


class RawParam(Parameterization):
    """The feature values are the parameters; init ``N(0, sd^2)``."""

    name = "raw"

    def init(self, shape, generator, device="cpu") -> None:
        self.shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        self.values = (torch.randn(self.shape, generator=generator) * self.sd).to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        self._check()
        return [self.values]

    def features(self) -> torch.Tensor:
        self._check()
        return self.values

    @torch.no_grad()
    def set_features(self, features: torch.Tensor) -> None:
        self._check()
        self.values.copy_(features.reshape(self.shape))


def fourier_scale(n_rows: int, n_cols: int, decay_power: float = 1.0) -> torch.Tensor:
    """(F, W//2+1) scale of the rfft2 coefficients: ``1/max(|f|, 1/max(F, W))^decay``, normalized
    so that white coefficients (real and imaginary parts of std s) give values of variance s^2.

    With the orthonormal ``irfft2`` a unit coefficient adds energy 2 per real component in
    the interior columns (it stands for a conjugate pair) and 1/2 in the edge columns
    (0 and, for even W, W/2).
    """
    fy = torch.fft.fftfreq(n_rows, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(n_cols, dtype=torch.float64)[None, :]
    radial = torch.sqrt(fy.square() + fx.square())
    scale = 1.0 / radial.clamp_min(1.0 / max(n_rows, n_cols)) ** float(decay_power)
    energy = torch.full((n_cols // 2 + 1,), 4.0, dtype=torch.float64)
    energy[0] = 1.0
    if n_cols % 2 == 0:
        energy[-1] = 1.0
    total = (scale.square() * energy[None, :]).sum()
    return (scale * torch.sqrt(n_rows * n_cols / total)).to(torch.float32)


class FourierParam(Parameterization):
    """2-D rFFT coefficients with 1/f scaling (decorrelated); see the module docstring."""

    name = "fourier"

    def __init__(self, decay_power: float = 1.0, sd: float = 0.01) -> None:
        super().__init__(sd)
        self.decay_power = float(decay_power)

    def init(self, shape, generator, device="cpu") -> None:
        self.shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        b, f, w = self.shape
        self.scale = fourier_scale(f, w, self.decay_power).to(device)
        coeffs = torch.randn((b, f, w // 2 + 1, 2), generator=generator) * self.sd
        self.coefficients = coeffs.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        self._check()
        return [self.coefficients]

    def features(self) -> torch.Tensor:
        self._check()
        spectrum = torch.view_as_complex(self.coefficients) * self.scale
        return torch.fft.irfft2(spectrum, s=self.shape[1:], norm="ortho")

    @torch.no_grad()
    def set_features(self, features: torch.Tensor) -> None:
        self._check()
        spectrum = torch.fft.rfft2(features.reshape(self.shape).to(self.coefficients.dtype), norm="ortho")
        self.coefficients.copy_(torch.view_as_real(spectrum / self.scale))

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "decay_power": self.decay_power}


class PCAParam(Parameterization):
    """Whitened PCA coordinates ``z`` (B, k) of a :class:`GaussianPrior`; ``x = mean + z @ basis``."""

    name = "pca"

    def __init__(self, prior: GaussianPrior, sd: float = 0.01) -> None:
        super().__init__(sd)
        self.prior = prior
        self.width = prior.shape[1]

    def init(self, shape, generator, device="cpu") -> None:
        shape = tuple(int(s) for s in shape)
        if shape[1:] != self.prior.shape:
            raise ValueError(f"the PCA basis is for windows {self.prior.shape}, not {shape[1:]}")
        self.shape = shape  # type: ignore[assignment]
        basis, mean = self.prior.whitening()
        self.basis = torch.as_tensor(basis, dtype=torch.float32, device=device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
        z = torch.randn((shape[0], self.prior.n_components), generator=generator) * self.sd
        self.z = z.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        self._check()
        return [self.z]

    def features(self) -> torch.Tensor:
        self._check()
        return (self.mean + self.z @ self.basis).reshape(self.shape)

    @torch.no_grad()
    def set_features(self, features: torch.Tensor) -> None:
        """Least-squares projection onto the basis (the basis rows are orthogonal)."""
        self._check()
        r = features.reshape(self.shape[0], -1).to(self.basis.dtype) - self.mean
        self.z.copy_((r @ self.basis.T) / self.basis.square().sum(1))

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "n_components": self.prior.n_components, "width": self.width}


def make_param(param: str | Parameterization | None, prior: GaussianPrior | None = None) -> Parameterization:
    """A parameterization from a name ("raw", "fourier", "pca"; "pca" needs ``prior``) or as is."""
    if isinstance(param, Parameterization):
        return param
    name = "fourier" if param is None else str(param)
    if name == "raw":
        return RawParam()
    if name == "fourier":
        return FourierParam()
    if name == "pca":
        if prior is None:
            raise InputError(
                "the pca parameterization needs a GaussianPrior fitted on real windows "
                "(fit_prior(feature_windows(...)); on the command line pass --data DIR)"
            )
        return PCAParam(prior)
    raise InputError(f"unknown parameterization {name!r}; choose one of {', '.join(PARAMS)}")
