"""Wavelet attribution (WAM): relevance of the wavelet coefficients of the waveform for an output frame.

WAM (Kasmi et al., ICML 2025) takes the gradient family into the wavelet domain
of the input. With ``z = W(x)`` the discrete wavelet transform of the waveform
``x`` and ``y = logit_k(t)`` the target logit of output frame ``t``, the path is

    z  --IDWT-->  x  --front end-->  features  --model-->  y

and the three methods explain ``y`` coefficient by coefficient:

- ``wam-grad``: ``dy/dz``;
- ``wam-smoothgrad``: ``E_eps dy/dz (z + eps)``, ``eps ~ N(0, s^2 I)`` with
  ``s = noise_level * (max x - min x)``, averaged over ``n_samples`` draws;
- ``wam-ig``: ``(z - z0) * mean_k dy/dz (z0 + a_k (z - z0))``, midpoint rule
  ``a_k = (k + 0.5) / steps``, baseline ``z0 = 0`` (silence).

The coefficients are grouped in *bands*, PyWavelets' order ``[a_J, d_J, ...,
d_1]``: level ``j`` holds one coefficient per ``2**j`` samples and covers
``fs / 2**(j+1) .. fs / 2**j`` (details) or ``0 .. fs / 2**(J+1)``
(approximation). So a map says *what* the evidence is made of (transients in
the fine details, voicing and formants in the coarse bands) as well as *where*.

**The transform.** Orthogonal wavelets of PyWavelets (``haar``, ``db*``,
``sym*``, ``coif*``, ``dmey``), periodized: the waveform is zero-padded to a
multiple of ``2**J`` samples, then each level filters circularly and keeps every
other sample; the coefficients equal ``pywt.wavedec(padded, w, "periodization",
level=J)``. The transform is orthonormal, so the inverse (:func:`waverec`) is
its transpose and the round trip is exact for any length.

**All frames at once** (:func:`wavelet_attribution`, :func:`iter_wavelet_crops`).
The toolkit's log-mel front end is local (an STFT frame sees ``n_fft`` samples)
except for three utterance statistics: the dB mean and standard deviation of
the z-normalization and the peak that sets the ``top_db`` floor. So

    dy/dx = (dy/dx with the statistics held) + sum_s (dy/ds) ds/dx,

where the first term lives on the frame's receptive field in samples and the
``ds/dx`` are three waveforms computed once per utterance. The ``"fast"``
engine computes ``dy/dfeatures`` for every frame with the receptive-field crop
engine of :mod:`.crops` (one forward pass), the first term on waveform crops
(batched), and both terms' wavelet coefficients on band crops; it is exact
(checked against autograd in the tests). The ``"autograd"`` engine runs batched
vector-Jacobian products through ``IDWT -> front end -> model.logits`` and
serves any model with a differentiable front end (transformers, waveform input);
``"auto"`` takes the fast one where it applies.

**Crops.** Each frame's relevance is kept on its *band crops*: per band, the
coefficients whose synthesis functions meet the frame's receptive field in
samples (:class:`BandGeometry`); crop columns outside a band (before its first or
after its last coefficient) hold 0. The crops leave out two small parts of the full
gradient: what the three statistics spread over the coefficients outside the crops
(2-5 % of a frame's |relevance| on 10 s of speech), and what the periodic wrap-around
carries onto the last coefficients of a band for frames at the start; the dense map
of one target (:func:`explain_targets`) has both.

**Targets.** One output frame (``target`` as in :func:`~.frames.select_targets`),
or the sum of several frames' target logits: a letter (its CTC spike frames) or
a word span (:func:`letter_spans`, :func:`word_spans`, :func:`explain_targets`).

**Listening** (:func:`split_by_relevance`, :func:`listen`): resynthesize the
waveform from the top ``q`` % of coefficients by relevance and from the rest.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pywt
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from asr_introspect.alignment import forced_align, token_spans
from asr_introspect.attribution.crops import check_chunk_size
from asr_introspect.attribution.frames import iter_crops, select_frames, select_targets
from asr_introspect.attribution.stack import conv_stack
from asr_introspect.decoding import greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.features import AMIN, FeatureConfig, _mel_basis, _window, compute_features

__all__ = [
    "WAVELET_METHODS",
    "DEFAULT_WAVELET",
    "DEFAULT_LEVELS",
    "SMOOTH_WAVELET",
    "ENGINES",
    "check_wavelet",
    "check_levels",
    "max_levels",
    "filter_length",
    "padded_length",
    "GRADIENT_LIKE",
    "band_names",
    "band_levels",
    "band_frequencies",
    "wavedec",
    "waverec",
    "BandGeometry",
    "band_geometry",
    "WaveletAttribution",
    "WaveletMap",
    "wavelet_attribution",
    "iter_wavelet_crops",
    "explain_targets",
    "letter_spans",
    "word_spans",
    "relevance_scores",
    "split_by_relevance",
    "listen",
    "model_features",
]

#: the wavelet attribution methods (``attribute --method``)
WAVELET_METHODS = ("wam-grad", "wam-smoothgrad", "wam-ig")
#: the WAM paper's choice: Haar with three levels
DEFAULT_WAVELET = "haar"
DEFAULT_LEVELS = 3
#: a smoother orthogonal wavelet (8 taps, nearly symmetric: features stay in place)
SMOOTH_WAVELET = "sym4"
#: how every frame is computed (see the module docstring)
ENGINES = ("auto", "fast", "autograd")
#: methods whose maps are gradients (ranked by magnitude) rather than contributions (ranked signed)
GRADIENT_LIKE = ("wam-grad", "wam-smoothgrad", "sensitivity", "smoothgrad")

_METHOD_OPTIONS = {"wam-grad": set(), "wam-smoothgrad": {"n_samples", "noise_level", "seed"}, "wam-ig": {"steps"}}


# ---------------------------------------------------------------------------
# the transform


def check_wavelet(name: str) -> str:
    """``name`` if it is an orthogonal discrete wavelet of PyWavelets, else InputError naming ``--wavelet``."""
    try:
        wavelet = pywt.Wavelet(str(name))
    except ValueError:
        raise InputError(
            f"--wavelet {name!r}: not a PyWavelets discrete wavelet; use an orthogonal one: haar, db1..db38, "
            "sym2..sym20, coif1..coif17, dmey"
        ) from None
    if not wavelet.orthogonal or wavelet.dec_len % 2:
        raise InputError(
            f"--wavelet {name!r}: WAM needs an orthogonal wavelet (haar, db*, sym*, coif*, dmey), not "
            f"{wavelet.family_name}"
        )
    return wavelet.name


@functools.lru_cache(maxsize=32)
def _bank64(name: str) -> torch.Tensor:
    """Analysis filters ``(2, L)`` float64: PyWavelets' ``dec_lo`` and ``dec_hi``."""
    wavelet = pywt.Wavelet(check_wavelet(name))
    return torch.tensor([wavelet.dec_lo, wavelet.dec_hi], dtype=torch.float64)


def _bank(name: str, like: torch.Tensor) -> torch.Tensor:
    return _bank64(name).to(device=like.device, dtype=like.dtype)


def filter_length(wavelet: str) -> int:
    return int(_bank64(wavelet).shape[1])


def max_levels(n_samples: int, wavelet: str = DEFAULT_WAVELET) -> int:
    """Most levels with a useful deepest band for ``n_samples`` (PyWavelets' ``dwt_max_level``)."""
    return int(pywt.dwt_max_level(int(n_samples), filter_length(wavelet)))


def check_levels(levels: int, n_samples: int | None = None, wavelet: str = DEFAULT_WAVELET) -> int:
    """``levels`` if an integer >= 1 (and at most :func:`max_levels` for ``n_samples``); InputError otherwise."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise InputError(f"--levels {levels!r}: must be an integer >= 1 (the paper uses 3)")
    if n_samples is not None:
        most = max_levels(n_samples, wavelet)
        if levels > most:
            raise InputError(
                f"--levels {levels}: {n_samples} samples allow at most {most} levels of {wavelet!r} "
                f"(use fewer levels or longer audio)"
            )
    return int(levels)


def band_levels(levels: int) -> list[int]:
    """The level of each band, in PyWavelets' order: ``[J, J, J-1, ..., 1]``."""
    return [levels] + list(range(levels, 0, -1))


def band_names(levels: int) -> list[str]:
    """``["a3", "d3", "d2", "d1"]`` for three levels (approximation, then details from coarse to fine)."""
    return [f"a{levels}"] + [f"d{j}" for j in range(levels, 0, -1)]


def band_frequencies(levels: int, sample_rate: int) -> list[tuple[float, float]]:
    """The nominal frequency range (Hz) of each band: ``(0, fs/2**(J+1))``, then ``(fs/2**(j+1), fs/2**j)``."""
    out = [(0.0, sample_rate / 2 ** (levels + 1))]
    out += [(sample_rate / 2 ** (j + 1), sample_rate / 2**j) for j in range(levels, 0, -1)]
    return out


def padded_length(n_samples: int, levels: int) -> int:
    """Samples after zero-padding to a multiple of ``2**levels``."""
    step = 1 << levels
    return -(-int(n_samples) // step) * step


def _analysis_valid(x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """One analysis step without boundary handling: x (B, m) -> (B, 2, (m - L) // 2 + 1).

    Output ``i`` is ``sum_k h[k] x[2i + L - 1 - k]`` for the low-pass (row 0) and high-pass (row 1)
    filters (a strided window times the filters: for short filters much faster than ``conv1d``).
    """
    return torch.matmul(x.unfold(-1, bank.shape[1], 2), bank.flip(-1).T).transpose(1, 2)


def _periodic_index(m: int, length: int, device) -> torch.Tensor:
    """Indices ``(i - (L/2 - 1)) mod m`` for ``i < m + L - 2``: the circular extension of a level of length m."""
    return (torch.arange(m + length - 2, device=device) - (length // 2 - 1)) % m


def _analysis(x: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Periodized analysis of x (B, m), m even: (approximation (B, m/2), detail (B, m/2))."""
    index = _periodic_index(x.shape[-1], bank.shape[1], x.device)
    out = _analysis_valid(x[:, index], bank)
    return out[:, 0], out[:, 1]


def _synthesis_valid(coefficients: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`_analysis_valid`: (B, 2, h) -> (B, 2 h + L - 2)."""
    length = bank.shape[1]
    taps = torch.matmul(coefficients.transpose(1, 2), bank.flip(-1))  # (B, h, L): tap k lands on 2i + k
    batch, h = taps.shape[:2]
    pairs = taps.new_zeros(batch, h + length // 2 - 1, 2)
    for q in range(length // 2):  # taps 2q, 2q + 1 land on the pair i + q
        pairs[:, q : q + h] += taps[:, :, 2 * q : 2 * q + 2]
    return pairs.reshape(batch, -1)


def _synthesis(approx: torch.Tensor, detail: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """The transpose (= inverse) of :func:`_analysis`: (B, m/2) twice -> (B, m)."""
    m = 2 * approx.shape[-1]
    index = _periodic_index(m, bank.shape[1], approx.device)
    extended = _synthesis_valid(torch.stack([approx, detail], 1), bank)
    return extended.new_zeros(approx.shape[0], m).index_add(1, index, extended)


def wavedec(x, wavelet: str = DEFAULT_WAVELET, levels: int = DEFAULT_LEVELS) -> list[torch.Tensor]:
    """Orthonormal periodized DWT of x (..., n): bands ``[a_J, d_J, ..., d_1]``, band of level j (..., n_pad / 2**j).

    x is zero-padded to ``n_pad``, a multiple of ``2**levels`` (:func:`padded_length`). Differentiable.
    """
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not x.is_floating_point():
        x = x.to(torch.float32)
    levels = check_levels(levels)
    lead, n = x.shape[:-1], x.shape[-1]
    if n < 1:
        raise ValueError("wavedec needs at least one sample")
    bank = _bank(wavelet, x)
    approx = F.pad(x.reshape(-1, n), (0, padded_length(n, levels) - n))
    details = []
    for _ in range(levels):
        approx, detail = _analysis(approx, bank)
        details.append(detail)
    bands = [approx] + details[::-1]
    return [b.reshape(*lead, b.shape[-1]) for b in bands]


def waverec(
    bands: Sequence[torch.Tensor], wavelet: str = DEFAULT_WAVELET, n_samples: int | None = None
) -> torch.Tensor:
    """Inverse of :func:`wavedec`: bands ``[a_J, d_J, ..., d_1]`` (..., n_j) -> x (..., n_samples). Differentiable."""
    levels = len(bands) - 1
    if levels < 1:
        raise ValueError("waverec needs an approximation and at least one detail band")
    lead = bands[0].shape[:-1]
    flat = [b.reshape(-1, b.shape[-1]) for b in bands]
    bank = _bank(wavelet, flat[0])
    approx = flat[0]
    for detail in flat[1:]:
        if detail.shape[-1] != approx.shape[-1]:
            raise ValueError(f"band lengths do not nest: {[b.shape[-1] for b in bands]}")
        approx = _synthesis(approx, detail, bank)
    n = approx.shape[-1] if n_samples is None else int(n_samples)
    return approx[:, :n].reshape(*lead, n)


# ---------------------------------------------------------------------------
# band crops


@dataclass(frozen=True)
class BandGeometry:
    """Where each output frame's band crops lie.

    Output frame ``t`` depends on samples ``[first + t*step, first + t*step + width)`` (its receptive
    field in samples; ``step = 0`` for a model that sees the whole utterance). Band ``b`` of frame
    ``t`` is the coefficients ``[offsets[t, b], offsets[t, b] + widths[b])`` of that band; indices
    outside ``[0, band_lengths[b])`` hold 0. The crops nest: each level's crop holds what the next
    coarser level's crop needs, so band crops are computed by filtering a window of samples
    (``window`` samples from :meth:`sample_offsets`) without boundary handling.
    """

    wavelet: str
    levels: int
    n_samples: int
    first: int
    step: int
    width: int
    whole: bool = False

    @property
    def filter_length(self) -> int:
        return filter_length(self.wavelet)

    @property
    def n_padded(self) -> int:
        return padded_length(self.n_samples, self.levels)

    @property
    def band_lengths(self) -> list[int]:
        return [self.n_padded >> j for j in band_levels(self.levels)]

    @functools.cached_property
    def level_widths(self) -> list[int]:
        """Crop width per level 0..J (level 0: the sample window)."""
        if self.whole:
            return [self.n_padded >> j for j in range(self.levels + 1)]
        J, L = self.levels, self.filter_length
        c_lo, c_hi = (1 - L // 2) * ((1 << J) - 1), (L // 2) * ((1 << J) - 1)
        widths = [0] * (J + 1)
        widths[J] = (self.width + c_hi - c_lo) // (1 << J) + 4
        for j in range(J, 0, -1):
            widths[j - 1] = 2 * widths[j] + L - 2
        return widths

    @property
    def widths(self) -> list[int]:
        """Crop width of each band ``[a_J, d_J, ..., d_1]``."""
        return [self.level_widths[j] for j in band_levels(self.levels)]

    @property
    def n_columns(self) -> int:
        """Columns of one frame's concatenated band crops."""
        return int(sum(self.widths))

    @property
    def window(self) -> int:
        """Samples of the window the band crops are filtered from."""
        return self.level_widths[0]

    def level_offsets(self, frames) -> np.ndarray:
        """(N, J + 1) first index of each level's crop (level 0: samples)."""
        frames = np.asarray(frames, dtype=np.int64)
        J, L = self.levels, self.filter_length
        out = np.zeros((len(frames), J + 1), dtype=np.int64)
        if self.whole:
            return out
        c_hi = (L // 2) * ((1 << J) - 1)
        start = self.first + frames * self.step
        out[:, J] = -((c_hi - start) // (1 << J)) - 1  # ceil((start - c_hi) / 2**J) - 1
        for j in range(J, 0, -1):
            out[:, j - 1] = 2 * out[:, j] - L // 2 + 1
        return out

    def offsets(self, frames) -> np.ndarray:
        """(N, n_bands) first coefficient index of each band crop."""
        return self.level_offsets(frames)[:, band_levels(self.levels)]

    def sample_offsets(self, frames) -> np.ndarray:
        """(N,) first sample of each frame's window."""
        return self.level_offsets(frames)[:, 0]

    def crop(self, bands: Sequence[torch.Tensor], frames) -> torch.Tensor:
        """Gather band crops of full bands (..., n_b) -> (N, ..., n_columns); out-of-range columns are 0."""
        offsets = torch.as_tensor(self.offsets(frames), device=bands[0].device)
        pieces = []
        for b, (band, width) in enumerate(zip(bands, self.widths)):
            index = offsets[:, b, None] + torch.arange(width, device=band.device)  # (N, W)
            inside = (index >= 0) & (index < band.shape[-1])
            values = band[..., index.clamp(0, band.shape[-1] - 1)]  # (..., N, W)
            values = values * inside.to(values.dtype)
            pieces.append(values.movedim(-2, 0))
        return torch.cat(pieces, dim=-1)

    def inside(self, frames) -> np.ndarray:
        """(N, n_columns) True where a crop column is a coefficient of the utterance."""
        offsets = self.offsets(frames)
        masks = []
        for b, (width, length) in enumerate(zip(self.widths, self.band_lengths)):
            index = offsets[:, b, None] + np.arange(width)
            masks.append((index >= 0) & (index < length))
        return np.concatenate(masks, axis=1)

    def split(self, rows: np.ndarray) -> list[np.ndarray]:
        """(..., n_columns) -> per band (..., width_b)."""
        cuts = np.cumsum(self.widths)[:-1]
        return np.split(rows, cuts, axis=-1)

    def dense(self, row: np.ndarray, frame: int) -> list[np.ndarray]:
        """One frame's crops (n_columns,) embedded in full bands (zeros elsewhere)."""
        offsets = self.offsets([frame])[0]
        out = []
        for piece, offset, length in zip(self.split(row), offsets, self.band_lengths):
            band = np.zeros(length, dtype=row.dtype)
            index = offset + np.arange(len(piece))
            keep = (index >= 0) & (index < length)
            band[index[keep]] = piece[keep]
            out.append(band)
        return out


def _front_end_geometry(model) -> tuple[int, int]:
    """(samples per input frame, analysis window in samples) of the model's front end."""
    config = model.feature_config
    hop = getattr(config, "hop_length", None)
    if hop is None:
        hop = int(round(config.frame_seconds * config.sample_rate))
    return int(hop), int(getattr(config, "n_fft", 1))


def band_geometry(model, n_samples: int, wavelet: str = DEFAULT_WAVELET, levels: int = DEFAULT_LEVELS) -> BandGeometry:
    """The :class:`BandGeometry` of ``model``'s output frames for a waveform of ``n_samples``."""
    geometry = model.frame_map.layer(model.output_layer)
    is_global = getattr(model.frame_map, "is_global", None)
    hop, n_fft = _front_end_geometry(model)
    if is_global is not None and is_global(model.output_layer):
        return BandGeometry(wavelet, levels, n_samples, 0, 0, n_samples, whole=True)
    first = geometry.offset * hop - n_fft // 2
    width = (geometry.receptive_field - 1) * hop + n_fft
    return BandGeometry(wavelet, levels, int(n_samples), int(first), int(geometry.stride * hop), int(width))


# ---------------------------------------------------------------------------
# the model's input


def model_features(model, audio: torch.Tensor) -> torch.Tensor:
    """audio (B, n) -> model input (B, F, T) in the model's dtype, through its front end (differentiable)."""
    config = model.feature_config
    compute = getattr(config, "compute", None)
    features = compute(audio)[0] if compute is not None else compute_features(audio, config)
    dtype = next(iter(model.module.parameters()), torch.empty(0)).dtype
    return features.to(dtype)


def _wave_tensor(model, audio) -> torch.Tensor:
    """One utterance's waveform (n,) float32, checked (1-D, finite, long enough for the model)."""
    x = audio.detach() if isinstance(audio, torch.Tensor) else torch.as_tensor(np.asarray(audio))
    if x.dim() != 1:
        raise InputError(f"audio must be one waveform (n_samples,), got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    if not torch.isfinite(x).all():
        raise InputError("audio contains NaN or inf samples")
    config = model.feature_config
    frames = config.frames(len(x))
    if frames < model.min_input_frames:
        raise InputError(
            f"audio of {len(x)} samples gives {frames} input frames; the model needs at least {model.min_input_frames}"
        )
    return x


def _check_options(method: str, options: dict) -> None:
    if method not in WAVELET_METHODS:
        raise InputError(f"unknown wavelet attribution method {method!r}; choose one of {', '.join(WAVELET_METHODS)}")
    unknown = sorted(set(options) - _METHOD_OPTIONS[method])
    if unknown:
        raise TypeError(f"method {method!r} takes no option(s) {unknown}; allowed: {sorted(_METHOD_OPTIONS[method])}")


def _points(
    method: str, bands: list[torch.Tensor], wave: torch.Tensor, options: dict
) -> tuple[list[Callable[[], list[torch.Tensor]]], list[torch.Tensor] | None]:
    """The coefficient points whose gradients are averaged, as thunks, and the IG factor ``z - z0`` (or None).

    SmoothGrad draws the noise of sample ``s`` from a generator seeded ``seed + s``, so every block of
    frames sees the same noisy utterances.
    """
    if method == "wam-grad":
        return [lambda: bands], None
    if method == "wam-smoothgrad":
        n_samples, noise_level = int(options.get("n_samples", 16)), float(options.get("noise_level", 0.1))
        seed = int(options.get("seed", 0))
        if n_samples < 1:
            raise InputError(f"n_samples must be >= 1, got {n_samples}")
        if not noise_level >= 0:
            raise InputError(f"noise_level must be >= 0, got {noise_level}")
        sigma = noise_level * float(wave.max() - wave.min())

        def noisy(s: int) -> list[torch.Tensor]:
            gen = torch.Generator().manual_seed(seed + s)
            return [b + sigma * torch.randn(b.shape, generator=gen, dtype=torch.float64).to(b) for b in bands]

        return [functools.partial(noisy, s) for s in range(n_samples)], None
    steps = int(options.get("steps", 32))
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    scaled = [lambda a=(k + 0.5) / steps: [a * b for b in bands] for k in range(steps)]
    return scaled, bands


# ---------------------------------------------------------------------------
# the fast engine: frame-local front end + three utterance statistics


class _NotDecomposable(RuntimeError):
    """The fast engine does not apply to this model or front end."""


def _windowed_frames(audio: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Every full STFT window of ``audio`` (B, n), multiplied by the analysis window: (B, T, n_fft)."""
    n_fft, win = config.n_fft, config.win_length
    left = (n_fft - win) // 2
    window = F.pad(_window(config).to(audio), (left, n_fft - win - left))
    return audio.unfold(-1, n_fft, config.hop_length) * window


def _local_db(audio: torch.Tensor, config: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dB (B, F, T), mel power (B, T, F), spectrum (B, T, n_fft // 2 + 1)) of every full STFT window
    of ``audio`` (B, n), ``T = (n - n_fft) // hop + 1``: steps 1-3 of
    :func:`~asr_introspect.features.compute_features` without its padding and clamp
    (:class:`_LogMelPoint` checks that they reproduce the front end)."""
    spectrum = torch.fft.rfft(_windowed_frames(audio, config), dim=-1)
    power = torch.view_as_real(spectrum).square().sum(-1)
    mel = torch.matmul(power, _mel_basis(config).to(audio).T)
    return 10.0 * torch.log10(torch.clamp(mel, min=AMIN)).transpose(1, 2), mel, spectrum


class _LogMelPoint:
    """One waveform through the log-mel front end, decomposed as ``z = (max(db, peak - top_db) - mean) / std``.

    ``db`` depends on the samples of its STFT window only; ``stats`` (S,) are the utterance statistics
    that apply (mean and std with ``normalization="utterance"``, the floor ``peak - top_db`` with
    ``top_db``), ``stat_bands`` their gradients with respect to the waveform as wavelet bands
    (S, n_b). Raises :class:`_NotDecomposable` unless the decomposition reproduces the front end.
    """

    def __init__(self, model, wave: torch.Tensor, geometry: BandGeometry, dtype: torch.dtype) -> None:
        config: FeatureConfig = model.feature_config
        self.config, self.wave = config, wave
        self.normalize = config.normalization == "utterance"
        self.clamp = config.top_db is not None
        leaf = wave.detach().clone().requires_grad_(True)
        features, stats = compute_features(leaf, config, return_stats=True)
        # the peak as the front end takes it (the same bin wins), and the local dB as the crops compute it
        raw = compute_features(leaf, dataclasses.replace(config, top_db=None, normalization="none"))
        outputs = [stats.db_mean, stats.db_std] if self.normalize else []
        if self.clamp:
            outputs.append(raw.amax() - config.top_db)
        self.stats = torch.stack([o.detach() for o in outputs]) if outputs else wave.new_zeros(0)
        half = config.n_fft // 2
        with torch.no_grad():
            db = _local_db(F.pad(wave, (half, half))[None], config)[0][0]
        rebuilt = self.apply(db)
        if rebuilt.shape != features.shape or not bool(
            (rebuilt - features.detach()).abs().max() <= 1e-4 * (1.0 + features.detach().abs().max())
        ):
            raise _NotDecomposable("the log-mel front end does not match its local decomposition")
        gradients = [torch.autograd.grad(o, leaf, retain_graph=True)[0] for o in outputs]
        stacked = torch.stack(gradients) if gradients else wave.new_zeros(0, len(wave))
        self.stat_bands = wavedec(stacked, geometry.wavelet, geometry.levels)
        self.features = features.detach().to(dtype)

    def apply(self, db: torch.Tensor) -> torch.Tensor:
        """Features from local dB values (..., F, T) with the statistics held."""
        if self.clamp:
            db = torch.maximum(db, self.stats[-1])
        return (db - self.stats[0]) / self.stats[1] if self.normalize else db

    def local_gradients(
        self, input_offsets: np.ndarray, receptive_field: int, cotangent: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Gradients for feature cotangents (N, F, RF) on input frames ``[o, o + RF)`` (o: ``input_offsets``).

        Returns the waveform gradient on each frame's samples with the statistics held (N, n_crop),
        the gradient with respect to each statistic (N, S) and the first sample of each crop (N,).
        The backward pass is written out (two to three times faster than autograd here):
        ``dz/ddb = 1/std`` where not clamped, ``ddb/dmel = 10 / (ln 10 mel)`` where ``mel > AMIN``,
        ``dmel/dpower = M``, ``dpower/dx = 2 Re(conj(S) dS/dx)``, then overlap-add.
        """
        config = self.config
        hop, n_fft = config.hop_length, config.n_fft
        n_crop = (receptive_field - 1) * hop + n_fft
        starts = input_offsets * hop - n_fft // 2
        margin = max(0, -int(starts.min()))
        padded = F.pad(self.wave, (margin, max(0, int(starts.max()) + n_crop - len(self.wave))))
        crops = torch.stack([padded[s : s + n_crop] for s in (starts + margin).tolist()])
        db, mel, spectrum = _local_db(crops, config)  # (N, F, RF), (N, RF, F), (N, RF, bins)
        g_db = cotangent.to(db.dtype)
        stat_grads = []
        if self.normalize:
            mean, std = self.stats[0], self.stats[1]
            g_db = g_db / std
            clamped = torch.maximum(db, self.stats[-1]) if self.clamp else db
            stat_grads += [-g_db.sum((1, 2)), -(g_db * (clamped - mean) / std).sum((1, 2))]
        if self.clamp:  # max(db, floor): the gradient goes to the larger one, half to each on a tie (as torch)
            kept = torch.where(db > self.stats[-1], 1.0, torch.where(db == self.stats[-1], 0.5, 0.0))
            stat_grads.append((g_db * (1.0 - kept)).sum((1, 2)))
            g_db = g_db * kept
        g_mel = g_db.transpose(1, 2) * torch.where(mel >= AMIN, (10.0 / math.log(10.0)) / mel, 0.0)
        g_power = torch.matmul(g_mel, self._power_to_spectrum(mel))  # (N, RF, bins), times 2 n_fft / Hermitian
        g_spectrum = torch.view_as_complex(torch.view_as_real(spectrum) * g_power[..., None])
        g_frames = torch.fft.irfft(g_spectrum, n=n_fft, dim=-1) * self._window_like(g_power)  # (N, RF, n_fft)
        overlap = (torch.arange(receptive_field)[:, None] * hop + torch.arange(n_fft)[None, :]).reshape(-1)
        g_crop = g_frames.new_zeros(len(crops), n_crop).index_add_(1, overlap, g_frames.reshape(len(crops), -1))
        stats = torch.stack(stat_grads, 1) if stat_grads else g_crop.new_zeros(len(crops), 0)
        return g_crop, stats, starts

    def _window_like(self, like: torch.Tensor) -> torch.Tensor:
        """(n_fft,) the analysis window (zero-padded to n_fft)."""
        return _windowed_frames(like.new_ones(1, self.config.n_fft), self.config)[0, 0]

    def _power_to_spectrum(self, like: torch.Tensor) -> torch.Tensor:
        """(F, bins) the mel matrix times ``2 n_fft`` and the Hermitian weights of ``irfft``: maps d/dmel to
        the spectrum factor whose ``irfft`` is d/dframe."""
        return _mel_basis(self.config).to(like) * (2.0 * self.config.n_fft * self._hermitian_weights(like))

    def _hermitian_weights(self, like: torch.Tensor) -> torch.Tensor:
        """(bins,) 1 for DC and Nyquist, 1/2 elsewhere: irfft counts the other bins twice."""
        weights = like.new_full((self.config.n_fft // 2 + 1,), 0.5)
        weights[0] = 1.0
        if self.config.n_fft % 2 == 0:
            weights[-1] = 1.0
        return weights


def _fast_block(
    model,
    stack,
    point: _LogMelPoint,
    geometry: BandGeometry,
    frames: np.ndarray,
    targets: np.ndarray,
    chunk_size: int | None,
) -> np.ndarray:
    """Band-crop gradients (N, n_columns) of the target logits of ``frames`` at one point.

    ``chunk_size``: targets per backward batch of the model (None: sized by :mod:`.crops`) and frames
    per batch of waveform crops (None: 32).
    """
    layer = model.frame_map.layer(model.output_layer)
    input_offsets = layer.offset + frames * layer.stride
    bank = _bank(geometry.wavelet, point.wave)
    n, n_pad = len(point.wave), geometry.n_padded
    out = np.empty((len(frames), geometry.n_columns), dtype=np.float32)
    level_offsets = geometry.level_offsets(frames)
    band_offsets = torch.as_tensor(geometry.offsets(frames))
    # the statistics' bands, zero-extended by two crop widths on both sides
    stat_bands = [F.pad(b, (2 * w, 2 * w)) for b, w in zip(point.stat_bands, geometry.widths)]  # (S, n_b + 4 W)
    band_offsets_np = geometry.offsets(frames) + 2 * np.asarray(geometry.widths)[None, :]
    lengths = geometry.band_lengths
    local_chunk = chunk_size or 32
    for i0, i1, cotangents in iter_crops(stack, point.features, frames, targets, "sensitivity", chunk_size=chunk_size):
        for c0 in range(i0, i1, local_chunk):
            c1 = min(c0 + local_chunk, i1)
            g_crop, g_stats, starts = point.local_gradients(
                input_offsets[c0:c1], layer.receptive_field, torch.as_tensor(cotangents[c0 - i0 : c1 - i0])
            )
            # the samples the band crops are filtered from: the frame's local gradient where it covers
            # a real sample, else 0, at the (periodic) positions of the padded waveform
            first = level_offsets[c0:c1, 0]
            if first.min() >= 0 and first.max() + geometry.window <= n:
                column = torch.as_tensor((first - starts)[:, None] + np.arange(geometry.window)[None, :])
            else:
                position = torch.as_tensor(first[:, None] + np.arange(geometry.window)[None, :]) % n_pad
                column = torch.where(position < n, position - torch.as_tensor(starts[:, None]), -1)
            column = torch.where((column >= 0) & (column < g_crop.shape[1]), column + 1, 0)
            approx = torch.gather(F.pad(g_crop, (1, 0)), 1, column)
            details = []
            for _ in range(geometry.levels):
                both = _analysis_valid(approx, bank)
                approx = both[:, 0]
                details.append(both[:, 1])
            pieces = []
            for b, local in enumerate([approx] + details[::-1]):
                offsets = band_offsets[c0:c1, b]
                if g_stats.shape[1]:  # + sum over statistics of dy/ds * (their band crop)
                    width = geometry.widths[b]
                    windows = torch.stack([stat_bands[b][:, o : o + width] for o in band_offsets_np[c0:c1, b].tolist()])
                    local = local + torch.einsum("ns,nsw->nw", g_stats, windows)
                if bool((offsets < 0).any() or (offsets + geometry.widths[b] > lengths[b]).any()):
                    index = offsets[:, None] + torch.arange(geometry.widths[b])
                    local = local * ((index >= 0) & (index < lengths[b])).to(local.dtype)
                pieces.append(local)
            out[c0:c1] = torch.cat(pieces, dim=1).detach().cpu().numpy()
    return out


# ---------------------------------------------------------------------------
# the autograd engine: any model with a differentiable front end


def _target_logits(model, bands: list[torch.Tensor], geometry: BandGeometry) -> torch.Tensor:
    """(C, T_out) logits of the waveform synthesized from ``bands``."""
    wave = waverec(bands, geometry.wavelet, geometry.n_samples)
    logits, _ = model.logits(model_features(model, wave[None]))
    return logits[0]


def _autograd_gradients(
    model, bands: list[torch.Tensor], geometry: BandGeometry, frames: np.ndarray, targets: np.ndarray, chunk_size: int
) -> list[torch.Tensor]:
    """Full-band gradients of each (frame, target) logit: per band (N, n_b), by batched vector-Jacobian products."""
    leaves = [b.detach().clone().requires_grad_(True) for b in bands]
    logits = _target_logits(model, leaves, geometry)
    selected = logits[torch.as_tensor(targets), torch.as_tensor(frames)]  # (N,)
    pieces: list[list[torch.Tensor]] = [[] for _ in leaves]
    for c0 in range(0, len(frames), chunk_size):
        c1 = min(c0 + chunk_size, len(frames))
        one_hot = torch.zeros(c1 - c0, len(frames), dtype=selected.dtype)
        one_hot[torch.arange(c1 - c0), torch.arange(c0, c1)] = 1.0
        grads = torch.autograd.grad(selected, leaves, one_hot, retain_graph=c1 < len(frames), is_grads_batched=True)
        for b, g in enumerate(grads):
            pieces[b].append(g.detach())
    return [torch.cat(p) for p in pieces]


def _autograd_block(model, bands, geometry: BandGeometry, frames, targets, chunk_size: int) -> np.ndarray:
    out = np.empty((len(frames), geometry.n_columns), dtype=np.float32)
    for c0 in range(0, len(frames), chunk_size):
        c1 = min(c0 + chunk_size, len(frames))
        dense = _autograd_gradients(model, bands, geometry, frames[c0:c1], targets[c0:c1], chunk_size)
        rows = [geometry.crop([d[i] for d in dense], frames[c0 + i : c0 + i + 1])[0] for i in range(c1 - c0)]
        out[c0:c1] = torch.stack(rows).cpu().numpy()
    return out


# ---------------------------------------------------------------------------
# results


def _scalogram(
    pieces: Sequence[np.ndarray], starts: Sequence[int], levels: int, hop: int, n_frames: int, reduce: str
) -> np.ndarray:
    """(n_bands, n_frames) relevance per band and bin of ``hop`` samples; band ``b`` holds coefficients
    ``starts[b] + arange(len(pieces[b]))`` (out-of-range ones are skipped)."""
    if reduce not in ("abs", "signed", "energy"):
        raise ValueError(f"reduce must be 'abs', 'signed' or 'energy', got {reduce!r}")
    out = np.zeros((len(pieces), n_frames))
    for b, (piece, start, level) in enumerate(zip(pieces, starts, band_levels(levels))):
        index = int(start) + np.arange(len(piece))
        centre = (1 << level) * (index + 0.5) - 0.5  # the centre sample of the coefficient's synthesis function
        column = np.floor(centre / hop + 0.5).astype(np.int64)
        values = np.abs(piece) if reduce == "abs" else piece if reduce == "signed" else np.square(piece)
        keep = (column >= 0) & (column < n_frames) & (index >= 0)
        out[b] = np.bincount(column[keep], weights=values[keep], minlength=n_frames)[:n_frames]
    return out


@dataclass
class WaveletAttribution:
    """WAM relevance of selected output frames on their band crops (see :class:`BandGeometry`).

    relevance: (N, n_columns) the band crops of each frame concatenated in band order
    (``geometry.split`` separates them); frames, targets: (N,); logits: (C, T_out) of the utterance.
    """

    method: str
    relevance: np.ndarray
    frames: np.ndarray
    targets: np.ndarray
    logits: np.ndarray
    geometry: BandGeometry
    sample_rate: int
    options: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def scores(self) -> np.ndarray:
        """(N,) the target logit of every selected frame."""
        return self.logits[self.targets, self.frames]

    def index(self, frame: int) -> int:
        hits = np.flatnonzero(self.frames == frame)
        if not hits.size:
            raise KeyError(f"output frame {frame} was not attributed")
        return int(hits[0])

    def bands(self, i: int) -> list[np.ndarray]:
        """Row ``i``'s band crops, one array per band."""
        return self.geometry.split(self.relevance[i])

    def scalogram(self, i: int, hop: int, n_frames: int, reduce: str = "abs") -> np.ndarray:
        """(n_bands, n_frames) row ``i``'s relevance per band and time bin of ``hop`` samples
        (see :meth:`WaveletMap.scalogram`)."""
        starts = self.geometry.offsets(self.frames[i : i + 1])[0]
        return _scalogram(self.bands(i), starts, self.geometry.levels, hop, n_frames, reduce)

    def map(self, frame: int) -> WaveletMap:
        """The :class:`WaveletMap` of output ``frame`` (its crops in full bands, zeros elsewhere)."""
        i = self.index(frame)
        bands = self.geometry.dense(self.relevance[i], frame)
        return WaveletMap(
            self.method,
            bands,
            self.geometry.wavelet,
            self.geometry.levels,
            self.geometry.n_samples,
            self.sample_rate,
            np.array([frame]),
            self.targets[i : i + 1],
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``relevance.npz``: relevance, frames, targets, band offsets and layout, logits, ..."""
        g = self.geometry
        return {
            "relevance": self.relevance,
            "frames": self.frames,
            "targets": self.targets,
            "band_offsets": g.offsets(self.frames),
            "band_widths": np.asarray(g.widths, dtype=np.int64),
            "band_lengths": np.asarray(g.band_lengths, dtype=np.int64),
            "band_names": np.asarray(band_names(g.levels), dtype=np.str_),
            "logits": self.logits,
            "scores": self.scores,
            "n_samples": np.int64(g.n_samples),
            "sample_rate": np.int64(self.sample_rate),
            "wavelet": np.str_(g.wavelet),
            "levels": np.int64(g.levels),
            "method": np.str_(self.method),
        }


@dataclass
class WaveletMap:
    """Relevance of every coefficient for one target (a frame, a letter, a word span).

    bands: per band ``[a_J, d_J, ..., d_1]`` an array (n_b,); frames, targets: the (frame, class)
    pairs whose logits the map explains (summed).
    """

    method: str
    bands: list[np.ndarray]
    wavelet: str
    levels: int
    n_samples: int
    sample_rate: int
    frames: np.ndarray
    targets: np.ndarray

    @property
    def names(self) -> list[str]:
        return band_names(self.levels)

    def flat(self) -> np.ndarray:
        """(n_padded,) all coefficients, band after band."""
        return np.concatenate(self.bands)

    def scalogram(self, hop: int, n_frames: int | None = None, reduce: str = "abs") -> np.ndarray:
        """(n_bands, T) relevance per band and time bin of ``hop`` samples (e.g. the feature hop).

        Coefficient ``i`` of level ``j`` is centred on sample ``2**j (i + 1/2) - 1/2``. reduce: "abs"
        (sum of |r|), "signed" (sum of r) or "energy" (sum of r**2).
        """
        T = int(n_frames) if n_frames is not None else -(-self.n_samples // int(hop))
        return _scalogram(self.bands, [0] * len(self.bands), self.levels, int(hop), T, reduce)

    def band_shares(self) -> dict[str, float]:
        """Fraction of the total |relevance| in each band."""
        totals = np.array([np.abs(b).sum() for b in self.bands])
        total = totals.sum()
        return {name: float(v / total) if total > 0 else 0.0 for name, v in zip(self.names, totals)}


# ---------------------------------------------------------------------------
# the public functions


def _engine_for(model, engine: str):
    """(engine name, conv stack or None) for ``engine`` in :data:`ENGINES`."""
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "autograd":
        return "autograd", None
    reason = None
    if not isinstance(model.feature_config, FeatureConfig):
        reason = f"its front end is {getattr(model.feature_config, 'kind', type(model.feature_config).__name__)}"
        stack = None
    else:
        try:
            stack = conv_stack(model)
        except ValueError as exc:
            stack, reason = None, str(exc)
    if stack is None:
        if engine == "fast":
            raise InputError(f"the fast WAM engine needs a conv stack with the log-mel front end: {reason}")
        return "autograd", None
    return "fast", stack


def iter_wavelet_crops(
    model,
    audio,
    frames: np.ndarray,
    targets: np.ndarray,
    method: str = "wam-grad",
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_LEVELS,
    block_frames: int | None = None,
    chunk_size: int | None = None,
    engine: str = "auto",
    progress: bool = False,
    **options,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """WAM band crops of output ``frames`` (N,) for ``targets`` (N,) in blocks: yields ``(i0, i1, crops)``
    with ``crops`` (i1 - i0, n_columns) for ``frames[i0:i1]``, in order (layout: :func:`band_geometry`).

    Memory is set by ``block_frames`` (default about 256 MB of crops and temporaries); each block
    recomputes the utterance's forward pass per point (noise sample, integration step).
    """
    _check_options(method, options)
    wavelet = check_wavelet(wavelet)
    wave = _wave_tensor(model, audio)
    levels = check_levels(levels, len(wave), wavelet)
    frames = np.asarray(frames, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    chunk_size = check_chunk_size(chunk_size)
    chunk = chunk_size or 32  # frames per waveform-crop batch of the fast engine and per VJP batch
    geometry = band_geometry(model, len(wave), wavelet, levels)
    engine, stack = _engine_for(model, engine)
    if block_frames is None:
        block_frames = max(chunk, (256 << 20) // (16 * geometry.n_columns + 1))
    if int(block_frames) < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    bands = wavedec(wave, wavelet, levels)
    points, factor = _points(method, bands, wave, options)
    blocks = list(range(0, len(frames), int(block_frames)))
    bar = tqdm(total=len(blocks) * len(points), desc=method, unit="pass", disable=not progress, leave=False)
    dtype = stack.dtype if stack is not None else torch.float32
    for i0 in blocks:
        i1 = min(i0 + int(block_frames), len(frames))
        total = None
        for make_point in points:
            point_bands = make_point()
            if engine == "fast":
                try:
                    point = _LogMelPoint(model, waverec(point_bands, wavelet, len(wave)), geometry, dtype)
                except _NotDecomposable:
                    engine, stack = "autograd", None
            if engine == "fast":
                grads = _fast_block(model, stack, point, geometry, frames[i0:i1], targets[i0:i1], chunk_size)
            else:
                grads = _autograd_block(model, point_bands, geometry, frames[i0:i1], targets[i0:i1], chunk)
            total = grads if total is None else total + grads
            bar.update(1)
        total /= len(points)
        if factor is not None:
            total *= geometry.crop(factor, frames[i0:i1]).cpu().numpy()
        yield i0, i1, total
    bar.close()


def wavelet_attribution(
    model,
    audio,
    method: str = "wam-grad",
    frames="all",
    target="predicted",
    transcript: str | None = None,
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_LEVELS,
    chunk_size: int | None = None,
    engine: str = "auto",
    progress: bool = False,
    **options,
) -> WaveletAttribution:
    """WAM relevance of each selected output frame's target logit, on its band crops.

    audio: one waveform (n,) at the model's sample rate; method: one of :data:`WAVELET_METHODS`
    (options: ``n_samples``, ``noise_level``, ``seed`` for SmoothGrad; ``steps`` for IG); frames,
    target, transcript: as :func:`~.frames.attribute`; engine: :data:`ENGINES`.
    """
    if hasattr(model, "require_ctc"):
        model.require_ctc("wavelet attribution of letters")
    wave = _wave_tensor(model, audio)
    with torch.no_grad():
        logits, _ = model.logits(model_features(model, wave[None]))
    logits = logits[0]
    frames_arr = select_frames(frames, logits.shape[1])
    targets = select_targets(logits, frames_arr, target, transcript, getattr(model, "alphabet", None))
    pieces = [
        crops
        for _, _, crops in iter_wavelet_crops(
            model, wave, frames_arr, targets, method, wavelet, levels, None, chunk_size, engine, progress, **options
        )
    ]
    geometry = band_geometry(model, len(wave), check_wavelet(wavelet), levels)
    relevance = np.concatenate(pieces) if pieces else np.zeros((0, geometry.n_columns), np.float32)
    return WaveletAttribution(
        method,
        relevance,
        frames_arr,
        targets,
        logits.detach().cpu().numpy(),
        geometry,
        int(model.feature_config.sample_rate),
        dict(options),
    )


def explain_targets(
    model,
    audio,
    frames: Sequence[int],
    targets: Sequence[int],
    method: str = "wam-grad",
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_LEVELS,
    **options,
) -> WaveletMap:
    """Dense WAM map of the *sum* of the logits ``logits[targets[i], frames[i]]``: one frame, a letter
    (its spike frames) or a word span (:func:`letter_spans`, :func:`word_spans`). One backward pass per
    point, on any model with a differentiable front end."""
    _check_options(method, options)
    wavelet = check_wavelet(wavelet)
    wave = _wave_tensor(model, audio)
    levels = check_levels(levels, len(wave), wavelet)
    frames = torch.as_tensor(np.asarray(frames, dtype=np.int64))
    targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    if frames.shape != targets.shape or frames.dim() != 1 or not len(frames):
        raise InputError(f"frames and targets must be two equal-length lists, got {len(frames)} and {len(targets)}")
    geometry = band_geometry(model, len(wave), wavelet, levels)
    bands = wavedec(wave, wavelet, levels)
    points, factor = _points(method, bands, wave, options)
    total = None
    for make_point in points:
        leaves = [b.detach().clone().requires_grad_(True) for b in make_point()]
        logits = _target_logits(model, leaves, geometry)
        if frames.max() >= logits.shape[1] or frames.min() < 0:
            raise InputError(f"frames must lie in 0..{logits.shape[1] - 1}")
        grads = torch.autograd.grad(logits[targets, frames].sum(), leaves)
        total = [g.detach() for g in grads] if total is None else [t + g.detach() for t, g in zip(total, grads)]
    total = [t / len(points) for t in total]
    if factor is not None:
        total = [t * f for t, f in zip(total, factor)]
    return WaveletMap(
        method,
        [t.cpu().numpy() for t in total],
        wavelet,
        levels,
        len(wave),
        int(model.feature_config.sample_rate),
        frames.numpy(),
        targets.numpy(),
    )


# ---------------------------------------------------------------------------
# letters and words as targets


def _path(logits: torch.Tensor, source: str, transcript: str | None, alphabet) -> np.ndarray:
    """(T_out,) class per frame: the greedy path or the forced alignment of ``transcript``."""
    if source == "predicted":
        return logits.argmax(0).cpu().numpy().astype(np.int64)
    if source == "forced":
        if transcript is None:
            raise InputError("source='forced' needs the transcript")
        log_probs = torch.log_softmax(torch.as_tensor(logits).double(), dim=0).T.contiguous()
        return forced_align(log_probs, alphabet.encode(transcript), blank=alphabet.blank)
    raise InputError(f"source must be 'predicted' or 'forced', got {source!r}")


def letter_spans(
    logits, alphabet, source: str = "predicted", transcript: str | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each emitted letter (spaces excluded) as ``(symbol, frames, classes)``: its CTC spike frames.

    logits: (C, T_out); source: "predicted" (greedy path) or "forced" (alignment of ``transcript``).
    """
    path = _path(torch.as_tensor(np.asarray(logits)), source, transcript, alphabet)
    out = []
    for span in token_spans(path, alphabet.blank):
        if span.token == alphabet.space:
            continue
        frames = np.arange(span.start, span.end)
        out.append((alphabet.symbols[span.token], frames, path[frames]))
    return out


def word_spans(
    logits, alphabet, source: str = "predicted", transcript: str | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each word as ``(word, frames, classes)``: every frame from its first letter's spike to its last's,
    blanks between them included, each with its path class (the sum of these logits is the word's score)."""
    path = _path(torch.as_tensor(np.asarray(logits)), source, transcript, alphabet)
    words, current = [], []
    for span in token_spans(path, alphabet.blank) + [None]:
        if span is None or span.token == alphabet.space:
            if current:
                frames = np.arange(current[0].start, current[-1].end)
                text = "".join(alphabet.symbols[s.token] for s in current)
                words.append((text, frames, path[frames]))
            current = []
        else:
            current.append(span)
    return words


# ---------------------------------------------------------------------------
# listening


def relevance_scores(relevance: np.ndarray, method: str) -> np.ndarray:
    """What ranks units: |r| for gradient maps (:data:`GRADIENT_LIKE`, the sign says which way a change
    would move the score, not whether the unit supports it), r itself for contributions (IG, LRP, Grad-CAM)."""
    base = str(method).partition(":")[0]
    return np.abs(relevance) if base in GRADIENT_LIKE else np.asarray(relevance)


def split_by_relevance(
    coefficients: Sequence, relevance: WaveletMap, fraction: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(top, rest): the coefficient bands keeping only the top ``fraction`` of coefficients by
    :func:`relevance_scores` (ties broken by position), and keeping only the others."""
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"fraction must be in [0, 1], got {fraction}")
    scores = relevance_scores(relevance.flat(), relevance.method)
    k = int(round(fraction * len(scores)))
    keep = np.zeros(len(scores), dtype=bool)
    keep[np.argsort(-scores, kind="stable")[:k]] = True
    flat = np.concatenate([np.asarray(c, dtype=np.float64) for c in coefficients])
    cuts = np.cumsum([len(c) for c in coefficients])[:-1]
    return np.split(flat * keep, cuts), np.split(flat * ~keep, cuts)


def _transcribe(model, wave: torch.Tensor) -> str:
    with torch.no_grad():
        logits, _ = model.logits(model_features(model, wave[None]))
    return greedy_decode(logits, None, model.alphabet)[0]


def listen(model, audio, relevance: WaveletMap, fractions: Sequence[float] = (0.1,)) -> list[dict]:
    """Resynthesize ``audio`` from the top ``q`` of its coefficients by relevance and from the rest, and
    transcribe each with the model.

    Returns per fraction ``{"fraction", "top": wave (n,), "rest": wave (n,), "top_text", "rest_text"}``.
    """
    wave = _wave_tensor(model, audio)
    coefficients = [b.double() for b in wavedec(wave.double(), relevance.wavelet, relevance.levels)]
    out = []
    for q in fractions:
        top, rest = split_by_relevance([c.numpy() for c in coefficients], relevance, float(q))
        waves = [
            waverec([torch.as_tensor(b) for b in bands], relevance.wavelet, len(wave)).float() for bands in (top, rest)
        ]
        out.append(
            {
                "fraction": float(q),
                "top": waves[0].numpy(),
                "rest": waves[1].numpy(),
                "top_text": _transcribe(model, waves[0]),
                "rest_text": _transcribe(model, waves[1]),
            }
        )
    return out
