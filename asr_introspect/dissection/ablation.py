"""Concept-specific ablation: zero the neurons labelled with a concept and measure what the model loses.

Ablating neurons: :func:`zero_channels` registers a forward hook on
``model.layer_modules[layer]`` that returns the layer's output with the chosen
channels set to 0 (for a ReLU layer: silenced).

What is measured, on the model's CTC output, per *reference token* (each
character of the transcript, spaces included), with the baseline model's forced
alignment ``pi`` of the transcript held fixed:

- ``l_i = sum_{t in S_i} log p(pi_t | x, t)``: the log-probability of emitting token ``i`` on its forced
  frames ``S_i`` (the run of frames that emit it), before and after ablation;
- *concept tokens*: for a letter concept the tokens of that letter; for any other concept, the tokens
  whose sound span is at least half in the concept's frames on the output axis. A token's sound span
  runs from its first forced frame to the next token's, moved by ``shift`` output frames (the
  dissection's correction of the CTC lag: letters are emitted ~140 ms after their sound on the shipped
  model, so ``shift`` is negative);
- ``dA = mean over concept tokens of (l_base - l_ablated)``, ``dR`` the same over the other tokens (nats:
  how much less the model believes in the transcript's tokens; positive = a loss);
- recognition: the greedy transcript is aligned to the reference (Levenshtein); a reference token is
  *recognized* when the alignment matches it. ``dA_err`` / ``dR_err``: the rise of the share of
  unrecognized concept / other tokens; ``dCER``: the rise of the corpus character error rate.

:func:`concept_ablation` compares, layer by layer, the neurons labelled with the concept against the
same number of random neurons of that layer (several seeds: mean and standard deviation) and of the
neurons with the highest mean activation, in one pass over the corpus (one featurization, one baseline
forward, one forward per ablation). :func:`ablation_table` lays the rows out like AND's Table 4.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import numba
import numpy as np
import torch
import torch.nn.functional as F

from asr_introspect.alignment import token_spans
from asr_introspect.decoding import greedy_decode
from asr_introspect.dissection.concepts import ConceptVocabulary
from asr_introspect.errors import InputError
from asr_introspect.stream import eval_mode, stream_corpus

__all__ = [
    "zero_channels",
    "AblationEffect",
    "ablation_effects",
    "concept_ablation",
    "ablation_table",
    "recognized_tokens",
]


@contextlib.contextmanager
def zero_channels(model, channels: Mapping[str, Sequence[int]]) -> Iterator[None]:
    """Within the block, the listed channels of each layer output 0: ``{layer: [channel, ...]}``
    (forward hooks on ``model.layer_modules[layer]`` that return the modified activation, so the layers
    above and hooks registered after these see it; hooks registered before see the unablated output)."""
    handles = []

    def hook_for(index: torch.Tensor):
        def hook(module, inputs, output):
            out = output.clone()
            out[:, index.to(out.device), :] = 0
            return out

        return hook

    try:
        for layer, idx in channels.items():
            idx = torch.as_tensor(list(idx), dtype=torch.long)
            if idx.numel() == 0:
                continue
            handles.append(model.layer_module(layer).register_forward_hook(hook_for(idx)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@numba.njit(cache=True)
def _recognized(reference, hypothesis, out):  # pragma: no cover - compiled
    n, m = reference.shape[0], hypothesis.shape[0]
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    for i in range(n + 1):
        cost[i, 0] = i
    for j in range(m + 1):
        cost[0, j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = cost[i - 1, j - 1] + (0 if reference[i - 1] == hypothesis[j - 1] else 1)
            cost[i, j] = min(sub, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    i, j = n, m
    while i > 0 and j > 0:
        same = reference[i - 1] == hypothesis[j - 1]
        if cost[i, j] == cost[i - 1, j - 1] + (0 if same else 1):
            out[i - 1] = same
            i -= 1
            j -= 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return cost[n, m]


def recognized_tokens(reference: Sequence[int], hypothesis: Sequence[int]) -> tuple[np.ndarray, int]:
    """(recognized, edits): for each reference token, whether a minimum-edit alignment to ``hypothesis``
    matches it ((n,) bool), and the edit distance."""
    ref = np.asarray(reference, dtype=np.int64)
    out = np.zeros(len(ref), dtype=np.bool_)
    edits = _recognized(ref, np.asarray(hypothesis, dtype=np.int64), out)
    return out, int(edits)


@dataclass
class AblationEffect:
    """One ablation's effect on the corpus (definitions in the module docstring).

    d_a, d_r: mean log-probability drop (nats) of concept / other tokens; d_a_error, d_r_error: rise of
    their unrecognized share; d_cer: rise of the corpus CER; concept_tokens, other_tokens: how many.
    """

    name: str
    neurons: dict[str, list[int]]
    d_a: float
    d_r: float
    d_a_error: float
    d_r_error: float
    d_cer: float
    concept_tokens: int
    other_tokens: int

    @property
    def selectivity(self) -> float:
        """dA - dR."""
        return self.d_a - self.d_r

    def to_dict(self) -> dict:
        return {**asdict(self), "d_a_minus_d_r": self.selectivity}


class _Totals:
    """Sums over the corpus for one model variant."""

    def __init__(self) -> None:
        self.logp = np.zeros(2)  # concept, other: sum of token log-probabilities
        self.recognized = np.zeros(2)
        self.tokens = np.zeros(2)
        self.edits = 0
        self.reference = 0

    def add(self, logp: np.ndarray, recognized: np.ndarray, member: np.ndarray, edits: int) -> None:
        for side, sel in enumerate((member, ~member)):
            self.logp[side] += float(logp[sel].sum())
            self.recognized[side] += float(recognized[sel].sum())
            self.tokens[side] += int(sel.sum())
        self.edits += edits
        self.reference += len(member)


def _token_logp(log_probs: torch.Tensor, path: np.ndarray, spans) -> np.ndarray:
    """(n_tokens,) sum of log p(path_t) over each token's forced frames. log_probs: (C, T_out)."""
    t = torch.as_tensor(path)
    frame_logp = log_probs[t, torch.arange(len(path))].double().cpu().numpy()
    cumulative = np.concatenate([[0.0], np.cumsum(frame_logp)])
    return np.array([cumulative[s.end] - cumulative[s.start] for s in spans])


def _membership(
    vocabulary: ConceptVocabulary | None, concept: str, batch, spans_per_row, tokens_per_row, shift: int
) -> list[np.ndarray]:
    """Per utterance row: (n_tokens,) bool, whether each reference token belongs to ``concept``."""
    alphabet = batch.model.alphabet
    if concept.startswith("letter:"):
        letter = alphabet.index(concept.partition(":")[2])
        return [None if tok is None else tok == letter for tok in tokens_per_row]
    k = vocabulary.index(concept)
    codes = vocabulary.frame_codes(batch, batch.model.output_layer, shift=shift)  # (B, T_out, F)
    rows = vocabulary.derivation[k]
    present = np.zeros(codes.shape[:2], dtype=bool)
    for f in range(codes.shape[2]):
        c = codes[..., f]
        present |= (c >= 0) & rows[np.maximum(c, 0)]
    out = []
    lengths = batch.layer_lengths(batch.model.output_layer)
    for b, spans in enumerate(spans_per_row):
        if spans is None:
            out.append(None)
            continue
        n = int(lengths[b])
        starts = np.array([s.start for s in spans] + [n]) + shift
        member = np.zeros(len(spans), dtype=bool)
        for i in range(len(spans)):
            lo, hi = max(int(starts[i]), 0), min(int(starts[i + 1]), n)
            if hi > lo:
                member[i] = present[b, lo:hi].mean() >= 0.5
        out.append(member)
    return out


def ablation_effects(
    model,
    utterances: Sequence,
    concept: str,
    variants: Mapping[str, Mapping[str, Sequence[int]]],
    *,
    vocabulary: ConceptVocabulary | None = None,
    shift: int = 0,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[dict[str, AblationEffect], dict]:
    """Effects of several ablations on the tokens of ``concept``, in one pass over ``utterances``.

    variants: {name: {layer: channels to zero}}; vocabulary: the concept's vocabulary (not needed for a
    letter concept); shift: output frames that move a token's sound span (negative: earlier). Returns
    ({name: AblationEffect}, baseline: {"cer", "concept_error", "other_error", "concept_tokens",
    "other_tokens", "utterances"}). Utterances whose transcript cannot be forced-aligned are left out.
    """
    if not concept.startswith("letter:") and vocabulary is None:
        raise InputError(f"concept {concept!r} needs the dissection's concept vocabulary")
    if vocabulary is not None:
        vocabulary.index(concept)
    alphabet = model.alphabet
    base = _Totals()
    totals = {name: _Totals() for name in variants}
    n_utterances = 0
    for batch in stream_corpus(model, utterances, batch_size=batch_size, progress=progress, desc="ablating"):
        paths = batch.output_paths("forced")
        spans = [None if p is None else token_spans(p, alphabet.blank) for p in paths]
        tokens = [None if s is None else np.array([x.token for x in s], dtype=np.int64) for s in spans]
        member = _membership(vocabulary, concept, batch, spans, tokens, shift)
        rows = [b for b, p in enumerate(paths) if p is not None]
        n_utterances += len(rows)
        if not rows:
            continue
        outputs = {None: batch.logits}
        with eval_mode(model), torch.no_grad():
            for name, channels in variants.items():
                with zero_channels(model, channels):
                    outputs[name], _ = model.logits(batch.features, batch.feature_lengths)
        for name, logits in outputs.items():
            log_probs = F.log_softmax(logits.float(), dim=1)
            hyps = greedy_decode(logits, batch.out_lengths, alphabet)
            for b in rows:
                n = int(batch.out_lengths[b])
                logp = _token_logp(log_probs[b, :, :n], paths[b], spans[b])
                recognized, edits = recognized_tokens(tokens[b], alphabet.encode(hyps[b]))
                (base if name is None else totals[name]).add(logp, recognized, member[b], edits)
    effects = {}
    for name, t in totals.items():
        n_tokens = np.maximum(base.tokens, 1)
        drop = (base.logp - t.logp) / n_tokens
        error_rise = (base.recognized - t.recognized) / n_tokens
        effects[name] = AblationEffect(
            name,
            {layer: [int(c) for c in ch] for layer, ch in variants[name].items()},
            float(drop[0]) if base.tokens[0] else float("nan"),
            float(drop[1]) if base.tokens[1] else float("nan"),
            float(error_rise[0]) if base.tokens[0] else float("nan"),
            float(error_rise[1]) if base.tokens[1] else float("nan"),
            (t.edits - base.edits) / max(base.reference, 1),
            int(base.tokens[0]),
            int(base.tokens[1]),
        )
    n_tokens = np.maximum(base.tokens, 1)
    baseline = {
        "cer": base.edits / max(base.reference, 1),
        "concept_error": float(1 - base.recognized[0] / n_tokens[0]) if base.tokens[0] else None,
        "other_error": float(1 - base.recognized[1] / n_tokens[1]) if base.tokens[1] else None,
        "concept_tokens": int(base.tokens[0]),
        "other_tokens": int(base.tokens[1]),
        "utterances": n_utterances,
    }
    return effects, baseline


def concept_ablation(
    model,
    utterances: Sequence,
    dissection,
    concept: str,
    *,
    layers: Sequence[str] | None = None,
    seeds: int = 5,
    batch_size: int = 16,
    progress: bool = False,
) -> dict:
    """Ablate, layer by layer, the neurons of ``dissection`` labelled with ``concept``, the same number of
    random neurons of that layer (``seeds`` draws) and of its highest-mean-activation neurons.

    layers: default every dissected layer; a layer without a neuron labelled ``concept`` is listed with
    ``neurons: 0`` and not ablated. Returns {"concept", "baseline", "rows": [one dict per layer and
    method: layer, method ("concept", "random", "top-mean"), neurons, d_a, d_r, d_a_minus_d_r, d_a_error,
    d_r_error, d_cer and, for "random", their standard deviations over the seeds]}.
    """
    vocabulary = dissection.vocabulary
    vocabulary.index(concept)
    layers = list(dissection.layers if layers is None else layers)
    for layer in layers:
        dissection._layer(layer)
    if int(seeds) < 1:
        raise InputError(f"--seeds must be an integer >= 1, got {seeds!r}")
    variants: dict[str, dict[str, list[int]]] = {}
    plan: dict[str, int] = {}
    for li, layer in enumerate(layers):
        neurons = dissection.labelled_with(layer, concept)
        plan[layer] = len(neurons)
        if not len(neurons):
            continue
        n_layer = dissection.n_neurons(layer)
        variants[f"{layer}/concept"] = {layer: neurons.tolist()}
        for s in range(int(seeds)):
            rng = np.random.default_rng([s, li])
            variants[f"{layer}/random/{s}"] = {
                layer: np.sort(rng.choice(n_layer, len(neurons), replace=False)).tolist()
            }
        mean = dissection.counts[layer].mean
        variants[f"{layer}/top-mean"] = {layer: np.argsort(-mean, kind="stable")[: len(neurons)].tolist()}
    shift = int(dissection.settings.get("shift_output_frames", 0))
    effects, baseline = (
        ablation_effects(
            model,
            utterances,
            concept,
            variants,
            vocabulary=vocabulary,
            shift=shift,
            batch_size=batch_size,
            progress=progress,
        )
        if variants
        else ({}, {})
    )
    keys = ("d_a", "d_r", "d_a_minus_d_r", "d_a_error", "d_r_error", "d_cer")
    rows = []
    for layer in layers:
        if not plan[layer]:
            rows.append({"layer": layer, "method": "concept", "neurons": 0, **{k: None for k in keys}})
            continue
        for method in ("concept", "random", "top-mean"):
            if method == "random":
                draws = [effects[f"{layer}/random/{s}"].to_dict() for s in range(int(seeds))]
                row = {"layer": layer, "method": method, "neurons": plan[layer], "seeds": int(seeds)}
                for k in keys:
                    values = np.array([d[k] for d in draws], dtype=np.float64)
                    row[k] = float(np.mean(values))
                    row[f"{k}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            else:
                effect = effects[f"{layer}/{method}"]
                row = {"layer": layer, "method": method, "neurons": plan[layer]}
                row.update({k: effect.to_dict()[k] for k in keys})
                row["ablated"] = effect.neurons[layer]
            rows.append(row)
    return {"concept": concept, "baseline": baseline, "rows": rows}


_TABLE_KEYS = ("d_a", "d_r", "d_a_minus_d_r", "d_a_error", "d_r_error", "d_cer")


def _fmt(value, std=None) -> str | None:
    if value is None or not np.isfinite(value):
        return None
    return f"{value:+.3f}" if std is None else f"{value:+.3f} ± {std:.3f}"


def ablation_table(results: Sequence[dict]) -> dict:
    """One report table (AND's Table 4 layout) of :func:`concept_ablation` results: per concept, layer and
    method the number of ablated neurons, dA, dR, dA - dR (nats per token), the rise of the error of
    concept and other tokens and of the CER (random: mean ± standard deviation over seeds)."""
    columns = ["concept", "layer", "ablated", "neurons", "dA", "dR", "dA - dR", "dA err", "dR err", "dCER"]
    rows = []
    for result in results:
        for row in result["rows"]:
            spread = row["method"] == "random"
            cells = [_fmt(row.get(k), row.get(f"{k}_std") if spread else None) for k in _TABLE_KEYS]
            method = row["method"] if row["neurons"] else "(no labelled neuron)"
            rows.append([result["concept"], row["layer"], method, row["neurons"], *cells])
    return {
        "caption": "Concept-specific ablation: log-probability drop of the concept's tokens (dA) and of the other "
        "tokens (dR), in nats per token, the rise of their unrecognized share and of the CER, when the neurons "
        "labelled with the concept are zeroed, against as many random neurons of the layer (mean ± sd over "
        "seeds) and the highest-mean-activation neurons.",
        "columns": columns,
        "rows": rows,
    }
