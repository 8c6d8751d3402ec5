"""The ``concepts`` estimator: a dictionary of one layer's frame activations, learned over the corpus stream.

:class:`ConceptEstimator` takes the valid frames ``(n, C)`` of ``layer`` from
every stream batch and feeds them to its learner:

- ``method="nmf"`` (:class:`~asr_introspect.concepts.nmf.StreamedNMF`): activations after a ReLU
  are non-negative, so they are sums of non-negative parts. A pass sums sufficient statistics
  and updates the dictionary at its end; passes are exactly mergeable.
- ``method="sae"`` (:class:`~asr_introspect.concepts.sae.StreamedSAE`): a TopK (or L1) sparse
  autoencoder trained by Adam, one step per minibatch of the stream's frames.

A dictionary needs several passes over the corpus. :func:`fit_concepts` (what
:meth:`ConceptEstimator.fit` runs) streams the corpus once, through the model, and replays the
recorded frames of the layer for the later passes (``cache=True``; memory: the layer's valid
frames of the corpus, e.g. 55 MB for 448 channels x 30,000 frames) or streams the corpus again
for every pass (``cache=False``: memory one batch, time one forward pass per pass). By hand::

    est = ConceptEstimator("conv9", "nmf", n_concepts=32)
    for _ in range(est.passes):
        for batch in stream_corpus(model, utterances, est.stream_layers(model)):
            est.partial_fit(batch)
        est.end_pass()
    dictionary = est.result()

which equals ``est.fit(model, utterances).result()`` (tests/test_concepts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from asr_introspect.aggregate import all_reduce_arrays, torch_distributed
from asr_introspect.concepts.dictionary import METHODS, ConceptDictionary
from asr_introspect.concepts.nmf import StreamedNMF
from asr_introspect.concepts.sae import SPARSITIES, StreamedSAE
from asr_introspect.errors import InputError
from asr_introspect.stream import StreamBatch, StreamEstimator, fit_estimators, layer_channels, shard

__all__ = ["ConceptEstimator", "fit_concepts", "DEFAULT_PASSES"]

#: passes over the corpus when ``passes=None``
DEFAULT_PASSES = {"nmf": 20, "sae": 30}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class ConceptEstimator(StreamEstimator):
    """A dictionary of ``n_concepts`` concepts of ``layer``'s frames, learned over the stream.

    method: "nmf" or "sae"; passes: over the corpus (None: 20 for NMF, 30 for the SAE); seed: of the
    initial dictionary (and the SAE's shuffling); NMF settings: ``alpha`` (L1 on the codes),
    ``code_iterations``; SAE settings: ``sparsity`` ("topk" or "l1"), ``k`` (active concepts per frame,
    None: ``max(1, n_concepts // 8)``), ``l1``, ``learning_rate``, ``minibatch_size``; batch_size: of
    the stream :meth:`fit` runs.

    Fitted attributes: ``learner_`` (the StreamedNMF / StreamedSAE), ``n_channels_``, ``n_passes_``,
    ``n_frames_`` (valid frames per pass), ``activation_sum_`` (C,) over the first pass, and
    ``activation_min_`` (the smallest activation seen).
    """

    def __init__(
        self,
        layer: str,
        method: str = "nmf",
        n_concepts: int = 32,
        *,
        passes: int | None = None,
        seed: int = 0,
        alpha: float = 0.0,
        code_iterations: int = 5,
        sparsity: str = "topk",
        k: int | None = None,
        l1: float = 0.05,
        learning_rate: float = 1e-3,
        minibatch_size: int = 256,
        batch_size: int = 16,
    ) -> None:
        if not isinstance(layer, str) or not layer:
            raise InputError(f"layer must be a layer name, got {layer!r}")
        if method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {method!r}")
        if sparsity not in SPARSITIES:
            raise InputError(f"sparsity must be one of {SPARSITIES}, got {sparsity!r}")
        self.layer = layer
        self.method = method
        self.n_concepts = _positive_int("n_concepts", n_concepts)
        self.passes = _positive_int("passes", DEFAULT_PASSES[method] if passes is None else passes)
        self.seed = int(seed)
        self.alpha = float(alpha)
        self.code_iterations = _positive_int("code_iterations", code_iterations)
        self.sparsity = sparsity
        self.k = max(1, self.n_concepts // 8) if k is None else _positive_int("k", k)
        self.l1 = float(l1)
        self.learning_rate = float(learning_rate)
        self.minibatch_size = _positive_int("minibatch_size", minibatch_size)
        self.batch_size = _positive_int("batch_size", batch_size)
        self._new_learner()  # checks the learner's settings now, not at the first batch
        self.reset()

    def get_params(self) -> dict[str, Any]:
        params = {
            "layer": self.layer,
            "method": self.method,
            "n_concepts": self.n_concepts,
            "passes": self.passes,
            "seed": self.seed,
        }
        if self.method == "nmf":
            params.update(alpha=self.alpha, code_iterations=self.code_iterations)
        else:
            params.update(
                sparsity=self.sparsity,
                k=self.k,
                l1=self.l1,
                learning_rate=self.learning_rate,
                minibatch_size=self.minibatch_size,
            )
        return params

    def __repr__(self) -> str:
        return "ConceptEstimator(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    def _new_learner(self) -> StreamedNMF | StreamedSAE:
        if self.method == "nmf":
            return StreamedNMF(self.n_concepts, alpha=self.alpha, code_iterations=self.code_iterations, seed=self.seed)
        return StreamedSAE(
            self.n_concepts,
            sparsity=self.sparsity,
            k=self.k,
            l1=self.l1,
            learning_rate=self.learning_rate,
            minibatch_size=self.minibatch_size,
            seed=self.seed,
        )

    def reset(self) -> ConceptEstimator:
        """Forget everything fitted."""
        self.learner_ = self._new_learner()
        self.n_channels_: int | None = None
        self.n_passes_ = 0
        self.n_frames_ = 0
        self.n_utterances_ = 0
        self.activation_sum_: np.ndarray | None = None
        self.activation_min_ = np.inf
        return self

    # -- the stream ---------------------------------------------------------------------------

    def stream_layers(self, model) -> list[str]:
        """``[layer]`` (InputError naming the model's layers when it has no such layer)."""
        if self.layer not in model.layer_names:
            raise InputError(f"unknown layer {self.layer!r}; the model has {', '.join(model.layer_names)}")
        return [self.layer]

    def prepare(self, model) -> None:
        """Size the learner for ``model``'s layer before any batch."""
        if self.n_channels_ is None:
            self._bind(layer_channels(model, self.stream_layers(model))[self.layer])

    def _bind(self, channels: int) -> None:
        self.n_channels_ = int(channels)
        self.activation_sum_ = np.zeros(self.n_channels_, dtype=np.float64)
        if self.method == "nmf":
            self.learner_.initialize(self.n_channels_)

    def layer_frames(self, batch: StreamBatch) -> np.ndarray:
        """The valid frames of ``layer`` in ``batch``: (n, C) float32."""
        if self.layer not in batch.activations:
            raise InputError(f"the stream batch has no activations for {self.layer!r}: stream this layer")
        return batch.padded_frames(self.layer)[batch.mask(self.layer).reshape(-1)]

    def partial_fit(self, batch: StreamBatch) -> ConceptEstimator:
        """Feed the valid frames of one :class:`~asr_introspect.stream.StreamBatch` to the learner."""
        if self.n_passes_ == 0:
            self.n_utterances_ += len(batch)
        return self.partial_fit_frames(self.layer_frames(batch))

    def partial_fit_frames(self, frames: np.ndarray) -> ConceptEstimator:
        """Feed frames ``(n, C)`` of ``layer`` (what :meth:`partial_fit` takes from a batch)."""
        frames = np.asarray(frames, dtype=np.float32)
        if self.n_channels_ is None:
            self._bind(frames.shape[1])
        if frames.shape[1] != self.n_channels_:
            raise InputError(f"{self.layer}: frames have {frames.shape[1]} channels, expected {self.n_channels_}")
        if len(frames) == 0:
            return self
        low = float(frames.min())
        if self.method == "nmf" and low < 0:
            raise InputError(
                f"method 'nmf' needs non-negative activations, but layer {self.layer} has negative values "
                f"(min {low:.3g}): choose a layer after a ReLU, or method 'sae'"
            )
        if self.n_passes_ == 0:
            self.activation_sum_ += frames.sum(axis=0, dtype=np.float64)
            self.activation_min_ = min(self.activation_min_, low)
            self.n_frames_ += len(frames)
        self.learner_.partial_fit(frames)
        return self

    def end_pass(self) -> ConceptEstimator:
        """Finish a pass over the corpus (NMF: update the dictionary)."""
        self.learner_.end_pass()
        self.n_passes_ += 1
        return self

    @property
    def done(self) -> bool:
        """True once ``passes`` passes are finished."""
        return self.n_passes_ >= self.passes

    # -- combining ------------------------------------------------------------------------------

    def merge(self, other: ConceptEstimator) -> ConceptEstimator:
        """Add ``other``'s frames of the current pass (NMF: exact; SAE: parameter averaging)."""
        if other.n_channels_ is None:
            return self
        if self.n_channels_ is None:
            raise InputError("merge into an estimator that has seen a batch (call partial_fit first)")
        if (other.layer, other.method, other.n_passes_) != (self.layer, self.method, self.n_passes_):
            raise InputError("cannot merge concept estimators of different layers, methods or passes")
        self.learner_.merge(other.learner_)
        if self.n_passes_ == 0:
            self.activation_sum_ += other.activation_sum_
            self.activation_min_ = min(self.activation_min_, other.activation_min_)
            self.n_frames_ += other.n_frames_
            self.n_utterances_ += other.n_utterances_
        return self

    def all_reduce(self, group=None) -> ConceptEstimator:
        """Combine the current pass over all torch.distributed processes (no-op without a group)."""
        dist = torch_distributed()
        if dist is None:
            return self
        if self.n_passes_ == 0:
            counts = np.array([float(self.n_frames_), float(self.n_utterances_)])
            all_reduce_arrays([self.activation_sum_, counts], group)
            self.n_frames_, self.n_utterances_ = int(counts[0]), int(counts[1])
            gathered: list = [None] * dist.get_world_size(group)
            dist.all_gather_object(gathered, self.activation_min_, group=group)
            self.activation_min_ = min(gathered)
        self.learner_.all_reduce(group)
        return self

    # -- fitting, the result -------------------------------------------------------------------

    def fit(
        self,
        model,
        utterances: Sequence,
        *,
        progress: bool = False,
        distributed: bool | None = None,
        cache: bool = True,
    ) -> ConceptEstimator:
        """Reset, then ``passes`` passes over ``utterances`` (see :func:`fit_concepts`); returns self."""
        fit_concepts(
            model,
            utterances,
            [self],
            batch_size=self.batch_size,
            progress=progress,
            distributed=distributed,
            cache=cache,
        )
        return self

    def result(self) -> ConceptDictionary:
        """The :class:`ConceptDictionary` learned so far (after at least one pass)."""
        if self.n_passes_ == 0 or self.n_channels_ is None:
            raise InputError("the concept estimator has finished no pass yet (call fit, or partial_fit and end_pass)")
        learner = self.learner_
        if self.method == "nmf":
            parameters: dict[str, Any] = {"alpha": self.alpha, "code_iterations": self.code_iterations}
        else:
            parameters = {"sparsity": self.sparsity, "k": self.k, **learner.parameters()}
        mean = self.activation_sum_ / max(self.n_frames_, 1)
        settings = {
            **self.get_params(),
            "passes_done": self.n_passes_,
            "frames": self.n_frames_,
            "utterances": self.n_utterances_,
            "channels": self.n_channels_,
        }
        return ConceptDictionary(
            self.layer, self.method, learner.components_.copy(), parameters, mean, list(learner.history_), settings
        )


class _FrameRecorder(StreamEstimator):
    """Keeps the valid frames of some layers of every batch (the replay cache of :func:`fit_concepts`)."""

    def __init__(self, layers: Sequence[str]):
        self.layers = list(dict.fromkeys(layers))
        self.frames: dict[str, list[np.ndarray]] = {name: [] for name in self.layers}

    def stream_layers(self, model) -> list[str]:
        return self.layers

    def reset(self) -> _FrameRecorder:
        self.frames = {name: [] for name in self.layers}
        return self

    def partial_fit(self, batch: StreamBatch) -> _FrameRecorder:
        for name in self.layers:
            self.frames[name].append(batch.padded_frames(name)[batch.mask(name).reshape(-1)].copy())
        return self

    def all_reduce(self, group=None) -> _FrameRecorder:
        return self  # each process replays its own shard


def fit_concepts(
    model,
    utterances: Sequence,
    estimators: Sequence[ConceptEstimator],
    *,
    batch_size: int = 16,
    progress: bool = False,
    distributed: bool | None = None,
    cache: bool = True,
) -> list[ConceptEstimator]:
    """Reset and fit several concept estimators (e.g. seeds, methods, layers) on one corpus.

    The first pass streams the corpus through the model once for all of them. Each later pass
    replays the recorded frames of every needed layer in the same order (``cache=True``) or streams
    the corpus again (``cache=False``); either gives the same dictionaries. Under ``torchrun`` each
    process takes its shard and the estimators are all-reduced at the end of every pass.
    """
    estimators = list(estimators)
    if not estimators:
        return estimators
    for e in estimators:
        e.reset()
    layers = list(dict.fromkeys(layer for e in estimators for layer in e.stream_layers(model)))
    recorder = _FrameRecorder(layers) if cache else None
    _, _, world = shard(utterances, distributed)
    n_passes = max(e.passes for e in estimators)
    bar = tqdm(total=n_passes, desc="concept passes", unit="pass", disable=not progress)
    try:
        for index in range(n_passes):
            active = [e for e in estimators if not e.done]
            if index == 0 or recorder is None:
                extra = [recorder] if index == 0 and recorder is not None else []
                fit_estimators(
                    model,
                    utterances,
                    [*active, *extra],
                    batch_size=batch_size,
                    progress=progress and index == 0,
                    distributed=distributed,
                )
            else:
                for e in active:
                    for frames in recorder.frames[e.layer]:
                        e.partial_fit_frames(frames)
                    if world > 1:
                        e.all_reduce()
            for e in active:
                e.end_pass()
            bar.update(1)
    finally:
        bar.close()
    return estimators
