"""Neuron activation profiles (NAPs): a layer's mean activation per group of frames over a corpus.

A NAP of layer ``L`` for group ``g`` (the letter "a", the phone /aa/) is the
mean of ``L``'s activation vector over every frame of the corpus labelled
``g`` (METHODS.md, "Neuron activation profiles"). Frames are labelled on each
layer's own time axis (see :mod:`asr_introspect.alignment`):

- ``by="letter"``: the CTC forced alignment of the transcript
  (``source="forced"``) or the greedy prediction (``"predicted"``) on the
  output axis, ``mode="spike"`` (only the frames that emit a letter) or
  ``"span"`` (a letter keeps the blank frames after it), moved to each layer
  with :func:`~asr_introspect.alignment.transfer_labels`. Groups: the
  alphabet's letters a-z and the apostrophe; blank and space are left out
  unless listed in ``groups``.
- ``by="phoneme"``: the phone segment covering each frame's centre
  (:func:`~asr_introspect.alignment.phone_labels`). Groups: the 39 ARPAbet
  phones; silence is left out unless listed. Utterances without phone
  segments are skipped.
- ``by=callable``: ``fn(utterance, layer, n_frames) -> (n_frames,) int``
  indices into ``groups`` (-1: no group).

Only valid frames count (padded frames never reach the accumulators); the
state is one :class:`~asr_introspect.aggregate.GroupStats` per layer with
``G + 1`` rows: the ``G`` groups and a last "rest" row for the valid frames in
no group, so statistics over all frames (for ``normalize="standardize"``) come
for free. Memory is independent of corpus size; accumulators merge and
``all_reduce`` across ``torchrun`` processes (each takes
``utterances[rank::world]``).

Weighting (GradNAP/SNAP style, one scalar weight ``w_t >= 0`` per layer frame,
so a NAP becomes ``sum_t w_t a_t / sum_t w_t``): with ``y`` the sum over an
utterance's valid output frames of the predicted (argmax) logit and
``g_t = dy/da_t`` the gradient w.r.t. the layer's activation vector at frame
``t`` (one backward pass per batch for all layers),

- ``weighting="gradient"``: ``w_t = ||g_t||_2``;
- ``weighting="saliency"``: ``w_t = sum_c |g_t[c] a_t[c]|``.

``g_t`` collects the influence of frame ``t`` on every output frame whose
receptive field covers it, not only on the output frame at ``t`` (the exact
diagonal would cost one backward pass per frame). At the output layer
``||g_t|| = 1`` (a one-hot gradient), so gradient weighting leaves its NAPs
unchanged there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_introspect.aggregate import GroupStats, specificity, torch_distributed
from asr_introspect.errors import AlignmentError, InputError
from asr_introspect.io import load_npz, save_npz
from asr_introspect.naps.normalize import normalize_profiles
from asr_introspect.stream import (
    DEFAULT_SOURCE,
    WEIGHTINGS,
    StreamBatch,
    StreamEstimator,
    check_letter_settings,
    layer_channels,
)
from asr_introspect.text import PHONE_TO_INDEX, PHONES, SILENCE

__all__ = [
    "NAPs",
    "NAPEstimator",
    "compute_naps",
    "letter_groups",
    "phoneme_groups",
    "WEIGHTINGS",
]

_FORMAT = "asr-introspect.naps/1"


# ---------------------------------------------------------------------------
# groups


def letter_groups(alphabet, include: Iterable[str] = ()) -> list[str]:
    """Letter group names: the alphabet's letters (a-z first, then e.g. "'"); blank and space only via ``include``."""
    extra = set(include)
    names = [s for i, s in enumerate(alphabet.symbols) if (i != alphabet.blank and s != " ") or s in extra]
    return sorted(names, key=lambda s: (not s.isalpha(), s == alphabet.symbols[alphabet.blank], s))


def phoneme_groups(include_silence: bool = False) -> list[str]:
    """Phone group names: the 39 ARPAbet phones of ``text.PHONES`` (plus "sil" if asked)."""
    return [p for p in PHONES if p != SILENCE or include_silence]


# ---------------------------------------------------------------------------
# the result


class NAPs:
    """NAPs of several layers over one set of groups.

    ``layers``: names (L); ``groups``: names (G); ``stats[layer]``: a
    :class:`GroupStats` with ``G + 1`` rows (the last: valid frames in no
    group); ``settings``: how they were computed (by, source, mode, weighting,
    utterances, skipped, ...). Index with a layer name for its NAPs ``(G, N_l)``.
    """

    def __init__(
        self,
        layers: Sequence[str],
        groups: Sequence[str],
        stats: dict[str, GroupStats],
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.layers = list(layers)
        self.groups = list(groups)
        self.stats = dict(stats)
        self.settings = dict(settings or {})
        for layer in self.layers:
            if self.stats[layer].n_groups != len(self.groups) + 1:
                raise ValueError(
                    f"layer {layer}: state has {self.stats[layer].n_groups} rows, "
                    f"expected {len(self.groups) + 1} (groups + rest)"
                )

    def __repr__(self) -> str:
        return (
            f"NAPs(by={self.settings.get('by')!r}, {len(self.groups)} groups, layers "
            f"{self.layers}, utterances={self.settings.get('utterances')})"
        )

    def __getitem__(self, layer: str) -> np.ndarray:
        return self.means(layer)

    def _stats(self, layer: str) -> GroupStats:
        try:
            return self.stats[layer]
        except KeyError:
            raise KeyError(f"no NAPs for layer {layer!r}; layers: {self.layers}") from None

    @property
    def by(self) -> str:
        return str(self.settings.get("by", "custom"))

    def n_neurons(self, layer: str) -> int:
        return self._stats(layer).n_features

    def means(self, layer: str) -> np.ndarray:
        """(G, N) NAPs (weighted means); NaN rows for groups without frames."""
        return self._stats(layer).means[:-1]

    def counts(self, layer: str) -> np.ndarray:
        """(G,) int64 frames per group."""
        return self._stats(layer).counts[:-1].copy()

    def weight_sums(self, layer: str) -> np.ndarray:
        """(G,) sum of frame weights per group (== counts without weighting)."""
        return self._stats(layer).weight_sums[:-1].copy()

    def variance(self, layer: str) -> np.ndarray:
        """(G, N) variance of the activation within each group."""
        return self._stats(layer).variance()[:-1]

    def frame_stats(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean (N,), variance (N,)) of each neuron over all valid frames (groups + rest)."""
        s = self._stats(layer)
        total = s.weight_sums.sum()
        if total <= 0:
            nan = np.full(s.n_features, np.nan)
            return nan, nan.copy()
        mean = s.sums.sum(axis=0) / total
        var = np.maximum(s.sums_sq.sum(axis=0) / total - mean**2, 0.0)
        return mean, var

    def specificity(self, layer: str) -> np.ndarray:
        """(N,) between-group over within-group variance of each neuron (groups only, not rest)."""
        s = self._stats(layer)
        return specificity(s.sums[:-1], s.sums_sq[:-1], s.weight_sums[:-1])

    def kept(self, layer: str, min_count: int = 1) -> np.ndarray:
        """(G,) bool: groups with at least ``min_count`` frames (and non-zero weight)."""
        return (self.counts(layer) >= max(1, min_count)) & (self.weight_sums(layer) > 0)

    def profiles(self, layer: str, normalize: str = "zscore", min_count: int = 1) -> tuple[np.ndarray, list[str]]:
        """Normalized NAPs of the groups with >= ``min_count`` frames: ((G', N), their names).

        ``normalize``: see :func:`asr_introspect.naps.normalize_profiles`.
        """
        keep = self.kept(layer, min_count)
        mean, var = self.frame_stats(layer)
        out = normalize_profiles(self.means(layer)[keep], normalize, frame_mean=mean, frame_std=np.sqrt(var))
        return out, [g for g, k in zip(self.groups, keep) if k]

    def merge(self, other: NAPs) -> NAPs:
        """Add ``other``'s frames into these NAPs (same layers and groups); returns self."""
        if other.layers != self.layers or other.groups != self.groups:
            raise ValueError("cannot merge NAPs with different layers or groups")
        for layer in self.layers:
            self.stats[layer].merge(other.stats[layer])
        if "utterances" in self.settings and "utterances" in other.settings:
            self.settings["utterances"] += other.settings["utterances"]
        if "frames" in self.settings:
            self.settings["frames"] = {n: int(self.stats[n].counts.sum()) for n in self.layers}
        if "skipped" in self.settings and "skipped" in other.settings:
            self.settings["skipped"] = list(self.settings["skipped"]) + list(other.settings["skipped"])
        return self

    def copy(self) -> NAPs:
        return NAPs(
            self.layers,
            self.groups,
            {k: v.copy() for k, v in self.stats.items()},
            json.loads(json.dumps(self.settings)),
        )

    # -- files ----------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """npz-ready arrays: ``layers``, ``groups``, ``settings`` (JSON), and per layer L
        ``naps@L`` (G, N), ``counts@L`` (G,), ``variance@L`` (G, N), ``frame_mean@L``,
        ``frame_var@L`` (N,) and the accumulator state ``state@L/...`` (G + 1 rows)."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT),
            "layers": np.array(self.layers, dtype=str),
            "groups": np.array(self.groups, dtype=str),
            "settings": np.array(json.dumps(self.settings)),
        }
        for layer in self.layers:
            mean, var = self.frame_stats(layer)
            arrays[f"naps@{layer}"] = self.means(layer)
            arrays[f"counts@{layer}"] = self.counts(layer)
            arrays[f"variance@{layer}"] = self.variance(layer)
            arrays[f"frame_mean@{layer}"] = mean
            arrays[f"frame_var@{layer}"] = var
            arrays.update(self.stats[layer].to_dict(f"state@{layer}/"))
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz, atomically; see :meth:`to_arrays`)."""
        return save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> NAPs:
        """Read NAPs written by :meth:`save` (no pickle)."""
        try:
            d = load_npz(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read NAPs ({exc})") from exc
        if "format" not in d or str(d["format"]) != _FORMAT:
            raise InputError(f"{path}: not a NAPs file (missing or unknown 'format')")
        layers = [str(x) for x in d["layers"]]
        groups = [str(x) for x in d["groups"]]
        stats = {layer: GroupStats.from_dict(d, f"state@{layer}/") for layer in layers}
        return cls(layers, groups, stats, json.loads(str(d["settings"])))


# ---------------------------------------------------------------------------
# the estimator


class NAPEstimator(StreamEstimator):
    """Streaming NAP accumulator: ``partial_fit`` on corpus-stream batches, then ``result()``.

    by: "letter", "phoneme" or ``fn(utterance, layer, n_frames) -> (n_frames,) int``
    (then ``groups`` names the indices); layers: None = all of the model's; groups: group
    names (default :func:`letter_groups` / :func:`phoneme_groups`; for letters/phones a subset
    or superset of symbols, e.g. add " " or "sil"); source / letter_mode / shift: letter labels
    (:meth:`StreamBatch.letter_labels`: ``shift`` moves them that many output frames later,
    negative: earlier, e.g. ``-ShiftReport.correction_frames``); weighting: None, "gradient" or
    "saliency" (module docstring); skip_errors: skip (and list) utterances whose transcript
    cannot be aligned instead of raising; batch_size: of the stream :meth:`fit` runs.

    Fitted state (sized by :meth:`prepare` or the first batch): ``layers_``, ``groups_``,
    ``stats_`` (one GroupStats per layer, ``G + 1`` rows), ``n_utterances_``, ``skipped_``
    ((id, reason) pairs).
    """

    def __init__(
        self,
        by: str | Callable = "letter",
        layers: Sequence[str] | None = None,
        *,
        groups: Sequence[str] | None = None,
        source: str = DEFAULT_SOURCE,
        letter_mode: str = "spike",
        shift: int = 0,
        weighting: str | None = None,
        skip_errors: bool = True,
        batch_size: int = 16,
    ) -> None:
        self.shift = check_letter_settings(source, letter_mode, shift)
        if weighting not in WEIGHTINGS:
            raise InputError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if layers is not None and not list(layers):
            raise InputError("no layers to profile")
        self.layers = None if layers is None else list(layers)
        self.source, self.letter_mode, self.weighting = source, letter_mode, weighting
        self.skip_errors = skip_errors
        self.batch_size = int(batch_size)
        self.labeler: Callable | None = None
        if callable(by):
            self.by = "custom"
            self.labeler = by
            groups = groups if groups is not None else getattr(by, "groups", None)
            if groups is None:
                raise InputError("a labelling function needs group names: pass groups=[...]")
            groups = [str(g) for g in groups]
        elif by in ("letter", "phoneme"):
            self.by = by
        else:
            raise InputError(f"by must be 'letter', 'phoneme' or a labelling function, got {by!r}")
        self.groups = None if groups is None else list(groups)
        if self.groups is not None and len(set(self.groups)) != len(self.groups):
            raise InputError(f"duplicate group names in {self.groups}")
        if self.by == "phoneme" and self.groups is not None:
            unknown = [g for g in self.groups if g not in PHONE_TO_INDEX]
            if unknown:
                raise InputError(f"unknown phone(s) {unknown}; phones: {', '.join(PHONES)}")
        self.reset()

    def reset(self) -> NAPEstimator:
        """Forget all frames."""
        self.stats_: dict[str, GroupStats] | None = None
        self.layers_: list[str] | None = None
        self.groups_: list[str] | None = None
        self.n_utterances_ = 0
        self.skipped_: list[tuple[str, str]] = []
        return self

    # -- binding a model ---------------------------------------------------------------

    def stream_layers(self, model) -> list[str]:
        """The layers this estimator profiles (InputError for names the model lacks)."""
        layers = self.layers if self.layers is not None else list(model.layer_names)
        unknown = [n for n in layers if n not in model.layer_names]
        if unknown:
            raise InputError(f"unknown layer(s) {', '.join(unknown)}; the model has {', '.join(model.layer_names)}")
        return layers

    def prepare(self, model) -> None:
        """Size the state for ``model`` (one forward pass on zeros) unless a batch already did."""
        if self.stats_ is None:
            self._bind(model, layer_channels(model, self.stream_layers(model)))

    def _bind(self, model, channels: dict[str, int]) -> None:
        """Layers, groups, the label -> group map and empty state for ``model``."""
        self.layers_ = self.stream_layers(model)
        if self.by == "letter":
            model.require_letters("letter NAPs")
            alphabet = model.letter_alphabet
            self.groups_ = self.groups if self.groups is not None else letter_groups(alphabet)
            self._map = np.full(len(alphabet), len(self.groups_), dtype=np.int64)
            for g, name in enumerate(self.groups_):
                self._map[alphabet.index(name)] = g
        elif self.by == "phoneme":
            self.groups_ = self.groups if self.groups is not None else phoneme_groups()
            # index len(PHONES) stands for -1 (no phone): rest
            self._map = np.full(len(PHONES) + 1, len(self.groups_), dtype=np.int64)
            for g, name in enumerate(self.groups_):
                self._map[PHONE_TO_INDEX[name]] = g
        else:
            self.groups_ = list(self.groups)
        G = len(self.groups_)
        self.stats_ = {name: GroupStats(G + 1, channels[name]) for name in self.layers_}

    # -- labels ------------------------------------------------------------------------

    def _group_labels(self, batch: StreamBatch) -> dict[str, np.ndarray]:
        """Group index of every frame of the padded batch, (B, T_layer) int64 per layer: the group,
        G (rest) for valid frames in no group, -1 for padded frames and utterances without labels
        (the accumulator ignores -1)."""
        G = len(self.groups_)
        if self.by == "letter":
            rows = batch.letter_rows(self.source)
            skipped = batch.skipped("letters", self.source)
            if skipped and not self.skip_errors:
                raise AlignmentError(skipped[0][1])
        elif self.by == "phoneme":
            rows = batch.phone_rows()
            skipped = batch.skipped("phones")
        else:
            rows, skipped = np.ones(len(batch), dtype=bool), []
        self.skipped_.extend(skipped)
        self.n_utterances_ += int(rows.sum())
        out = {}
        for name in self.layers_:
            valid = batch.mask(name) & rows[:, None]
            if self.by == "letter":
                ids = batch.letter_labels(name, self.source, self.letter_mode, self.shift)
            elif self.by == "phoneme":
                ids = batch.phone_labels(name)  # -1 (no phone) -> _map[-1] = rest
            else:
                out[name] = np.where(valid, self._custom_labels(batch, name, G), -1)
                continue
            out[name] = np.where(valid, self._map[ids], -1)
        return out

    def _custom_labels(self, batch: StreamBatch, name: str, G: int) -> np.ndarray:
        """(B, T_layer) group indices from the user's labelling function (called per utterance), G = rest."""
        lengths = batch.layer_lengths(name)
        raw = np.full((len(batch), batch.width(name)), G, dtype=np.int64)
        for b, utt in enumerate(batch.utterances):
            n = int(lengths[b])
            labels = np.asarray(self.labeler(utt, name, n))
            if labels.shape != (n,) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
                raise InputError(
                    f"utt {utt.id}, layer {name}: the labelling function must return "
                    f"({n},) ints, got {labels.shape} {labels.dtype}"
                )
            if labels.size and (labels.min() < -1 or labels.max() >= G):
                raise InputError(f"utt {utt.id}, layer {name}: labels must lie in [-1, {G})")
            raw[b, :n] = np.where(labels < 0, G, labels)
        return raw

    # -- accumulation ------------------------------------------------------------------

    def partial_fit(self, batch: StreamBatch) -> NAPEstimator:
        """Add one :class:`~asr_introspect.stream.StreamBatch` (recording at least ``self.layers_``;
        with ``weighting``, streamed with the same weighting)."""
        if self.weighting is not None and batch.weighting != self.weighting:
            raise InputError(
                f"weighting={self.weighting!r} needs a stream with weighting={self.weighting!r}, "
                f"got {batch.weighting!r}"
            )
        if self.stats_ is None:
            self._bind(batch.model, self.require_layers(batch, self.stream_layers(batch.model)))
        self.require_layers(batch, self.layers_)
        labels = self._group_labels(batch)
        for name in self.layers_:
            # the whole padded batch as (B*T, C) frames; padded frames and skipped utterances have
            # label -1, which the accumulator ignores. One NumPy transpose copy per layer (shared by
            # the estimators of a pass) is much cheaper than gathering the valid slices.
            w = None
            if self.weighting is not None:
                w = batch.weights[name].detach().to("cpu", torch.float64).numpy().reshape(-1)
            self.stats_[name].update(batch.padded_frames(name), labels[name].reshape(-1), w)
        return self

    def merge(self, other: NAPEstimator) -> NAPEstimator:
        """Add ``other``'s frames (same layers and groups); returns self."""
        if other.stats_ is None:
            return self
        if self.stats_ is None:
            raise InputError("merge into an estimator that has seen a batch (call partial_fit first)")
        if other.layers_ != self.layers_ or other.groups_ != self.groups_:
            raise InputError("cannot merge NAP estimators with different layers or groups")
        for name in self.layers_:
            self.stats_[name].merge(other.stats_[name])
        self.n_utterances_ += other.n_utterances_
        self.skipped_.extend(other.skipped_)
        return self

    def all_reduce(self, group=None) -> NAPEstimator:
        """Sum the state over all torch.distributed processes (no-op without a process group)."""
        self._fitted()
        for name in self.layers_:
            self.stats_[name].all_reduce(group)
        dist = torch_distributed()
        if dist is not None:
            count = torch.tensor([self.n_utterances_], dtype=torch.int64)
            dist.all_reduce(count, group=group)
            self.n_utterances_ = int(count.item())
            gathered: list = [None] * dist.get_world_size(group)
            dist.all_gather_object(gathered, self.skipped_, group=group)
            self.skipped_ = [tuple(x) for part in gathered for x in part]
        return self

    def _fitted(self) -> None:
        if self.stats_ is None:
            raise InputError("the NAP estimator has seen no batch yet (call fit or partial_fit)")

    def result(self) -> NAPs:
        """The NAPs of everything added so far (a copy)."""
        self._fitted()
        settings = {
            "by": self.by,
            "layers": self.layers_,
            "groups": self.groups_,
            "weighting": self.weighting,
            "utterances": self.n_utterances_,
            "skipped": [sid for sid, _ in self.skipped_],
            "frames": {n: int(self.stats_[n].counts.sum()) for n in self.layers_},
        }
        if self.by == "letter":
            settings.update(source=self.source, mode=self.letter_mode, shift=self.shift)
        return NAPs(self.layers_, self.groups_, {n: s.copy() for n, s in self.stats_.items()}, settings)


def compute_naps(
    model,
    utterances: Sequence,
    by: str | Callable = "letter",
    layers: Sequence[str] | None = None,
    *,
    progress: bool = False,
    distributed: bool | None = None,
    **settings,
) -> NAPs:
    """NAPs of ``layers`` (default all) over a corpus: ``NAPEstimator(by, layers, **settings).fit(model,
    utterances)``. Returns :class:`NAPs` (``means(layer)``: (G, N_l))."""
    estimator = NAPEstimator(by, layers, **settings)
    return estimator.fit(model, utterances, progress=progress, distributed=distributed).result()
