"""Regularizers for feature visualization, each weighted and switchable (``enabled``).

A regularizer acts on the optimized window ``x`` (B, F, W) in up to three ways:

- ``penalty(x) -> ()``: added to the loss as ``weight * penalty`` (L1, L2,
  total variation, high spatial-frequency energy, the prior's squared Mahalanobis
  distance). Penalties are *sums* over the window's values (means over the batch),
  like lucent's, so a weight sets the pull on each value whatever the window size;
  the measuring functions below are the per-value means (``penalty = F*W * measure``);
- ``transform(x, generator) -> x``: applied to the input before the model at
  every step (transformation robustness: random time shifts, small frequency
  shifts, time stretch, additive noise);
- ``after_step(param, step)``: changes the parameters after an optimizer step
  (Gaussian blur).

The quantities they target are plain functions too (:func:`total_variation`,
:func:`high_frequency_energy`, :func:`l1_norm`, :func:`l2_norm`,
``GaussianPrior.normalized_distance``), for measuring results.

Named sets (:data:`REGULARIZATION_SETS`, :func:`regularizer_set`) give the
presets of the command line and the comparison experiment. ``render`` scales
penalty weights by the objective's initial gradient (RMS per value; see its
``relative_weights``), so the presets suit any objective and model; they
assume z-normalized features (values of order 1).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from asr_introspect.errors import InputError
from asr_introspect.featvis.prior import GaussianPrior

if TYPE_CHECKING:
    from asr_introspect.featvis.param import Parameterization

__all__ = [
    "Regularizer",
    "L1",
    "L2",
    "TotalVariation",
    "HighFrequencyPenalty",
    "Blur",
    "TransformRobustness",
    "PriorPenalty",
    "total_variation",
    "high_frequency_energy",
    "l1_norm",
    "l2_norm",
    "gaussian_blur",
    "regularizer_set",
    "REGULARIZATION_SETS",
]


def _as_tensor(features) -> tuple[torch.Tensor, bool]:
    if isinstance(features, torch.Tensor):
        return features, False
    return torch.as_tensor(np.asarray(features), dtype=torch.float64), True


def _out(value: torch.Tensor, numpy: bool):
    if not numpy:
        return value
    value = value.detach().numpy()
    return float(value) if value.ndim == 0 else value


# -- measured quantities ---------------------------------------------------------------


def l1_norm(features):
    """Mean |x| over (F, W): features (..., F, W) -> (...)."""
    x, numpy = _as_tensor(features)
    return _out(x.abs().mean((-2, -1)), numpy)


def l2_norm(features):
    """Mean x^2 over (F, W): features (..., F, W) -> (...)."""
    x, numpy = _as_tensor(features)
    return _out(x.square().mean((-2, -1)), numpy)


def total_variation(features, time: float = 1.0, frequency: float = 1.0, power: float = 1.0):
    """``time * mean |dx/dt|^p + frequency * mean |dx/df|^p``: features (..., F, W) -> (...)."""
    x, numpy = _as_tensor(features)
    dt = (x[..., :, 1:] - x[..., :, :-1]).abs().pow(power).mean((-2, -1))
    df = (x[..., 1:, :] - x[..., :-1, :]).abs().pow(power).mean((-2, -1))
    return _out(time * dt + frequency * df, numpy)


def _radial_frequency(n_rows: int, n_cols: int, device=None) -> torch.Tensor:
    fy = torch.fft.fftfreq(n_rows, device=device)[:, None]
    fx = torch.fft.fftfreq(n_cols, device=device)[None, :]
    return torch.sqrt(fy.square() + fx.square())


def high_frequency_energy(features, cutoff: float = 0.25):
    """Energy above radial spatial frequency ``cutoff`` (cycles per band/frame, Nyquist 0.5).

    ``sum |FFT2(x)|^2 [|f| > cutoff] / (F*W)`` (orthonormal FFT, so the total over
    all frequencies is the mean square): features (..., F, W) -> (...).
    """
    x, numpy = _as_tensor(features)
    n_rows, n_cols = x.shape[-2:]
    spectrum = torch.fft.fft2(x, norm="ortho")
    mask = (_radial_frequency(n_rows, n_cols, x.device) > cutoff).to(x.dtype)
    return _out((spectrum.abs().square() * mask).sum((-2, -1)) / (n_rows * n_cols), numpy)


def _gaussian_kernel(sigma: float, dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(features: torch.Tensor, sigma_time: float = 1.0, sigma_frequency: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur (replicate edges): features (B, F, W) -> (B, F, W)."""
    x = features.unsqueeze(1)  # (B, 1, F, W)
    if sigma_time > 0:
        k = _gaussian_kernel(sigma_time, x.dtype).to(x.device)
        r = len(k) // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    if sigma_frequency > 0:
        k = _gaussian_kernel(sigma_frequency, x.dtype).to(x.device)
        r = len(k) // 2
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x.squeeze(1)


# -- regularizers -----------------------------------------------------------------------


class Regularizer:
    """Base: ``weight``, ``enabled``; override ``penalty``, ``transform`` or ``after_step``."""

    name = "regularizer"

    def __init__(self, weight: float = 1.0, enabled: bool = True) -> None:
        self.weight = float(weight)
        self.enabled = bool(enabled)

    @property
    def active(self) -> bool:
        return self.enabled and self.weight != 0

    def penalty(self, features: torch.Tensor) -> torch.Tensor | None:
        """features (B, F, W) -> scalar (sum over the window, mean over the batch), or None."""
        return None

    def transform(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return features

    def after_step(self, param: Parameterization, step: int) -> None:
        return None

    def settings(self) -> dict[str, Any]:
        out = {"name": self.name, "weight": self.weight}
        for key, value in vars(self).items():
            if key not in ("weight", "enabled", "prior") and isinstance(value, (int, float, bool)):
                out[key] = value
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.settings().items() if k != 'name')})"


def _size(features: torch.Tensor) -> int:
    return int(features.shape[-1] * features.shape[-2])


class L1(Regularizer):
    """``weight * sum |x|``."""

    name = "l1"

    def penalty(self, features):
        return l1_norm(features).mean() * _size(features)


class L2(Regularizer):
    """``weight * sum x^2`` (pulls towards 0, the utterance mean of z-normalized features)."""

    name = "l2"

    def penalty(self, features):
        return l2_norm(features).mean() * _size(features)


class TotalVariation(Regularizer):
    """``weight * (time * sum |dx/dt|^p + frequency * sum |dx/df|^p)`` (sums as F*W * means)."""

    name = "tv"

    def __init__(
        self, weight: float = 1.0, time: float = 1.0, frequency: float = 1.0, power: float = 1.0, enabled: bool = True
    ) -> None:
        super().__init__(weight, enabled)
        self.time, self.frequency, self.power = float(time), float(frequency), float(power)

    def penalty(self, features):
        return total_variation(features, self.time, self.frequency, self.power).mean() * _size(features)


class HighFrequencyPenalty(Regularizer):
    """``weight * F*W * high_frequency_energy(x, cutoff)``: the energy above ``cutoff`` (frequency penalization)."""

    name = "high_frequency"

    def __init__(self, weight: float = 1.0, cutoff: float = 0.25, enabled: bool = True) -> None:
        super().__init__(weight, enabled)
        self.cutoff = float(cutoff)

    def penalty(self, features):
        return high_frequency_energy(features, self.cutoff).mean() * _size(features)


class Blur(Regularizer):
    """Every ``every`` steps: ``x <- (1 - weight) * x + weight * blur(x)`` (weight in [0, 1])."""

    name = "blur"

    def __init__(
        self,
        weight: float = 0.5,
        sigma_time: float = 1.0,
        sigma_frequency: float = 1.0,
        every: int = 1,
        enabled: bool = True,
    ) -> None:
        super().__init__(weight, enabled)
        if not 0 <= self.weight <= 1:
            raise ValueError(f"Blur weight is a blend fraction in [0, 1], got {weight}")
        self.sigma_time, self.sigma_frequency, self.every = float(sigma_time), float(sigma_frequency), int(every)

    @torch.no_grad()
    def after_step(self, param, step):
        if (step + 1) % self.every:
            return
        x = param.features()
        param.set_features(
            (1 - self.weight) * x + self.weight * gaussian_blur(x, self.sigma_time, self.sigma_frequency)
        )


class TransformRobustness(Regularizer):
    """Random transformations of the input before the model, one draw per step (whole batch).

    ``time_shift`` (frames, zero fill), ``frequency_shift`` (bands, edge fill),
    ``stretch`` (time scale factor in ``[1 - stretch, 1 + stretch]``, centred,
    linear interpolation), ``noise`` (std of added Gaussian noise). ``weight``
    scales every magnitude (shifts are rounded).
    """

    name = "robustness"

    def __init__(
        self,
        weight: float = 1.0,
        time_shift: int = 4,
        frequency_shift: int = 1,
        stretch: float = 0.1,
        noise: float = 0.1,
        enabled: bool = True,
    ) -> None:
        super().__init__(weight, enabled)
        self.time_shift, self.frequency_shift = int(time_shift), int(frequency_shift)
        self.stretch, self.noise = float(stretch), float(noise)

    def _randint(self, bound: int, generator) -> int:
        return int(torch.randint(-bound, bound + 1, (1,), generator=generator)) if bound > 0 else 0

    def transform(self, features, generator):
        x = features
        b, f, w = x.shape
        stretch = self.stretch * self.weight
        if stretch > 0:
            factor = 1.0 + stretch * (2 * float(torch.rand((), generator=generator)) - 1)
            new_w = max(2, int(round(w * factor)))
            y = F.interpolate(x, size=new_w, mode="linear", align_corners=False)
            if new_w >= w:
                start = (new_w - w) // 2
                x = y[..., start : start + w]
            else:
                left = (w - new_w) // 2
                x = F.pad(y, (left, w - new_w - left))
        shift = self._randint(int(round(self.frequency_shift * self.weight)), generator)
        if shift:
            k = abs(shift)
            padded = F.pad(x.unsqueeze(1), (0, 0, k, k), mode="replicate").squeeze(1)
            x = padded[:, k - shift : k - shift + f, :]
        shift = self._randint(int(round(self.time_shift * self.weight)), generator)
        if shift:
            k = abs(shift)
            padded = F.pad(x, (k, k))
            x = padded[..., k - shift : k - shift + w]
        noise = self.noise * self.weight
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return x


class PriorPenalty(Regularizer):
    """``weight * d^2(x) / 2``: the negative log-density (up to a constant) of a learned
    :class:`GaussianPrior` (``d^2`` is about ``F*W`` for real windows)."""

    name = "prior"

    def __init__(self, prior: GaussianPrior, weight: float = 1.0, enabled: bool = True) -> None:
        super().__init__(weight, enabled)
        self.prior = prior

    @property
    def width(self) -> int:
        return self.prior.shape[1]

    def penalty(self, features):
        return 0.5 * self.prior.squared_mahalanobis(features).mean()

    def settings(self):
        return {**super().settings(), "n_components": self.prior.n_components}


# -- named sets -------------------------------------------------------------------------

#: name -> description (weights relative to the objective's initial gradient, see ``render``).
REGULARIZATION_SETS = {
    "none": "no regularization",
    "l2": "L2 (weight 0.2)",
    "tv": "total variation along time and frequency (weight 0.5)",
    "frequency": "high spatial-frequency penalty (weight 1, cutoff 0.25) + Gaussian blur (sigma 1, blend 0.1)",
    "robustness": "random time shift +-4 frames, frequency shift +-2 bands, stretch +-10%, noise 0.2",
    "prior": "learned Gaussian prior: Mahalanobis penalty (weight 1)",
    "weak": "L2 0.05 + TV 0.1 + time shift +-2 frames",
    "strong": "L2 0.2 + TV 0.5 + high-frequency 1 + blur 0.1 + robustness (shift 4, 2 bands, 10%, noise 0.2) "
    "+ prior 1 (when a prior is given)",
}

_NEEDS_PRIOR = ("prior",)


def regularizer_set(name: str, prior: GaussianPrior | None = None) -> list[Regularizer]:
    """The regularizers of a named set (:data:`REGULARIZATION_SETS`).

    "prior" needs ``prior``; "strong" includes the prior penalty only when one is given.
    """
    if name not in REGULARIZATION_SETS:
        raise InputError(f"unknown regularization {name!r}; choose one of {', '.join(REGULARIZATION_SETS)}")
    if name in _NEEDS_PRIOR and prior is None:
        raise InputError(
            f"regularization {name!r} needs a GaussianPrior fitted on real feature windows "
            f"(featvis.fit_prior; on the command line pass --data DIR)"
        )
    # time shifts stay below a CTC letter spike's width (+-4 input frames = 2 output frames)
    strong_robust = TransformRobustness(time_shift=4, frequency_shift=2, stretch=0.1, noise=0.2)
    sets: dict[str, list[Regularizer]] = {
        "none": [],
        "l2": [L2(0.2)],
        "tv": [TotalVariation(0.5)],
        "frequency": [HighFrequencyPenalty(1.0), Blur(0.1)],
        "robustness": [strong_robust],
        "weak": [
            L2(0.05),
            TotalVariation(0.1),
            TransformRobustness(time_shift=2, frequency_shift=0, stretch=0.0, noise=0.0),
        ],
        "strong": [L2(0.2), TotalVariation(0.5), HighFrequencyPenalty(1.0), Blur(0.1), strong_robust],
    }
    if name == "prior":
        return [PriorPenalty(prior, 1.0)]
    regs = sets[name]
    if name == "strong" and prior is not None:
        regs.append(PriorPenalty(prior, 1.0))
    return regs
