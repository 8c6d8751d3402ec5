"""Does a relevance map depend on the model, and does it point at what the frame's score depends on?

Sanity check (Adebayo et al.): *cascading model-parameter randomization*.
Layers are randomized from the output layer down, cumulatively; after each
step the maps of the same frames and target classes are recomputed and
compared with the original maps by Spearman rank correlation (over each
frame's valid receptive field; signed and absolute values). Maps that stay
correlated do not depend on the learned parameters. Randomization acts on
the folded layer stack (a copy: the model is untouched): weights and biases
are redrawn from a Gaussian with the layer's own standard deviation.

Faithfulness: *deletion and insertion curves*. Units (input frames of the
receptive field, or time-frequency bins) are ranked by relevance (summed
over frequency for frames); deletion replaces the top-ranked units by a
baseline (default 0, the utterance mean of z-normalized features) in steps,
insertion starts from the baseline and restores them. The score is the
target class's log-probability at the target frame, computed on the frame's
receptive-field crop alone (exactly the full-utterance value, see
:func:`.frames.crop_logits`). The same curves for random orders give the
reference; a faithful map has a lower deletion AUC and a higher insertion
AUC than random. AUC is the trapezoidal area over the fraction of units in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from asr_introspect.attribution.crops import CropGeometry, crop_logits
from asr_introspect.attribution.frames import (
    Attribution,
    attribute,
    compute_crops,
    features_tensor,
    method_name,
    select_frames,
    select_targets,
)
from asr_introspect.attribution.stack import ConvLayer, ConvStack, conv_stack

__all__ = [
    "rank_correlation",
    "randomize_stack",
    "RandomizationResult",
    "randomization_test",
    "CurveResult",
    "perturbation_curves",
    "faithfulness",
    "auc",
]


def rank_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Spearman correlation per row of a, b (N, ...) over the entries where ``mask`` (N, ...) is true.

    Rows with a constant side give NaN. Returns (N,).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m = np.ones(a.shape, dtype=bool) if mask is None else np.broadcast_to(mask, a.shape)
    a, b, m = a.reshape(len(a), -1), b.reshape(len(b), -1), m.reshape(len(a), -1)
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        x, y = rankdata(a[i][m[i]]), rankdata(b[i][m[i]])
        x, y = x - x.mean(), y - y.mean()
        denom = np.sqrt((x * x).sum() * (y * y).sum())
        if denom > 0:
            out[i] = float((x * y).sum() / denom)
    return out


def randomize_stack(stack: ConvStack, layers: Sequence[str], seed: int = 0) -> ConvStack:
    """A copy of ``stack`` with ``layers`` redrawn (Gaussian, each tensor's own std; zero tensors stay zero)."""
    gen = torch.Generator().manual_seed(int(seed))
    new = []
    for layer in stack.layers:
        w, b = layer.weight, layer.bias
        if layer.name in layers:
            w = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w) * w.std()
            b = torch.randn(b.shape, generator=gen, dtype=torch.float64).to(b) * (b.std() if b.numel() > 1 else 0)
        new.append(
            ConvLayer(
                layer.name,
                w.clone(),
                b.clone(),
                layer.stride,
                layer.dilation,
                layer.groups,
                layer.pad_left,
                layer.pad_right,
                layer.relu,
            )
        )
    return ConvStack(new, stack.names)


@dataclass
class RandomizationResult:
    """Cascading randomization: ``spearman[m, k, i]`` for method m, after randomizing ``steps[k]``
    (the output layer down to that layer), frame i; ``spearman_abs`` on absolute values."""

    methods: list[str]
    steps: list[str]
    frames: np.ndarray
    targets: np.ndarray
    spearman: np.ndarray
    spearman_abs: np.ndarray

    def summary(self) -> dict[str, Any]:
        """method -> {layer: mean Spearman (signed), ...} and the same for absolute values."""
        out: dict[str, Any] = {}
        for m, name in enumerate(self.methods):
            out[name] = {
                "spearman": {s: float(np.nanmean(self.spearman[m, k])) for k, s in enumerate(self.steps)},
                "spearman_abs": {s: float(np.nanmean(self.spearman_abs[m, k])) for k, s in enumerate(self.steps)},
            }
        return out


def _valid_mask(geometry: CropGeometry, frames: np.ndarray, n_features: int) -> np.ndarray:
    """(N, F, RF) True on each crop's valid input frames."""
    cols = geometry.offsets(frames)[:, None] + np.arange(geometry.receptive_field)[None, :]
    valid = (cols >= 0) & (cols < geometry.lengths[0])
    return np.broadcast_to(valid[:, None, :], (len(frames), n_features, geometry.receptive_field))


def randomization_test(
    model,
    features,
    methods: Sequence = ("lrp-epsilon-plus", "sensitivity"),
    frames="all",
    target="predicted",
    transcript: str | None = None,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    method_options: dict[str, dict] | None = None,
) -> RandomizationResult:
    """Cascading randomization from the output layer down to the first (or the listed ``layers``, in order).

    features: (F, T_in). Targets are fixed by the original model; ``method_options``: method
    name -> options (e.g. ``{"smoothgrad": {"n_samples": 8}}``). See the module docstring.
    """
    method_options = method_options or {}
    x = features_tensor(model, features)
    stack = conv_stack(model, dtype=dtype)
    x = x.to(device=stack.device, dtype=stack.dtype)
    cache = stack.forward_cache(x)
    frames_arr = select_frames(frames, cache.logits.shape[1])
    targets = select_targets(cache.logits, frames_arr, target, transcript, getattr(model, "alphabet", None))
    steps = list(layers) if layers is not None else list(reversed(stack.names))
    for name in steps:
        stack.index(name)
    geometry = CropGeometry(stack, x.shape[1])
    mask = _valid_mask(geometry, frames_arr, stack.n_features)
    names = [method_name(m) for m in methods]
    rho = np.full((len(methods), len(steps), len(frames_arr)), np.nan)
    rho_abs = np.full_like(rho, np.nan)
    originals = [
        compute_crops(
            stack,
            x,
            frames_arr,
            targets,
            m,
            cache=cache,
            chunk_size=chunk_size,
            **method_options.get(method_name(m), {}),
        )
        for m in methods
    ]
    for k in range(len(steps)):
        randomized = randomize_stack(stack, steps[: k + 1], seed=seed)
        rcache = randomized.forward_cache(x)
        for j, m in enumerate(methods):
            maps = compute_crops(
                randomized,
                x,
                frames_arr,
                targets,
                m,
                cache=rcache,
                chunk_size=chunk_size,
                **method_options.get(names[j], {}),
            )
            rho[j, k] = rank_correlation(originals[j], maps, mask)
            rho_abs[j, k] = rank_correlation(np.abs(originals[j]), np.abs(maps), mask)
    return RandomizationResult(names, steps, frames_arr, targets, rho, rho_abs)


# ---------------------------------------------------------------------------
# deletion / insertion


def auc(fractions: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoidal area under curves (..., S) over ``fractions`` (S,)."""
    curves = np.asarray(curves, dtype=np.float64)
    widths = np.diff(fractions)
    return ((curves[..., 1:] + curves[..., :-1]) * 0.5 * widths).sum(-1)


@dataclass
class CurveResult:
    """Deletion or insertion curves: ``curves`` (N, S) by relevance order, ``random`` (N, S) the mean
    over random orders, both target log-probabilities at ``fractions`` (S,) of the units."""

    mode: str
    unit: str
    fractions: np.ndarray
    frames: np.ndarray
    targets: np.ndarray
    curves: np.ndarray
    random: np.ndarray
    n_units: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def auc(self) -> float:
        """Mean over frames of the AUC of the relevance-ordered curve."""
        return float(np.mean(auc(self.fractions, self.curves)))

    @property
    def random_auc(self) -> float:
        return float(np.mean(auc(self.fractions, self.random)))

    def summary(self) -> dict[str, float]:
        return {
            "auc": self.auc,
            "random_auc": self.random_auc,
            "auc_gain": (self.random_auc - self.auc) if self.mode == "deletion" else (self.auc - self.random_auc),
        }


def _orders(scores: np.ndarray, n_random: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each unit (0 = first to change) by descending score, and ``n_random`` random ranks. (U,), (R, U)."""
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), dtype=np.int64)
    rank[order] = np.arange(len(scores))
    random = (
        np.stack([rng.permutation(len(scores)) for _ in range(n_random)])
        if n_random
        else np.zeros((0, len(scores)), np.int64)
    )
    return rank, random


def perturbation_curves(
    model,
    features,
    attribution: Attribution,
    mode: str = "deletion",
    unit: str = "frame",
    n_steps: int = 20,
    baseline=0.0,
    n_random: int = 3,
    seed: int = 0,
    chunk_size: int = 16,
    dtype: torch.dtype | None = None,
    stack: ConvStack | None = None,
) -> CurveResult:
    """Deletion (``mode="deletion"``) or insertion curves of ``attribution`` over input frames or bins.

    features: (F, T_in), the features the attribution was computed on; unit: "frame" or "bin";
    baseline: float or (F,) per band. ``chunk_size`` frames are scored per batch
    (``chunk_size * (n_steps + 1) * (1 + n_random)`` receptive-field crops).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if unit not in ("frame", "bin"):
        raise ValueError(f"unit must be 'frame' or 'bin', got {unit!r}")
    x = features_tensor(model, features)
    stack = stack if stack is not None else conv_stack(model, dtype=dtype)
    x = x.to(device=stack.device, dtype=stack.dtype)
    geometry = CropGeometry(stack, x.shape[1])
    frames, targets = attribution.frames, attribution.targets
    relevance = attribution.crops()
    n_feat, rf = stack.n_features, geometry.receptive_field
    valid = _valid_mask(geometry, frames, n_feat)[:, 0, :]  # (N, RF)
    fractions = np.linspace(0.0, 1.0, n_steps + 1)
    base = torch.as_tensor(
        np.broadcast_to(
            np.asarray(baseline, dtype=np.float64).reshape(-1, 1)
            if np.ndim(baseline) == 1
            else np.asarray(baseline, dtype=np.float64),
            (n_feat, rf),
        ).copy()
    ).to(x)
    source = geometry.source(0, x)
    rng = np.random.default_rng(seed)
    curves = np.empty((len(frames), n_steps + 1))
    random = np.empty((len(frames), n_steps + 1))
    n_units = np.empty(len(frames), dtype=np.int64)
    for i0 in range(0, len(frames), chunk_size):
        idx = np.arange(i0, min(i0 + chunk_size, len(frames)))
        f = torch.as_tensor(frames[idx], device=stack.device)
        crops = source.take(f)  # (n, F, RF)
        masks = []  # per frame: (1 + n_random, S, F, RF) True where the unit is changed
        for i in idx:
            cols = np.flatnonzero(valid[i])
            if unit == "frame":
                scores = relevance[i][:, cols].sum(0)
            else:
                scores = relevance[i][:, cols].reshape(-1)
            n_units[i] = len(scores)
            rank, rand = _orders(scores, n_random, rng)
            ranks = np.concatenate([rank[None], rand])  # (1 + R, U)
            counts = np.round(fractions * len(scores)).astype(np.int64)  # (S,)
            changed = ranks[:, None, :] < counts[None, :, None]  # (1 + R, S, U)
            full = np.zeros(changed.shape[:2] + (n_feat, rf), dtype=bool)
            if unit == "frame":
                full[:, :, :, cols] = changed[:, :, None, :]
            else:
                full[:, :, :, cols] = changed.reshape(changed.shape[:2] + (n_feat, len(cols)))
            masks.append(full)
        mask = torch.as_tensor(np.stack(masks), device=stack.device)  # (n, 1 + R, S, F, RF)
        original = crops[:, None, None]
        if mode == "deletion":
            perturbed = torch.where(mask, base, original)
        else:
            perturbed = torch.where(mask, original, base)
        n, r1, s = mask.shape[:3]
        flat = perturbed.reshape(n * r1 * s, n_feat, rf)
        fr = f[:, None, None].expand(n, r1, s).reshape(-1)
        logits = crop_logits(stack, geometry, flat, fr.cpu().numpy())
        logp = torch.log_softmax(logits.double(), dim=1)
        tg = torch.as_tensor(targets[idx], device=stack.device)[:, None, None].expand(n, r1, s).reshape(-1)
        score = logp[torch.arange(len(tg)), tg].reshape(n, r1, s).cpu().numpy()
        curves[idx] = score[:, 0]
        random[idx] = score[:, 1:].mean(1) if r1 > 1 else np.nan
    return CurveResult(mode, unit, fractions, frames, targets, curves, random, n_units)


def faithfulness(
    model,
    features,
    methods: Sequence = ("lrp-epsilon-plus", "sensitivity"),
    frames="all",
    target="predicted",
    transcript: str | None = None,
    units: Sequence[str] = ("frame", "bin"),
    modes: Sequence[str] = ("deletion", "insertion"),
    n_steps: int = 20,
    baseline=0.0,
    n_random: int = 3,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    method_options: dict[str, dict] | None = None,
) -> dict[str, dict[str, float]]:
    """AUCs per method: ``{method: {"deletion/frame": auc, ...}, "random": {...}}`` (see module docstring).

    ``method_options``: method name -> options for :func:`~.frames.attribute`.
    """
    method_options = method_options or {}
    stack = conv_stack(model, dtype=dtype)
    table: dict[str, dict[str, float]] = {"random": {}}
    for method in methods:
        attr = attribute(
            model,
            features,
            method,
            frames=frames,
            target=target,
            transcript=transcript,
            crop=True,
            dtype=dtype,
            **method_options.get(method_name(method), {}),
        )
        row = table.setdefault(attr.method, {})
        for mode in modes:
            for unit in units:
                result = perturbation_curves(
                    model,
                    features,
                    attr,
                    mode,
                    unit,
                    n_steps=n_steps,
                    baseline=baseline,
                    n_random=n_random,
                    seed=seed,
                    stack=stack,
                )
                row[f"{mode}/{unit}"] = result.auc
                table["random"][f"{mode}/{unit}"] = result.random_auc
    return table
