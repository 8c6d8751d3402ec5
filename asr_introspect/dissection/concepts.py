"""The closed concept vocabulary of audio network dissection: concepts from alignments and from the audio.

A *concept* is a set of frames. Every frame of a layer's time axis gets, per
*facet*, at most one value; every concept is a set of values of one facet, so a
handful of integers per frame describes every concept:

=========  ==========================================================  =========================================
facet      values (one per frame, or none)                             concepts (families)
=========  ==========================================================  =========================================
letter     the alphabet (forced alignment, carried to the layer)       ``letter:s`` ... (letters)
phone      :data:`text.PHONES` (segment covering the frame centre)     ``phone:s`` (phones), ``silence``,
                                                                       ``manner:fricative``, ``place:alveolar``,
                                                                       ``voicing:voiceless``, ``height:high``,
                                                                       ``backness:front``, ``rounding:rounded``
                                                                       (features)
position   first / last / only / medial phone of a word, or outside   ``position:word-initial``,
                                                                       ``position:word-final`` (position)
voice      the utterance's voice family (:func:`voice_family`)         ``voice:flite_slt`` ... (voice)
f0         F0 bin of voiced frames (``librosa.pyin``)                  ``f0:100-140Hz`` ... (f0)
energy     frame RMS in dB below the utterance's loudest frame         ``energy:above-12dB`` ... (energy)
centroid   spectral centroid bin of frames louder than the lowest      ``centroid:2-4kHz`` ... (centroid)
           energy edge
=========  ==========================================================  =========================================

Each facet also has a *universe*: the frames where it is known (frames of
utterances with a forced path for letters, with phone segments for phones and
features, whose words could be split into phones for position, voiced frames
for F0). Scores of a concept count only frames of its facet's universe, so a
corpus where some utterances lack phone segments does not count their frames
as "not /s/".

Facets of few values are combined (:data:`FACET_GROUPS`): a frame's *base
label* in the group (position, voice) is the pair of its position and voice,
in (f0, energy, centroid) the triple of its bins, "unknown" being a value too.
A frame then carries 4 base labels instead of 7, which is what the counting
kernel pays for; a concept is the union of the base labels whose value of its
facet it contains (:attr:`ConceptVocabulary.derivation`).

Phonetic features: manner, place and voicing come from :data:`text.PHONE_CATEGORIES`;
vowel height, backness and rounding from :data:`VOWEL_FEATURES` (diphthongs take
their nucleus, the first target). Word position splits each utterance's phones
into words with :func:`alignment.word_phone_groups` (CMUdict pronunciations):
"word-initial" is the first phone of a word, "word-final" the last, both for a
one-phone word. Acoustic tracks are computed once per utterance from its audio
file and cached in the vocabulary for the run: RMS energy and spectral centroid
every 10 ms (32 ms windows), F0 with ``librosa.pyin`` at 8 kHz every 40 ms
(60-400 Hz, 0.2-semitone grid), the slowest part (about 0.06 s per 3 s utterance on one core).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import librosa
import numpy as np

from asr_introspect.alignment import frame_times, word_phone_groups
from asr_introspect.audio import load_audio
from asr_introspect.errors import InputError
from asr_introspect.text import MANNERS, PHONE_CATEGORIES, PHONES, PLACES, SILENCE, Alphabet

__all__ = [
    "FAMILIES",
    "DEFAULT_FAMILIES",
    "FACETS",
    "VOWEL_FEATURES",
    "AcousticBins",
    "ConceptVocabulary",
    "check_families",
    "voice_family",
]

#: concept families, in the order concepts are listed
FAMILIES = ("letters", "phones", "features", "silence", "position", "voice", "f0", "energy", "centroid")
DEFAULT_FAMILIES = FAMILIES
#: facets: each gives a frame at most one value
FACETS = ("letter", "phone", "position", "voice", "f0", "energy", "centroid")
#: facets whose values are combined into one joint base label per frame: the counting kernel then
#: updates 4 rows per frame and neuron instead of 7
FACET_GROUPS = (("letter",), ("phone",), ("position", "voice"), ("f0", "energy", "centroid"))
_FACETS_OF_FAMILY = {
    "letters": "letter",
    "phones": "phone",
    "features": "phone",
    "silence": "phone",
    "position": "position",
    "voice": "voice",
    "f0": "f0",
    "energy": "energy",
    "centroid": "centroid",
}

#: (height, backness, rounding) of each vowel of :data:`text.PHONES`; diphthongs: their nucleus
VOWEL_FEATURES: dict[str, tuple[str, str, str]] = {
    "iy": ("high", "front", "unrounded"),
    "ih": ("high", "front", "unrounded"),
    "eh": ("mid", "front", "unrounded"),
    "ae": ("low", "front", "unrounded"),
    "ah": ("mid", "central", "unrounded"),
    "er": ("mid", "central", "unrounded"),
    "aa": ("low", "back", "unrounded"),
    "ao": ("mid", "back", "rounded"),
    "uh": ("high", "back", "rounded"),
    "uw": ("high", "back", "rounded"),
    "ey": ("mid", "front", "unrounded"),
    "ay": ("low", "central", "unrounded"),
    "aw": ("low", "central", "unrounded"),
    "oy": ("mid", "back", "rounded"),
    "ow": ("mid", "back", "rounded"),
}
HEIGHTS = ("high", "mid", "low")
BACKNESS = ("front", "central", "back")
ROUNDING = ("rounded", "unrounded")

#: position base labels: first phone of a word, last phone, a one-phone word, inside a word, outside words
_POSITIONS = ("initial", "final", "only", "medial", "outside")

_VOICE_SUFFIX = re.compile(r"(_[dp]\d+)+$")


def check_families(families: Sequence[str]) -> list[str]:
    """``families`` in the order of :data:`FAMILIES`; InputError naming unknown ones (or none given)."""
    families = list(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise InputError(
            f"--concepts: unknown concept famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
            f"choose from {', '.join(FAMILIES)}"
        )
    if not families:
        raise InputError(f"--concepts: no concept family given; choose from {', '.join(FAMILIES)}")
    return [f for f in FAMILIES if f in families]


def voice_family(speaker: str) -> str:
    """The voice a speaker id names: synthetic speakers of the shipped corpus are ``<synth>_<voice>`` plus
    speed/pitch suffixes (``flite_awb_d085_p150`` -> ``flite_awb``); any other id is its own voice."""
    return _VOICE_SUFFIX.sub("", str(speaker)) or str(speaker)


@dataclass(frozen=True)
class AcousticBins:
    """Bin edges of the acoustic concepts and the tracks' settings.

    f0_edges: Hz, within ``f0_range`` (pyin's fmin, fmax); energy_edges: dB relative to the utterance's
    loudest frame (frame RMS over 32 ms every ``hop_seconds``); frames below the lowest edge have no
    centroid bin; centroid_edges: Hz. f0_sample_rate / f0_hop_seconds / f0_resolution: pyin's rate, hop
    and pitch grid in semitones (0.2 gives the F0 of librosa's default 0.1 within 0.04 semitones on the
    shipped corpus, with the same voicing decisions, in a quarter of the time).
    """

    f0_edges: tuple[float, ...] = (100.0, 140.0, 200.0)
    f0_range: tuple[float, float] = (60.0, 400.0)
    energy_edges: tuple[float, ...] = (-40.0, -25.0, -12.0)
    centroid_edges: tuple[float, ...] = (1000.0, 2000.0, 4000.0)
    hop_seconds: float = 0.01
    f0_sample_rate: int = 8000
    f0_hop_seconds: float = 0.04
    f0_resolution: float = 0.2

    def __post_init__(self) -> None:
        for name in ("f0_edges", "energy_edges", "centroid_edges"):
            edges = tuple(float(e) for e in getattr(self, name))
            if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
                raise InputError(f"AcousticBins.{name} must be increasing, got {edges}")
            object.__setattr__(self, name, edges)
        lo, hi = self.f0_range
        if not 0 < lo < self.f0_edges[0] or not self.f0_edges[-1] < hi < self.f0_sample_rate / 2:
            raise InputError(f"AcousticBins.f0_range {self.f0_range} must enclose f0_edges {self.f0_edges}")

    def names(self, facet: str, sample_rate: int = 16000) -> list[str]:
        """Concept names of the bins of ``facet`` ("f0", "energy" or "centroid")."""
        if facet == "f0":
            lo, hi = self.f0_range
            bounds = [lo, *self.f0_edges, hi]
            return [f"f0:{a:g}-{b:g}Hz" for a, b in zip(bounds[:-1], bounds[1:])]
        if facet == "energy":
            e = self.energy_edges
            return (
                [f"energy:below{e[0]:g}dB"]
                + [f"energy:{a:g}to{b:g}dB" for a, b in zip(e[:-1], e[1:])]
                + [f"energy:above{e[-1]:g}dB"]
            )
        bounds = [0.0, *self.centroid_edges, sample_rate / 2]
        return [f"centroid:{_khz(a)}-{_khz(b)}kHz" for a, b in zip(bounds[:-1], bounds[1:])]


def _khz(hz: float) -> str:
    return f"{hz / 1000:g}"


@dataclass
class _UtteranceTracks:
    """Per-utterance labels that do not depend on the layer: position per phone segment (or None: the words
    could not be split), and acoustic bins on the tracks' own time axes (-1: no bin)."""

    positions: np.ndarray | None = None  # (S,) int: _POSITIONS index per phone segment
    energy: np.ndarray | None = None  # (T_track,) bin index
    centroid: np.ndarray | None = None  # (T_track,) bin index, -1 below the energy floor
    f0: np.ndarray | None = None  # (T_f0,) bin index, -1 unvoiced


class ConceptVocabulary:
    """The concepts of a dissection and how to label frames with them.

    families: a subset of :data:`FAMILIES`; alphabet: the model's (letter concepts for every symbol but
    the blank and the space); voices: the voice families of the corpus (:meth:`for_corpus` finds them);
    bins: :class:`AcousticBins`.

    Attributes: ``names`` (K concept names), ``concept_families`` (K,), ``facets`` (the facets in use),
    ``facet_values`` ({facet: value names}), ``groups`` (facets combined into one joint base label,
    :data:`FACET_GROUPS`), ``components`` ((K_base, n_facets) the value of each facet in each base label,
    -1: unknown or not in its group), ``base_names`` (K_base), ``derivation`` ((K, K_base) bool: concept k
    is the union of the base labels marked in row k), ``concept_facet`` ((K,) index into ``facets``).
    """

    def __init__(
        self,
        alphabet: Alphabet | None = None,
        families: Sequence[str] | None = None,
        voices: Sequence[str] = (),
        bins: AcousticBins | None = None,
        sample_rate: int = 16000,
    ) -> None:
        self.families = check_families(DEFAULT_FAMILIES if families is None else families)
        self.alphabet = alphabet if alphabet is not None else Alphabet.default()
        self.voices = sorted(dict.fromkeys(str(v) for v in voices))
        if "voice" in self.families and not self.voices:
            raise InputError("the voice concepts need the corpus' voices: build with ConceptVocabulary.for_corpus")
        self.bins = bins if bins is not None else AcousticBins()
        self.sample_rate = int(sample_rate)
        self.facets = [f for f in FACETS if any(_FACETS_OF_FAMILY[fam] == f for fam in self.families)]
        if "position" in self.facets and "phone" not in self.facets:
            self.facets.insert(1, "phone")  # positions are phone segments
        if "centroid" in self.facets and "energy" not in self.facets:
            self.facets.insert(self.facets.index("centroid"), "energy")  # the centroid's audibility floor
        self._build()
        self._tracks: dict[str, _UtteranceTracks] = {}

    @classmethod
    def for_corpus(
        cls,
        utterances: Sequence,
        alphabet: Alphabet | None = None,
        families: Sequence[str] | None = None,
        bins: AcousticBins | None = None,
        sample_rate: int = 16000,
    ) -> ConceptVocabulary:
        """The vocabulary of ``utterances``: its voice families are the voice concepts."""
        voices = sorted({voice_family(u.speaker) for u in utterances})
        return cls(alphabet, families, voices, bins, sample_rate)

    # -- the concept table -----------------------------------------------------------------

    def _values(self, facet: str) -> list[str]:
        """Names of the values a frame can take in ``facet``."""
        if facet == "letter":
            return [f"letter:{s}" for s in self.alphabet.symbols]
        if facet == "phone":
            return [f"phone:{p}" for p in PHONES]
        if facet == "position":
            return [f"position:{p}" for p in _POSITIONS]
        if facet == "voice":
            return [f"voice:{v}" for v in self.voices]
        return self.bins.names(facet, self.sample_rate)

    def _build(self) -> None:
        """Base labels (joint values of each facet group), the concepts and their derivation from base labels."""
        self.facet_values = {facet: self._values(facet) for facet in self.facets}
        self.groups = [tuple(f for f in group if f in self.facets) for group in FACET_GROUPS]
        self.groups = [g for g in self.groups if g]
        components: list[np.ndarray] = []  # per group: (rows, n_facets) value index per facet, -1 unknown
        self._group_layout: list[tuple[int, list[int], list[int]]] = []  # (offset, facet indices, strides)
        offset = 0
        for group in self.groups:
            sizes = [len(self.facet_values[f]) + 1 for f in group]  # the last value of each: unknown
            strides = [int(np.prod(sizes[i + 1 :])) for i in range(len(sizes))]
            grid = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), axis=-1).reshape(-1, len(sizes))
            comps = np.full((grid.shape[0], len(self.facets)), -1, dtype=np.int64)
            for i, f in enumerate(group):
                comps[:, self.facets.index(f)] = np.where(grid[:, i] < sizes[i] - 1, grid[:, i], -1)
            components.append(comps)
            self._group_layout.append((offset, [self.facets.index(f) for f in group], strides))
            offset += grid.shape[0]
        self.components = np.concatenate(components)
        self.base_names = [
            "+".join(self.facet_values[f][c] for f, c in zip(self.facets, row) if c >= 0) or "(none)"
            for row in self.components
        ]
        rows: list[tuple[str, str, str, list[str]]] = []  # name, family, facet, the facet's values it unites

        def phones(keep) -> list[str]:
            return [f"phone:{p}" for p in PHONES if keep(p)]

        for family in self.families:
            if family == "letters":
                for i, symbol in enumerate(self.alphabet.symbols):
                    if i != self.alphabet.blank and symbol != " ":
                        rows.append((f"letter:{symbol}", family, "letter", [f"letter:{symbol}"]))
            elif family == "phones":
                rows += [(f"phone:{p}", family, "phone", [f"phone:{p}"]) for p in PHONES if p != SILENCE]
            elif family == "features":
                for manner in MANNERS:
                    if manner != "silence":
                        members = phones(lambda q, m=manner: PHONE_CATEGORIES[q].manner == m)
                        rows.append((f"manner:{manner}", family, "phone", members))
                for place in PLACES:
                    members = phones(
                        lambda q, pl=place: not PHONE_CATEGORIES[q].vowel and PHONE_CATEGORIES[q].place == pl
                    )
                    rows.append((f"place:{place}", family, "phone", members))
                for voiced, word in ((True, "voiced"), (False, "voiceless")):
                    members = phones(lambda q, v=voiced: q != SILENCE and PHONE_CATEGORIES[q].voiced == v)
                    rows.append((f"voicing:{word}", family, "phone", members))
                for axis, (kind, values) in enumerate(
                    (("height", HEIGHTS), ("backness", BACKNESS), ("rounding", ROUNDING))
                ):
                    for value in values:
                        members = phones(lambda q, a=axis, v=value: q in VOWEL_FEATURES and VOWEL_FEATURES[q][a] == v)
                        rows.append((f"{kind}:{value}", family, "phone", members))
            elif family == "silence":
                rows.append(("silence", family, "phone", [f"phone:{SILENCE}"]))
            elif family == "position":
                rows.append(("position:word-initial", family, "position", ["position:initial", "position:only"]))
                rows.append(("position:word-final", family, "position", ["position:final", "position:only"]))
            else:  # voice, f0, energy, centroid: one concept per value
                facet = _FACETS_OF_FAMILY[family]
                rows += [(value, family, facet, [value]) for value in self.facet_values[facet]]
        self.names = [r[0] for r in rows]
        self.concept_families = [r[1] for r in rows]
        self.concept_facet = np.array([self.facets.index(r[2]) for r in rows], dtype=np.int64)
        self.derivation = np.zeros((len(rows), len(self.components)), dtype=bool)
        for k, (_, _, facet, members) in enumerate(rows):
            f = self.facets.index(facet)
            wanted = [self.facet_values[facet].index(m) for m in members]
            self.derivation[k] = np.isin(self.components[:, f], wanted)
        self._index = {name: k for k, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @property
    def n_base(self) -> int:
        return len(self.base_names)

    def index(self, name: str) -> int:
        """Index of concept ``name``; InputError listing the families (and near names) for an unknown one."""
        try:
            return self._index[name]
        except KeyError:
            prefix = name.split(":")[0]
            near = [n for n in self.names if n.split(":")[0] == prefix][:12]
            hint = f" (e.g. {', '.join(near)})" if near else f"; concept families: {', '.join(self.families)}"
            raise InputError(f"unknown concept {name!r}{hint}") from None

    def family_of(self, name: str) -> str:
        return self.concept_families[self.index(name)]

    def facet_universe(self) -> np.ndarray:
        """(n_facets, K_base) bool: the base labels in which each facet is known (a frame with one of them
        is in that facet's universe)."""
        return (self.components >= 0).T.copy()

    def concepts_of_codes(self, codes: np.ndarray) -> list[str]:
        """Concept names present on a frame whose base labels are ``codes`` ((F,) ints, -1: none)."""
        rows = [int(c) for c in np.asarray(codes).reshape(-1) if c >= 0]
        if not rows:
            return []
        present = self.derivation[:, rows].any(axis=1)
        return [self.names[k] for k in np.flatnonzero(present)]

    def to_dict(self) -> dict:
        return {
            "families": self.families,
            "voices": self.voices,
            "bins": {
                "f0_edges_hz": list(self.bins.f0_edges),
                "f0_range_hz": list(self.bins.f0_range),
                "energy_edges_db": list(self.bins.energy_edges),
                "centroid_edges_hz": list(self.bins.centroid_edges),
            },
            "alphabet": self.alphabet.to_dict(),
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ConceptVocabulary:
        bins = d.get("bins", {})
        return cls(
            Alphabet.from_dict(d["alphabet"]),
            d["families"],
            d.get("voices", ()),
            AcousticBins(
                f0_edges=tuple(bins.get("f0_edges_hz", AcousticBins.f0_edges)),
                f0_range=tuple(bins.get("f0_range_hz", AcousticBins.f0_range)),
                energy_edges=tuple(bins.get("energy_edges_db", AcousticBins.energy_edges)),
                centroid_edges=tuple(bins.get("centroid_edges_hz", AcousticBins.centroid_edges)),
            ),
            d.get("sample_rate", 16000),
        )

    # -- per-utterance tracks ----------------------------------------------------------------

    def tracks_of(self, utt) -> _UtteranceTracks:
        """Word positions and acoustic bins of ``utt``, computed once per run."""
        tracks = self._tracks.get(utt.id)
        if tracks is not None:
            return tracks
        tracks = _UtteranceTracks()
        if "position" in self.facets and utt.phones:
            tracks.positions = word_positions(utt.text, utt.phones)
        if any(f in self.facets for f in ("f0", "energy", "centroid")):
            audio = load_audio(utt.audio_path, sample_rate=self.sample_rate)
            b = self.bins
            hop = max(int(round(b.hop_seconds * self.sample_rate)), 1)
            n_fft = 1 << int(np.ceil(np.log2(0.032 * self.sample_rate)))
            rms = librosa.feature.rms(y=audio, frame_length=n_fft, hop_length=hop, center=True)[0]
            db = 20 * np.log10(np.maximum(rms, 1e-10) / max(float(rms.max()), 1e-10))
            tracks.energy = np.searchsorted(np.asarray(b.energy_edges), db, side="right")
            if "centroid" in self.facets:
                centroid = librosa.feature.spectral_centroid(y=audio, sr=self.sample_rate, n_fft=n_fft, hop_length=hop)[
                    0
                ]
                bins = np.searchsorted(np.asarray(b.centroid_edges), centroid, side="right")
                tracks.centroid = np.where(db >= b.energy_edges[0], bins, -1)
            if "f0" in self.facets:
                tracks.f0 = self._f0_bins(audio)
        self._tracks[utt.id] = tracks
        return tracks

    def _f0_bins(self, audio: np.ndarray) -> np.ndarray:
        """(T_f0,) F0 bin per pyin frame (every ``f0_hop_seconds``), -1 where pyin finds no voicing."""
        b = self.bins
        y = librosa.resample(audio, orig_sr=self.sample_rate, target_sr=b.f0_sample_rate)
        hop = int(round(b.f0_hop_seconds * b.f0_sample_rate))
        frame = 1 << int(np.ceil(np.log2(2.5 * b.f0_sample_rate / b.f0_range[0])))  # 2.5 periods of fmin
        if len(y) < frame:
            return np.full(1 + len(y) // hop, -1, dtype=np.int64)
        f0, voiced, _ = librosa.pyin(
            y,
            fmin=b.f0_range[0],
            fmax=b.f0_range[1],
            sr=b.f0_sample_rate,
            frame_length=frame,
            hop_length=hop,
            resolution=b.f0_resolution,
        )
        bins = np.searchsorted(np.asarray(b.f0_edges), np.nan_to_num(f0, nan=0.0), side="right")
        return np.where(voiced & np.isfinite(f0), bins, -1)

    def clear_cache(self) -> None:
        """Forget the per-utterance tracks (they are kept for the run: ablation reuses them)."""
        self._tracks.clear()

    # -- frame codes ---------------------------------------------------------------------------

    def frame_codes(
        self, batch, layer: str, *, source: str = "forced", letter_mode: str = "span", shift: int = 0
    ) -> np.ndarray:
        """Base labels of every frame of ``layer`` in a stream batch: (B, T_layer, G) int32 rows of
        ``base_names``, one column per facet group of :attr:`groups`; -1 where no facet of the group is
        known (padding, utterances without letters or phone segments). Letters come from
        ``batch.letter_labels(layer, source, letter_mode, shift)``, phones from ``batch.phone_labels(layer)``.
        Cached on the batch, once per time axis (layers with the same frame centres and lengths share it);
        treat it as read-only."""
        # layers whose frames have the same centres (every layer after a conv stack's first stride) share
        # their labels, so the codes are computed once per time axis of the batch
        centres = (
            np.asarray(batch.model.frame_map.center(layer, np.arange(2)), dtype=np.float64)
            if layer != "input"
            else np.arange(2.0)
        )
        axis = (tuple(centres.tolist()), batch.width(layer), batch.layer_lengths(layer).tobytes())
        key = ("dissection-codes", id(self), axis, source, letter_mode, int(shift))
        cache = batch._cache
        if key in cache:
            return cache[key]
        values = self.facet_labels(batch, layer, source=source, letter_mode=letter_mode, shift=shift)
        B, T = batch.mask(layer).shape
        codes = np.full((B, T, len(self.groups)), -1, dtype=np.int32)
        for g, (offset, facets, strides) in enumerate(self._group_layout):
            joint = np.zeros((B, T), dtype=np.int64)
            known = np.zeros((B, T), dtype=bool)
            for f, stride in zip(facets, strides):
                v = values[f]
                unknown = len(self.facet_values[self.facets[f]])
                joint += np.where(v >= 0, v, unknown) * stride
                known |= v >= 0
            codes[..., g] = np.where(known, offset + joint, -1)
        cache[key] = codes
        return codes

    def facet_labels(
        self, batch, layer: str, *, source: str = "forced", letter_mode: str = "span", shift: int = 0
    ) -> list[np.ndarray]:
        """Per facet of :attr:`facets`, the value index of every frame of ``layer``: (B, T_layer) int64,
        -1 where unknown (always on padded frames)."""
        B, T = len(batch), batch.width(layer)
        mask = batch.mask(layer)
        lengths = batch.layer_lengths(layer)
        times = None
        out = []
        for facet in self.facets:
            if facet == "letter":
                labels = batch.letter_labels(layer, source, letter_mode, shift).copy()
            elif facet == "phone":
                labels = batch.phone_labels(layer).copy()
            elif facet == "voice":
                index = {v: i for i, v in enumerate(self.voices)}
                row = np.array([index.get(voice_family(u.speaker), -1) for u in batch.utterances], dtype=np.int64)
                labels = np.repeat(row[:, None], T, axis=1)
            else:
                if times is None:
                    times = frame_times(batch.model.frame_map, layer, T, batch.model.feature_config)
                labels = np.full((B, T), -1, dtype=np.int64)
                for b, utt in enumerate(batch.utterances):
                    tracks = self.tracks_of(utt)
                    n = int(lengths[b])
                    if facet == "position":
                        if tracks.positions is not None:
                            segment = segment_index(utt.phones, times[:n])
                            outside = len(_POSITIONS) - 1
                            labels[b, :n] = np.where(segment >= 0, tracks.positions[np.maximum(segment, 0)], outside)
                        continue
                    track = getattr(tracks, facet)
                    hop = self.bins.f0_hop_seconds if facet == "f0" else self.bins.hop_seconds
                    index = np.clip(np.round(times[:n] / hop).astype(np.int64), 0, len(track) - 1)
                    labels[b, :n] = track[index]
            labels[~mask] = -1
            out.append(labels)
        return out


def segment_index(segments: Sequence, times: np.ndarray) -> np.ndarray:
    """(T,) index of the segment ``[start, end)`` covering each time (seconds), -1 outside all segments."""
    starts = np.array([s.start for s in segments], dtype=np.float64)
    ends = np.array([s.end for s in segments], dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if starts.size == 0:
        return np.full(times.shape, -1, dtype=np.int64)
    index = np.searchsorted(starts, times, side="right") - 1
    inside = (index >= 0) & (times < ends[np.maximum(index, 0)])
    return np.where(inside, index, -1)


def word_positions(text: str, segments: Sequence) -> np.ndarray | None:
    """(S,) position of each phone segment in its word (indices into ``initial, final, only, medial,
    outside``; silences are outside), or None when the phones cannot be split into the transcript's words."""
    groups = word_phone_groups(text.split(), segments)
    if groups is None:
        return None
    where = {id(s): i for i, s in enumerate(segments)}
    positions = np.full(len(segments), _POSITIONS.index("outside"), dtype=np.int64)
    for word in groups:
        for j, seg in enumerate(word):
            if len(word) == 1:
                kind = "only"
            elif j == 0:
                kind = "initial"
            elif j == len(word) - 1:
                kind = "final"
            else:
                kind = "medial"
            positions[where[id(seg)]] = _POSITIONS.index(kind)
    return positions
