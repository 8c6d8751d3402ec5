"""Faithfulness of a concept dictionary: run the model with the layer replaced by its reconstruction, or
with one concept removed, and measure what changes at the output.

Variants of the layer's activation ``a: (B, C, T)`` (a forward hook on
``model.layer_modules[layer]`` returns the replacement; frames beyond each
utterance's length stay zero, as exact padding requires):

- ``"reconstruction"``: ``decode(encode(a))``, the layer as the dictionary sees it;
- ``"mean"``: every frame replaced by the layer's mean frame over the corpus (the baseline:
  what is left when the layer carries no information about the utterance);
- ``"ablate:k"``: ``a - (decode(z with only concept k) - decode(0))``, the activation with
  concept k's contribution taken out and the dictionary's reconstruction error kept (so only
  the concept is removed, not everything the dictionary misses).

Measured against the unmodified model on the same utterances: CER and WER of
greedy decoding against the transcripts; ``KL(p_model || p_variant)`` per
valid output frame (nats, mean); top-1 agreement per frame; and per letter the
mean drop of its log posterior at the frames where the forced alignment emits
it (which letters suffer). ``fraction_recovered`` =
``(CER_mean - CER_reconstruction) / (CER_mean - CER_model)``: 1 when the
reconstruction is as good as the layer, 0 when it is no better than its mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from asr_introspect.concepts.dictionary import ConceptDictionary
from asr_introspect.decoding import error_rates, greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.models.asr_model import zero_beyond
from asr_introspect.stream import eval_mode, stream_corpus

__all__ = ["replaced_layer", "Faithfulness", "faithfulness", "concept_contribution"]


@contextlib.contextmanager
def replaced_layer(
    model, layer: str, transform: Callable[[torch.Tensor], torch.Tensor], lengths: torch.Tensor | None = None
) -> Iterator[None]:
    """Within the block, ``layer``'s output ``(B, C, T)`` is replaced by ``transform(output)``; with
    ``lengths`` (B,) input frames, the replacement is zeroed beyond each utterance's layer length."""
    layer_lengths = None if lengths is None else torch.as_tensor(model.layer_length(layer, torch.as_tensor(lengths)))

    def hook(module, inputs, output):
        out = transform(output)
        return out if layer_lengths is None else zero_beyond(out, layer_lengths)

    handle = model.layer_module(layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def concept_contribution(dictionary: ConceptDictionary, codes: torch.Tensor, concept: int) -> torch.Tensor:
    """What concept ``concept`` adds to the decoded activations: (B, C, T) from codes (B, K, T)."""
    only = torch.zeros_like(codes)
    only[:, concept] = codes[:, concept]
    return dictionary.decode_activations(only) - dictionary.decode_activations(torch.zeros_like(only))


@dataclass
class Faithfulness:
    """Per variant (``"model"``, ``"reconstruction"``, ``"mean"``, ``"ablate:k"``): cer, wer, kl (nats per
    frame), agreement (top-1 per frame) and letter_drop (n_symbols,) mean log-posterior drop of each
    letter at its forced-alignment frames (NaN for letters without frames); letters: symbol names;
    letter_frames (n_symbols,); utterances: evaluated."""

    layer: str
    letters: list[str]
    cer: dict[str, float]
    wer: dict[str, float]
    kl: dict[str, float]
    agreement: dict[str, float]
    letter_drop: dict[str, np.ndarray]
    letter_frames: np.ndarray
    utterances: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction_recovered(self) -> float:
        """(CER_mean - CER_reconstruction) / (CER_mean - CER_model); NaN when the mean is no worse."""
        gap = self.cer["mean"] - self.cer["model"]
        return float((self.cer["mean"] - self.cer["reconstruction"]) / gap) if gap > 0 else float("nan")

    def ablated(self) -> list[int]:
        return [int(v.split(":")[1]) for v in self.cer if v.startswith("ablate:")]

    def suffering_letters(self, concept: int, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` letters whose log posterior drops most when ``concept`` is removed: [(letter, drop)]."""
        drop = self.letter_drop[f"ablate:{concept}"]
        order = [i for i in np.argsort(-np.nan_to_num(drop, nan=-np.inf)) if np.isfinite(drop[i])]
        return [(self.letters[i], float(drop[i])) for i in order[:n]]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "utterances": self.utterances,
            "cer_model": self.cer["model"],
            "cer_reconstruction": self.cer["reconstruction"],
            "cer_mean_ablation": self.cer["mean"],
            "fraction_recovered": self.fraction_recovered,
            "kl_reconstruction": self.kl["reconstruction"],
            "kl_mean_ablation": self.kl["mean"],
            "agreement_reconstruction": self.agreement["reconstruction"],
        }
        out["ablations"] = [
            {
                "concept": k,
                "cer": self.cer[f"ablate:{k}"],
                "delta_cer": self.cer[f"ablate:{k}"] - self.cer["model"],
                "kl": self.kl[f"ablate:{k}"],
                "agreement": self.agreement[f"ablate:{k}"],
                "suffering_letters": [{"letter": s, "drop": d} for s, d in self.suffering_letters(k)],
            }
            for k in self.ablated()
        ]
        return out


def faithfulness(
    model,
    utterances: Sequence,
    dictionary: ConceptDictionary,
    *,
    concepts: Sequence[int] = (),
    batch_size: int = 8,
    progress: bool = False,
) -> Faithfulness:
    """Run ``utterances`` through ``model`` as is, with ``dictionary.layer`` reconstructed, mean-ablated, and
    with each concept of ``concepts`` removed (module docstring); one forward pass per variant and batch."""
    if getattr(model, "alphabet", None) is None:
        raise InputError("faithfulness is measured on CTC outputs: the model has no CTC head (alphabet)")
    layer = dictionary.layer
    if layer not in model.layer_names:
        raise InputError(f"unknown layer {layer!r}; the model has {', '.join(model.layer_names)}")
    concepts = [int(k) for k in concepts]
    bad = [k for k in concepts if not 0 <= k < dictionary.n_concepts]
    if bad:
        raise InputError(
            f"concepts {bad} out of range: the dictionary has {dictionary.n_concepts} (0..{dictionary.n_concepts - 1})"
        )
    utterances = list(utterances)
    if not utterances:
        raise InputError("faithfulness needs at least one utterance")
    alphabet = model.alphabet
    mean = torch.as_tensor(np.asarray(dictionary.mean_activation, dtype=np.float32))

    def variant_transform(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        if name == "reconstruction":
            return dictionary.reconstruct
        if name == "mean":
            return lambda a: mean.to(a.device, a.dtype)[None, :, None].expand_as(a).clone()
        concept = int(name.split(":")[1])

        def ablate(a: torch.Tensor) -> torch.Tensor:
            return a - concept_contribution(dictionary, dictionary.encode_activations(a), concept)

        return ablate

    variants = ["reconstruction", "mean"] + [f"ablate:{k}" for k in concepts]
    names = ["model", *variants]
    hypotheses: dict[str, list[str]] = {n: [] for n in names}
    references: list[str] = []
    kl = dict.fromkeys(variants, 0.0)
    agree = dict.fromkeys(names, 0.0)
    drop = {n: np.zeros(len(alphabet)) for n in names}
    letter_frames = np.zeros(len(alphabet))
    n_frames = 0
    for batch in stream_corpus(model, utterances, batch_size=batch_size, progress=progress, desc="faithfulness"):
        out_lengths = batch.out_lengths
        valid = torch.arange(batch.logits.shape[-1])[None, :] < out_lengths[:, None]  # (B, T)
        log_p = F.log_softmax(batch.logits.float(), dim=1)
        top = log_p.argmax(dim=1)
        n_frames += int(valid.sum())
        references += [u.text for u in batch.utterances]
        hypotheses["model"] += greedy_decode(batch.logits, out_lengths, alphabet)
        agree["model"] += float(valid.sum())
        spikes = _letter_spikes(batch, alphabet.blank)  # list of (b, frames, letters)
        for _, _, letters in spikes:
            letter_frames += np.bincount(letters, minlength=len(alphabet))
        for name in variants:
            with eval_mode(model), torch.no_grad():
                with replaced_layer(model, layer, variant_transform(name), batch.feature_lengths):
                    logits, _ = model.logits(batch.features, batch.feature_lengths)
            log_q = F.log_softmax(logits.float(), dim=1)
            hypotheses[name] += greedy_decode(logits, out_lengths, alphabet)
            per_frame = (log_p.exp() * (log_p - log_q)).sum(dim=1)  # (B, T)
            kl[name] += float(per_frame[valid].sum())
            agree[name] += float(((log_q.argmax(dim=1) == top) & valid).sum())
            for b, frames, letters in spikes:
                diff = (log_p[b, letters, frames] - log_q[b, letters, frames]).numpy()
                np.add.at(drop[name], letters, diff)
    cer, wer = {}, {}
    for name in names:
        cer[name], wer[name] = error_rates(references, hypotheses[name])
    with np.errstate(invalid="ignore", divide="ignore"):
        letter_drop = {n: np.where(letter_frames > 0, drop[n] / letter_frames, np.nan) for n in names}
    return Faithfulness(
        layer,
        list(alphabet.symbols),
        cer,
        wer,
        {"model": 0.0, **{n: kl[n] / max(n_frames, 1) for n in variants}},
        {n: agree[n] / max(n_frames, 1) for n in names},
        letter_drop,
        letter_frames,
        len(references),
        {"concepts": concepts, "batch_size": batch_size, "method": dictionary.method},
    )


def _letter_spikes(batch, blank: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(row, output frames, letter ids) where the forced alignment emits a non-blank symbol."""
    out = []
    for b, path in enumerate(batch.output_paths("forced")):
        if path is None:
            continue
        frames = np.flatnonzero(path != blank)
        out.append((b, frames, path[frames]))
    return out
