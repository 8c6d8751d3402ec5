"""Held-out splits that do not leak: by speaker and by text (deterministic for a seed);
selecting speakers by name pattern."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from fnmatch import fnmatchcase

import numpy as np

from asr_introspect.errors import CorpusError

from .utterance import Utterance

__all__ = ["filter_speakers", "split_by_speaker", "split_by_text"]


def _count(fraction: float, n: int, what: str) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if n == 0 or fraction == 0.0:
        return 0
    k = int(round(fraction * n))
    k = max(k, 1)
    if k >= n and fraction < 1.0:
        if n < 2:
            raise CorpusError(f"cannot hold out a fraction of {fraction} of the {what}: there is only one")
        k = n - 1
    return k


def _pick(keys: Sequence[str], k: int, seed: int) -> set[str]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keys))
    return {keys[i] for i in order[:k]}


def split_by_speaker(
    utterances: Sequence[Utterance],
    held_out_speakers: Collection[str] | None = None,
    fraction: float | None = None,
    seed: int = 0,
) -> tuple[list[Utterance], list[Utterance]]:
    """``(train, held_out)``: every utterance of a held-out speaker goes to ``held_out``.

    Give the speaker ids, or a ``fraction`` of the speakers (rounded, at least
    one and at most all but one) chosen with ``seed``. Order is preserved.
    """
    speakers = sorted({u.speaker for u in utterances})
    if held_out_speakers is not None:
        if fraction is not None:
            raise ValueError("pass held_out_speakers or fraction, not both")
        held = set(held_out_speakers)
        unknown = held - set(speakers)
        if unknown:
            raise CorpusError(f"held-out speaker(s) not in the corpus: {', '.join(sorted(unknown))}")
    else:
        if fraction is None:
            raise ValueError("pass held_out_speakers or fraction")
        held = _pick(speakers, _count(fraction, len(speakers), "speakers"), seed)
    train = [u for u in utterances if u.speaker not in held]
    test = [u for u in utterances if u.speaker in held]
    return train, test


def split_by_text(
    utterances: Sequence[Utterance], fraction: float = 0.1, seed: int = 0
) -> tuple[list[Utterance], list[Utterance]]:
    """``(train, held_out)``: a ``fraction`` of the distinct transcripts (chosen with ``seed``)
    is held out with all of its utterances, so no text is on both sides. Order is preserved."""
    texts = sorted({u.text for u in utterances})
    held = _pick(texts, _count(fraction, len(texts), "texts"), seed)
    train = [u for u in utterances if u.text not in held]
    test = [u for u in utterances if u.text in held]
    return train, test


def filter_speakers(
    utterances: Sequence[Utterance], patterns: str | Sequence[str], source: str = "corpus"
) -> list[Utterance]:
    """The utterances whose speaker matches any of ``patterns`` (shell globs, e.g.
    ``"flite_*"``; a string may list several, comma-separated). Order is preserved.

    Raises CorpusError naming ``source`` when nothing matches.
    """
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",")]
    patterns = [p for p in patterns if p]
    if not patterns:
        raise ValueError("give at least one speaker pattern, e.g. 'flite_*'")
    kept = [u for u in utterances if any(fnmatchcase(u.speaker, p) for p in patterns)]
    if not kept:
        speakers = sorted({u.speaker for u in utterances})
        shown = ", ".join(speakers[:8]) + (", ..." if len(speakers) > 8 else "")
        raise CorpusError(
            f"{source}: no speaker matches {','.join(patterns)!r} "
            f"({len(speakers)} speakers: {shown or 'none'}); check the pattern"
        )
    return kept
