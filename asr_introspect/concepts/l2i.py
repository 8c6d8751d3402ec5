"""Listenable interpretations of a CTC model's letters, in the style of L2I ("Listen to Interpret",
Parekh et al., 2022).

1. **Spectral dictionary.** NMF of the corpus' mel magnitude spectra: frames ``v: (F,) >= 0``
   ``≈ h W`` with ``K`` spectral components ``W: (K, F)``
   (:class:`~asr_introspect.concepts.nmf.StreamedNMF`). Magnitudes come from the model's
   features with the convention of :func:`~asr_introspect.features.invert_features`:
   ``dB = features * db_std + db_mean``, ``v = 10^(dB / 20)``, scaled by one corpus constant
   ``s`` (root mean square frame norm).
2. **Interpreter.** ``psi`` maps the layer's activations ``A: (C, T_l)`` to non-negative time
   activations of the components, ``H = ReLU(psi(A)): (K, T_l)`` (a convolution of 3 frames, a
   ReLU and a 1x1 convolution; or one 1x1 convolution); ``theta``, a temporal
   convolution of ``kernel`` layer frames, maps ``H`` to letter logits. Trained by Adam on
   the training utterances, over valid frames::

       L = KL(p_model || softmax(theta(H)))          fidelity: reproduce the model's posteriors
         + alpha ||v - h W||^2 / ||v||^2             H are time activations of the dictionary
         + beta ||h||_1 / K                          sparse

   (``h`` at an input frame: ``H`` at the layer frame nearest its centre).
3. **Interpretation** of letter ``c`` at output frame ``t``: the logit decomposes exactly as
   ``logit_c(t) = b_c + sum_k r_k`` with ``r_k = sum_j theta[c, k, j] H[k, t + j - kernel // 2]``.
   The relevant components are the ``m`` with the largest positive ``r_k``. Their audio: the
   input's magnitude in the frames ``theta`` reads, masked by their share of the interpreter's
   spectrum ``sum_{k in R} W_k h_k / sum_k W_k h_k``, made features again and inverted by
   Griffin-Lim (:func:`~asr_introspect.features.invert_features`). A word sums ``r`` over the
   frames where the forced alignment emits its letters; its window spans those frames.

Reported as L2I does, on held-out utterances: **fidelity**, the interpreter's top-1 agreement
with the model per output frame (all frames; frames where the model emits a symbol), against
chance (always the model's most frequent class), the CER of the interpreter's greedy transcript
against the model's and ``KL(p_model || q)`` per frame against the KL of the best
constant prediction (the mean posterior); **faithfulness**, the drop of the model's posterior of the
letter when the relevant components are removed from its input (inside the window), against
removing as many random components that are active there.

The interpreter trains on the layer's activations of the whole corpus, kept in memory
(:meth:`ListenableInterpreter.partial_fit` collects them from one pass of the stream; many
epochs follow), so it is not a mergeable accumulator: ``merge`` concatenates collections.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asr_introspect.aggregate import torch_distributed
from asr_introspect.alignment import token_spans, transfer_index
from asr_introspect.concepts.nmf import StreamedNMF
from asr_introspect.decoding import error_rates, greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, invert_features
from asr_introspect.hooks import ActivationRecorder
from asr_introspect.stream import StreamBatch, StreamEstimator, eval_mode, fit_estimators

__all__ = [
    "ListenableInterpreter",
    "Interpreter",
    "Interpretation",
    "features_to_magnitude",
    "magnitude_to_features",
]

#: the level convention of ``features.invert_features`` (dB mean and std of a normalized utterance)
DB_MEAN, DB_STD = -40.0, 15.0
_MAGNITUDE_FLOOR = 1e-5  # -100 dB


def features_to_magnitude(features, config: FeatureConfig, db_mean: float = DB_MEAN, db_std: float = DB_STD):
    """Mel magnitude ``10^(dB/20)`` of log-mel ``features`` (any shape; NumPy or torch), with
    ``dB = features * db_std + db_mean`` for utterance-normalized features, ``dB = features`` otherwise."""
    db = features * db_std + db_mean if config.normalization == "utterance" else features
    return 10.0 ** (db / 20.0)


def magnitude_to_features(magnitude, config: FeatureConfig, db_mean: float = DB_MEAN, db_std: float = DB_STD):
    """Inverse of :func:`features_to_magnitude` (magnitudes floored at -100 dB)."""
    if isinstance(magnitude, torch.Tensor):
        db = 20.0 * torch.log10(magnitude.clamp_min(_MAGNITUDE_FLOOR))
    else:
        db = 20.0 * np.log10(np.maximum(magnitude, _MAGNITUDE_FLOOR))
    return (db - db_mean) / db_std if config.normalization == "utterance" else db


class Interpreter(nn.Module):
    """``psi``: activations (B, C, T_l) -> component time activations H (B, K, T_l) >= 0 (a 1x1
    convolution, or with ``hidden`` channels a convolution of 3 frames, a ReLU and a 1x1 convolution);
    ``theta``: H -> letter logits (B, n_classes, T_l), a convolution of ``kernel`` frames."""

    def __init__(self, n_channels: int, n_components: int, n_classes: int, kernel: int = 9, hidden: int = 0):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise InputError(f"kernel must be an odd integer >= 1, got {kernel}")
        if hidden:
            self.psi = nn.Sequential(
                nn.Conv1d(n_channels, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, n_components, 1)
            )
        else:
            self.psi = nn.Conv1d(n_channels, n_components, 1)
        self.theta = nn.Conv1d(n_components, n_classes, kernel, padding=kernel // 2)

    def activations(self, layer: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """H (B, K, T_l), zero on frames where ``mask`` (B, T_l) is False."""
        if mask is not None:
            layer = layer * mask[:, None, :].to(layer.dtype)
        h = torch.relu(self.psi(layer))
        return h if mask is None else h * mask[:, None, :].to(h.dtype)

    def forward(self, layer: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.activations(layer, mask)
        return self.theta(h), h

    def relevance(self, h: torch.Tensor, letter: int, frame: int) -> torch.Tensor:
        """(K,) contribution of each component to ``letter``'s logit at layer frame ``frame``; h: (K, T_l)."""
        kernel = self.theta.kernel_size[0]
        pad = kernel // 2
        padded = F.pad(h, (pad, pad))
        window = padded[:, frame : frame + kernel]  # (K, kernel)
        return (self.theta.weight[letter] * window).sum(dim=1)


@dataclass
class _Utterance:
    id: str
    activations: np.ndarray  # (C, T_l)
    log_probs: np.ndarray  # (n_classes, T_out) of the model
    features: np.ndarray  # (F, T_in)
    path: np.ndarray | None  # (T_out,) forced CTC path
    text: str


@dataclass
class Interpretation:
    """The listenable interpretation of a letter at a frame, or of a word.

    what: e.g. "'s' at 1.23 s" or "word 'hello'"; relevance (K,): contribution of each spectral component
    to the logit(s); components: the relevant ones, most relevant first; frames: (start, stop) input
    frames of the window; features (F, W): the window's features as the interpretation keeps them;
    removed (F, W): the window without the relevant components; audio: Griffin-Lim of ``features``.
    """

    what: str
    relevance: np.ndarray
    components: list[int]
    frames: tuple[int, int]
    features: np.ndarray
    removed: np.ndarray
    audio: np.ndarray


class ListenableInterpreter(StreamEstimator):
    """L2I for one layer of a CTC model (module docstring).

    layer: the hidden layer read; n_components: spectral NMF components K; nmf_passes: NMF passes over
    the collected spectra; kernel: theta's width in layer frames (odd); hidden: channels of psi's hidden
    convolution (0: psi is one 1x1 convolution); epochs, learning_rate,
    minibatch_size (utterances): interpreter training; alpha: reconstruction weight; beta: sparsity
    weight; holdout: share of utterances (by id) kept out of training for the fidelity numbers;
    seed; batch_size: of the stream :meth:`fit` runs.

    Fitted attributes (after :meth:`train` / :meth:`fit`): ``spectra_`` (K, F) spectral components,
    ``magnitude_scale_``, ``interpreter_`` (:class:`Interpreter`), ``history_`` (loss terms per epoch),
    ``fidelity_`` (dict), ``train_ids_`` / ``test_ids_``.
    """

    def __init__(
        self,
        layer: str,
        n_components: int = 32,
        *,
        nmf_passes: int = 30,
        kernel: int = 9,
        hidden: int = 64,
        epochs: int = 40,
        learning_rate: float = 3e-3,
        minibatch_size: int = 8,
        alpha: float = 1.0,
        beta: float = 0.01,
        holdout: float = 0.2,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        for name, value in (
            ("n_components", n_components),
            ("nmf_passes", nmf_passes),
            ("epochs", epochs),
            ("minibatch_size", minibatch_size),
            ("batch_size", batch_size),
        ):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(kernel, bool) or int(kernel) != kernel or kernel < 1 or kernel % 2 == 0:
            raise InputError(f"kernel must be an odd integer >= 1, got {kernel!r}")
        for name, value in (("alpha", alpha), ("beta", beta), ("learning_rate", learning_rate)):
            if not np.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= holdout < 1:
            raise InputError(f"holdout must lie in [0, 1), got {holdout!r}")
        self.layer = layer
        self.n_components = int(n_components)
        self.nmf_passes = int(nmf_passes)
        self.kernel = int(kernel)
        if isinstance(hidden, bool) or int(hidden) != hidden or hidden < 0:
            raise InputError(f"hidden must be an integer >= 0, got {hidden!r}")
        self.hidden = int(hidden)
        self.epochs = int(epochs)
        self.learning_rate = float(learning_rate)
        self.minibatch_size = int(minibatch_size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.holdout = float(holdout)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.reset()

    def get_params(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "n_components": self.n_components,
            "nmf_passes": self.nmf_passes,
            "kernel": self.kernel,
            "hidden": self.hidden,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "minibatch_size": self.minibatch_size,
            "alpha": self.alpha,
            "beta": self.beta,
            "holdout": self.holdout,
            "seed": self.seed,
        }

    def reset(self) -> ListenableInterpreter:
        self.collected_: list[_Utterance] = []
        self.spectra_: np.ndarray | None = None
        self.magnitude_scale_: float | None = None
        self.interpreter_: Interpreter | None = None
        self.history_: list[dict[str, float]] = []
        self.fidelity_: dict[str, Any] = {}
        self.train_ids_: list[str] = []
        self.test_ids_: list[str] = []
        self.collected_test_: list[_Utterance] = []
        self._geometry: dict[str, Any] = {}
        return self

    # -- collecting ----------------------------------------------------------------------------

    def stream_layers(self, model) -> list[str]:
        if getattr(model, "alphabet", None) is None:
            raise InputError("L2I explains letter posteriors: the model has no CTC head (alphabet)")
        if not isinstance(model.feature_config, FeatureConfig):
            raise InputError("L2I resynthesizes log-mel spectra: the model's front end is not the toolkit's log-mel")
        if self.layer not in model.layer_names:
            raise InputError(f"unknown layer {self.layer!r}; the model has {', '.join(model.layer_names)}")
        return [self.layer]

    def partial_fit(self, batch: StreamBatch) -> ListenableInterpreter:
        """Collect each utterance's layer activations, the model's log posteriors, features and forced path."""
        model = batch.model
        self.stream_layers(model)
        self._bind(model)
        log_probs = F.log_softmax(batch.logits.float(), dim=1)
        paths = batch.output_paths("forced")
        for b, utt in enumerate(batch.utterances):
            n_out = int(batch.out_lengths[b])
            self.collected_.append(
                _Utterance(
                    utt.id,
                    batch.valid(self.layer, b).float().numpy().copy(),
                    log_probs[b, :, :n_out].numpy().copy(),
                    batch.utterance_features(b),
                    paths[b],
                    utt.text,
                )
            )
        return self

    def _bind(self, model) -> None:
        if not self._geometry:
            self._geometry = {
                "frame_map": model.frame_map,
                "output_layer": model.output_layer,
                "feature_config": model.feature_config,
                "alphabet": model.alphabet,
            }

    def merge(self, other: ListenableInterpreter) -> ListenableInterpreter:
        """Append ``other``'s collected utterances (before :meth:`train`)."""
        self.collected_ += other.collected_
        if not self._geometry:
            self._geometry = dict(other._geometry)
        return self

    def all_reduce(self, group=None) -> ListenableInterpreter:
        """Gather every process's collected utterances (each process then trains the same interpreter)."""
        dist = torch_distributed()
        if dist is not None:
            gathered: list = [None] * dist.get_world_size(group)
            dist.all_gather_object(gathered, self.collected_, group=group)
            self.collected_ = [u for part in gathered for u in part]
        return self

    def fit(self, model, utterances: Sequence, *, progress: bool = False, distributed: bool | None = None):
        """Collect ``utterances`` in one pass of the stream, then :meth:`train`; returns self."""
        self.reset()
        fit_estimators(
            model, utterances, [self], batch_size=self.batch_size, progress=progress, distributed=distributed
        )
        return self.train()

    # -- geometry --------------------------------------------------------------------------------

    def _index(self, target: str, n_target: int, n_layer: int) -> np.ndarray:
        """For each frame of ``target`` ("input" or the output layer) the nearest layer frame, clipped."""
        index = transfer_index(self._geometry["frame_map"], self.layer, target, n_target)
        return np.clip(index, 0, max(n_layer - 1, 0))

    def _magnitude(self, features: np.ndarray) -> np.ndarray:
        """(F, T_in) scaled mel magnitude of features."""
        return features_to_magnitude(features.astype(np.float64), self._geometry["feature_config"]) / (
            self.magnitude_scale_ or 1.0
        )

    # -- training --------------------------------------------------------------------------------

    def _split(self) -> tuple[list[_Utterance], list[_Utterance]]:
        """(train, test): the ``round(holdout * n)`` utterances (at least one) with the smallest hash of their
        id are held out, so the split depends on the ids, not on the order of the stream."""
        n_test = int(round(self.holdout * len(self.collected_)))
        if self.holdout and len(self.collected_) >= 2:
            n_test = min(max(n_test, 1), len(self.collected_) - 1)
        ranked = sorted(self.collected_, key=lambda u: (zlib.crc32(u.id.encode()), u.id))
        held = {u.id for u in ranked[:n_test]}
        train = [u for u in self.collected_ if u.id not in held]
        return train, [u for u in self.collected_ if u.id in held]

    def train(self) -> ListenableInterpreter:
        """Learn the spectral dictionary and the interpreter from the collected utterances; measure fidelity."""
        if not self.collected_:
            raise InputError("L2I has collected no utterance (stream a corpus with partial_fit, or call fit)")
        train, test = self._split()
        self.train_ids_, self.test_ids_ = [u.id for u in train], [u.id for u in test]
        config = self._geometry["feature_config"]
        spectra = [features_to_magnitude(u.features.T.astype(np.float64), config) for u in train]
        energy = np.concatenate([np.square(s).sum(axis=1) for s in spectra])
        self.magnitude_scale_ = float(np.sqrt(energy.mean())) or 1.0
        chunks = _chunked([s / self.magnitude_scale_ for s in spectra], 4096)
        nmf = StreamedNMF(self.n_components, seed=self.seed).fit(chunks, passes=self.nmf_passes)
        self.spectra_ = nmf.components_.copy()
        self.spectral_error_ = nmf.history_[-1]
        torch.manual_seed(self.seed)
        n_channels = train[0].activations.shape[0]
        n_classes = train[0].log_probs.shape[0]
        self.interpreter_ = Interpreter(n_channels, self.n_components, n_classes, self.kernel, self.hidden)
        self._train_interpreter(train)
        self.fidelity_ = {"train": self.fidelity(train), "test": self.fidelity(test) if test else None}
        self.collected_test_ = test
        return self

    def _minibatch(self, utterances: Sequence[_Utterance]) -> dict[str, torch.Tensor]:
        """Padded tensors of a few utterances, with masks and frame index maps."""
        n = len(utterances)
        t_l = max(u.activations.shape[1] for u in utterances)
        t_o = max(u.log_probs.shape[1] for u in utterances)
        t_i = max(u.features.shape[1] for u in utterances)
        c, k = utterances[0].activations.shape[0], utterances[0].log_probs.shape[0]
        f = utterances[0].features.shape[0]
        out = {
            "layer": torch.zeros(n, c, t_l),
            "layer_mask": torch.zeros(n, t_l, dtype=torch.bool),
            "log_probs": torch.zeros(n, k, t_o),
            "out_mask": torch.zeros(n, t_o, dtype=torch.bool),
            "out_index": torch.zeros(n, t_o, dtype=torch.long),
            "magnitude": torch.zeros(n, f, t_i),
            "in_mask": torch.zeros(n, t_i, dtype=torch.bool),
            "in_index": torch.zeros(n, t_i, dtype=torch.long),
        }
        for i, u in enumerate(utterances):
            nl, no, ni = u.activations.shape[1], u.log_probs.shape[1], u.features.shape[1]
            out["layer"][i, :, :nl] = torch.from_numpy(u.activations)
            out["layer_mask"][i, :nl] = True
            out["log_probs"][i, :, :no] = torch.from_numpy(u.log_probs)
            out["out_mask"][i, :no] = True
            out["out_index"][i, :no] = torch.from_numpy(self._index(self._geometry["output_layer"], no, nl))
            out["magnitude"][i, :, :ni] = torch.from_numpy(self._magnitude(u.features).astype(np.float32))
            out["in_mask"][i, :ni] = True
            out["in_index"][i, :ni] = torch.from_numpy(self._index("input", ni, nl))
        return out

    def _losses(self, m: dict[str, torch.Tensor], spectra: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, h = self.interpreter_(m["layer"], m["layer_mask"])
        k = h.shape[1]
        at_out = logits.gather(2, m["out_index"][:, None, :].expand(-1, logits.shape[1], -1))
        log_q = F.log_softmax(at_out, dim=1)
        p = m["log_probs"].exp()
        kl = (p * (m["log_probs"] - log_q)).sum(dim=1)
        out_mask = m["out_mask"].float()
        fidelity = (kl * out_mask).sum() / out_mask.sum()
        h_in = h.gather(2, m["in_index"][:, None, :].expand(-1, k, -1))  # (B, K, T_in)
        recon = torch.einsum("bkt,kf->bft", h_in, spectra)
        in_mask = m["in_mask"][:, None, :].to(recon.dtype)
        reconstruction = (((recon - m["magnitude"]) * in_mask) ** 2).sum() / ((m["magnitude"] * in_mask) ** 2).sum()
        layer_mask = m["layer_mask"].float()
        sparsity = (h.abs().sum(dim=1) * layer_mask).sum() / (layer_mask.sum() * k)
        total = fidelity + self.alpha * reconstruction + self.beta * sparsity
        return {"loss": total, "fidelity_kl": fidelity, "reconstruction": reconstruction, "sparsity": sparsity}

    def _train_interpreter(self, train: Sequence[_Utterance]) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        order = sorted(range(len(train)), key=lambda i: train[i].activations.shape[1])  # similar lengths
        groups = [order[i : i + self.minibatch_size] for i in range(0, len(order), self.minibatch_size)]
        minibatches = [self._minibatch([train[i] for i in g]) for g in groups]
        spectra = torch.from_numpy(self.spectra_.astype(np.float32))
        optimizer = torch.optim.Adam(self.interpreter_.parameters(), lr=self.learning_rate)
        self.interpreter_.train()
        with torch.enable_grad():
            for _ in range(self.epochs):
                sums: dict[str, float] = {}
                for index in torch.randperm(len(minibatches), generator=generator).tolist():
                    losses = self._losses(minibatches[index], spectra)
                    optimizer.zero_grad(set_to_none=True)
                    losses["loss"].backward()
                    optimizer.step()
                    for name, value in losses.items():
                        sums[name] = sums.get(name, 0.0) + float(value.detach()) / len(minibatches)
                self.history_.append(sums)
        self.interpreter_.eval()

    # -- fidelity ----------------------------------------------------------------------------------

    def _fitted(self) -> Interpreter:
        if self.interpreter_ is None:
            raise InputError("the interpreter is not trained yet (call fit, or partial_fit and train)")
        return self.interpreter_

    @torch.no_grad()
    def posteriors(self, activations: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        """The interpreter on one utterance: (log posteriors (n_classes, T_out), H (K, T_l))."""
        layer = torch.from_numpy(np.asarray(activations, dtype=np.float32))[None]
        logits, h = self._fitted()(layer)
        index = torch.from_numpy(self._index(self._geometry["output_layer"], n_out, layer.shape[-1]))
        return F.log_softmax(logits[0][:, index], dim=0).numpy(), h[0].numpy()

    def fidelity(self, utterances: Sequence[_Utterance]) -> dict[str, Any]:
        """Agreement of the interpreter with the model on ``utterances`` (module docstring), and the mean
        ``KL(p_model || q)`` per frame against chance: the KL of the best constant prediction (the model's
        mean posterior over these frames)."""
        alphabet = self._geometry["alphabet"]
        agree = emitted = agree_emitted = frames = 0
        counts = np.zeros(len(alphabet))
        kl = 0.0
        posterior_sum = np.zeros(len(alphabet))
        model_text, interpreter_text, model_log_probs = [], [], []
        for u in utterances:
            n_out = u.log_probs.shape[1]
            log_q, _ = self.posteriors(u.activations, n_out)
            model_top, interp_top = u.log_probs.argmax(axis=0), log_q.argmax(axis=0)
            counts += np.bincount(model_top, minlength=len(alphabet))
            agree += int((model_top == interp_top).sum())
            symbol = model_top != alphabet.blank
            emitted += int(symbol.sum())
            agree_emitted += int((model_top == interp_top)[symbol].sum())
            frames += n_out
            p = np.exp(u.log_probs)
            kl += float((p * (u.log_probs - log_q)).sum())
            posterior_sum += p.sum(axis=1)
            model_log_probs.append(u.log_probs)
            model_text += greedy_decode(torch.from_numpy(u.log_probs)[None], None, alphabet)
            interpreter_text += greedy_decode(torch.from_numpy(log_q)[None], None, alphabet)
        log_mean = np.log(np.maximum(posterior_sum / max(frames, 1), 1e-30))[:, None]
        chance_kl = sum(float((np.exp(lp) * (lp - log_mean)).sum()) for lp in model_log_probs)
        cer, _ = error_rates(model_text, interpreter_text)
        return {
            "utterances": len(utterances),
            "frame_agreement": agree / max(frames, 1),
            "chance_agreement": float(counts.max() / max(frames, 1)),
            "symbol_frame_agreement": agree_emitted / max(emitted, 1),
            "decoded_cer": cer,
            "kl": kl / max(frames, 1),
            "chance_kl": chance_kl / max(frames, 1),
        }

    # -- interpretations ---------------------------------------------------------------------------

    @torch.no_grad()
    def _interpretation(
        self, model, features: np.ndarray, targets: Sequence[tuple[int, int]], what: str, top_components: int
    ) -> tuple[Interpretation, dict[str, Any]]:
        """Relevance summed over ``targets`` [(output frame, letter)], the window, masks and audio."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        with eval_mode(model), ActivationRecorder(model, [self.layer]) as recorder:
            logits, _ = recorder.run(x[None])
            layer = recorder.activations[self.layer][0].float()
        interpreter = self._fitted()
        h = interpreter.activations(layer[None])[0]  # (K, T_l)
        n_layer, n_out, n_in = h.shape[1], logits.shape[-1], x.shape[1]
        out_index = self._index(self._geometry["output_layer"], n_out, n_layer)
        relevance = torch.zeros(h.shape[0])
        layer_frames = []
        for frame, letter in targets:
            layer_frames.append(int(out_index[frame]))
            relevance += interpreter.relevance(h, int(letter), layer_frames[-1])
        relevance_np = relevance.numpy()
        ranked = [int(k) for k in np.argsort(-relevance_np) if relevance_np[k] > 0][:top_components]
        pad = self.kernel // 2
        lo, hi = min(layer_frames) - pad, max(layer_frames) + pad
        in_index = self._index("input", n_in, n_layer)
        inside = np.flatnonzero((in_index >= lo) & (in_index <= hi))
        start, stop = int(inside[0]), int(inside[-1]) + 1
        share = self._share(h, in_index[start:stop], ranked)  # (F, W)
        config = self._geometry["feature_config"]
        window = x[:, start:stop].numpy().astype(np.float64)
        magnitude = features_to_magnitude(window, config)
        kept = magnitude_to_features(magnitude * share, config)
        removed = magnitude_to_features(magnitude * (1.0 - share), config)
        audio = invert_features(kept, config) if stop - start > 1 else np.zeros(0, dtype=np.float32)
        interpretation = Interpretation(what, relevance_np, ranked, (start, stop), kept, removed, audio)
        return interpretation, {"h": h, "in_index": in_index, "logits": logits[0]}

    def _share(self, h: torch.Tensor, layer_frames: np.ndarray, components: Sequence[int]) -> np.ndarray:
        """(F, W) share of ``components`` in the interpreter's spectrum at the given layer frames."""
        spectra = torch.from_numpy(self.spectra_)
        h_in = h[:, torch.from_numpy(layer_frames)].double()  # (K, W)
        total = spectra.T @ h_in  # (F, W)
        if not components:
            return np.zeros(tuple(total.shape))
        chosen = torch.as_tensor(list(components))
        part = spectra[chosen].T @ h_in[chosen]
        return (part / total.clamp_min(1e-12)).clamp(0.0, 1.0).numpy()

    def interpret_frame(self, model, features, frame: int, letter: int | str | None = None, top_components: int = 3):
        """The interpretation of ``letter`` (id or symbol; default: the model's top class) at output
        frame ``frame`` of the utterance with ``features: (F, T_in)``."""
        letter_id = self._letter_id(model, features, frame, letter)
        symbol = self._geometry["alphabet"].symbols[letter_id]
        seconds = float(self._geometry["frame_map"].center(self._geometry["output_layer"], frame))
        seconds *= self._geometry["feature_config"].frame_seconds
        what = f"{symbol!r} at {seconds:.2f} s"
        return self._interpretation(model, features, [(int(frame), letter_id)], what, top_components)[0]

    def interpret_word(self, model, features, path: np.ndarray, word_index: int, top_components: int = 3):
        """The interpretation of word ``word_index`` (0-based) of a forced CTC ``path: (T_out,)``."""
        words = _words(path, self._geometry["alphabet"])
        if not 0 <= word_index < len(words):
            raise InputError(f"word {word_index} out of range: the path has {len(words)} words")
        name, targets = words[word_index]
        return self._interpretation(model, features, targets, f"word {name!r}", top_components)[0]

    def _letter_id(self, model, features, frame: int, letter) -> int:
        alphabet = self._geometry["alphabet"]
        if isinstance(letter, str):
            return alphabet.index(letter)
        if letter is not None:
            return int(letter)
        with eval_mode(model), torch.no_grad():
            logits, _ = model.logits(torch.as_tensor(np.asarray(features, dtype=np.float32))[None])
        return int(logits[0, :, frame].argmax())

    # -- faithfulness ------------------------------------------------------------------------------

    @torch.no_grad()
    def faithfulness(
        self, model, utterances: Sequence[_Utterance] | None = None, *, n_cases: int = 40, top_components: int = 3
    ) -> dict[str, Any]:
        """L2I faithfulness on ``n_cases`` (frame, letter) cases of ``utterances`` (default: the held-out
        ones): the model's posterior of the letter with the relevant components removed from the window,
        with as many random active components removed instead, and with only the relevant ones kept."""
        utterances = list(self.collected_test_ if utterances is None else utterances) or list(self.collected_)
        alphabet = self._geometry["alphabet"]
        rng = np.random.default_rng(self.seed)
        cases = []
        for u in utterances:
            top = u.log_probs.argmax(axis=0)
            confident = np.exp(u.log_probs.max(axis=0)) > 0.5
            letters = np.isin(top, alphabet.letter_indices) & confident
            cases += [(u, int(t), int(top[t])) for t in np.flatnonzero(letters)]
        if not cases:
            return {"cases": 0}
        chosen = rng.choice(len(cases), size=min(n_cases, len(cases)), replace=False)
        config = self._geometry["feature_config"]
        results = {"model": [], "relevant_removed": [], "random_removed": [], "only_relevant": []}
        for i in sorted(chosen):
            u, frame, letter = cases[i]
            interpretation, extra = self._interpretation(model, u.features, [(frame, letter)], "", top_components)
            start, stop = interpretation.frames
            active = [
                k for k in range(self.n_components) if float(extra["h"][k, extra["in_index"][start:stop]].max()) > 0
            ]
            random_set = sorted(
                rng.choice(active, size=min(len(interpretation.components), len(active)), replace=False)
            )
            variants = {
                "model": u.features,
                "relevant_removed": _replace(u.features, start, interpretation.removed),
                "only_relevant": _replace(u.features, start, interpretation.features),
            }
            share = self._share(extra["h"], extra["in_index"][start:stop], [int(k) for k in random_set])
            magnitude = features_to_magnitude(u.features[:, start:stop].astype(np.float64), config)
            variants["random_removed"] = _replace(
                u.features, start, magnitude_to_features(magnitude * (1.0 - share), config)
            )
            batch = torch.from_numpy(np.stack([variants[name] for name in results]).astype(np.float32))
            with eval_mode(model):
                logits, _ = model.logits(batch)
            posterior = F.softmax(logits.float(), dim=1)[:, letter, frame].numpy()
            for name, p in zip(results, posterior):
                results[name].append(float(p))
        mean = {name: float(np.mean(values)) for name, values in results.items()}
        return {
            "cases": len(results["model"]),
            "top_components": top_components,
            "posterior_model": mean["model"],
            "posterior_relevant_removed": mean["relevant_removed"],
            "posterior_random_removed": mean["random_removed"],
            "posterior_only_relevant": mean["only_relevant"],
            "drop_relevant": mean["model"] - mean["relevant_removed"],
            "drop_random": mean["model"] - mean["random_removed"],
            "faithfulness": mean["random_removed"] - mean["relevant_removed"],
        }

    def summary(self) -> dict[str, Any]:
        """Settings, spectral NMF error, last epoch's losses and fidelity."""
        return {
            **self.get_params(),
            "utterances_train": len(self.train_ids_),
            "utterances_test": len(self.test_ids_),
            "spectral_nmf_error": getattr(self, "spectral_error_", None),
            "losses": self.history_[-1] if self.history_ else None,
            "fidelity": self.fidelity_,
        }


def _replace(features: np.ndarray, start: int, window: np.ndarray) -> np.ndarray:
    out = np.array(features, dtype=np.float32, copy=True)
    out[:, start : start + window.shape[1]] = window
    return out


def _words(path: np.ndarray, alphabet) -> list[tuple[str, list[tuple[int, int]]]]:
    """The words of a forced CTC path: [(word, [(output frame, letter id)] at each letter's first frame)]."""
    words: list[tuple[str, list[tuple[int, int]]]] = []
    current: list[tuple[int, int]] = []
    for span in token_spans(np.asarray(path), alphabet.blank):
        if span.token == alphabet.space:
            if current:
                words.append(("".join(alphabet.symbols[t] for _, t in current), current))
            current = []
        else:
            current.append((span.start, span.token))
    if current:
        words.append(("".join(alphabet.symbols[t] for _, t in current), current))
    return words


def _chunked(spectra: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """Frames of several (T_i, F) arrays regrouped into chunks of about ``size`` rows."""
    frames = np.concatenate(spectra) if spectra else np.zeros((0, 0))
    return [frames[i : i + size] for i in range(0, max(len(frames), 1), size)]
