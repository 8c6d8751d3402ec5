"""One pass over a corpus for every layer-trend measure, its nulls and its bootstrap; the claims.

:func:`collect` streams the corpus once through the model (all of its layers,
or those asked for) and keeps, per layer:

- per-(utterance, group) activation sums and frame counts for phoneme and
  letter groups (:class:`~asr_introspect.claims.bootstrap.UtteranceSums`), for
  four variants that see the same frames and labels: ``"model"`` (the trained
  model), ``"shuffled"`` (labels shuffled within utterances), ``"random"``
  (the same architecture with random weights, run on the same batch) and
  ``"layer_random"`` (this layer alone randomized, applied to the trained
  model's input to it; see :mod:`.nulls`);
- a bounded sample of frames (``max_frames``, chosen by seeded random keys per
  utterance and output frame, so the sample does not depend on batching) on a
  common time base: for each sampled output frame, every layer's frame
  nearest in time (receptive-field centres). Probes and CKA use it.

Letters come from the forced alignment of the transcript by the trained model
(``stream`` default); the null models' frames carry the same labels. Phone
labels come from the corpus' phone segments.

:func:`layer_trends` and :func:`probe_trends` turn that into curves across
layers with bootstrap samples over utterances (the same resampled utterance
multiplicities for every layer, variant and measure, so differences are
paired); :func:`layer_claims` states the papers' layer findings as
:class:`~asr_introspect.claims.Claim` objects; :func:`run_claims` does it all.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from asr_introspect.alignment import transfer_index
from asr_introspect.claims.bootstrap import UtteranceSums, bootstrap_multiplicities, resampled_means
from asr_introspect.claims.cka import cka_matrix
from asr_introspect.claims.layer_trend import (
    DEFAULT_MIN_COUNT,
    KINDS,
    LINKAGES,
    category_ari,
    layer_at_depth,
)
from asr_introspect.claims.nulls import LayerRandomizer, random_weights, randomize_module, shuffle_within_utterances
from asr_introspect.claims.probes import (
    bootstrap_balanced_accuracy,
    control_categories,
    probe_predictions,
    random_projection,
    utterance_folds,
)
from asr_introspect.claims.record import Claim, percentile_interval, verdict_for
from asr_introspect.errors import InputError
from asr_introspect.hooks import ActivationRecorder
from asr_introspect.naps.normalize import normalize_profiles
from asr_introspect.naps.profiles import letter_groups, phoneme_groups
from asr_introspect.naps.quality import group_categories
from asr_introspect.stream import stream_corpus
from asr_introspect.text import PHONE_TO_INDEX, PHONES

__all__ = [
    "VARIANTS",
    "Collected",
    "collect",
    "layer_trends",
    "probe_trends",
    "cka_views",
    "layer_claims",
    "run_claims",
]

#: the trained model and its three nulls, in the order figures draw them
VARIANTS = ("model", "random", "layer_random", "shuffled")
_MODEL_VARIANTS = ("model", "random", "layer_random")  # variants with their own activations


@dataclass
class Collected:
    """What one pass keeps (see the module docstring).

    tables[(by, layer)]: UtteranceSums with variants model/random/layer_random; shuffled[(by, layer)]:
    the same with labels shuffled within utterances (variant "shuffled"); groups[by]: group names;
    sample[variant][layer]: (n, d_l) float32 frames (d_l <= max_dims, projected beyond);
    sample_labels[(by, layer)]: (n,) group index or -1; sample_utterance: (n,) utterance index.
    """

    layers: list[str]
    utterance_ids: list[str]
    groups: dict[str, list[str]]
    tables: dict[tuple[str, str], UtteranceSums]
    shuffled: dict[tuple[str, str], UtteranceSums]
    sample: dict[str, dict[str, np.ndarray]]
    sample_labels: dict[tuple[str, str], np.ndarray]
    sample_utterance: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def labellings(self) -> list[str]:
        return list(self.groups)

    @property
    def n_utterances(self) -> int:
        return len(self.utterance_ids)


def _group_maps(model, utterances) -> dict[str, tuple[list[str], np.ndarray]]:
    """{by: (groups, map from label index to group index or -1)} for the labellings available."""
    maps = {}
    if any(getattr(u, "phones", None) for u in utterances):
        groups = phoneme_groups()
        m = np.full(len(PHONES) + 1, -1, dtype=np.int64)  # index -1 (no phone) -> -1
        for g, name in enumerate(groups):
            m[PHONE_TO_INDEX[name]] = g
        maps["phoneme"] = (groups, m)
    alphabet = model.letter_alphabet
    if alphabet is not None and (model.has_ctc_head or model.aligner is not None):
        groups = letter_groups(alphabet)
        m = np.full(len(alphabet) + 1, -1, dtype=np.int64)
        for g, name in enumerate(groups):
            m[alphabet.index(name)] = g
        maps["letter"] = (groups, m)
    return maps


class _FrameSample:
    """Bottom-k sample of output frames by seeded random keys, with every layer's frame at that time."""

    def __init__(self, k: int, layers: list[str], labellings: list[str], projections: dict[str, np.ndarray]):
        self.k, self.layers, self.labellings, self.projections = int(k), layers, labellings, projections
        self.keys = np.zeros(0)
        self.utt = np.zeros(0, dtype=np.int64)
        self.frames = {v: {n: [] for n in layers} for v in _MODEL_VARIANTS}
        self.labels = {(by, n): np.zeros(0, dtype=np.int64) for by in labellings for n in layers}
        self._pending = False

    def add(self, keys, utt, frames, labels) -> None:
        """keys/utt (m,); frames[variant][layer] (m, C_l); labels[(by, layer)] (m,)."""
        self.keys = np.r_[self.keys, keys]
        self.utt = np.r_[self.utt, utt]
        for v in _MODEL_VARIANTS:
            for n in self.layers:
                x = frames[v][n]
                if n in self.projections:
                    x = x @ self.projections[n]
                self.frames[v][n].append(np.asarray(x, dtype=np.float32))
        for key in self.labels:
            self.labels[key] = np.r_[self.labels[key], labels[key]]
        if self.keys.size > 2 * self.k:
            self._prune()

    def threshold(self) -> float:
        return float(np.partition(self.keys, self.k - 1)[self.k - 1]) if self.keys.size >= self.k else np.inf

    def _prune(self) -> None:
        order = np.argsort(self.keys, kind="stable")[: self.k]
        self.keys, self.utt = self.keys[order], self.utt[order]
        for v in _MODEL_VARIANTS:
            for n in self.layers:
                self.frames[v][n] = [np.concatenate(self.frames[v][n])[order]]
        for key in self.labels:
            self.labels[key] = self.labels[key][order]

    def result(self):
        self._prune()
        frames = {
            v: {
                n: (np.concatenate(self.frames[v][n]) if self.frames[v][n] else np.zeros((0, 0), np.float32))
                for n in self.layers
            }
            for v in _MODEL_VARIANTS
        }
        return frames, self.labels, self.utt


def _utterance_rng(seed: int, utterance_id: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and the utterance id: label shuffles do not depend on batching."""
    return np.random.default_rng([seed, 1, zlib.crc32(utterance_id.encode())])


def _nan_like(frames: np.ndarray) -> np.ndarray:
    """NaN frames: the layer-randomized null of a layer without a module of its own."""
    return np.full(frames.shape, np.nan, dtype=np.float32)


def _frames_major(acts: torch.Tensor) -> np.ndarray:
    """(B, C, T) -> (B * T, C) float32."""
    a = acts.detach().to("cpu", torch.float32).numpy()
    B, C, T = a.shape
    return np.ascontiguousarray(a.transpose(0, 2, 1)).reshape(B * T, C)


def collect(
    model,
    utterances: Sequence,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    max_frames: int = 8000,
    max_dims: int = 512,
    batch_size: int = 16,
    progress: bool = False,
) -> Collected:
    """Stream ``utterances`` once through ``model`` (and its random-weight twin, on the same batches);
    keep what :func:`layer_trends`, :func:`probe_trends` and :func:`cka_views` need."""
    utterances = list(utterances)
    layers = list(model.layer_names if layers is None else layers)
    unknown = [n for n in layers if n not in model.layer_names]
    if unknown:
        raise InputError(f"unknown layer(s) {', '.join(unknown)}; the model has {', '.join(model.layer_names)}")
    maps = _group_maps(model, utterances)
    if not maps:
        raise InputError(
            "no labels for the claims: the corpus has no phone segments and the model no letters "
            "(add TextGrids or use a CTC model)"
        )
    index = {u.id: i for i, u in enumerate(utterances)}
    if len(index) != len(utterances):
        raise InputError("duplicate utterance ids in the corpus")
    random_state = randomize_module(model.module, seed).state_dict()
    trained_state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    randomizer = LayerRandomizer(model, layers, seed)
    tables: dict[tuple[str, str], UtteranceSums] = {}
    shuffled: dict[tuple[str, str], UtteranceSums] = {}
    sampler: _FrameSample | None = None
    out_layer = model.output_layer
    with randomizer:
        for batch in stream_corpus(model, utterances, layers, batch_size=batch_size, progress=progress, desc="claims"):
            # the layer-randomized outputs first: the random-weights run below passes the pre-hooks again
            layer_random = randomizer.outputs(batch.feature_lengths)
            with random_weights(model, random_state, trained_state), torch.no_grad():
                with ActivationRecorder(model, layers) as rec:
                    rec.run(batch.features, batch.feature_lengths)
            acts = {
                "model": {n: batch.padded_frames(n) for n in layers},
                "random": {n: _frames_major(rec.activations[n]) for n in layers},
                "layer_random": {
                    n: _frames_major(layer_random[n]) if n in layer_random else _nan_like(batch.padded_frames(n))
                    for n in layers
                },
            }
            gidx = np.array([index[u.id] for u in batch.utterances], dtype=np.int64)
            if sampler is None:
                projections = {
                    n: random_projection(a.shape[1], max_dims, seed + zlib.crc32(n.encode()) % 10_000)
                    for n, a in acts["model"].items()
                    if a.shape[1] > max_dims
                }
                sampler = _FrameSample(max_frames, layers, list(maps), projections)
            labels_by: dict[tuple[str, str], np.ndarray] = {}
            for by, (groups, gmap) in maps.items():
                for n in layers:
                    if by == "phoneme":
                        raw = batch.phone_labels(n)
                        rows = batch.phone_rows()
                    else:
                        raw = batch.letter_labels(n)
                        rows = batch.letter_rows()
                    lab = np.where(batch.mask(n) & rows[:, None], gmap[raw], -1)
                    labels_by[(by, n)] = lab
                    utt = np.repeat(gidx, lab.shape[1])
                    key = (by, n)
                    if key not in tables:
                        tables[key] = UtteranceSums(len(groups), acts["model"][n].shape[1], _MODEL_VARIANTS)
                        shuffled[key] = UtteranceSums(len(groups), acts["model"][n].shape[1], ("shuffled",))
                    tables[key].add(utt, lab.ravel(), {v: acts[v][n] for v in _MODEL_VARIANTS})
                    shuf = np.concatenate(
                        [
                            shuffle_within_utterances(lab[b : b + 1], _utterance_rng(seed, u.id))
                            for b, u in enumerate(batch.utterances)
                        ]
                    )
                    shuffled[key].add(utt, shuf.ravel(), {"shuffled": acts["model"][n]})
            _sample_batch(sampler, model, batch, gidx, layers, acts, labels_by, out_layer, seed)
    if sampler is None:
        raise InputError("the corpus is empty: nothing to test the claims on")
    frames, sample_labels, sample_utt = sampler.result()
    return Collected(
        layers,
        [u.id for u in utterances],
        {by: groups for by, (groups, _) in maps.items()},
        tables,
        shuffled,
        frames,
        sample_labels,
        sample_utt,
        {
            "seed": seed,
            "max_frames": max_frames,
            "max_dims": max_dims,
            "projected": sorted(sampler.projections),
            "layer_randomization_undefined": [n for n in layers if n not in randomizer.available],
        },
    )


def _sample_batch(sampler, model, batch, gidx, layers, acts, labels_by, out_layer, seed) -> None:
    """Offer the batch's valid output frames to the sampler (keys seeded per utterance)."""
    out_len = batch.layer_lengths(out_layer)
    T_out = batch.width(out_layer)
    threshold = sampler.threshold()
    pick_b, pick_t, keys = [], [], []
    for b, utt in enumerate(batch.utterances):
        # keyed by the utterance id: the sample does not depend on corpus order or batching
        k = np.random.default_rng([seed, zlib.crc32(utt.id.encode())]).random(int(out_len[b]))
        t = np.flatnonzero(k < threshold)
        pick_b.append(np.full(t.size, b))
        pick_t.append(t)
        keys.append(k[t])
    pick_b, pick_t, keys = np.concatenate(pick_b), np.concatenate(pick_t), np.concatenate(keys)
    if keys.size == 0:
        return
    frames = {v: {} for v in _MODEL_VARIANTS}
    labels = {}
    for n in layers:
        width = batch.width(n)
        idx = transfer_index(model.frame_map, n, out_layer, T_out) if n != out_layer else np.arange(T_out)
        last = batch.layer_lengths(n)[pick_b] - 1
        t_l = np.minimum(idx[pick_t], np.maximum(last, 0))
        rows = pick_b * width + t_l
        for v in _MODEL_VARIANTS:
            frames[v][n] = acts[v][n][rows]
        for by in sampler.labellings:
            labels[(by, n)] = labels_by[(by, n)][pick_b, t_l]
    sampler.add(keys, gidx[pick_b], frames, labels)


# ---------------------------------------------------------------------------
# measures


@functools.lru_cache(maxsize=64)
def _categories(groups: tuple[str, ...], by: str, kind: str) -> tuple[np.ndarray, list[str | None]]:
    cats = group_categories(list(groups), by, kind)
    return np.array([c is not None for c in cats]), cats


def _scores(means, counts, groups, by, min_count, linkages=tuple(LINKAGES)) -> dict[str, float]:
    """{"<kind>/<linkage>": ARI} of one layer; kinds with the same groups share the z-scored profiles."""
    out = {}
    cache: dict[bytes, np.ndarray] = {}
    for kind in KINDS[by]:
        has, cats = _categories(tuple(groups), by, kind)
        keep = np.flatnonzero(has & (np.asarray(counts) >= max(1, min_count)))
        names = [cats[i] for i in keep]
        key = keep.tobytes()
        if key not in cache:
            # NaN activations: a null left undefined for this layer (nulls.LayerRandomizer)
            finite = bool(np.isfinite(means[keep]).all())
            cache[key] = normalize_profiles(means[keep], "zscore") if finite and keep.size else None
        defined = cache[key] is not None
        for name in linkages:
            out[f"{kind}/{name}"] = category_ari(cache[key], names, name) if defined else float("nan")
    return out


def layer_trends(
    collected: Collected,
    n_boot: int = 100,
    min_count: int = DEFAULT_MIN_COUNT,
    seed: int = 0,
    boot_linkages: Sequence[str] = ("ward",),
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """ARI curves: ``{measure: {variant: {"value": (L,), "samples": (n_boot, L)}}}``.

    ``measure`` is ``"<by>/<kind>/<linkage>"`` (e.g. ``"phoneme/manner/ward"``); ``variant`` one of
    :data:`VARIANTS`. Samples (bootstrap over utterances, shared multiplicities, seeded) are drawn for
    the linkages in ``boot_linkages``; the other linkages get NaN samples (point values only), which
    keeps the bootstrap at one tree per replicate, layer, labelling and variant.
    """
    m = bootstrap_multiplicities(collected.n_utterances, n_boot, seed)
    L = len(collected.layers)
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for by, groups in collected.groups.items():
        for li, layer in enumerate(collected.layers):
            for variant in VARIANTS:
                table = collected.shuffled[(by, layer)] if variant == "shuffled" else collected.tables[(by, layer)]
                point, counts = resampled_means(table, variant, None)
                for measure, value in _scores(point[0], counts[0], groups, by, min_count).items():
                    entry = out.setdefault(f"{by}/{measure}", {}).setdefault(
                        variant, {"value": np.full(L, np.nan), "samples": np.full((n_boot, L), np.nan)}
                    )
                    entry["value"][li] = value
                if not boot_linkages or n_boot == 0:
                    continue
                boot, boot_counts = resampled_means(table, variant, m)
                for r in range(n_boot):
                    scores = _scores(boot[r], boot_counts[r], groups, by, min_count, boot_linkages)
                    for measure, value in scores.items():
                        out[f"{by}/{measure}"][variant]["samples"][r, li] = value
    return out


def _classes(collected: Collected, by: str, kind: str, group_labels: np.ndarray, control: bool, seed: int):
    """(n,) class index of each sampled frame for category ``kind`` (or its control), -1: none."""
    cats = group_categories(collected.groups[by], by, kind)
    if control:
        cats = control_categories(cats, seed)
    names = sorted({c for c in cats if c is not None})
    cls = np.array([names.index(c) if c is not None else -1 for c in cats] + [-1], dtype=np.int64)
    return cls[group_labels]  # group label -1 -> the last entry, -1


def probe_trends(
    collected: Collected, n_boot: int = 100, seed: int = 0, n_folds: int = 5, ridge: float = 1e-2
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Probe curves: ``{"<by>/<kind>/<accuracy|control|selectivity>": {variant: {"value", "samples"}}}``.

    Variants: "model", "random", "layer_random" (their own frames) and "shuffled" (the model's frames,
    group labels shuffled within utterances among the sampled frames, real and control categories
    taken from the shuffled groups). Balanced accuracy, cross-validated over utterance folds; samples
    resample utterances with the same multiplicities as :func:`layer_trends`.
    """
    m = bootstrap_multiplicities(collected.n_utterances, n_boot, seed)
    utt = collected.sample_utterance
    folds = utterance_folds(utt, n_folds, seed)
    rng = np.random.default_rng(seed + 1)
    L = len(collected.layers)
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for li, layer in enumerate(collected.layers):
        targets: dict[str, dict[str, np.ndarray]] = {"model": {}, "shuffled": {}}
        for by in collected.groups:
            labels = collected.sample_labels[(by, layer)]
            shuffled = _shuffle_sample(labels, utt, rng)
            for kind in KINDS[by]:
                for variant, lab in (("model", labels), ("shuffled", shuffled)):
                    targets[variant][f"{by}/{kind}"] = _classes(collected, by, kind, lab, False, seed)
                    targets[variant][f"{by}/{kind}/control"] = _classes(collected, by, kind, lab, True, seed)
        for variant in _MODEL_VARIANTS:
            tasks = {f"{v}:{k}": y for v in ("model", "shuffled") for k, y in targets[v].items()}
            if variant != "model":
                tasks = {k: y for k, y in tasks.items() if k.startswith("model:")}
            X = collected.sample[variant][layer]
            if not np.isfinite(X).all():  # a null left undefined for this layer (see nulls.LayerRandomizer)
                continue
            preds = probe_predictions(X, tasks, folds, ridge)
            for source in ("model", "shuffled") if variant == "model" else ("model",):
                name = "shuffled" if source == "shuffled" else variant
                for by in collected.groups:
                    for kind in KINDS[by]:
                        real, ctrl = f"{source}:{by}/{kind}", f"{source}:{by}/{kind}/control"
                        acc = _acc(tasks[real], preds[real], utt, m)
                        control = _acc(tasks[ctrl], preds[ctrl], utt, m)
                        for what, values in (("accuracy", acc), ("control", control), ("selectivity", acc - control)):
                            entry = out.setdefault(f"{by}/{kind}/{what}", {}).setdefault(
                                name, {"value": np.full(L, np.nan), "samples": np.full((n_boot, L), np.nan)}
                            )
                            entry["value"][li] = values[0]
                            entry["samples"][:, li] = values[1:]
    return out


def _acc(y, pred, utt, m) -> np.ndarray:
    """(1 + B,) balanced accuracy on the corpus, then on each resampled corpus."""
    point = bootstrap_balanced_accuracy(y, pred, utt, None)
    return np.r_[point, bootstrap_balanced_accuracy(y, pred, utt, m)]


def _shuffle_sample(labels: np.ndarray, utt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels (n,) permuted among the sampled frames of each utterance that have one."""
    out = labels.copy()
    for u in np.unique(utt):
        idx = np.flatnonzero((utt == u) & (labels >= 0))
        out[idx] = labels[idx[rng.permutation(idx.size)]]
    return out


def cka_views(collected: Collected, n_frames: int = 4000) -> dict[str, np.ndarray]:
    """{"model": (L, L), "random": (L, L)} linear CKA between layers on the first ``n_frames`` sampled
    frames (a random subset: the sample is ordered by its random keys)."""
    return {v: cka_matrix([collected.sample[v][n][:n_frames] for n in collected.layers]) for v in ("model", "random")}


# ---------------------------------------------------------------------------
# claims


def _interval(samples) -> tuple[float, float]:
    return percentile_interval(samples)


def _null_details(curves, li: int, variants=("random", "layer_random", "shuffled")) -> dict:
    return {
        v: {"value": float(curves[v]["value"][li]), "interval": list(_interval(curves[v]["samples"][:, li]))}
        for v in variants
        if v in curves
    }


#: the measure each layer claim uses (stated before looking at the numbers)
PHONEME_MEASURE = "phoneme/manner/ward"
LETTER_MEASURE = "letter/vowel/ward"


def layer_claims(
    collected: Collected, trends: dict, probes: dict, *, min_count: int = DEFAULT_MIN_COUNT
) -> list[Claim]:
    """The NAP layer findings of the original work as claims (phoneme clusters at layer 9, sharper at
    layer 10; letters best at the output), each against the random-weights model or a matched null."""
    layers = collected.layers
    claims = []
    l9, l10 = layer_at_depth(layers, 9), layer_at_depth(layers, 10)
    i9, i10 = layers.index(l9), layers.index(l10)
    depth_note = f"layers at the relative depth of layers 9 and 10 of 11: {l9}, {l10} (of {len(layers)})"
    if PHONEME_MEASURE in trends:
        cur = trends[PHONEME_MEASURE]
        value, samples = cur["model"]["value"][i9], cur["model"]["samples"][:, i9]
        null, null_samples = cur["random"]["value"][i9], cur["random"]["samples"][:, i9]
        interval, null_interval = _interval(samples), _interval(null_samples)
        claims.append(
            Claim(
                "phoneme_clusters_layer9",
                f"Phoneme NAPs cluster by phonetic category (manner of articulation) in {l9}.",
                float(value),
                interval,
                float(null),
                null_interval,
                "random weights",
                verdict_for(interval, null_interval, "greater"),
                {
                    "measure": PHONEME_MEASURE,
                    "layer": l9,
                    "depth": depth_note,
                    "min_count": min_count,
                    "other_nulls": _null_details(cur, i9),
                    "other_linkages": {
                        k: float(v["model"]["value"][i9]) for k, v in trends.items() if k.startswith("phoneme/")
                    },
                    "probe_selectivity": _probe_detail(probes, "phoneme/manner/selectivity", i9),
                },
            )
        )
        diff = cur["model"]["samples"][:, i10] - cur["model"]["samples"][:, i9]
        if np.isfinite(cur["layer_random"]["value"][i10]):
            null_value = cur["layer_random"]["value"][i10] - cur["model"]["value"][i9]
            null_diff = cur["layer_random"]["samples"][:, i10] - cur["model"]["samples"][:, i9]
            null_name = f"{l10} randomized alone (on the trained {l9})"
        else:  # the adapter's layers are taps without parameters: the random-weights model's difference
            null_value = cur["random"]["value"][i10] - cur["random"]["value"][i9]
            null_diff = cur["random"]["samples"][:, i10] - cur["random"]["samples"][:, i9]
            null_name = "random weights"
        interval, null_interval = _interval(diff), _interval(null_diff)
        claims.append(
            Claim(
                "phoneme_clusters_sharper_layer10",
                f"Phoneme clusters are more distinct in {l10} than in {l9} (ARI difference).",
                float(cur["model"]["value"][i10] - cur["model"]["value"][i9]),
                interval,
                float(null_value),
                null_interval,
                null_name,
                verdict_for(interval, null_interval, "greater"),
                {
                    "measure": PHONEME_MEASURE,
                    "layers": [l9, l10],
                    "depth": depth_note,
                    "ari": {l9: float(cur["model"]["value"][i9]), l10: float(cur["model"]["value"][i10])},
                    "fraction_of_replicates_sharper": float(np.nanmean(diff > 0)),
                    "probe_selectivity": {
                        l9: _probe_detail(probes, "phoneme/manner/selectivity", i9),
                        l10: _probe_detail(probes, "phoneme/manner/selectivity", i10),
                    },
                },
            )
        )
    if LETTER_MEASURE in trends:
        cur = trends[LETTER_MEASURE]
        last = len(layers) - 1

        def margin(values: np.ndarray) -> np.ndarray:
            """The last layer's score minus the best earlier layer's; NaN where no earlier layer has one."""
            values = np.atleast_2d(values)
            if not last:
                return np.zeros(len(values))
            earlier = values[:, :last]
            defined = ~np.isnan(earlier).all(axis=1)
            best = np.full(len(values), np.nan)
            best[defined] = np.nanmax(earlier[defined], axis=1)
            return values[:, last] - best

        samples, null_samples = margin(cur["model"]["samples"]), margin(cur["random"]["samples"])
        interval, null_interval = _interval(samples), _interval(null_samples)
        best = np.nanargmax(cur["model"]["samples"], axis=1) if np.isfinite(cur["model"]["samples"]).any() else []
        claims.append(
            Claim(
                "letters_best_at_output",
                f"Letter NAPs separate (vowels vs consonants) best in the output layer {layers[last]}: "
                "its ARI minus the best other layer's.",
                float(margin(cur["model"]["value"])[0]),
                interval,
                float(margin(cur["random"]["value"])[0]),
                null_interval,
                "random weights",
                verdict_for(interval, null_interval, "greater"),
                {
                    "measure": LETTER_MEASURE,
                    "curve": dict(zip(layers, map(float, cur["model"]["value"]))),
                    "argmax_layer": layers[int(np.nanargmax(cur["model"]["value"]))]
                    if np.isfinite(cur["model"]["value"]).any()
                    else None,
                    "fraction_of_replicates_argmax_last": float(np.mean(np.asarray(best) == last))
                    if len(best)
                    else float("nan"),
                    "min_count": min_count,
                    "probe_accuracy": dict(
                        zip(
                            layers,
                            map(
                                float,
                                probes.get("letter/vowel/accuracy", {})
                                .get("model", {})
                                .get("value", np.full(len(layers), np.nan)),
                            ),
                        )
                    ),
                },
            )
        )
    return claims


def _probe_detail(probes: dict, key: str, li: int) -> dict:
    if key not in probes:
        return {}
    return {
        v: {"value": float(c["value"][li]), "interval": list(_interval(c["samples"][:, li]))}
        for v, c in probes[key].items()
    }


def other_claims(model, utterances, *, n_boot: int, seed: int, n_lrp_utterances: int = 8) -> tuple[list, list]:
    """The claims of :mod:`.patterns` and :mod:`.attribution`: (claims, notes on those that could not run
    on this model or corpus, with the reason)."""
    from asr_introspect.claims.attribution import lrp_randomization_claim
    from asr_introspect.claims.patterns import pattern_claims

    claims, notes = [], []
    try:
        claims += list(pattern_claims(model, utterances, n_boot=n_boot, seed=seed))
    except (InputError, NotImplementedError) as exc:
        notes.append(f"pattern claims: {exc}")
    try:
        claims.append(lrp_randomization_claim(model, utterances, n_utterances=n_lrp_utterances, seed=seed))
    except (InputError, NotImplementedError) as exc:
        notes.append(f"LRP randomization claim: {exc}")
    return claims, notes


@dataclass
class ClaimsResult:
    """Everything a claims run found: ``claims`` (layer claims first), ``trends`` and ``probes``
    (curves with bootstrap samples), ``cka`` ({variant: (L, L)}), ``collected`` and ``settings``."""

    claims: list[Claim]
    trends: dict
    probes: dict
    cka: dict[str, np.ndarray]
    collected: Collected
    settings: dict
    notes: list[str] = field(default_factory=list)


def run_claims(
    model,
    utterances: Sequence,
    *,
    layers: Sequence[str] | None = None,
    n_boot: int = 100,
    seed: int = 0,
    min_count: int = DEFAULT_MIN_COUNT,
    max_frames: int = 8000,
    max_dims: int = 512,
    cka_frames: int = 4000,
    batch_size: int = 16,
    others: bool = True,
    progress: bool = False,
) -> ClaimsResult:
    """One pass, the layer trends, probes, CKA and every claim (``others``: also the claims of
    :func:`other_claims`)."""
    collected = collect(
        model,
        utterances,
        layers=layers,
        seed=seed,
        max_frames=max_frames,
        max_dims=max_dims,
        batch_size=batch_size,
        progress=progress,
    )
    trends = layer_trends(collected, n_boot, min_count, seed)
    probes = probe_trends(collected, n_boot, seed)
    cka = cka_views(collected, cka_frames)
    claims = layer_claims(collected, trends, probes, min_count=min_count)
    notes: list[str] = []
    if "phoneme" not in collected.groups:
        notes.append("phoneme claims: no utterance has phone segments (add TextGrids)")
    if "letter" not in collected.groups:
        notes.append("letter claims: the model has no letters (an encoder without a CTC head and no aligner)")
    if others:
        more, notes = other_claims(model, utterances, n_boot=n_boot, seed=seed)
        claims += more
    settings = {
        "n_boot": n_boot,
        "seed": seed,
        "min_count": min_count,
        "interval": "95 % percentile bootstrap over utterances",
        "layers": collected.layers,
        "utterances": collected.n_utterances,
        "sampled_frames": int(collected.sample_utterance.size),
        "cka_frames": int(min(cka_frames, collected.sample_utterance.size)),
        "layer_randomization": "independent (each layer alone, on the trained input)",
        **collected.settings,
    }
    return ClaimsResult(claims, trends, probes, cka, collected, settings, notes)
