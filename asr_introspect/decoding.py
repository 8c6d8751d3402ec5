"""Greedy CTC decoding and error rates (CER, WER).

Plain functions over tensors and strings; training, evaluation and every
analysis that needs "the letter predicted at frame t" use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from asr_introspect.text import Alphabet


def greedy_frame_labels(logits: torch.Tensor) -> torch.Tensor:
    """Arg-max class per output frame.

    logits: (B, C, T_out) or (C, T_out) -> labels (B, T_out) or (T_out,) int64.
    """
    return logits.argmax(dim=-2)


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None, alphabet: Alphabet) -> list[str]:
    """Best-path CTC decoding: arg-max per frame, merge repeats, drop blanks.

    logits: (B, C, T_out); lengths: (B,) valid output frames (None: all).
    """
    labels = greedy_frame_labels(logits).cpu()
    texts = []
    for b in range(labels.shape[0]):
        n = labels.shape[1] if lengths is None else int(lengths[b])
        texts.append(alphabet.decode(alphabet.ctc_collapse(labels[b, :n].tolist())))
    return texts


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(reference) < len(hypothesis):
        reference, hypothesis = hypothesis, reference
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item)))
        previous = current
    return previous[-1]


def error_counts(reference: str, hypothesis: str) -> tuple[int, int, int, int]:
    """(char errors, reference chars, word errors, reference words) of one utterance."""
    ref_words, hyp_words = reference.split(), hypothesis.split()
    return (edit_distance(reference, hypothesis), len(reference), edit_distance(ref_words, hyp_words), len(ref_words))


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """Corpus-level (CER, WER): total edits over total reference characters / words."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    totals = [0, 0, 0, 0]
    for ref, hyp in zip(references, hypotheses):
        for k, value in enumerate(error_counts(ref, hyp)):
            totals[k] += value
    char_errors, chars, word_errors, words = totals
    return char_errors / max(chars, 1), word_errors / max(words, 1)
