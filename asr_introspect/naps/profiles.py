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

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from asr_introspect.aggregate import GroupStats, specificity
from asr_introspect.errors import AlignmentError, InputError

__all__ = [
    "NAPs",
    "NAPEstimator",
    "compute_naps",
    "stream_naps",
    "letter_groups",
    "phoneme_groups",
    "WEIGHTINGS",
]

WEIGHTINGS = (None, "gradient", "saliency")
_SOURCES = ("forced", "predicted")
_MODES = ("spike", "span")
_FORMAT = "asr-introspect.naps/1"


# ---------------------------------------------------------------------------
# groups


def letter_groups(alphabet, include: Iterable[str] = ()) -> list[str]:
    """Letter group names: the alphabet's letters (a-z first, then e.g. "'"); blank and space only via ``include``."""
    extra = set(include)
    names = [s for i, s in enumerate(alphabet.symbols)
             if (i != alphabet.blank and s != " ") or s in extra]
    return sorted(names, key=lambda s: (not s.isalpha(), s == alphabet.symbols[alphabet.blank], s))


def phoneme_groups(include_silence: bool = False) -> list[str]:
    """Phone group names: the 39 ARPAbet phones of ``text.PHONES`` (plus "sil" if asked)."""
    from asr_introspect.text import PHONES, SILENCE

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

    def __init__(self, layers: Sequence[str], groups: Sequence[str], stats: dict[str, GroupStats],
                 settings: dict[str, Any] | None = None) -> None:
        self.layers = list(layers)
        self.groups = list(groups)
        self.stats = dict(stats)
        self.settings = dict(settings or {})
        for layer in self.layers:
            if self.stats[layer].n_groups != len(self.groups) + 1:
                raise ValueError(f"layer {layer}: state has {self.stats[layer].n_groups} rows, "
                                 f"expected {len(self.groups) + 1} (groups + rest)")

    def __repr__(self) -> str:
        return (f"NAPs(by={self.settings.get('by')!r}, {len(self.groups)} groups, layers "
                f"{self.layers}, utterances={self.settings.get('utterances')})")

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
        from asr_introspect.naps.normalize import normalize_profiles

        keep = self.kept(layer, min_count)
        mean, var = self.frame_stats(layer)
        out = normalize_profiles(self.means(layer)[keep], normalize, frame_mean=mean, frame_std=np.sqrt(var))
        return out, [g for g, k in zip(self.groups, keep) if k]

    def merge(self, other: "NAPs") -> "NAPs":
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

    def copy(self) -> "NAPs":
        return NAPs(self.layers, self.groups, {k: v.copy() for k, v in self.stats.items()},
                    json.loads(json.dumps(self.settings)))

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
        from asr_introspect.io import save_npz

        return save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> "NAPs":
        """Read NAPs written by :meth:`save` (no pickle)."""
        from asr_introspect.io import load_npz

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


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    """Run the module in eval mode (BatchNorm running stats, no dropout); restore the modes after."""
    modes = [(m, m.training) for m in model.module.modules()]
    model.module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _layer_channels(model, layers: Sequence[str]) -> dict[str, int]:
    """Channels of each layer, from one forward pass on zeros (eval mode, no grad)."""
    from asr_introspect.hooks import ActivationRecorder

    n_in = max(int(model.min_input_frames), 8)
    features = torch.zeros(1, model.n_features, n_in, device=model.device)
    with _eval_mode(model), torch.no_grad(), ActivationRecorder(model, layers) as rec:
        rec.run(features)
        return {name: int(rec.activations[name].shape[1]) for name in layers}


def _weights_from_gradients(activations: dict[str, torch.Tensor], grads, weighting: str) -> dict[str, torch.Tensor]:
    """Per-frame weights (B, T_l) from activations and gradients (B, C_l, T_l)."""
    out = {}
    for (name, act), grad in zip(activations.items(), grads):
        if grad is None:
            grad = torch.zeros_like(act)
        if weighting == "gradient":
            w = grad.norm(dim=1)
        else:
            w = (grad * act).abs().sum(dim=1)
        out[name] = w.detach()
    return out


def _forward_weighted(model, batch, layers: Sequence[str], weighting: str):
    """One batch with gradients: (ActivationBatch, {layer: weights (B, T_l)})."""
    from asr_introspect.hooks import ActivationBatch, ActivationRecorder

    with torch.enable_grad(), ActivationRecorder(model, layers, detach=False) as rec:
        logits, out_lengths = rec.run(batch.features, batch.feature_lengths)
        acts = {name: rec.activations[name] for name in layers}
        frames = torch.arange(logits.shape[-1], device=logits.device)
        valid = frames[None, :] < out_lengths.to(logits.device)[:, None]
        target = logits.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)  # (B, T_out)
        objective = (target * valid.to(target.dtype)).sum()
        grads = torch.autograd.grad(objective, list(acts.values()), allow_unused=True)
    weights = _weights_from_gradients(acts, grads, weighting)
    lengths = {name: torch.as_tensor(model.layer_length(name, batch.feature_lengths)) for name in layers}
    ab = ActivationBatch(list(batch.utterances), batch.features, batch.feature_lengths, logits.detach(),
                         out_lengths, {k: v.detach() for k, v in acts.items()}, lengths)
    return ab, weights


class NAPEstimator:
    """Streaming NAP accumulator, scikit-learn style: ``partial_fit`` batch by batch, then ``result()``.

    model: an :class:`~asr_introspect.models.ASRModel` (run in eval mode);
    by: "letter", "phoneme" or ``fn(utterance, layer, n_frames) -> (n_frames,) int``
    (then ``groups`` names the indices); layers: None = all; groups: group names
    (default :func:`letter_groups` / :func:`phoneme_groups`; for letters/phones a
    subset or superset of symbols, e.g. add " " or "sil"); source/mode/shift:
    letter labels (``shift`` moves them that many output frames later, negative:
    earlier, e.g. ``-ShiftReport.correction_frames``); weighting: None,
    "gradient" or "saliency" (module docstring); skip_errors: skip (and list)
    utterances whose transcript cannot be aligned instead of raising.
    """

    def __init__(self, model, by: str | Callable = "letter", layers: Sequence[str] | None = None, *,
                 groups: Sequence[str] | None = None, source: str = "forced", mode: str = "spike",
                 shift: int = 0, weighting: str | None = None, skip_errors: bool = True) -> None:
        self.model = model
        self.layers = list(layers) if layers is not None else list(model.layer_names)
        if not self.layers:
            raise InputError("no layers to profile")
        unknown = [n for n in self.layers if n not in model.layer_names]
        if unknown:
            raise InputError(f"unknown layer(s) {', '.join(unknown)}; the model has {', '.join(model.layer_names)}")
        if source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.source, self.mode, self.shift, self.weighting = source, mode, int(shift), weighting
        self.skip_errors = skip_errors
        self.labeler: Callable | None = None
        if callable(by):
            self.by = "custom"
            self.labeler = by
            groups = groups if groups is not None else getattr(by, "groups", None)
            if groups is None:
                raise ValueError("a labelling function needs group names: pass groups=[...]")
            self.groups = [str(g) for g in groups]
        elif by == "letter":
            self.by = "letter"
            alphabet = model.alphabet
            self.groups = list(groups) if groups is not None else letter_groups(alphabet)
            self._map = np.full(len(alphabet), len(self.groups), dtype=np.int64)
            for g, name in enumerate(self.groups):
                self._map[alphabet.index(name)] = g
        elif by == "phoneme":
            from asr_introspect.text import PHONE_TO_INDEX, PHONES

            self.by = "phoneme"
            self.groups = list(groups) if groups is not None else phoneme_groups()
            unknown = [g for g in self.groups if g not in PHONE_TO_INDEX]
            if unknown:
                raise InputError(f"unknown phone(s) {unknown}; phones: {', '.join(PHONES)}")
            # index len(PHONES) stands for -1 (no phone): rest
            self._map = np.full(len(PHONES) + 1, len(self.groups), dtype=np.int64)
            for g, name in enumerate(self.groups):
                self._map[PHONE_TO_INDEX[name]] = g
        else:
            raise ValueError(f"by must be 'letter', 'phoneme' or a labelling function, got {by!r}")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"duplicate group names in {self.groups}")
        self._channels = _layer_channels(model, self.layers)
        self.reset()

    def reset(self) -> "NAPEstimator":
        """Forget all frames."""
        G = len(self.groups)
        self.stats_ = {name: GroupStats(G + 1, self._channels[name]) for name in self.layers}
        self.n_utterances_ = 0
        self.skipped_: list[tuple[str, str]] = []
        return self

    # -- labels ---------------------------------------------------------------------

    def _output_letters(self, ab, b: int) -> np.ndarray:
        from asr_introspect.alignment import forced_align, greedy_path, letter_labels, shift_labels

        utt, n_out = ab.utterances[b], int(ab.out_lengths[b])
        if self.source == "forced":
            log_probs = F.log_softmax(ab.logits[b, :, :n_out].float(), dim=0).T.contiguous()
            targets = self.model.alphabet.encode(utt.text, utterance_id=utt.id)
            path = forced_align(log_probs, targets, blank=self.model.alphabet.blank, utterance_id=utt.id)
        else:
            path = greedy_path(ab.logits[b, :, :n_out])
        labels = letter_labels(path, self.mode, blank=self.model.alphabet.blank)
        if self.shift:
            labels = shift_labels(labels, self.shift, fill=self.model.alphabet.blank)
        return labels

    def _batch_labels(self, ab) -> dict[str, np.ndarray] | None:
        """Group index of every frame of the padded batch, (B, T_layer) int64 per layer: the group,
        G (rest) for valid frames in no group, -1 for padded frames and skipped utterances (the
        accumulator ignores -1). None if every utterance is skipped.

        Labels are built a layer at a time for the whole batch (one label transfer or time axis per
        layer, not one per utterance and layer: 1.9-5.5x faster, benchmarks/bench_nap_labels.py)."""
        B = len(ab.utterances)
        widths = {name: ab.activations[name].shape[2] for name in self.layers}
        if self.by == "letter":
            rows, raw = self._letter_rows(ab, widths)
        elif self.by == "phoneme":
            rows, raw = self._phone_rows(ab, widths)
        else:
            rows, raw = self._custom_rows(ab, widths)
        self.n_utterances_ += len(rows)
        if not rows:
            return None
        out = {}
        for name, T in widths.items():
            lengths = np.asarray(ab.lengths[name], dtype=np.int64)[rows]
            labels = np.full((B, T), -1, dtype=np.int64)
            valid = np.arange(T)[None, :] < lengths[:, None]
            labels[rows] = np.where(valid, raw[name], -1)
            out[name] = labels
        return out

    def _letter_rows(self, ab, widths: dict[str, int]) -> tuple[list[int], dict[str, np.ndarray]]:
        """Kept utterances (R,) and their group index per frame of each layer, (R, T_layer)."""
        from asr_introspect.alignment import transfer_index

        model = self.model
        rows, letters = [], []
        for b, utt in enumerate(ab.utterances):
            try:
                path = self._output_letters(ab, b)
            except AlignmentError as exc:
                if not self.skip_errors:
                    raise
                self.skipped_.append((utt.id, str(exc)))
                continue
            rows.append(b)
            letters.append(path)
        if not rows:
            return rows, {}
        padded = np.full((len(rows), max(len(p) for p in letters) or 1), model.alphabet.blank, dtype=np.int64)
        for i, path in enumerate(letters):
            padded[i, : len(path)] = path
        groups = self._map[padded]
        last_frame = np.array([max(len(p) - 1, 0) for p in letters], dtype=np.int64)[:, None]
        raw = {}
        for name, T in widths.items():
            # as transfer_labels: the nearest output frame, clipped to the utterance's last one
            index = np.arange(T) if name == model.output_layer else \
                transfer_index(model.frame_map, model.output_layer, name, T)
            raw[name] = np.take_along_axis(groups, np.minimum(index[None, :], last_frame), axis=1)
        return rows, raw

    def _phone_rows(self, ab, widths: dict[str, int]) -> tuple[list[int], dict[str, np.ndarray]]:
        """As :meth:`_letter_rows`, from the phone segment covering each frame's centre."""
        from asr_introspect.alignment import PhoneTimeline, frame_times

        rows, timelines = [], []
        for b, utt in enumerate(ab.utterances):
            if not utt.phones:
                self.skipped_.append((utt.id, "no phone segments"))
                continue
            rows.append(b)
            timelines.append(PhoneTimeline.from_segments(utt.phones))
        if not rows:
            return rows, {}
        raw = {}
        for name, T in widths.items():
            times = frame_times(self.model.frame_map, name, T, self.model.feature_config)
            raw[name] = self._map[np.stack([timeline.labels(times) for timeline in timelines])]  # -1 -> rest
        return rows, raw

    def _custom_rows(self, ab, widths: dict[str, int]) -> tuple[list[int], dict[str, np.ndarray]]:
        """As :meth:`_letter_rows`, from the user's labelling function (called per utterance and layer)."""
        G = len(self.groups)
        rows = list(range(len(ab.utterances)))
        raw = {name: np.full((len(rows), T), G, dtype=np.int64) for name, T in widths.items()}
        for b, utt in enumerate(ab.utterances):
            for name in self.layers:
                n = int(ab.lengths[name][b])
                labels = np.asarray(self.labeler(utt, name, n))
                if labels.shape != (n,) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
                    raise ValueError(f"utt {utt.id}, layer {name}: the labelling function must return "
                                     f"({n},) ints, got {labels.shape} {labels.dtype}")
                if labels.size and (labels.min() < -1 or labels.max() >= G):
                    raise ValueError(f"utt {utt.id}, layer {name}: labels must lie in [-1, {G})")
                raw[name][b, :n] = np.where(labels < 0, G, labels)
        return rows, raw

    # -- accumulation ---------------------------------------------------------------

    def _accumulate(self, ab, weights: dict[str, torch.Tensor] | None) -> None:
        labels = self._batch_labels(ab)
        if labels is None:
            return
        for name in self.layers:
            # the whole padded batch as (B*T, C) frames; padded frames and skipped utterances have
            # label -1, which the accumulator ignores. One NumPy transpose copy per layer (shared by
            # the estimators of a pass) is much cheaper than gathering the valid slices (measured:
            # ~3 ms vs ~150 ms for 8 x 448 x 320).
            values = ab.padded_frames(name)
            w = None
            if weights is not None:
                w = weights[name].detach().to("cpu", torch.float64).numpy().reshape(-1)
            self.stats_[name].update(values, labels[name].reshape(-1), w)

    def partial_fit(self, batch, weights: dict[str, torch.Tensor] | None = None) -> "NAPEstimator":
        """Add one batch: a corpus ``Batch`` (features, feature_lengths, utterances; the model is
        run here) or an ``ActivationBatch`` from ``hooks.stream_activations`` (recording at least
        ``self.layers``; with weighting, ``weights[layer]`` (B, T_l) must come along)."""
        if hasattr(batch, "activations"):
            if self.weighting is not None and weights is None:
                raise ValueError(f"weighting={self.weighting!r} needs gradients: pass a corpus Batch "
                                 "(not an ActivationBatch) or the weights")
            missing = [n for n in self.layers if n not in batch.activations]
            if missing:
                raise ValueError(f"the ActivationBatch has no activations for {missing}")
            self._accumulate(batch, weights)
            return self
        with _eval_mode(self.model):
            if self.weighting is None:
                from asr_introspect.hooks import ActivationBatch, ActivationRecorder

                with torch.no_grad(), ActivationRecorder(self.model, self.layers) as rec:
                    logits, out_lengths = rec.run(batch.features, batch.feature_lengths)
                    lengths = {n: torch.as_tensor(self.model.layer_length(n, batch.feature_lengths))
                               for n in self.layers}
                    ab = ActivationBatch(list(batch.utterances), batch.features, batch.feature_lengths,
                                         logits, out_lengths, dict(rec.activations), lengths)
                self._accumulate(ab, None)
            else:
                ab, w = _forward_weighted(self.model, batch, self.layers, self.weighting)
                self._accumulate(ab, w)
        return self

    def fit(self, utterances: Sequence, batch_size: int = 16, progress: bool = False,
            distributed: bool | None = None) -> "NAPEstimator":
        """Reset, then stream ``utterances`` (see :func:`stream_naps`); returns self."""
        self.reset()
        stream_naps(self.model, utterances, [self], batch_size=batch_size, progress=progress,
                    distributed=distributed)
        return self

    def all_reduce(self, group=None) -> "NAPEstimator":
        """Sum the state over all torch.distributed processes (no-op without a process group)."""
        from asr_introspect.aggregate import _torch_distributed

        for name in self.layers:
            self.stats_[name].all_reduce(group)
        dist = _torch_distributed()
        if dist is not None:
            count = torch.tensor([self.n_utterances_], dtype=torch.int64)
            dist.all_reduce(count, group=group)
            self.n_utterances_ = int(count.item())
            gathered: list = [None] * dist.get_world_size(group)
            dist.all_gather_object(gathered, self.skipped_, group=group)
            self.skipped_ = [tuple(x) for part in gathered for x in part]
        return self

    def result(self) -> NAPs:
        """The NAPs of everything added so far (a copy)."""
        settings = {
            "by": self.by, "layers": self.layers, "groups": self.groups, "weighting": self.weighting,
            "utterances": self.n_utterances_, "skipped": [sid for sid, _ in self.skipped_],
            "frames": {n: int(self.stats_[n].counts.sum()) for n in self.layers},
        }
        if self.by == "letter":
            settings.update(source=self.source, mode=self.mode, shift=self.shift)
        return NAPs(self.layers, self.groups, {n: s.copy() for n, s in self.stats_.items()}, settings)


# ---------------------------------------------------------------------------
# streaming a corpus


def _rank_world(distributed: bool | None) -> tuple[int, int]:
    from asr_introspect.aggregate import _torch_distributed

    dist = _torch_distributed()
    if distributed is False or dist is None:
        if distributed:
            raise RuntimeError("distributed=True but no torch.distributed process group is initialized")
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def stream_naps(model, utterances: Sequence, estimators: Sequence[NAPEstimator], batch_size: int = 16,
                progress: bool = False, distributed: bool | None = None) -> list[NAPEstimator]:
    """Feed one pass over ``utterances`` to several estimators (e.g. letters and phonemes).

    The estimators must share ``weighting``. Batches are length-bucketed (padding
    is exact, so the order does not matter). ``distributed``: None = when a
    ``torch.distributed`` process group is initialized, each process takes
    ``utterances[rank::world]`` and the estimators are all-reduced at the end
    (every process then holds the totals); False = ignore it.
    """
    from asr_introspect.corpus import iterate_batches

    estimators = list(estimators)
    weightings = {e.weighting for e in estimators}
    if len(weightings) > 1:
        raise ValueError(f"estimators in one stream must share the weighting, got {weightings}")
    weighting = weightings.pop() if weightings else None
    layers = list(dict.fromkeys(n for e in estimators for n in e.layers))
    rank, world = _rank_world(distributed)
    shard = list(utterances)[rank::world]
    if shard:
        from tqdm.auto import tqdm

        batches = iterate_batches(shard, model.feature_config, model.alphabet, batch_size=batch_size,
                                  bucket=True)
        with _eval_mode(model):
            if weighting is None:
                from asr_introspect.hooks import stream_activations

                for ab in stream_activations(model, shard, layers, batch_size=batch_size,
                                             progress=progress and rank == 0, batches=batches):
                    for e in estimators:
                        e._accumulate(ab, None)
            else:
                bar = tqdm(total=len(shard), desc="activations", unit="utt", disable=not (progress and rank == 0))
                for batch in batches:
                    ab, w = _forward_weighted(model, batch, layers, weighting)
                    for e in estimators:
                        e._accumulate(ab, w)
                    bar.update(len(batch.utterances))
                bar.close()
    if world > 1:
        for e in estimators:
            e.all_reduce()
    return estimators


def compute_naps(model, utterances: Sequence, by: str | Callable = "letter", layers: Sequence[str] | None = None,
                 *, groups: Sequence[str] | None = None, source: str = "forced", mode: str = "spike",
                 shift: int = 0, weighting: str | None = None, batch_size: int = 16, progress: bool = False,
                 distributed: bool | None = None, skip_errors: bool = True) -> NAPs:
    """NAPs of ``layers`` (default all) over a corpus; arguments as :class:`NAPEstimator` and
    :func:`stream_naps`. Returns :class:`NAPs` (``means(layer)``: (G, N_l))."""
    est = NAPEstimator(model, by, layers, groups=groups, source=source, mode=mode, shift=shift,
                       weighting=weighting, skip_errors=skip_errors)
    return est.fit(utterances, batch_size=batch_size, progress=progress, distributed=distributed).result()
