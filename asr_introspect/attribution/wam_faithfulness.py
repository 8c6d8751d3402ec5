"""Faithfulness of wavelet (WAM) and log-mel attributions on the same model and frames.

For one output frame and its target class, units are ranked by relevance
(:func:`~.wavelets.relevance_scores`: magnitude for gradient maps, signed value
for contributions) and changed in ``n_steps`` equal steps of the fraction of
units; the score after each step is the model's softmax *probability* of the
target class at that frame (as the WAM paper's insertion and deletion).

- **Wavelet domain** (:func:`wavelet_curves`): the units are the coefficients
  of the frame's band crops (its receptive field in the wavelet domain).
  Deletion sets the top-ranked coefficients to 0; insertion starts from the
  utterance with all crop coefficients 0 (silence over the receptive field,
  the rest of the utterance unchanged) and restores them in order. Each step
  runs the waveform through the front end and the model.
- **Log-mel domain** (:func:`logmel_curves`): the units are the time-frequency
  bins of the frame's receptive field; deletion replaces them with 0 (the
  utterance mean of z-normalized features), insertion starts from all 0
  (:func:`~.evaluation.perturbation_curves`, probabilities instead of log-probabilities).

``Ins`` and ``Del`` are the areas under the curves over the fraction of units in
``[0, 1]`` (trapezoidal), averaged over frames; ``Faith = Ins - Del``. A map of
uniform random values, scored the same way, is the random baseline of each domain.
:func:`faithfulness_table` puts WAM (gradient, SmoothGrad, IG), the log-mel
methods (saliency, SmoothGrad, IG, Grad-CAM, LRP) and both random baselines on
the letter frames of a set of utterances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from asr_introspect.attribution.crops import CropGeometry, crop_logits
from asr_introspect.attribution.evaluation import auc, perturbation_curves
from asr_introspect.attribution.frames import Attribution, attribute
from asr_introspect.attribution.stack import conv_stack
from asr_introspect.attribution.wavelets import (
    DEFAULT_LEVELS,
    DEFAULT_WAVELET,
    WAVELET_METHODS,
    WaveletAttribution,
    model_features,
    relevance_scores,
    wavedec,
    wavelet_attribution,
    waverec,
)
from asr_introspect.errors import InputError

__all__ = [
    "LOGMEL_METHODS",
    "METHOD_LABELS",
    "FaithCurves",
    "FaithfulnessTable",
    "wavelet_curves",
    "logmel_curves",
    "random_like",
    "letter_frames",
    "faithfulness_table",
    "PAPER_ESC50",
]

#: the log-mel methods of the comparison (``grad-cam`` takes the default layer)
LOGMEL_METHODS = ("sensitivity", "smoothgrad", "integrated-gradients", "grad-cam", "lrp-epsilon-plus")
#: table labels
METHOD_LABELS = {
    "wam-grad": "WAM gradient",
    "wam-smoothgrad": "WAM SmoothGrad",
    "wam-ig": "WAM IG",
    "sensitivity": "Saliency",
    "smoothgrad": "SmoothGrad",
    "integrated-gradients": "Integrated gradients",
    "grad-cam": "Grad-CAM",
    "lrp-epsilon-plus": "LRP (epsilon-plus)",
    "random": "random",
}
#: the WAM paper's audio numbers (ESC-50) quoted by the issue, for the docs and the report
PAPER_ESC50 = {"integrated-gradients": {"faith": 0.264}, "wam-ig": {"faith": 0.176}, "wam-smoothgrad": {"ins": 0.449}}


@dataclass
class FaithCurves:
    """Insertion and deletion curves of one method: ``insertion``, ``deletion`` (N, S) target
    probabilities at ``fractions`` (S,) of the units, for ``frames``/``targets`` (N,)."""

    method: str
    domain: str
    fractions: np.ndarray
    frames: np.ndarray
    targets: np.ndarray
    insertion: np.ndarray
    deletion: np.ndarray

    @property
    def ins(self) -> float:
        return float(np.mean(auc(self.fractions, self.insertion))) if len(self.frames) else float("nan")

    @property
    def dele(self) -> float:
        return float(np.mean(auc(self.fractions, self.deletion))) if len(self.frames) else float("nan")

    @property
    def faith(self) -> float:
        return self.ins - self.dele

    def summary(self) -> dict[str, float]:
        return {"ins": self.ins, "del": self.dele, "faith": self.faith, "frames": int(len(self.frames))}

    @staticmethod
    def concat(parts: Sequence[FaithCurves]) -> FaithCurves:
        """The curves of several utterances as one (frames are per utterance, so only the curves matter)."""
        first = parts[0]
        return FaithCurves(
            first.method,
            first.domain,
            first.fractions,
            np.concatenate([p.frames for p in parts]),
            np.concatenate([p.targets for p in parts]),
            np.concatenate([p.insertion for p in parts]),
            np.concatenate([p.deletion for p in parts]),
        )


def _frame_probabilities(model, stack, waves: torch.Tensor, frame: int, target: int) -> np.ndarray:
    """(B,) softmax probability of ``target`` at output ``frame`` for each waveform of ``waves`` (B, n)."""
    with torch.no_grad():
        features = model_features(model, waves)
        if stack is not None:  # the frame's receptive field alone gives its exact logits (see crops.crop_logits)
            geometry = CropGeometry(stack, features.shape[-1])
            crops = torch.stack(
                [geometry.source(0, f.to(stack.dtype)).take(torch.tensor([frame]))[0] for f in features]
            )
            logits = crop_logits(stack, geometry, crops, np.full(len(crops), frame))
        else:
            logits = model.logits(features)[0][:, :, frame]
        return torch.softmax(logits.double(), dim=1)[:, target].cpu().numpy()


def _stack_or_none(model):
    try:
        return conv_stack(model)
    except ValueError:
        return None


def wavelet_curves(
    model,
    audio,
    attribution: WaveletAttribution,
    n_steps: int = 20,
    batch_size: int = 21,
    stack=None,
) -> FaithCurves:
    """Insertion and deletion curves of a :class:`~.wavelets.WaveletAttribution` (see the module docstring).

    audio: the waveform (n,) the attribution was computed on. ``stack``: the model's
    :func:`~.stack.conv_stack` if already built (scores run on receptive-field crops), else found here.
    """
    if n_steps < 1:
        raise InputError(f"n_steps must be >= 1, got {n_steps}")
    geometry = attribution.geometry
    wave = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    stack = stack if stack is not None else _stack_or_none(model)
    coefficients = torch.cat(wavedec(wave.double(), geometry.wavelet, geometry.levels))  # (n_padded,)
    band_starts = np.concatenate([[0], np.cumsum(geometry.band_lengths)[:-1]])
    fractions = np.linspace(0.0, 1.0, n_steps + 1)
    n = len(attribution.frames)
    curves = {mode: np.empty((n, n_steps + 1)) for mode in ("insertion", "deletion")}
    inside = geometry.inside(attribution.frames)
    offsets = geometry.offsets(attribution.frames)
    widths = np.asarray(geometry.widths)
    column_band = np.repeat(np.arange(len(widths)), widths)
    column_in_band = np.concatenate([np.arange(w) for w in widths])
    for i in range(n):
        keep = inside[i]
        units = (band_starts[column_band] + offsets[i, column_band] + column_in_band)[keep]  # flat coefficient index
        scores = relevance_scores(attribution.relevance[i][keep], attribution.method)
        order = units[np.argsort(-scores, kind="stable")]
        counts = np.round(fractions * len(order)).astype(np.int64)
        for mode in ("deletion", "insertion"):
            batch = coefficients.repeat(n_steps + 1, 1)
            if mode == "insertion":
                batch[:, torch.as_tensor(units)] = 0.0
            for s, k in enumerate(counts):
                chosen = torch.as_tensor(order[:k])
                batch[s, chosen] = 0.0 if mode == "deletion" else coefficients[chosen]
            bands = torch.split(batch, geometry.band_lengths, dim=1)
            waves = waverec(list(bands), geometry.wavelet, geometry.n_samples).float()
            frame, target = int(attribution.frames[i]), int(attribution.targets[i])
            curves[mode][i] = np.concatenate(
                [
                    _frame_probabilities(model, stack, waves[b : b + batch_size], frame, target)
                    for b in range(0, len(waves), batch_size)
                ]
            )
    return FaithCurves(
        attribution.method,
        "wavelet",
        fractions,
        attribution.frames,
        attribution.targets,
        curves["insertion"],
        curves["deletion"],
    )


def logmel_curves(model, features, attribution: Attribution, n_steps: int = 20, stack=None) -> FaithCurves:
    """Insertion and deletion curves of a log-mel :class:`~.frames.Attribution` over its time-frequency bins,
    as target probabilities (units ranked by :func:`~.wavelets.relevance_scores`)."""
    ranked = Attribution(
        attribution.method,
        relevance_scores(attribution.crops(), attribution.method),
        attribution.frames,
        attribution.targets,
        attribution.offsets,
        attribution.logits,
        attribution.n_input_frames,
        attribution.receptive_field,
        True,
    )
    stack = stack if stack is not None else conv_stack(model)
    modes = {
        mode: perturbation_curves(model, features, ranked, mode, "bin", n_steps=n_steps, n_random=0, stack=stack)
        for mode in ("insertion", "deletion")
    }
    return FaithCurves(
        attribution.method,
        "log-mel",
        modes["deletion"].fractions,
        attribution.frames,
        attribution.targets,
        np.exp(modes["insertion"].curves),
        np.exp(modes["deletion"].curves),
    )


def random_like(attribution, seed: int = 0):
    """The same attribution with i.i.d. uniform random relevance (method ``"random"``)."""
    rng = np.random.default_rng(seed)
    values = rng.random(attribution.relevance.shape).astype(attribution.relevance.dtype)
    if isinstance(attribution, WaveletAttribution):
        return WaveletAttribution(
            "random",
            values,
            attribution.frames,
            attribution.targets,
            attribution.logits,
            attribution.geometry,
            attribution.sample_rate,
        )
    return Attribution(
        "random",
        values,
        attribution.frames,
        attribution.targets,
        attribution.offsets,
        attribution.logits,
        attribution.n_input_frames,
        attribution.receptive_field,
        attribution.cropped,
    )


def letter_frames(logits, alphabet, limit: int, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` output frames whose arg-max is a letter (not blank, space or apostrophe), chosen
    at random (seeded) and sorted. logits: (C, T_out)."""
    predicted = np.asarray(logits).argmax(0)
    letters = set(alphabet.letter_indices) - {alphabet.space, alphabet.blank}
    letters -= {i for i, s in enumerate(alphabet.symbols) if not s.isalpha()}
    candidates = np.flatnonzero(np.isin(predicted, sorted(letters)))
    if len(candidates) > limit:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, limit, replace=False))
    return candidates.astype(np.int64)


@dataclass
class FaithfulnessTable:
    """Insertion, deletion and Faith per method (rows keyed by method name, random baselines
    ``"random (wavelet)"`` and ``"random (log-mel)"``) over ``n_frames`` letter frames of ``utterances``."""

    rows: dict[str, dict[str, float]]
    curves: dict[str, FaithCurves]
    utterances: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Frames explained by every method (the random baselines score several maps per frame)."""
        return int(max((c["frames"] for name, c in self.rows.items() if not name.startswith("random")), default=0))

    def table(self) -> dict:
        """A report table: method, domain, Ins, Del, Faith, frames."""
        out = []
        for name, row in self.rows.items():
            base = name.split(" (")[0]
            domain = self.curves[name].domain
            out.append(
                [METHOD_LABELS.get(base, base) + (f" ({domain})" if base == "random" else ""), domain]
                + [round(row[k], 3) for k in ("ins", "del", "faith")]
                + [row["frames"]]
            )
        return {
            "caption": "Insertion (Ins), deletion (Del) and Faith = Ins - Del: areas under the target letter's "
            "probability as the most relevant units are restored or removed",
            "columns": ["method", "domain", "Ins", "Del", "Faith", "frames"],
            "rows": out,
        }

    def to_dict(self) -> dict:
        return {"rows": self.rows, "utterances": self.utterances, "settings": self.settings}


def faithfulness_table(
    model,
    waves: Sequence,
    names: Sequence[str] | None = None,
    frames_per_utterance: int = 6,
    wavelet_methods: Sequence[str] = WAVELET_METHODS,
    logmel_methods: Sequence[str] = LOGMEL_METHODS,
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_LEVELS,
    n_steps: int = 20,
    n_samples: int = 16,
    noise_level: float = 0.1,
    ig_steps: int = 32,
    n_random: int = 2,
    seed: int = 0,
    progress: bool = False,
) -> FaithfulnessTable:
    """Ins, Del and Faith of WAM and the log-mel methods on the same letter frames of ``waves``.

    waves: waveforms (n,) at the model's rate; per utterance :func:`letter_frames` picks up to
    ``frames_per_utterance`` frames and explains their predicted letters. SmoothGrad takes
    ``n_samples`` / ``noise_level``, IG ``ig_steps`` in both domains. Needs a conv-stack model (the
    log-mel methods do).
    """
    from asr_introspect.features import featurize

    stack = conv_stack(model)
    names = list(names) if names is not None else [f"utt{i}" for i in range(len(waves))]
    parts: dict[str, list[FaithCurves]] = {}
    wavelet_options = {
        "wam-smoothgrad": {"n_samples": n_samples, "noise_level": noise_level, "seed": seed},
        "wam-ig": {"steps": ig_steps},
    }
    logmel_options = {
        "smoothgrad": {"n_samples": n_samples, "noise_level": noise_level, "seed": seed},
        "integrated-gradients": {"steps": ig_steps},
    }
    used = []
    bar = tqdm(total=len(waves), desc="faithfulness", unit="utt", disable=not progress, leave=False)
    for u, wave in enumerate(waves):
        wave = np.asarray(wave, dtype=np.float32)
        features = featurize([wave], model.feature_config)[0][0]
        with torch.no_grad():
            logits = model.logits(features[None].to(stack.dtype))[0][0]
        frames = letter_frames(logits.numpy(), model.alphabet, frames_per_utterance, seed=seed + u)
        bar.update(1)
        if not len(frames):
            continue
        used.append(names[u])
        for method in wavelet_methods:
            result = wavelet_attribution(
                model, wave, method, frames=frames, wavelet=wavelet, levels=levels, **wavelet_options.get(method, {})
            )
            parts.setdefault(method, []).append(wavelet_curves(model, wave, result, n_steps, stack=stack))
        for r in range(n_random if wavelet_methods else 0):
            noise = random_like(result, seed=seed + 1000 * u + r)
            parts.setdefault("random (wavelet)", []).append(wavelet_curves(model, wave, noise, n_steps, stack=stack))
        for method in logmel_methods:
            result = attribute(model, features, method, frames=frames, crop=True, **logmel_options.get(method, {}))
            parts.setdefault(method, []).append(logmel_curves(model, features, result, n_steps, stack=stack))
        for r in range(n_random if logmel_methods else 0):
            noise = random_like(result, seed=seed + 1000 * u + r)
            parts.setdefault("random (log-mel)", []).append(logmel_curves(model, features, noise, n_steps, stack))
    bar.close()
    if not used:
        raise InputError("no utterance has a frame predicted as a letter; is the model trained?")
    curves = {name: FaithCurves.concat(p) for name, p in parts.items()}
    rows = {name: c.summary() for name, c in curves.items()}
    settings = {
        "wavelet": wavelet,
        "levels": levels,
        "n_steps": n_steps,
        "n_samples": n_samples,
        "noise_level": noise_level,
        "ig_steps": ig_steps,
        "n_random": n_random,
        "frames_per_utterance": frames_per_utterance,
        "seed": seed,
    }
    return FaithfulnessTable(rows, curves, used, settings)
