"""The calibration pass: per-neuron activation thresholds (top quantile) and the CTC lag.

Network Dissection thresholds each unit at its top quantile over the whole
dataset: a frame is *active* for neuron ``n`` when ``a_n(t) >= tau_n`` with
``P(a_n >= tau_n) ~ q``. The concept counts of the dissection pass need ``tau``
before they start, so a first pass, :class:`ActivationQuantiles`, histograms
every neuron's activations on data-independent float bins
(:mod:`~asr_introspect.dissection.kernels`: at most 3.1 % of the value wide),
which add across batches and processes, and :func:`top_quantile_thresholds`
picks per neuron the bin edge whose exceedance is nearest to ``q``. The
workflow runs it on a seeded random subset of at most ``calibration``
utterances (all of the shipped corpus), so on a large corpus it costs a
fraction of a forward pass; the dissection pass then reports each neuron's
realized active fraction. Ties are kept whole: a neuron that outputs 1 on 6 %
of the frames and 0 elsewhere gets the threshold 1 for ``q = 0.05`` (6 % is
nearer to 5 % than 0 % is), not a random 5 %.

The same pass can measure two delays:

- the CTC lag (how much later the model emits a letter than its phones sound;
  :func:`alignment.estimate_shift`), for ``shift="auto"`` of the letter concepts;
- each layer's *response lag*: a layer's frame is centred on its receptive
  field, but what a neuron encodes can lag behind (or lead) that centre. For
  candidate lags ``d`` the pass groups a sample of ``lag_neurons`` neurons'
  activations at frame ``t`` by the phone at ``t - d`` and measures how much of
  their variance the phone explains (the correlation ratio ``eta^2 = between-phone
  sum of squares / total``, averaged over the sampled neurons); the layer's lag
  is the ``d`` with the largest ``eta^2``. On the shipped model it grows with depth:
  about 50 ms in the middle layers and 140 ms (the CTC lag) in the 9th and 10th.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr_introspect.aggregate import GroupStats, all_reduce_arrays, torch_distributed
from asr_introspect.alignment import ShiftReport, UtteranceAlignment, estimate_shift, token_spans
from asr_introspect.dissection.kernels import N_BINS, bin_lower_edges, histogram_into
from asr_introspect.errors import InputError
from asr_introspect.stream import StreamBatch, StreamEstimator, layer_channels
from asr_introspect.text import PHONES

__all__ = ["ActivationQuantiles", "top_quantile_thresholds", "check_quantile", "layer_step_seconds"]


def check_quantile(quantile: float) -> float:
    """``quantile`` as a float in (0, 0.5]; InputError otherwise."""
    try:
        q = float(quantile)
    except (TypeError, ValueError):
        raise InputError(f"--quantile must be a number in (0, 0.5], got {quantile!r}") from None
    if not 0.0 < q <= 0.5:
        raise InputError(f"--quantile must be in (0, 0.5] (the active share of a neuron's frames), got {quantile!r}")
    return q


def top_quantile_thresholds(hist: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron the bin edge whose exceedance is nearest to ``quantile``.

    hist: (N, N_BINS) counts on the float bins. Returns ``thresholds`` (N,) float32 (active: ``a >=
    threshold``) and ``fractions`` (N,): the share of the histogram's frames at or above it. Among
    equally near edges the highest with any frame above it wins (a neuron without activity gets the
    lowest edge above zero, so nothing is active).
    """
    hist = np.asarray(hist)
    total = hist.sum(axis=1, keepdims=True)
    exceed = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # frames in bin >= i
    diff = np.abs(exceed - quantile * total)
    nearest = diff == diff.min(axis=1, keepdims=True)
    with_frames = nearest & (exceed > 0)
    last = hist.shape[1] - 1 - np.argmax(with_frames[:, ::-1], axis=1)
    first = np.argmax(nearest & (np.arange(hist.shape[1]) > N_BINS // 2), axis=1)
    index = np.where(with_frames.any(axis=1), last, first)
    edges = bin_lower_edges()
    fractions = exceed[np.arange(len(index)), index] / np.maximum(total[:, 0], 1)
    return edges[index], fractions


class ActivationQuantiles(StreamEstimator):
    """Histograms of every neuron's activations (valid frames) on fixed float bins, and optionally the CTC lag.

    layers: layer names (None: all of the model's); measure_lag: also collect the per-word CTC lag
    (needs phone segments and forced alignments); lag_range: (earliest, latest) response lag in seconds
    to try per layer (None: do not measure), on ``lag_neurons`` neurons drawn with ``seed``; batch_size:
    of :meth:`fit`'s stream.

    Fitted: ``layers_``, ``hist_`` ({layer: (N, N_BINS) int64}), ``frames_`` ({layer: valid frames}),
    ``center_shifts_``/``onset_shifts_`` (seconds per word), ``lag_utterances_`` ((used, skipped)),
    ``lag_candidates_`` ({layer: (D,) lags in frames}), ``lag_stats_`` ({layer: [GroupStats per lag]}).
    """

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        *,
        measure_lag: bool = False,
        lag_range: tuple[float, float] | None = None,
        lag_neurons: int = 32,
        seed: int = 0,
        batch_size: int = 16,
    ):
        if layers is not None and not list(layers):
            raise InputError("no layers to calibrate")
        if lag_range is not None and not lag_range[0] <= 0 <= lag_range[1]:
            raise InputError(f"lag_range must contain 0 seconds, got {lag_range}")
        self.layers = None if layers is None else list(layers)
        self.measure_lag = bool(measure_lag)
        self.lag_range = None if lag_range is None else (float(lag_range[0]), float(lag_range[1]))
        self.lag_neurons = int(lag_neurons)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.reset()

    def reset(self) -> ActivationQuantiles:
        self.layers_: list[str] | None = None
        self.hist_: dict[str, np.ndarray] = {}
        self.frames_: dict[str, int] = {}
        self.center_shifts_: list[float] = []
        self.onset_shifts_: list[float] = []
        self.lag_utterances_ = [0, 0]
        self.lag_candidates_: dict[str, np.ndarray] = {}
        self.lag_neurons_: dict[str, np.ndarray] = {}
        self.lag_stats_: dict[str, list[GroupStats]] = {}
        self._step = None
        return self

    def stream_layers(self, model) -> list[str]:
        layers = self.layers if self.layers is not None else list(model.layer_names)
        unknown = [n for n in layers if n not in model.layer_names]
        if unknown:
            raise InputError(f"unknown layer(s) {', '.join(unknown)}; the model has {', '.join(model.layer_names)}")
        return layers

    def prepare(self, model) -> None:
        if self.layers_ is None:
            self._bind(model, layer_channels(model, self.stream_layers(model)))

    def _bind(self, model, channels: dict[str, int]) -> None:
        self.layers_ = self.stream_layers(model)
        self.hist_ = {n: np.zeros((channels[n], N_BINS), dtype=np.int64) for n in self.layers_}
        self.frames_ = {n: 0 for n in self.layers_}
        fm, fc = model.frame_map, model.feature_config
        self._step = fm.layer(model.output_layer).stride * fc.frame_seconds
        self._layer_steps = {name: layer_step_seconds(model, name) for name in self.layers_}
        if self.lag_range is not None:
            rng = np.random.default_rng(self.seed)
            for name in self.layers_:
                step = self._layer_steps[name]
                lo, hi = int(np.ceil(self.lag_range[0] / step - 1e-9)), int(np.floor(self.lag_range[1] / step + 1e-9))
                self.lag_candidates_[name] = np.arange(lo, hi + 1)
                n = channels[name]
                self.lag_neurons_[name] = np.sort(rng.choice(n, min(n, self.lag_neurons), replace=False))
                sampled = len(self.lag_neurons_[name])
                self.lag_stats_[name] = [GroupStats(len(PHONES), sampled) for _ in self.lag_candidates_[name]]

    def partial_fit(self, batch: StreamBatch) -> ActivationQuantiles:
        """Add the valid frames of one stream batch (recording at least ``self.layers_``)."""
        if self.layers_ is None:
            self._bind(batch.model, self.require_layers(batch, self.stream_layers(batch.model)))
        for name in self.layers_:
            lengths = batch.layer_lengths(name)
            histogram_into(batch.activations[name].detach().cpu().numpy(), lengths, self.hist_[name])
            self.frames_[name] += int(lengths.sum())
        if self.measure_lag:
            self._add_lag(batch)
        if self.lag_range is not None and batch.phone_rows().any():
            for name in self.layers_:
                self._add_layer_lags(batch, name)
        return self

    def _add_layer_lags(self, batch: StreamBatch, name: str) -> None:
        """Group the sampled neurons' activations at frame t by the phone at t - d, for every candidate d."""
        phones = batch.phone_labels(name)  # (B, T), -1: none or padding
        valid = batch.mask(name)
        values = np.ascontiguousarray(batch.padded_frames(name)[:, self.lag_neurons_[name]])
        T = phones.shape[1]
        for d, stats in zip(self.lag_candidates_[name], self.lag_stats_[name]):
            labels = np.full_like(phones, -1)
            if 0 <= d < T:
                labels[:, d:] = phones[:, : T - d]
            elif -T < d < 0:
                labels[:, :d] = phones[:, -d:]
            stats.update(values, np.where(valid, labels, -1).reshape(-1))

    def _add_lag(self, batch: StreamBatch) -> None:
        model = batch.model
        forced = batch.output_paths("forced")
        alignments = [
            UtteranceAlignment(utt, path, path, token_spans(path, model.alphabet.blank), int(batch.feature_lengths[b]))
            for b, (utt, path) in enumerate(zip(batch.utterances, forced))
            if path is not None and utt.phones
        ]
        if not alignments:
            self.lag_utterances_[1] += len(batch)
            return
        report = estimate_shift(alignments, model.frame_map, model.feature_config, model.output_layer)
        self.center_shifts_ += report.center_shifts.tolist()
        self.onset_shifts_ += report.onset_shifts.tolist()
        self.lag_utterances_[0] += report.utterances_used
        self.lag_utterances_[1] += report.utterances_skipped + len(batch) - len(alignments)

    def merge(self, other: ActivationQuantiles) -> ActivationQuantiles:
        if other.layers_ is None:
            return self
        if self.layers_ is None:
            raise InputError("merge into an estimator that has seen a batch (call partial_fit first)")
        if other.layers_ != self.layers_:
            raise InputError("cannot merge activation histograms of different layers")
        for name in self.layers_:
            self.hist_[name] += other.hist_[name]
            self.frames_[name] += other.frames_[name]
        for name in self.lag_stats_:
            for mine, theirs in zip(self.lag_stats_[name], other.lag_stats_[name]):
                mine.merge(theirs)
        self.center_shifts_ += other.center_shifts_
        self.onset_shifts_ += other.onset_shifts_
        self.lag_utterances_ = [a + b for a, b in zip(self.lag_utterances_, other.lag_utterances_)]
        return self

    def all_reduce(self, group=None) -> ActivationQuantiles:
        if self.layers_ is None:
            raise InputError("the calibration has seen no batch yet")
        counts = np.array([self.frames_[n] for n in self.layers_] + self.lag_utterances_, dtype=np.int64)
        all_reduce_arrays([self.hist_[n] for n in self.layers_] + [counts], group)
        for name in self.lag_stats_:
            for stats in self.lag_stats_[name]:
                stats.all_reduce(group)
        self.frames_ = {n: int(c) for n, c in zip(self.layers_, counts)}
        self.lag_utterances_ = counts[len(self.layers_) :].tolist()
        dist = torch_distributed()
        if dist is not None and self.measure_lag:
            gathered: list = [None] * dist.get_world_size(group)
            dist.all_gather_object(gathered, (self.center_shifts_, self.onset_shifts_), group=group)
            self.center_shifts_ = [x for part in gathered for x in part[0]]
            self.onset_shifts_ = [x for part in gathered for x in part[1]]
        return self

    def thresholds(self, quantile: float) -> dict[str, np.ndarray]:
        """{layer: (N,) float32 threshold at the top ``quantile``} (:func:`top_quantile_thresholds`)."""
        if self.layers_ is None:
            raise InputError("the calibration has seen no batch yet (call fit or partial_fit)")
        q = check_quantile(quantile)
        return {n: top_quantile_thresholds(self.hist_[n], q)[0] for n in self.layers_}

    def layer_lags(self) -> dict[str, dict]:
        """Per layer its response lag: {"frames": the lag with the largest mean eta^2 (0 without phone
        segments), "seconds", "candidates": lags tried (frames), "eta2": (D,) mean eta^2 per candidate}."""
        out = {}
        for name in self.lag_stats_:
            eta2 = np.array([_mean_eta2(stats) for stats in self.lag_stats_[name]])
            candidates = self.lag_candidates_[name]
            best = int(candidates[np.nanargmax(eta2)]) if np.isfinite(eta2).any() else 0
            out[name] = {
                "frames": best,
                "seconds": best * self._layer_steps[name],
                "candidates": candidates.tolist(),
                "eta2": [None if not np.isfinite(e) else float(e) for e in eta2],
            }
        return out

    def lag(self) -> ShiftReport:
        """The CTC lag over the words seen (``correction_frames``: output frames to move letters earlier)."""
        return ShiftReport(
            np.asarray(self.center_shifts_, dtype=np.float64),
            np.asarray(self.onset_shifts_, dtype=np.float64),
            int(self.lag_utterances_[0]),
            int(self.lag_utterances_[1]),
            float(self._step or 0.0),
        )

    def result(self) -> dict[str, np.ndarray]:
        """The histograms ({layer: (N, N_BINS) int64}, a copy)."""
        if self.layers_ is None:
            raise InputError("the calibration has seen no batch yet (call fit or partial_fit)")
        return {n: h.copy() for n, h in self.hist_.items()}


def layer_step_seconds(model, layer: str) -> float:
    """Seconds between two frames of ``layer``."""
    return float(model.frame_map.layer(layer).stride * model.feature_config.frame_seconds)


def _mean_eta2(stats: GroupStats) -> float:
    """Mean over neurons of the share of their variance that the groups explain (NaN without frames)."""
    n = stats.counts.sum()
    if n < 2:
        return float("nan")
    total_sum = stats.sums.sum(axis=0)
    total = stats.sums_sq.sum(axis=0) - total_sum**2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (stats.sums**2 / np.maximum(stats.counts, 1)[:, None]).sum(axis=0) - total_sum**2 / n
        eta2 = np.where(total > 0, between / total, np.nan)
    return float(np.nanmean(eta2)) if np.isfinite(eta2).any() else float("nan")
