"""The randomization sanity check (Adebayo et al. 2018) of relevance maps, as a claim with a null.

Claim: "LRP maps pass the randomization sanity check better than chance": a map that explains
the *model* changes when the model's parameters are randomized.

- **Value**: the Spearman rank correlation of ``|relevance|`` between the map of the trained
  model and the map of the same output frame and target class when every layer is randomized
  (the last step of the cascade from the output layer down: weights and biases redrawn from a
  Gaussian with each tensor's own standard deviation, :func:`~asr_introspect.attribution.
  evaluation.randomize_stack`), over each frame's valid receptive field, averaged over frames.
- **Null** ("the map does not depend on the parameters"): the same correlation between two maps
  of the *trained* model, the second computed on the input plus Gaussian noise of
  ``noise_level`` times the input's range (SmoothGrad's noise, 0.1 by default: a perturbation
  whose maps the toolkit treats as explaining the same thing). A map that depends on the model
  changes more under randomized parameters than under that noise.
- **Verdict**: :func:`~asr_introspect.claims.record.verdict_for` with direction ``"less"``:
  "supported" when the value's interval lies wholly below the null's.
- **Interval**: 95 % percentile bootstrap over utterances (frames of one utterance stay
  together; a replicate is the frame-weighted mean of its utterances' correlations).

Frames: up to ``n_frames`` per utterance, evenly spread over the frames where the trained model's
greedy path emits a letter (its letter spikes; every frame when there is none), each explained for
its predicted class. Utterances: ``n_utterances`` drawn at random (``seed``) from those long
enough for the model. Models where LRP is refused (self-attention, residual blocks:
:func:`~asr_introspect.attribution.dense.needs_dense`) use the gradient (``sensitivity``) on the
whole utterance, with a deep copy of the model whose parameters are all redrawn the same way;
``details["method"]`` and ``details["note"]`` say so.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from asr_introspect.attribution.crops import CropGeometry
from asr_introspect.attribution.dense import dense_relevance, needs_dense
from asr_introspect.attribution.evaluation import randomize_stack, rank_correlation
from asr_introspect.attribution.frames import LRP_METHODS, compute_crops
from asr_introspect.attribution.stack import conv_stack
from asr_introspect.claims.patterns import bootstrap_weights
from asr_introspect.claims.record import Claim, percentile_interval, verdict_for
from asr_introspect.errors import AudioError, InputError
from asr_introspect.features import featurize_file

__all__ = ["lrp_randomization_claim", "spike_frames", "randomize_module", "frame_weighted_bootstrap"]

STATEMENT = "LRP maps pass the randomization sanity check better than chance"
NULL_NAME = "two maps of the trained model, the second on the input with noise_level x range Gaussian noise"


def spike_frames(logits: np.ndarray, n_frames: int, blank: int) -> np.ndarray:
    """Up to ``n_frames`` output frames evenly spread over the greedy letter spikes of ``logits`` (C, T_out)
    (over all frames when the greedy path is blank throughout): (N,) int64, sorted, unique."""
    path = np.asarray(logits).argmax(0)
    candidates = np.flatnonzero(path != blank)
    if candidates.size == 0:
        candidates = np.arange(path.size)
    if candidates.size <= n_frames:
        return candidates.astype(np.int64)
    picks = np.round(np.linspace(0, candidates.size - 1, n_frames)).astype(np.int64)
    return np.unique(candidates[picks]).astype(np.int64)


def randomize_module(model, seed: int = 0):
    """A deep copy of ``model`` whose parameter tensors are redrawn from a zero-mean Gaussian with each
    tensor's own standard deviation, as :func:`~asr_introspect.attribution.evaluation.randomize_stack`
    does for conv stacks; constant and one-element tensors (e.g. LayerNorm weights still at 1) stay."""
    clone = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in clone.module.parameters():
            std = float(p.std()) if p.numel() > 1 else 0.0
            if std > 0:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p) * std)
    return clone


def frame_weighted_bootstrap(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Frame-weighted means of resampled utterances: sums (U,) of per-frame values, counts (U,) frames,
    weights (R, U) multiplicities -> (R,)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ sums) / (weights @ counts)


def _conv_maps(model, x: torch.Tensor, n_frames: int, method: str, noise: torch.Tensor, stack, randomized):
    """Similarities of one utterance's maps: (to each randomized stack's map (S, N), to the noisy-input
    map (N,), to |x| (N,), frames (N,), targets (N,)); ``randomized``: S stacks, the full one last."""
    x = x.to(device=stack.device, dtype=stack.dtype)
    cache = stack.forward_cache(x)
    logits = cache.logits.detach().cpu().numpy()
    frames = spike_frames(logits, n_frames, model.alphabet.blank)
    targets = logits[:, frames].argmax(0).astype(np.int64)
    original = np.abs(compute_crops(stack, x, frames, targets, method, cache=cache))
    geometry = CropGeometry(stack, x.shape[1])
    cols = geometry.offsets(frames)[:, None] + np.arange(geometry.receptive_field)[None, :]
    inside = (cols >= 0) & (cols < x.shape[1])
    mask = np.broadcast_to(inside[:, None, :], original.shape)

    def similarity(other: np.ndarray) -> np.ndarray:
        return rank_correlation(original, np.abs(other), mask)

    random_maps = np.stack([similarity(compute_crops(r, x, frames, targets, method)) for r in randomized])
    noisy = similarity(compute_crops(stack, x + noise.to(x), frames, targets, method))
    padded = np.pad(x.detach().cpu().numpy(), ((0, 0), (geometry.receptive_field, geometry.receptive_field)))
    inputs = np.transpose(padded[:, cols + geometry.receptive_field], (1, 0, 2))  # (N, F, RF)
    return random_maps, noisy, similarity(inputs), frames, targets


def _dense_maps(model, x: torch.Tensor, n_frames: int, noise: torch.Tensor, randomized):
    """As :func:`_conv_maps` for models that run through :mod:`.dense` (sensitivity, whole-utterance maps)."""
    dtype = next(model.module.parameters()).dtype
    x = x.to(device=model.device, dtype=dtype)
    with torch.no_grad():
        logits = model.logits(x[None])[0][0].cpu().numpy()
    frames = spike_frames(logits, n_frames, model.alphabet.blank)
    targets = logits[:, frames].argmax(0).astype(np.int64)
    _, original = dense_relevance(model, x, frames, targets, "sensitivity")
    _, random_map = dense_relevance(randomized, x, frames, targets, "sensitivity")
    _, noisy = dense_relevance(model, x + noise.to(x), frames, targets, "sensitivity")
    a = np.abs(original)
    inputs = np.broadcast_to(np.abs(x.detach().cpu().numpy())[None], a.shape)
    return (
        rank_correlation(a, np.abs(random_map))[None],
        rank_correlation(a, np.abs(noisy)),
        rank_correlation(a, inputs),
        frames,
        targets,
    )


def lrp_randomization_claim(
    model,
    utterances: Sequence,
    *,
    n_utterances: int = 8,
    seed: int = 0,
    method: str = "lrp-epsilon-plus",
    n_frames: int = 16,
    noise_level: float = 0.1,
    n_boot: int = 200,
    cascade: bool = False,
    progress: bool = False,
) -> Claim:
    """The randomization sanity check as a :class:`Claim` (module docstring).

    method: an LRP method name (:data:`~asr_introspect.attribution.frames.LRP_METHODS`) or any
    conv-stack method of :func:`~asr_introspect.attribution.frames.compute_crops` (e.g.
    ``"sensitivity"``); models the conv-stack engine cannot run use ``"sensitivity"`` instead.
    cascade: also compute the maps after each step of the cascade (output layer, then the layer
    below, ...; conv stacks only): ``details["cascade"]`` maps the lowest randomized layer to the
    mean similarity (the last step is the value). progress: a progress bar over the utterances.
    """
    name = "lrp_randomization_sanity_check"
    model.require_ctc("the randomization sanity check (maps of output frames)")
    if n_utterances < 1 or n_frames < 1 or n_boot < 1:
        raise InputError(f"n_utterances, n_frames and n_boot must be >= 1, got {n_utterances}, {n_frames}, {n_boot}")
    if not noise_level >= 0:
        raise InputError(f"noise_level must be >= 0, got {noise_level}")
    dense = needs_dense(model)
    used = "sensitivity" if dense else str(method)
    details: dict[str, Any] = {
        "method": used,
        "n_frames_per_utterance": int(n_frames),
        "noise_level": float(noise_level),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "similarity": "Spearman rank correlation of |relevance| over each frame's valid receptive field",
        "randomization": "every layer (the full cascade from the output layer down), Gaussian with each "
        "tensor's own std",
        "targets": "the trained model's predicted class at letter-spike frames",
    }
    if dense and str(method) in LRP_METHODS:
        details["note"] = f"{method} is refused for this model (self-attention or residual blocks): the gradient"
        details["note"] += " (sensitivity) on the whole utterance is tested instead"
        details["similarity"] = "Spearman rank correlation of |relevance| over the whole utterance"
    utterances = list(utterances)
    order = np.random.default_rng([int(seed), 5]).permutation(len(utterances))
    stack = randomized = None
    if dense:
        randomized = randomize_module(model, seed)
        randomized.module.eval()
        if cascade:
            details["cascade_note"] = "the cascade is computed for convolution stacks only"
    else:
        stack = conv_stack(model)
        top_down = list(reversed(stack.names))
        steps = [top_down[: k + 1] for k in range(len(top_down))] if cascade else [top_down]
        randomized = [randomize_stack(stack, layers, seed=seed) for layers in steps]
    per_utt: list[dict[str, Any]] = []
    sums = np.zeros((3, 0))
    cascade_sums = np.zeros(len(randomized) if not dense else 1)
    counts: list[int] = []
    skipped: list[str] = []
    bar = tqdm(total=min(n_utterances, len(utterances)), desc="randomization check", unit="utt", disable=not progress)
    for i in order:
        if len(per_utt) >= n_utterances:
            break
        utt = utterances[i]
        try:
            x = featurize_file(utt.audio_path, model.feature_config, min_input_frames=model.min_input_frames)
        except AudioError as exc:
            skipped.append(f"{utt.id}: {exc}")
            continue
        gen = torch.Generator().manual_seed(int(seed) * 100003 + int(i))
        sigma = float(noise_level) * float(x.max() - x.min())
        noise = sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        if dense:
            rho_random, rho_noise, rho_input, frames, targets = _dense_maps(model, x, n_frames, noise, randomized)
        else:
            rho_random, rho_noise, rho_input, frames, targets = _conv_maps(
                model, x, n_frames, used, noise, stack, randomized
            )
        finite = np.isfinite(rho_random[-1]) & np.isfinite(rho_noise)
        if not finite.any():
            skipped.append(f"{utt.id}: constant maps (no rank correlation)")
            continue
        row = np.stack([rho_random[-1, finite], rho_noise[finite], rho_input[finite]])
        cascade_sums += np.nan_to_num(rho_random[:, finite]).sum(1)
        sums = np.concatenate([sums, row.sum(1, keepdims=True)], axis=1)
        counts.append(int(finite.sum()))
        per_utt.append(
            {
                "id": utt.id,
                "frames": frames[finite].tolist(),
                "targets": targets[finite].tolist(),
                "randomized": rho_random[-1, finite].tolist(),
                "noise": rho_noise[finite].tolist(),
                "input": rho_input[finite].tolist(),
            }
        )
        bar.update(1)
    bar.close()
    details.update({"utterances": per_utt, "skipped": skipped})
    if not per_utt:
        nan = float("nan")
        details["reason"] = "no utterance gave a map (too short for the model, or constant maps)"
        return Claim(name, STATEMENT, nan, (nan, nan), nan, (nan, nan), NULL_NAME, "inconclusive", details)
    n = np.asarray(counts, dtype=np.float64)
    value, null, input_similarity = (float(v) for v in sums.sum(1) / n.sum())
    weights = bootstrap_weights(len(per_utt), int(n_boot), seed)
    interval = percentile_interval(frame_weighted_bootstrap(sums[0], n, weights))
    null_interval = percentile_interval(frame_weighted_bootstrap(sums[1], n, weights))
    details["input_similarity"] = input_similarity
    if cascade and not dense:
        details["cascade"] = {layers[-1]: float(c / n.sum()) for layers, c in zip(steps, cascade_sums)}
    details["input_similarity_meaning"] = "Spearman of |trained map| with |input features|"
    verdict = verdict_for(interval, null_interval, "less")
    return Claim(name, STATEMENT, value, interval, null, null_interval, NULL_NAME, verdict, details)
