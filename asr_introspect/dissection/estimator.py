"""The dissection pass: :class:`DissectionEstimator` (a stream estimator) and its result, :class:`Dissection`.

One streamed pass over a corpus gives, for every neuron (channel) of the chosen layers:

- its top-K activating segments (utterance, frame, activation and the concepts at that frame), kept by a
  bounded heap per neuron (:mod:`~asr_introspect.dissection.topk`);
- the counts behind its concept scores (:mod:`~asr_introspect.dissection.scores`): per base label of the
  vocabulary, the frames where the neuron is active (``a >= tau``) and the activation sums.

The thresholds ``tau`` (each neuron's top ``quantile``) come from a calibration pass
(:class:`~asr_introspect.dissection.quantiles.ActivationQuantiles`) that :meth:`DissectionEstimator.fit`
runs first on at most ``calibration`` utterances (a seeded random subset), or from ``thresholds=``. The
same pass measures each layer's response lag (``lag="auto"``): frame t of a layer is scored against the
concepts of frame ``t - lag``, because deep layers of a CTC model respond to a sound well after it (on
the shipped model 3 frames = 48 ms in the middle layers, 9 frames = 144 ms in the 9th and 10th).
Everything the pass accumulates is a sum (or, for the heaps, a top-K of a union), so
``partial_fit`` over any batching, ``merge`` of two estimators and ``all_reduce`` across
``torchrun`` processes all give the same result.

Example::

    est = DissectionEstimator(["conv9", "conv10"], top_k=10)
    dissection = est.fit(model, utterances).result()
    dissection.labels("conv9")[57]        # concept indices, best IoU first
    dissection.describe("conv9", 57)      # "voiceless fricatives /s/ /sh/, mostly ..."
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_introspect.aggregate import all_reduce_arrays, torch_distributed
from asr_introspect.dissection.concepts import ConceptVocabulary, check_families, voice_family
from asr_introspect.dissection.describe import describe_neuron
from asr_introspect.dissection.kernels import concept_counts_into, cooccurrence_into
from asr_introspect.dissection.quantiles import ActivationQuantiles, check_quantile, layer_step_seconds
from asr_introspect.dissection.scores import (
    ConceptScores,
    LayerCounts,
    concept_overlap,
    concept_scores,
    polysemanticity,
    unit_labels,
)
from asr_introspect.dissection.topk import TopK
from asr_introspect.errors import InputError
from asr_introspect.io import load_npz, save_npz
from asr_introspect.stream import (
    DEFAULT_SOURCE,
    StreamBatch,
    StreamEstimator,
    check_letter_settings,
    fit_estimators,
    layer_channels,
)

__all__ = ["DissectionEstimator", "Dissection", "calibration_sample", "lagged_codes"]

_FORMAT = "asr-introspect-dissection-1"


def lagged_codes(codes: np.ndarray, lag: int, mask: np.ndarray) -> np.ndarray:
    """Concept codes (B, T, G) moved ``lag`` frames later: frame t gets the codes of frame t - lag (-1 where
    that frame is outside the utterance, and on padded frames ``~mask``). ``lag = 0`` returns ``codes``."""
    if lag == 0:
        return codes
    T = codes.shape[1]
    out = np.full_like(codes, -1)
    if 0 < lag < T:
        out[:, lag:] = codes[:, : T - lag]
    elif -T < lag < 0:
        out[:, :lag] = codes[:, -lag:]
    out[~mask] = -1
    return out


def calibration_sample(utterances: Sequence, limit: int | None, seed: int = 0) -> list:
    """At most ``limit`` utterances drawn at random (``seed``), in corpus order; all when ``limit`` is None."""
    utterances = list(utterances)
    if limit is None or limit >= len(utterances):
        return utterances
    keep = np.sort(np.random.default_rng(seed).choice(len(utterances), size=int(limit), replace=False))
    return [utterances[i] for i in keep]


class Dissection:
    """What a dissection pass found: counts, thresholds and top segments per layer, and the scores,
    labels, polysemanticity and descriptions derived from them.

    layers; vocabulary (:class:`ConceptVocabulary`); counts ({layer: :class:`LayerCounts`}); thresholds
    ({layer: (N,) float32}); top ({layer: :class:`TopK`}); utterance_ids / utterance_voices (what the top
    segments' utterance indices refer to); time_axes ({layer: (origin, step)}: frame t is centred at
    ``origin + step * t`` seconds); settings (JSON-ready: quantile, min_iou, min_overlap, ...).
    """

    def __init__(
        self,
        layers: Sequence[str],
        vocabulary: ConceptVocabulary,
        counts: Mapping[str, LayerCounts],
        thresholds: Mapping[str, np.ndarray],
        top: Mapping[str, TopK],
        utterance_ids: Sequence[str],
        utterance_voices: Sequence[str],
        time_axes: Mapping[str, tuple[float, float]],
        settings: dict,
    ) -> None:
        self.layers = list(layers)
        self.vocabulary = vocabulary
        self.counts = dict(counts)
        self.thresholds = {k: np.asarray(v, dtype=np.float32) for k, v in thresholds.items()}
        self.top = dict(top)
        self.utterance_ids = list(utterance_ids)
        self.utterance_voices = list(utterance_voices)
        self.time_axes = {k: (float(a), float(b)) for k, (a, b) in time_axes.items()}
        self.settings = dict(settings)
        self._scores: dict[str, ConceptScores] = {}
        self._cache: dict[tuple, Any] = {}

    @property
    def concepts(self) -> list[str]:
        return list(self.vocabulary.names)

    @property
    def min_iou(self) -> float:
        return float(self.settings["min_iou"])

    def n_neurons(self, layer: str) -> int:
        return int(self.thresholds[self._layer(layer)].shape[0])

    def _layer(self, layer: str) -> str:
        if layer not in self.counts:
            raise InputError(f"layer {layer!r} was not dissected; layers: {', '.join(self.layers)}")
        return layer

    # -- scores ------------------------------------------------------------------------------

    def scores(self, layer: str) -> ConceptScores:
        """IoU, precision, recall and selectivity of every neuron x concept of ``layer`` ((N, K) each)."""
        if layer not in self._scores:
            v = self.vocabulary
            self._scores[layer] = concept_scores(
                self.counts[self._layer(layer)], v.derivation, v.concept_facet, v.facet_universe(), v.names
            )
        return self._scores[layer]

    def overlap(self, layer: str) -> np.ndarray:
        """(K, K) overlap coefficients of the concepts on ``layer``'s frames."""
        key = ("overlap", layer)
        if key not in self._cache:
            self._cache[key] = concept_overlap(self.counts[self._layer(layer)], self.vocabulary.derivation)
        return self._cache[key]

    def labels(self, layer: str, min_iou: float | None = None) -> list[np.ndarray]:
        """Per neuron its labels: concept indices with ``IoU >= min_iou`` (default: the run's), best first."""
        key = ("labels", layer, self.min_iou if min_iou is None else float(min_iou))
        if key not in self._cache:
            self._cache[key] = unit_labels(self.scores(layer), key[2])
        return self._cache[key]

    def polysemanticity(self, layer: str, min_iou: float | None = None) -> np.ndarray:
        """(N,) number of distinct concept groups among each neuron's labels (0: unlabelled)."""
        key = ("polysemanticity", layer, self.min_iou if min_iou is None else float(min_iou))
        if key not in self._cache:
            self._cache[key] = polysemanticity(
                self.labels(layer, min_iou), self.overlap(layer), float(self.settings.get("min_overlap", 0.5))
            )
        return self._cache[key]

    def labelled_with(self, layer: str, concept: str, min_iou: float | None = None) -> np.ndarray:
        """Neurons of ``layer`` that have ``concept`` among their labels, best IoU first."""
        k = self.vocabulary.index(concept)
        iou = np.nan_to_num(self.scores(layer).iou[:, k], nan=-1.0)
        threshold = self.min_iou if min_iou is None else float(min_iou)
        neurons = np.flatnonzero(iou >= threshold)
        return neurons[np.argsort(-iou[neurons], kind="stable")]

    # -- top segments and descriptions -------------------------------------------------------------

    def top_segments(self, layer: str, neuron: int, concepts: bool = True) -> list[dict]:
        """The neuron's top segments, largest first: utterance id, voice, frame, time (s, the frame's
        receptive-field centre), sound_time (``time`` minus the layer's lag: where the sound it responds to
        is), activation and (with ``concepts``) the concepts there."""
        top = self.top[self._layer(layer)]
        origin, step = self.time_axes[layer]
        lag = int(self.settings.get("lags", {}).get(layer, {}).get("frames", 0))
        out = []
        for slot in range(top.k):
            u = int(top.utterances[neuron, slot])
            if u < 0:
                continue
            frame = int(top.frames[neuron, slot])
            entry = {
                "utterance": self.utterance_ids[u],
                "voice": self.utterance_voices[u],
                "frame": frame,
                "time": round(origin + step * frame, 4),
                "sound_time": round(origin + step * (frame - lag), 4),
                "activation": float(top.values[neuron, slot]),
            }
            if concepts:
                entry["concepts"] = self.vocabulary.concepts_of_codes(top.codes[neuron, slot])
            out.append(entry)
        return out

    def describe(self, layer: str, neuron: int, min_iou: float | None = None) -> str:
        """A short description of the neuron from its labels, precisions and top clips' voices."""
        s = self.scores(layer)
        voices = [seg["voice"] for seg in self.top_segments(layer, neuron, concepts=False)]
        base_rate = s.concept_frames / np.maximum(s.universe_frames, 1)
        return describe_neuron(
            s.concepts,
            self.vocabulary.concept_families,
            s.iou[neuron],
            s.precision[neuron],
            self.labels(layer, min_iou)[neuron],
            voices,
            base_rate=base_rate,
        )

    def unit(self, layer: str, neuron: int, n_concepts: int = 5, clip_concepts: bool = False) -> dict:
        """JSON-ready record of one neuron: threshold, active share, labels, best concepts, description,
        polysemanticity and top segments."""
        s = self.scores(layer)
        labels = self.labels(layer)[neuron]
        iou = np.nan_to_num(s.iou[neuron], nan=-1.0)
        best = np.argsort(-iou, kind="stable")[:n_concepts]

        def record(k: int) -> dict:
            return {
                "concept": s.concepts[k],
                "iou": _num(s.iou[neuron, k]),
                "precision": _num(s.precision[neuron, k]),
                "recall": _num(s.recall[neuron, k]),
                "selectivity": _num(s.selectivity[neuron, k]),
            }

        return {
            "neuron": int(neuron),
            "threshold": float(self.thresholds[layer][neuron]),
            "active_fraction": _num(s.active_fraction[neuron]),
            "labels": [s.concepts[k] for k in labels],
            "polysemanticity": int(self.polysemanticity(layer)[neuron]),
            "description": self.describe(layer, neuron),
            "top_concepts": [record(int(k)) for k in best],
            "top_clips": self.top_segments(layer, neuron, concepts=clip_concepts),
        }

    # -- layer summaries -------------------------------------------------------------------------

    def layer_summary(self, layer: str) -> dict:
        """Labelled share, polysemanticity distribution and the families of the best labels of ``layer``."""
        labels = self.labels(layer)
        poly = self.polysemanticity(layer)
        n = len(labels)
        families = self.vocabulary.concept_families
        best_family: dict[str, int] = {}
        for members in labels:
            if len(members):
                family = families[int(members[0])]
                best_family[family] = best_family.get(family, 0) + 1
        histogram = {str(p): int((poly == p).sum()) for p in range(4)}
        histogram["4+"] = int((poly >= 4).sum())
        labelled = poly > 0
        s = self.scores(layer)
        return {
            "neurons": n,
            "frames": int(self.counts[layer].n_frames[0]),
            "labelled": int(labelled.sum()),
            "labelled_fraction": float(labelled.mean()) if n else 0.0,
            "polysemanticity": histogram,
            "mean_polysemanticity_labelled": float(poly[labelled].mean()) if labelled.any() else 0.0,
            "best_label_family": dict(sorted(best_family.items(), key=lambda kv: -kv[1])),
            "median_best_iou": float(np.nanmedian(np.nanmax(np.where(np.isnan(s.iou), -1.0, s.iou), axis=1)))
            if n
            else 0.0,
            "mean_active_fraction": float(np.mean(s.active_fraction)) if n else 0.0,
        }

    def to_dict(self, clip_concepts: Mapping[str, Sequence[int]] | None = None, n_concepts: int = 5) -> dict:
        """The content of ``dissection.json``: settings, concepts, and per layer its summary and every unit
        (``clip_concepts``: {layer: neurons whose top clips list their concepts})."""
        clip_concepts = clip_concepts or {}
        s0 = self.scores(self.layers[0]) if self.layers else None
        concepts = [
            {
                "name": name,
                "family": family,
                "frames": int(s0.concept_frames[k]) if s0 is not None else 0,
                "universe_frames": int(s0.universe_frames[k]) if s0 is not None else 0,
            }
            for k, (name, family) in enumerate(zip(self.vocabulary.names, self.vocabulary.concept_families))
        ]
        layers = {}
        for layer in self.layers:
            wanted = set(int(n) for n in clip_concepts.get(layer, ()))
            layers[layer] = {
                **self.layer_summary(layer),
                "units": [
                    self.unit(layer, n, n_concepts, clip_concepts=n in wanted) for n in range(self.n_neurons(layer))
                ],
            }
        return {
            "settings": self.settings,
            "vocabulary": self.vocabulary.to_dict(),
            "concepts": concepts,
            "layers": layers,
        }

    # -- files -----------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """npz-ready arrays: per layer L ``iou@L``, ``precision@L``, ``recall@L``, ``selectivity@L`` (N, K),
        ``thresholds@L``, ``active_fraction@L`` (N,), ``polysemanticity@L``, the top segments ``top@L/...``
        and the accumulated counts ``counts@L/...``; ``concepts``, ``families``, ``utterance_ids``, ...."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT),
            "layers": np.array(self.layers, dtype=str),
            "concepts": np.array(self.vocabulary.names, dtype=str),
            "families": np.array(self.vocabulary.concept_families, dtype=str),
            "utterance_ids": np.array(self.utterance_ids, dtype=str),
            "utterance_voices": np.array(self.utterance_voices, dtype=str),
            "vocabulary": np.array(json.dumps(self.vocabulary.to_dict())),
            "settings": np.array(json.dumps(self.settings)),
        }
        for layer in self.layers:
            s = self.scores(layer)
            arrays.update(
                {
                    f"iou@{layer}": s.iou,
                    f"precision@{layer}": s.precision,
                    f"recall@{layer}": s.recall,
                    f"selectivity@{layer}": s.selectivity,
                    f"thresholds@{layer}": self.thresholds[layer],
                    f"active_fraction@{layer}": s.active_fraction,
                    f"polysemanticity@{layer}": self.polysemanticity(layer),
                    f"time_axis@{layer}": np.array(self.time_axes[layer], dtype=np.float64),
                }
            )
            arrays.update(self.top[layer].to_arrays(f"top@{layer}/"))
            arrays.update(self.counts[layer].to_arrays(f"counts@{layer}/"))
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz, atomically; :meth:`load` reads it back)."""
        return save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> Dissection:
        try:
            d = load_npz(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read a dissection ({exc})") from exc
        if "format" not in d or str(d["format"]) != _FORMAT:
            raise InputError(f"{path}: not a dissection file (missing or unknown 'format')")
        layers = [str(x) for x in d["layers"]]
        return cls(
            layers,
            ConceptVocabulary.from_dict(json.loads(str(d["vocabulary"]))),
            {n: LayerCounts.from_arrays(d, f"counts@{n}/") for n in layers},
            {n: d[f"thresholds@{n}"] for n in layers},
            {n: TopK.from_arrays(d, f"top@{n}/") for n in layers},
            [str(x) for x in d["utterance_ids"]],
            [str(x) for x in d["utterance_voices"]],
            {n: tuple(d[f"time_axis@{n}"].tolist()) for n in layers},
            json.loads(str(d["settings"])),
        )


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


class DissectionEstimator(StreamEstimator):
    """Audio network dissection of ``layers`` over a corpus stream (module docstring).

    layers: None = every layer of the model; vocabulary: a :class:`ConceptVocabulary` (None: built from
    the corpus by :meth:`fit` with ``families``); top_k: segments kept per neuron; quantile: the active
    share of each neuron's frames (its threshold is its top ``quantile``); thresholds: {layer: (N,)}
    to skip the calibration; separation: seconds between two top segments of one neuron in one
    utterance (peaks within ``separation`` are merged); source / letter_mode / shift: letter labels
    (:meth:`StreamBatch.letter_labels`; ``shift="auto"``: minus the CTC lag measured during calibration);
    min_iou: IoU a concept needs to become a label; min_overlap: overlap coefficient that groups two labels
    (polysemanticity); calibration: at most this many utterances (seeded random subset, None: all) for the
    thresholds and the lags; batch_size: of :meth:`fit`'s stream; lag: each layer's response lag
    ("auto": measured per layer during calibration within ``lag_range`` seconds,
    :class:`~asr_introspect.dissection.quantiles.ActivationQuantiles`; or seconds for every layer, 0: none):
    or {layer: frames}, e.g. ``lags_`` of an earlier fit): frame t of a layer is scored against the
    concepts of frame ``t - lag``.

    Fitted: ``layers_``, ``vocabulary_``, ``thresholds_``, ``shift_`` (output frames), ``lag_`` (the
    measured CTC lag report or None), ``lags_`` ({layer: frames}), ``lag_curves_`` ({layer: eta^2 per
    candidate lag}), ``counts_`` ({layer: LayerCounts}), ``top_`` ({layer: TopK}), ``utterance_ids_``,
    ``utterance_voices_``, ``skipped_`` ((id, reason) without letters).
    """

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        *,
        vocabulary: ConceptVocabulary | None = None,
        families: Sequence[str] | None = None,
        top_k: int = 10,
        quantile: float = 0.05,
        thresholds: Mapping[str, np.ndarray] | None = None,
        separation: float = 0.25,
        source: str = DEFAULT_SOURCE,
        letter_mode: str = "span",
        shift: int | str = "auto",
        lag: str | float | Mapping[str, int] = "auto",
        lag_range: tuple[float, float] = (-0.1, 0.3),
        min_iou: float = 0.1,
        min_overlap: float = 0.5,
        calibration: int | None = 200,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        if layers is not None and not list(layers):
            raise InputError("--layers: no layer given")
        if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
            raise InputError(f"--top-k must be an integer >= 1, got {top_k!r}")
        if shift != "auto":
            shift = check_letter_settings(source, letter_mode, shift)
        else:
            check_letter_settings(source, letter_mode, 0)
        if not separation >= 0:
            raise InputError(f"separation must be >= 0 seconds, got {separation!r}")
        if isinstance(lag, Mapping):
            lag = {str(k): int(v) for k, v in lag.items()}
        elif lag != "auto" and (isinstance(lag, (bool, str)) or not np.isfinite(float(lag))):
            raise InputError(f"--lag must be auto or a number of seconds, got {lag!r}")
        if not 0 <= min_iou <= 1 or not 0 < min_overlap <= 1:
            raise InputError(f"min_iou must lie in [0, 1] and min_overlap in (0, 1], got {min_iou}, {min_overlap}")
        if calibration is not None and (int(calibration) != calibration or calibration < 1):
            raise InputError(f"--calibration must be an integer >= 1, got {calibration!r}")
        self.layers = None if layers is None else list(layers)
        self.vocabulary = vocabulary
        self.families = None if families is None else list(families)
        if families is not None:
            check_families(families)
        self.top_k = int(top_k)
        self.quantile = check_quantile(quantile)
        self.thresholds = (
            None if thresholds is None else {k: np.asarray(v, dtype=np.float32) for k, v in thresholds.items()}
        )
        self.separation = float(separation)
        self.source, self.letter_mode, self.shift = source, letter_mode, shift
        self.lag = lag if lag == "auto" or isinstance(lag, dict) else float(lag)
        self.lag_range = (float(lag_range[0]), float(lag_range[1]))
        self.min_iou, self.min_overlap = float(min_iou), float(min_overlap)
        self.calibration = None if calibration is None else int(calibration)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.vocabulary_: ConceptVocabulary | None = vocabulary
        self.thresholds_: dict[str, np.ndarray] | None = self.thresholds
        self.shift_: int | None = None if shift == "auto" else int(shift)
        self.lag_ = None
        self.lags_: dict[str, int] | None = None
        self.lag_curves_: dict[str, dict] = {}
        self.calibration_utterances_ = 0
        self.reset()

    def reset(self) -> DissectionEstimator:
        """Forget every batch (the vocabulary, thresholds and lag stay)."""
        self.layers_: list[str] | None = None
        self.counts_: dict[str, LayerCounts] = {}
        self.top_: dict[str, TopK] = {}
        self.utterance_ids_: list[str] = []
        self.utterance_voices_: list[str] = []
        self.skipped_: list[tuple[str, str]] = []
        self._radius: dict[str, int] = {}
        self._time_axes: dict[str, tuple[float, float]] = {}
        return self

    # -- binding -------------------------------------------------------------------------------

    def stream_layers(self, model) -> list[str]:
        """The dissected layers (InputError naming unknown ones)."""
        layers = self.layers if self.layers is not None else list(model.layer_names)
        unknown = [n for n in layers if n not in model.layer_names]
        if unknown:
            raise InputError(
                f"--layers: unknown layer{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"the model has {', '.join(model.layer_names)}"
            )
        return layers

    def bind_vocabulary(self, model, utterances: Sequence) -> ConceptVocabulary:
        """Build the vocabulary from the corpus (its voices) unless one was given."""
        if self.vocabulary_ is None:
            self.vocabulary_ = ConceptVocabulary.for_corpus(
                utterances, model.alphabet, self.families, sample_rate=model.feature_config.sample_rate
            )
        return self.vocabulary_

    def calibrate(self, model, utterances: Sequence, *, progress: bool = False) -> DissectionEstimator:
        """The calibration pass on a sample of ``utterances``: thresholds (unless given), the CTC lag (with
        ``shift="auto"``) and each layer's response lag (with ``lag="auto"``)."""
        sample = calibration_sample(utterances, self.calibration, self.seed)
        if not sample:
            raise InputError("no utterance to calibrate the thresholds on")
        calibration = ActivationQuantiles(
            self.stream_layers(model),
            measure_lag=self.shift == "auto",
            lag_range=self.lag_range if self.lag == "auto" else None,
            seed=self.seed,
            batch_size=self.batch_size,
        )
        calibration.fit(model, sample, progress=progress)
        if self.thresholds is None:
            self.thresholds_ = calibration.thresholds(self.quantile)
        if self.shift == "auto":
            self.lag_ = calibration.lag()
            self.shift_ = -int(self.lag_.correction_frames)
        if self.lag == "auto":
            self.lag_curves_ = calibration.layer_lags()
            self.lags_ = {name: curve["frames"] for name, curve in self.lag_curves_.items()}
        else:
            self.lags_ = self._fixed_lags(model)
        self.calibration_utterances_ = len(sample)
        return self

    def fit(self, model, utterances: Sequence, *, progress: bool = False, distributed: bool | None = None):
        """Vocabulary (from the corpus), calibration (unless thresholds, shift and lag are given), then the
        dissection pass; returns self."""
        self.reset()
        self.bind_vocabulary(model, utterances)
        if self.lag != "auto" and self.lags_ is None:
            self.lags_ = self._fixed_lags(model)
        if self.thresholds_ is None or self.shift_ is None or self.lags_ is None:
            self.calibrate(model, utterances, progress=progress)
        fit_estimators(
            model, utterances, [self], batch_size=self.batch_size, progress=progress, distributed=distributed
        )
        return self

    def prepare(self, model) -> None:
        if self.layers_ is None:
            self._ready(model)
            self._bind(model, layer_channels(model, self.stream_layers(model)))

    def _fixed_lags(self, model) -> dict[str, int]:
        """{layer: frames} of a lag given in seconds (or as {layer: frames}: missing layers get 0)."""
        layers = self.stream_layers(model)
        if isinstance(self.lag, dict):
            return {name: self.lag.get(name, 0) for name in layers}
        return {name: int(round(self.lag / layer_step_seconds(model, name))) for name in layers}

    def _ready(self, model) -> None:
        if self.lag != "auto" and self.lags_ is None:
            self.lags_ = self._fixed_lags(model)
        if self.vocabulary_ is None:
            raise InputError(
                "no concept vocabulary: pass vocabulary=ConceptVocabulary.for_corpus(...) or call fit / bind_vocabulary"
            )
        if self.thresholds_ is None or self.shift_ is None or self.lags_ is None:
            raise InputError(
                "no activation thresholds (or CTC lag, or layer lags) yet: call calibrate(model, utterances) "
                "first, or fit, or pass thresholds=, a numeric shift= and a numeric lag="
            )

    def _bind(self, model, channels: dict[str, int]) -> None:
        self.layers_ = self.stream_layers(model)
        self._output_layer = model.output_layer
        missing = [n for n in self.layers_ if n not in self.thresholds_]
        if missing:
            raise InputError(f"no thresholds for layer(s) {', '.join(missing)}")
        fs = model.feature_config.frame_seconds
        n_groups = len(self.vocabulary_.groups)
        for name in self.layers_:
            n = channels[name]
            if self.thresholds_[name].shape != (n,):
                raise InputError(f"thresholds of {name} have shape {self.thresholds_[name].shape}, the layer has {n}")
            self.counts_[name] = LayerCounts.zeros(self.vocabulary_.n_base, n)
            self.top_[name] = TopK(n, self.top_k, n_groups)
            centers = np.asarray(model.frame_map.center(name, np.arange(2)), dtype=np.float64) * fs
            step = float(centers[1] - centers[0])
            self._time_axes[name] = (float(centers[0]), step)
            self._radius[name] = int(round(self.separation / step)) if step > 0 else 0

    # -- accumulation ------------------------------------------------------------------------------

    def partial_fit(self, batch: StreamBatch) -> DissectionEstimator:
        """Add one stream batch (recording at least ``self.layers_``)."""
        if self.layers_ is None:
            self._ready(batch.model)
            self._bind(batch.model, self.require_layers(batch, self.stream_layers(batch.model)))
        self.require_layers(batch, self.layers_)
        vocab = self.vocabulary_
        first = len(self.utterance_ids_)
        self.utterance_ids_ += [u.id for u in batch.utterances]
        self.utterance_voices_ += [voice_family(u.speaker) for u in batch.utterances]
        if "letter" in vocab.facets:
            self.skipped_ += batch.skipped("letters", self.source)
        for name in self.layers_:
            codes = lagged_codes(
                vocab.frame_codes(
                    batch, name, source=self.source, letter_mode=self.letter_mode, shift=int(self.shift_)
                ),
                self.lags_.get(name, 0),
                batch.mask(name),
            )
            activations = batch.activations[name].detach()
            lengths = batch.layer_lengths(name)
            rows = np.flatnonzero(batch.mask(name).reshape(-1))
            counts = self.counts_[name]
            concept_counts_into(
                batch.padded_frames(name),
                rows,
                codes.reshape(-1, codes.shape[-1]),
                self.thresholds_[name],
                counts.active,
                counts.sums,
                counts.n_active,
                counts.total,
                counts.total_sq,
            )
            cooccurrence_into(codes, lengths, counts.frames, counts.cooccurrence)
            counts.n_frames += int(lengths.sum())
            row_max = activations.amax(dim=2).to("cpu", torch.float64).numpy()  # (B, N), padding included
            acts = activations.to("cpu").numpy()
            self.top_[name].update(acts, lengths, self._radius[name], first, codes, row_max)
        return self

    def merge(self, other: DissectionEstimator) -> DissectionEstimator:
        """Add ``other``'s batches (same layers, vocabulary and thresholds); returns self."""
        if other.layers_ is None:
            return self
        if self.layers_ is None:
            raise InputError("merge into an estimator that has seen a batch (call partial_fit first)")
        if other.layers_ != self.layers_ or other.vocabulary_.names != self.vocabulary_.names:
            raise InputError("cannot merge dissections of different layers or concept vocabularies")
        if any(not np.array_equal(self.thresholds_[n], other.thresholds_[n]) for n in self.layers_):
            raise InputError("cannot merge dissections with different activation thresholds")
        offset = len(self.utterance_ids_)
        for name in self.layers_:
            self.counts_[name].add(other.counts_[name])
            self.top_[name].merge(other.top_[name], utterance_offset=offset)
        self.utterance_ids_ += other.utterance_ids_
        self.utterance_voices_ += other.utterance_voices_
        self.skipped_ += other.skipped_
        return self

    def all_reduce(self, group=None) -> DissectionEstimator:
        """Sum the counts and merge the top segments over all torch.distributed processes."""
        if self.layers_ is None:
            raise InputError("the dissection has seen no batch yet (call fit or partial_fit)")
        dist = torch_distributed()
        if dist is None:
            return self
        all_reduce_arrays([a for n in self.layers_ for a in self.counts_[n].arrays()], group)
        mine = (
            {n: self.top_[n].to_arrays("") for n in self.layers_},
            self.utterance_ids_,
            self.utterance_voices_,
            self.skipped_,
        )
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, mine, group=group)
        n_codes = len(self.vocabulary_.groups)
        self.top_ = {n: TopK(self.counts_[n].total.shape[0], self.top_k, n_codes) for n in self.layers_}
        self.utterance_ids_, self.utterance_voices_, self.skipped_ = [], [], []
        for tops, ids, voices, skipped in gathered:
            offset = len(self.utterance_ids_)
            for n in self.layers_:
                self.top_[n].merge(TopK.from_arrays(tops[n], ""), utterance_offset=offset)
            self.utterance_ids_ += ids
            self.utterance_voices_ += voices
            self.skipped_ += [tuple(x) for x in skipped]
        return self

    def result(self) -> Dissection:
        """The :class:`Dissection` of everything added so far (copies of the state)."""
        if self.layers_ is None:
            raise InputError("the dissection has seen no batch yet (call fit or partial_fit)")
        settings = {
            "layers": self.layers_,
            "output_layer": self._output_layer,
            "top_k": self.top_k,
            "quantile": self.quantile,
            "separation_seconds": self.separation,
            "source": self.source,
            "letter_mode": self.letter_mode,
            "shift_output_frames": int(self.shift_),
            "shift_requested": self.shift,
            "lags": {
                n: {"frames": int(self.lags_.get(n, 0)), "seconds": self.lags_.get(n, 0) * self._time_axes[n][1]}
                for n in self.layers_
            },
            "lag_requested": self.lag,
            "lag_curves": self.lag_curves_,
            "min_iou": self.min_iou,
            "min_overlap": self.min_overlap,
            "calibration_utterances": self.calibration_utterances_,
            "utterances": len(self.utterance_ids_),
            "skipped": [sid for sid, _ in self.skipped_],
        }
        if self.lag_ is not None:
            settings["ctc_lag"] = self.lag_.summary()
        counts = {n: LayerCounts(*(a.copy() for a in self.counts_[n].arrays())) for n in self.layers_}
        tops = {n: TopK.from_arrays(self.top_[n].to_arrays(""), "") for n in self.layers_}
        return Dissection(
            self.layers_,
            self.vocabulary_,
            counts,
            {n: self.thresholds_[n].copy() for n in self.layers_},
            tops,
            list(self.utterance_ids_),
            list(self.utterance_voices_),
            dict(self._time_axes),
            settings,
        )
