"""Grounding concepts in what was said: phone and letter purity, top clips, average input patterns,
concept-grams.

:class:`ConceptGrounding` is one pass over the corpus stream with a fitted
:class:`~asr_introspect.concepts.ConceptDictionary`. Every valid frame of the
layer is encoded into concept activations ``z: (K,)``; the estimator sums

- the activation mass of each concept per letter (the CTC alignment's label of the frame,
  ``letter_mode="span"`` by default: every frame carries the letter last emitted) and per phone
  (the phone segment covering the frame's centre), and the frames per label: a concept's share of
  mass on a label divided by the label's share of frames is its *lift*;
- each concept's ``top_k`` strongest *events*: frames whose activation is a local maximum within
  ``min_distance`` layer frames of the same utterance (so one long phone is one event, not ten),
  with their utterance, time, letter, phone and the input window around them.

The *purity* of a concept is the share of its top events that carry its most frequent label (its
*dominant* letter or phone). Its *average input pattern* is the mean feature window of its top
events; its *contrast pattern* subtracts the corpus' mean feature frame. Sums add and top lists
merge, so the estimator merges and all-reduces exactly.

Per utterance, :func:`concept_gram` gives the concept activations over time (drawn under the
spectrogram and transcript by :func:`asr_introspect.plotting.concepts.plot_concept_gram`), and
:func:`concept_clips` cuts a concept's top events out of the corpus' audio.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import maximum_filter1d

from asr_introspect.aggregate import all_reduce_arrays, torch_distributed
from asr_introspect.audio import load_audio, save_audio
from asr_introspect.concepts.dictionary import ConceptDictionary
from asr_introspect.errors import InputError
from asr_introspect.hooks import ActivationRecorder
from asr_introspect.io import load_npz, save_npz
from asr_introspect.stream import DEFAULT_SOURCE, StreamBatch, StreamEstimator, check_letter_settings, eval_mode
from asr_introspect.text import PHONES

__all__ = [
    "ConceptGrounding",
    "Grounding",
    "ConceptGram",
    "concept_gram",
    "concept_clips",
    "save_concept_clips",
]

_FORMAT = "asr-introspect.concept-grounding/1"


@dataclass
class Grounding:
    """What :class:`ConceptGrounding` found for K concepts of ``layer``.

    letters (L,), phones (P,): label names; mass_letters (K, L), mass_phones (K, P): summed activation
    per label; frames_letters (L,), frames_phones (P,): frames per label; total (K,): summed
    activation; active (K,): frames with a non-zero activation; n_frames: valid frames. Top events,
    (K, N) each, sorted by decreasing activation (value 0 and id "" where a concept has fewer events):
    top_values, top_utterances, top_frames (layer frame), top_times (seconds), top_letters,
    top_phones (label ids, -1 none). patterns (K, F, W): mean input window of the top events (NaN
    where no event reached); feature_mean (F,): mean feature frame of the corpus.
    """

    layer: str
    letters: list[str]
    phones: list[str]
    mass_letters: np.ndarray
    mass_phones: np.ndarray
    frames_letters: np.ndarray
    frames_phones: np.ndarray
    total: np.ndarray
    active: np.ndarray
    n_frames: int
    top_values: np.ndarray
    top_utterances: np.ndarray
    top_frames: np.ndarray
    top_times: np.ndarray
    top_letters: np.ndarray
    top_phones: np.ndarray
    patterns: np.ndarray
    feature_mean: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_concepts(self) -> int:
        return int(self.total.shape[0])

    def contrast_patterns(self) -> np.ndarray:
        """(K, F, W) average input patterns minus the corpus' mean feature frame."""
        return self.patterns - self.feature_mean[None, :, None]

    def purity(self, kind: str = "phone") -> tuple[list[str | None], np.ndarray, np.ndarray]:
        """Per concept: (dominant label name or None, purity (K,), labelled top events (K,)).

        Purity: share of the concept's labelled top events that carry its dominant label (NaN
        without labelled events). ``kind``: "phone" or "letter"."""
        ids, names = self._kind(kind)
        dominant: list[str | None] = []
        purity = np.full(self.n_concepts, np.nan)
        labelled = np.zeros(self.n_concepts, dtype=np.int64)
        for k in range(self.n_concepts):
            row = ids[k][(ids[k] >= 0) & (self.top_utterances[k] != "")]
            labelled[k] = row.size
            if row.size == 0:
                dominant.append(None)
                continue
            counts = np.bincount(row, minlength=len(names))
            best = int(np.argmax(counts))
            dominant.append(names[best])
            purity[k] = counts[best] / row.size
        return dominant, purity, labelled

    def _kind(self, kind: str) -> tuple[np.ndarray, list[str]]:
        if kind == "phone":
            return self.top_phones, self.phones
        if kind == "letter":
            return self.top_letters, self.letters
        raise InputError(f"kind must be 'phone' or 'letter', got {kind!r}")

    def lift(self, kind: str = "phone") -> np.ndarray:
        """(K, labels): a concept's share of activation mass on a label over the label's share of frames
        (1: no preference; NaN for labels without frames or concepts without mass)."""
        mass, frames = (
            (self.mass_phones, self.frames_phones) if kind == "phone" else (self.mass_letters, self.frames_letters)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            share = mass / mass.sum(axis=1, keepdims=True)
            base = frames / frames.sum()
            return np.where(base[None, :] > 0, share / base[None, :], np.nan)

    def table(self) -> list[dict[str, Any]]:
        """One row per concept: activity, dominant phone/letter with purity and lift, top events."""
        phone, phone_purity, phone_events = self.purity("phone")
        letter, letter_purity, letter_events = self.purity("letter")
        phone_lift, letter_lift = self.lift("phone"), self.lift("letter")
        mass = self.total / max(float(self.total.sum()), 1e-12)
        rows = []
        for k in range(self.n_concepts):
            events = [
                {"utterance": str(u), "time": float(t), "value": float(v)}
                for u, t, v in zip(self.top_utterances[k], self.top_times[k], self.top_values[k])
                if u
            ]
            rows.append(
                {
                    "concept": k,
                    "mass_share": float(mass[k]),
                    "active_share": float(self.active[k] / max(self.n_frames, 1)),
                    "phone": phone[k],
                    "phone_purity": _num(phone_purity[k]),
                    "phone_lift": _num(phone_lift[k, self.phones.index(phone[k])]) if phone[k] else None,
                    "phone_events": int(phone_events[k]),
                    "letter": letter[k],
                    "letter_purity": _num(letter_purity[k]),
                    "letter_lift": _num(letter_lift[k, self.letters.index(letter[k])]) if letter[k] else None,
                    "letter_events": int(letter_events[k]),
                    "top_events": events[:5],
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        """Corpus-level numbers: mean purities, concepts that never fire."""
        _, phone_purity, _ = self.purity("phone")
        _, letter_purity, _ = self.purity("letter")
        return {
            "mean_phone_purity": _num(np.nanmean(phone_purity)) if np.isfinite(phone_purity).any() else None,
            "mean_letter_purity": _num(np.nanmean(letter_purity)) if np.isfinite(letter_purity).any() else None,
            "dead_concepts": int((self.active == 0).sum()),
            "frames": int(self.n_frames),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "format": np.array(_FORMAT),
            "meta": np.array(
                json.dumps({"layer": self.layer, "letters": self.letters, "phones": self.phones, **self.settings})
            ),
        }
        for name in (
            "mass_letters",
            "mass_phones",
            "frames_letters",
            "frames_phones",
            "total",
            "active",
            "top_values",
            "top_frames",
            "top_times",
            "top_letters",
            "top_phones",
            "patterns",
            "feature_mean",
        ):
            arrays[name] = np.asarray(getattr(self, name))
        arrays["top_utterances"] = np.asarray(self.top_utterances, dtype=str)
        arrays["n_frames"] = np.array(self.n_frames)
        return arrays

    def save(self, path: str | Path) -> Path:
        return save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> Grounding:
        d = load_npz(path)
        if "format" not in d or str(d["format"]) != _FORMAT:
            raise InputError(f"{path}: not a concept grounding file")
        meta = json.loads(str(d["meta"]))
        layer, letters, phones = meta.pop("layer"), meta.pop("letters"), meta.pop("phones")
        names = [f.name for f in cls.__dataclass_fields__.values()][3:-1]
        values = {n: (int(d[n]) if n == "n_frames" else d[n]) for n in names}
        return cls(layer, letters, phones, **values, settings=meta)


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


class ConceptGrounding(StreamEstimator):
    """One pass that grounds the concepts of ``dictionary`` in letters, phones and input windows.

    top_k: events kept per concept; min_distance: layer frames around an event within which it must
    be the maximum; window: input frames of the average pattern (default 48, about 0.4 s at an 8 ms
    hop); source / letter_mode: the letter labels (:meth:`StreamBatch.letter_labels`; a model
    without a CTC head gets no letter labels); batch_size: of the stream :meth:`fit` runs.
    """

    def __init__(
        self,
        dictionary: ConceptDictionary,
        *,
        top_k: int = 20,
        min_distance: int = 5,
        window: int = 48,
        source: str = DEFAULT_SOURCE,
        letter_mode: str = "span",
        batch_size: int = 16,
    ) -> None:
        for name, value, lowest in (("top_k", top_k, 1), ("min_distance", min_distance, 0), ("window", window, 1)):
            if isinstance(value, bool) or int(value) != value or value < lowest:
                raise InputError(f"{name} must be an integer >= {lowest}, got {value!r}")
        check_letter_settings(source, letter_mode, 0)
        self.dictionary = dictionary
        self.layer = dictionary.layer
        self.top_k = int(top_k)
        self.min_distance = int(min_distance)
        self.window = int(window)
        self.source = source
        self.letter_mode = letter_mode
        self.batch_size = int(batch_size)
        self.reset()

    def reset(self) -> ConceptGrounding:
        k, n = self.dictionary.n_concepts, self.top_k
        self.letters_: list[str] = []
        self.mass_letters_: np.ndarray | None = None
        self.frames_letters_: np.ndarray | None = None
        self.mass_phones_ = np.zeros((k, len(PHONES)))
        self.frames_phones_ = np.zeros(len(PHONES))
        self.total_ = np.zeros(k)
        self.active_ = np.zeros(k)
        self.n_frames_ = 0
        self.feature_sum_: np.ndarray | None = None
        self.feature_frames_ = 0
        self.top_values_ = np.full((k, n), -np.inf)
        self.top_utterances_ = np.full((k, n), "", dtype=object)
        self.top_frames_ = np.zeros((k, n), dtype=np.int64)
        self.top_times_ = np.zeros((k, n))
        self.top_letters_ = np.full((k, n), -1, dtype=np.int64)
        self.top_phones_ = np.full((k, n), -1, dtype=np.int64)
        self.top_windows_: np.ndarray | None = None
        return self

    def stream_layers(self, model) -> list[str]:
        if self.layer not in model.layer_names:
            raise InputError(f"unknown layer {self.layer!r}; the model has {', '.join(model.layer_names)}")
        return [self.layer]

    def prepare(self, model) -> None:
        if self.mass_letters_ is None:
            self._bind(model, int(model.n_features))

    def _bind(self, model, n_features: int) -> None:
        alphabet = getattr(model, "alphabet", None)
        self.letters_ = list(alphabet.symbols) if alphabet is not None else []
        k = self.dictionary.n_concepts
        self.mass_letters_ = np.zeros((k, len(self.letters_)))
        self.frames_letters_ = np.zeros(len(self.letters_))
        self.feature_sum_ = np.zeros(n_features)
        self.top_windows_ = np.full((k, self.top_k, n_features, self.window), np.nan, dtype=np.float32)
        self.frame_seconds_ = float(model.feature_config.frame_seconds)

    # -- one batch ------------------------------------------------------------------------

    def partial_fit(self, batch: StreamBatch) -> ConceptGrounding:
        """Encode the batch's valid frames; add label masses and candidate top events."""
        model = batch.model
        if self.layer not in batch.activations:
            raise InputError(f"the stream batch has no activations for {self.layer!r}: stream this layer")
        if self.mass_letters_ is None:
            self._bind(model, int(batch.features.shape[1]))
        mask = batch.mask(self.layer)  # (B, T)
        n_batch, width = mask.shape
        k = self.dictionary.n_concepts
        codes = np.zeros((n_batch * width, k), dtype=np.float32)
        valid = mask.reshape(-1)
        codes[valid] = self.dictionary.encode(batch.padded_frames(self.layer)[valid])
        codes = codes.reshape(n_batch, width, k)
        phones = batch.phone_labels(self.layer)
        if self.letters_:
            letters = batch.letter_labels(self.layer, self.source, self.letter_mode)
        else:
            letters = np.full((n_batch, width), -1, dtype=np.int64)
        flat_codes = codes.reshape(-1, k)[valid].astype(np.float64)
        self.total_ += flat_codes.sum(axis=0)
        self.active_ += (flat_codes > 0).sum(axis=0)
        self.n_frames_ += int(valid.sum())
        for ids, mass, frames in (
            (letters, self.mass_letters_, self.frames_letters_),
            (phones, self.mass_phones_, self.frames_phones_),
        ):
            flat = ids.reshape(-1)[valid]
            keep = np.flatnonzero(flat >= 0)
            if keep.size and mass.shape[1]:
                onehot = np.zeros((keep.size, mass.shape[1]))
                onehot[np.arange(keep.size), flat[keep]] = 1.0
                mass += flat_codes[keep].T @ onehot
                frames += onehot.sum(axis=0)
        lengths = batch.feature_lengths.numpy()
        for b in range(n_batch):
            self.feature_sum_ += batch.features[b, :, : int(lengths[b])].double().sum(dim=1).numpy()
        self.feature_frames_ += int(lengths.sum())
        self._add_events(batch, codes, mask, letters, phones)
        return self

    def _add_events(self, batch, codes, mask, letters, phones) -> None:
        """Candidate events: local maxima in time of each concept, the batch's top_k per concept."""
        n_batch, width, k = codes.shape
        masked = np.where(mask[:, :, None], codes, -np.inf)
        peaks = maximum_filter1d(masked, size=2 * self.min_distance + 1, axis=1, mode="constant", cval=-np.inf)
        events = (masked == peaks) & (masked > 0)
        scores = np.where(events, masked, -np.inf).reshape(n_batch * width, k)
        n = min(self.top_k, scores.shape[0])
        candidates = np.argpartition(-scores, n - 1, axis=0)[:n]  # (n, K) flat frame indices
        model = batch.model
        centers = np.floor(np.asarray(model.frame_map.center(self.layer, np.arange(width)), dtype=np.float64) + 0.5)
        centers = centers.astype(np.int64)
        ids = [u.id for u in batch.utterances]
        lengths = batch.feature_lengths.numpy()
        for c in range(k):
            rows = candidates[:, c]
            values = scores[rows, c]
            rows, values = rows[np.isfinite(values)], values[np.isfinite(values)]
            if rows.size == 0:
                continue
            b, t = rows // width, rows % width
            new = {
                "values": values.astype(np.float64),
                "utterances": np.array([ids[i] for i in b], dtype=object),
                "frames": t,
                "times": centers[t] * self.frame_seconds_,
                "letters": letters[b, t],
                "phones": phones[b, t],
                "windows": np.stack(
                    [self._window(batch, int(i), int(centers[j]), int(lengths[i])) for i, j in zip(b, t)]
                ),
            }
            self._merge_top(c, new)

    def _window(self, batch, b: int, center: int, length: int) -> np.ndarray:
        """(F, W) features of utterance ``b`` around input frame ``center``; NaN beyond the utterance."""
        start = center - self.window // 2
        out = np.full((batch.features.shape[1], self.window), np.nan, dtype=np.float32)
        lo, hi = max(start, 0), min(start + self.window, length)
        if hi > lo:
            out[:, lo - start : hi - start] = batch.features[b, :, lo:hi].numpy()
        return out

    def _merge_top(self, c: int, new: dict[str, np.ndarray]) -> None:
        """Keep concept ``c``'s top_k of its current events and ``new`` (ties: utterance id, then frame)."""
        values = np.concatenate([self.top_values_[c], new["values"]])
        utterances = np.concatenate([self.top_utterances_[c], new["utterances"]])
        frames = np.concatenate([self.top_frames_[c], new["frames"]])
        order = np.lexsort((frames, utterances.astype(str), -values))[: self.top_k]
        self.top_values_[c] = values[order]
        self.top_utterances_[c] = utterances[order]
        self.top_frames_[c] = frames[order]
        for name, current in (
            ("times", self.top_times_),
            ("letters", self.top_letters_),
            ("phones", self.top_phones_),
            ("windows", self.top_windows_),
        ):
            current[c] = np.concatenate([current[c], new[name]])[order]

    # -- combining ----------------------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "values": self.top_values_,
            "utterances": self.top_utterances_,
            "frames": self.top_frames_,
            "times": self.top_times_,
            "letters": self.top_letters_,
            "phones": self.top_phones_,
            "windows": self.top_windows_,
        }

    def merge(self, other: ConceptGrounding) -> ConceptGrounding:
        """Add ``other``'s sums and merge its top events (same dictionary); returns self."""
        if other.mass_letters_ is None:
            return self
        if self.mass_letters_ is None:
            raise InputError("merge into a grounding that has seen a batch (call partial_fit first)")
        for name in ("mass_letters_", "frames_letters_", "mass_phones_", "frames_phones_", "total_", "active_"):
            getattr(self, name).__iadd__(getattr(other, name))
        self.feature_sum_ += other.feature_sum_
        self.n_frames_ += other.n_frames_
        self.feature_frames_ += other.feature_frames_
        self._merge_state(other._state())
        return self

    def _merge_state(self, state: dict[str, np.ndarray]) -> None:
        for c in range(self.dictionary.n_concepts):
            keep = np.isfinite(state["values"][c])
            if keep.any():
                self._merge_top(c, {name: value[c][keep] for name, value in state.items()})

    def all_reduce(self, group=None) -> ConceptGrounding:
        """Sum the state over all torch.distributed processes and merge their top events."""
        dist = torch_distributed()
        if dist is None:
            return self
        counts = np.array([float(self.n_frames_), float(self.feature_frames_)])
        all_reduce_arrays(
            [
                self.mass_letters_,
                self.frames_letters_,
                self.mass_phones_,
                self.frames_phones_,
                self.total_,
                self.active_,
                self.feature_sum_,
                counts,
            ],
            group,
        )
        self.n_frames_, self.feature_frames_ = int(counts[0]), int(counts[1])
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, self._state(), group=group)
        k, n = self.top_values_.shape
        self.top_values_ = np.full((k, n), -np.inf)
        self.top_utterances_ = np.full((k, n), "", dtype=object)
        for state in gathered:
            self._merge_state(state)
        return self

    def result(self) -> Grounding:
        """The :class:`Grounding` of everything seen so far."""
        if self.mass_letters_ is None:
            raise InputError("the grounding has seen no data yet (call fit or partial_fit)")
        seen = np.isfinite(self.top_windows_)
        with np.errstate(invalid="ignore"):
            patterns = np.where(seen, self.top_windows_, 0.0).sum(axis=1) / seen.sum(axis=1)  # NaN: no event
        found = np.isfinite(self.top_values_)
        return Grounding(
            self.layer,
            list(self.letters_),
            list(PHONES),
            self.mass_letters_.copy(),
            self.mass_phones_.copy(),
            self.frames_letters_.copy(),
            self.frames_phones_.copy(),
            self.total_.copy(),
            self.active_.copy(),
            int(self.n_frames_),
            np.where(found, self.top_values_, 0.0),
            np.where(found, self.top_utterances_, "").astype(str),
            np.where(found, self.top_frames_, -1),
            np.where(found, self.top_times_, np.nan),
            np.where(found, self.top_letters_, -1),
            np.where(found, self.top_phones_, -1),
            patterns.astype(np.float32),
            self.feature_sum_ / max(self.feature_frames_, 1),
            {
                "top_k": self.top_k,
                "min_distance": self.min_distance,
                "window": self.window,
                "source": self.source,
                "letter_mode": self.letter_mode,
                "frame_seconds": self.frame_seconds_,
            },
        )


# ---------------------------------------------------------------------------
# one utterance


@dataclass
class ConceptGram:
    """Concept activations of one utterance: codes (K, T_layer), times (T_layer,) seconds (frame
    centres), logits (C, T_out) of the model, features (F, T_in) it saw."""

    codes: np.ndarray
    times: np.ndarray
    logits: np.ndarray
    features: np.ndarray


def concept_gram(model, dictionary: ConceptDictionary, features) -> ConceptGram:
    """The concept-gram of one utterance: ``features: (F, T_in)`` (from :func:`features.featurize_file`)."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    if x.ndim != 2:
        raise InputError(f"features must be (F, T), got shape {tuple(x.shape)}")
    with eval_mode(model), torch.no_grad(), ActivationRecorder(model, [dictionary.layer]) as recorder:
        logits, _ = recorder.run(x[None])
        activations = recorder.activations[dictionary.layer]
    codes = dictionary.encode_activations(activations.float())[0].numpy()
    centers = np.asarray(model.frame_map.center(dictionary.layer, np.arange(codes.shape[1])), dtype=np.float64)
    return ConceptGram(codes, centers * model.feature_config.frame_seconds, logits[0].numpy(), x.numpy())


# ---------------------------------------------------------------------------
# listening to top events


def concept_clips(
    grounding: Grounding,
    utterances: Sequence,
    concept: int,
    *,
    n_clips: int = 3,
    seconds: float = 0.5,
    gap: float = 0.15,
    sample_rate: int = 16000,
) -> np.ndarray:
    """The audio of ``concept``'s first ``n_clips`` top events (``seconds`` around each event's centre,
    faded in and out), joined with ``gap`` seconds of silence: (n_samples,) float32. Events that overlap
    an earlier clip of the same utterance are skipped."""
    by_id = {u.id: u for u in utterances}
    half = int(round(seconds * sample_rate / 2))
    fade = np.minimum(1.0, np.minimum(np.arange(2 * half), np.arange(2 * half)[::-1]) / max(half // 4, 1))
    pieces: list[np.ndarray] = []
    taken: list[tuple[str, float]] = []
    for utt_id, time in zip(grounding.top_utterances[concept], grounding.top_times[concept]):
        if len(taken) >= n_clips:
            break
        if not utt_id or utt_id not in by_id:
            continue
        if any(u == utt_id and abs(t - time) < seconds for u, t in taken):
            continue
        audio = load_audio(by_id[utt_id].audio_path, sample_rate)
        centre = int(round(time * sample_rate))
        clip = np.zeros(2 * half, dtype=np.float32)
        lo, hi = max(centre - half, 0), min(centre + half, len(audio))
        if hi > lo:
            clip[lo - (centre - half) : hi - (centre - half)] = audio[lo:hi]
        pieces += [clip * fade, np.zeros(int(gap * sample_rate), dtype=np.float32)]
        taken.append((utt_id, float(time)))
    return np.concatenate(pieces[:-1]) if pieces else np.zeros(0, dtype=np.float32)


def save_concept_clips(
    grounding: Grounding,
    utterances: Sequence,
    directory: str | Path,
    concepts: Sequence[int],
    *,
    n_clips: int = 3,
    seconds: float = 0.5,
    sample_rate: int = 16000,
) -> dict[int, Path]:
    """Write ``concept_<k>.wav`` (the concept's top events, :func:`concept_clips`) per concept with events."""
    written = {}
    for k in concepts:
        audio = concept_clips(grounding, utterances, int(k), n_clips=n_clips, seconds=seconds, sample_rate=sample_rate)
        if audio.size:
            written[int(k)] = save_audio(Path(directory) / f"concept_{int(k):02d}.wav", audio, sample_rate)
    return written
