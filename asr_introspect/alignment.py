"""Letters and phones on every layer's time axis.

Conventions (used by every analysis):

- A *frame label* array holds one int per frame. Letter labels are alphabet
  indices (blank 0, space 1, apostrophe 2, letters 3..); phone labels are
  indices into :data:`asr_introspect.text.PHONES`; -1 means "no label".
- Input frame ``i`` is centred at ``i * hop / sample_rate`` seconds (the STFT is
  centred). Frame ``t`` of a layer is centred at the centre of its receptive
  field (``frame_map.center``), converted to seconds the same way.
- A phone labels a frame when the frame's centre lies in the phone's segment
  ``[start, end)``.
- Forced alignment gives CTC *spikes*: a letter usually owns one or two frames
  and blanks fill the rest. ``mode="span"`` extends every token over the blank
  frames that follow it, up to the next token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
import torchaudio.functional as AF

from asr_introspect.errors import AlignmentError
from asr_introspect.g2p import text_to_phones, word_pronunciations
from asr_introspect.text import PHONES

PHONE_TO_INDEX = {p: i for i, p in enumerate(PHONES)}


# ---------------------------------------------------------------------------
# CTC forced alignment


def min_frames_for(targets: Sequence[int]) -> int:
    """Fewest CTC frames that can emit ``targets`` (a blank between repeated letters)."""
    repeats = sum(1 for a, b in zip(targets, targets[1:]) if a == b)
    return len(targets) + repeats


def forced_align(
    log_probs: torch.Tensor, targets: Sequence[int], blank: int = 0, utterance_id: str | None = None
) -> np.ndarray:
    """Most likely CTC path that emits ``targets``.

    log_probs: (T_out, C) log-softmax of one utterance's valid frames.
    Returns (T_out,) int64: the token each frame emits (``blank`` for blanks).
    """
    n_frames = log_probs.shape[0]
    needed = min_frames_for(targets)
    if len(targets) == 0:
        return np.full(n_frames, blank, dtype=np.int64)
    if n_frames < needed:
        who = f"utt {utterance_id}: " if utterance_id else ""
        raise AlignmentError(
            f"{who}transcript needs at least {needed} output frames ({len(targets)} letters + "
            f"repeats) but the audio gives {n_frames} (check the transcript belongs to the audio, "
            "or use a longer clip)"
        )
    path, _ = AF.forced_align(log_probs[None].float().cpu().contiguous(), torch.as_tensor([list(targets)]), blank=blank)
    return path[0].numpy().astype(np.int64)


@dataclass(frozen=True)
class TokenSpan:
    """One emitted token: alphabet index and output frames ``[start, end)``."""

    token: int
    start: int
    end: int


def token_spans(frame_tokens: np.ndarray, blank: int = 0) -> list[TokenSpan]:
    """Runs of one non-blank token, in order (repeated letters are separate runs).

    For a forced alignment the spans correspond one to one to the target tokens.
    """
    spans: list[TokenSpan] = []
    previous = blank
    for t, token in enumerate(np.asarray(frame_tokens).tolist()):
        if token != blank and token == previous:
            last = spans[-1]
            spans[-1] = TokenSpan(last.token, last.start, t + 1)
        elif token != blank:
            spans.append(TokenSpan(token, t, t + 1))
        previous = token
    return spans


def letter_labels(frame_tokens: np.ndarray, mode: str = "spike", blank: int = 0) -> np.ndarray:
    """Letter label per output frame from a CTC path (forced or greedy).

    mode "spike": each frame keeps its emitted token (blank frames stay ``blank``);
    "span": blank frames take the preceding token (leading blanks stay ``blank``).
    Returns (T_out,) int64 alphabet indices.
    """
    tokens = np.asarray(frame_tokens, dtype=np.int64)
    if mode == "spike":
        return tokens.copy()
    if mode != "span":
        raise ValueError(f"mode must be 'spike' or 'span', got {mode!r}")
    labels = tokens.copy()
    current = blank
    for t in range(len(labels)):
        if tokens[t] != blank:
            current = tokens[t]
        labels[t] = current
    return labels


def greedy_path(logits: torch.Tensor) -> np.ndarray:
    """The model's own prediction per frame. logits: (C, T_out) -> (T_out,) int64."""
    return logits.argmax(dim=0).cpu().numpy().astype(np.int64)


# ---------------------------------------------------------------------------
# Time axes and phone labels


def frame_times(frame_map, layer: str, n_frames: int, feature_config) -> np.ndarray:
    """Centre time (seconds) of each of ``n_frames`` frames of ``layer`` ("input" allowed)."""
    centers = np.asarray(frame_map.center(layer, np.arange(n_frames)), dtype=np.float64)
    return centers * feature_config.frame_seconds


def phone_labels(segments: Sequence, times: np.ndarray) -> np.ndarray:
    """Phone index (into PHONES) of the segment covering each time; -1 outside all segments.

    segments: PhoneSegment-like objects (phone, start, end) in seconds, sorted.
    times: (T,) seconds -> (T,) int64. To label several time axes with the same
    segments, build a :class:`PhoneTimeline` once.
    """
    return PhoneTimeline.from_segments(segments).labels(times)


@dataclass(frozen=True)
class PhoneTimeline:
    """An utterance's phone segments as arrays, for labelling many time axes.

    starts, ends: (S,) seconds, sorted; ids: (S,) indices into PHONES.
    """

    starts: np.ndarray
    ends: np.ndarray
    ids: np.ndarray

    @classmethod
    def from_segments(cls, segments: Sequence) -> PhoneTimeline:
        return cls(
            np.array([s.start for s in segments], dtype=np.float64),
            np.array([s.end for s in segments], dtype=np.float64),
            np.array([PHONE_TO_INDEX[s.phone] for s in segments], dtype=np.int64),
        )

    def labels(self, times: np.ndarray) -> np.ndarray:
        """(T,) seconds -> (T,) int64 phone index of the covering segment ``[start, end)``, -1 if none."""
        times = np.asarray(times, dtype=np.float64)
        labels = np.full(times.shape, -1, dtype=np.int64)
        if self.starts.size == 0:
            return labels
        index = np.searchsorted(self.starts, times, side="right") - 1
        inside = (index >= 0) & (times < self.ends[np.maximum(index, 0)])
        labels[inside] = self.ids[index[inside]]
        return labels


def transfer_index(frame_map, source: str, target: str, n_target: int) -> np.ndarray:
    """For frames ``0 .. n_target-1`` of ``target``, the ``source`` frame nearest its receptive-field
    centre: (n_target,) int64, >= 0, not clipped above (clip to the utterance's last source frame;
    see :func:`transfer_labels`). Depends on the frame index only, so one array serves a whole batch."""
    centers = (
        frame_map.center(target, np.arange(n_target)) if target != "input" else np.arange(n_target, dtype=np.float64)
    )
    if source == "input":
        return np.maximum(np.floor(np.asarray(centers) + 0.5), 0).astype(np.int64)
    return np.asarray(frame_map.layer_frame_of_input(source, centers), dtype=np.int64)


def transfer_labels(labels: np.ndarray, frame_map, source: str, target: str, n_input_frames: int) -> np.ndarray:
    """Labels of ``source`` frames carried to ``target`` frames (nearest receptive-field centre).

    labels: (T_source,) -> (T_target,) for an input of ``n_input_frames`` frames.
    """
    labels = np.asarray(labels)
    n_target = int(frame_map.output_length(target, n_input_frames))
    last = min(len(labels), int(frame_map.output_length(source, n_input_frames))) - 1
    return labels[np.clip(transfer_index(frame_map, source, target, n_target), 0, max(last, 0))]


def shift_labels(labels: np.ndarray, frames: int, fill: int = -1) -> np.ndarray:
    """Move labels ``frames`` later in time (negative: earlier); vacated frames get ``fill``."""
    labels = np.asarray(labels)
    out = np.full_like(labels, fill)
    n = len(labels)
    if 0 <= frames < n:
        out[frames:] = labels[: n - frames]
    elif -n < frames < 0:
        out[:frames] = labels[-frames:]
    return out


# ---------------------------------------------------------------------------
# Aligning a corpus


@dataclass
class UtteranceAlignment:
    """Frame-level view of one utterance.

    frame_tokens: (T_out,) forced CTC path; predicted: (T_out,) greedy path;
    spans: one TokenSpan per transcript character; n_input_frames: T_in.
    """

    utterance: object
    frame_tokens: np.ndarray
    predicted: np.ndarray
    spans: list[TokenSpan]
    n_input_frames: int
    log_prob: float = field(default=float("nan"))
    features: np.ndarray | None = None  # (F, T_in) the model's input, with ``keep_features``

    def letters(self, source: str = "forced", mode: str = "spike") -> np.ndarray:
        """(T_out,) letter labels from the forced alignment or the greedy prediction."""
        path = self.frame_tokens if source == "forced" else self.predicted
        if source not in ("forced", "predicted"):
            raise ValueError(f"source must be 'forced' or 'predicted', got {source!r}")
        return letter_labels(path, mode)


# ---------------------------------------------------------------------------
# Where CTC puts a letter vs where its sound is


def word_phone_groups(words: Sequence[str], segments: Sequence) -> list[list] | None:
    """Split an utterance's non-silence phone segments into its words.

    Each word may have several CMUdict pronunciations (and a g2p guess); the
    split takes, word by word, a pronunciation whose length lets the rest of
    the words fit, preferring candidates whose phones match the segments.
    Returns None when no split uses every phone exactly once (the utterance is
    then skipped by the shift estimate).
    """
    phones = [s for s in segments if s.phone != "sil"]
    names = [s.phone for s in phones]
    candidates = []
    for word in words:
        prons = [list(p) for p in word_pronunciations(word)] or [text_to_phones(word)]
        prons = [p for p in prons if p]
        if not prons:
            return None
        candidates.append(prons)

    @cache
    def split(w: int, position: int) -> tuple[int, ...] | None:
        if w == len(words):
            return () if position == len(phones) else None
        # exact matches first, then any length (flite's lexicon may differ from CMUdict)
        options = sorted(
            {len(p) for p in candidates[w]},
            key=lambda n: not any(names[position : position + n] == p for p in candidates[w]),
        )
        for n in options:
            if position + n <= len(phones):
                rest = split(w + 1, position + n)
                if rest is not None:
                    return (n,) + rest
        return None

    lengths = split(0, 0)
    if lengths is None:
        return None
    groups, position = [], 0
    for n in lengths:
        groups.append(phones[position : position + n])
        position += n
    return groups


@dataclass
class ShiftReport:
    """Distribution of (CTC emission time - acoustic time) over words, in seconds.

    ``center_shifts``: mean emission time of a word's letters minus the centre of
    its phones; ``onset_shifts``: first letter's emission minus the word's first
    phone start. Positive values: CTC emits later than the sound.
    """

    center_shifts: np.ndarray
    onset_shifts: np.ndarray
    utterances_used: int
    utterances_skipped: int
    output_frame_seconds: float

    @property
    def median(self) -> float:
        return float(np.median(self.center_shifts)) if len(self.center_shifts) else float("nan")

    @property
    def correction_frames(self) -> int:
        """Output frames to move letter labels earlier to sit on their sound."""
        if not len(self.center_shifts):
            return 0
        return int(round(self.median / self.output_frame_seconds))

    def summary(self) -> dict:
        def stats(x: np.ndarray) -> dict:
            if not len(x):
                return {"n": 0}
            q = np.percentile(x, [5, 25, 50, 75, 95])
            return {
                "n": int(len(x)),
                "mean": float(x.mean()),
                "std": float(x.std()),
                "p5": float(q[0]),
                "p25": float(q[1]),
                "median": float(q[2]),
                "p75": float(q[3]),
                "p95": float(q[4]),
            }

        return {
            "center_shift_seconds": stats(self.center_shifts),
            "onset_shift_seconds": stats(self.onset_shifts),
            "correction_output_frames": self.correction_frames,
            "utterances_used": self.utterances_used,
            "utterances_skipped": self.utterances_skipped,
        }


def estimate_shift(
    alignments: Sequence[UtteranceAlignment], frame_map, feature_config, output_layer: str, space: int = 1
) -> ShiftReport:
    """Measure where CTC emits each word's letters relative to the word's phones.

    Needs utterances with phone segments; the others (and those whose phones
    cannot be split into words) are counted as skipped.
    """
    centers, onsets = [], []
    used = skipped = 0
    for alignment in alignments:
        utt = alignment.utterance
        words = utt.text.split()
        groups = word_phone_groups(words, utt.phones) if utt.phones else None
        if groups is None:
            skipped += 1
            continue
        times = frame_times(frame_map, output_layer, len(alignment.frame_tokens), feature_config)
        word_spans: list[list[TokenSpan]] = [[]]
        for span in alignment.spans:
            if span.token == space:
                word_spans.append([])
            else:
                word_spans[-1].append(span)
        word_spans = [w for w in word_spans if w]
        if len(word_spans) != len(words):
            skipped += 1
            continue
        used += 1
        for spans, phones in zip(word_spans, groups):
            emitted = np.array([times[s.start : s.end].mean() for s in spans])
            centers.append(emitted.mean() - 0.5 * (phones[0].start + phones[-1].end))
            onsets.append(emitted[0] - phones[0].start)
    step = frame_map.layer(output_layer).stride * feature_config.frame_seconds
    return ShiftReport(np.asarray(centers), np.asarray(onsets), used, skipped, step)
