"""Synthesize an English corpus in the LibriSpeech layout with flite, festival and espeak-ng.

Speakers are synthesizer configurations, each with its own speaker id. The id
starts with the family (:func:`speaker_family`: ``flite``, ``festival``,
``espeak``, ``espeak-klatt``), so evaluation can group by family:

- flite voices ``kal`` (8 kHz diphone), ``kal16`` (16 kHz diphone), ``awb``,
  ``rms``, ``slt`` (clustergen) crossed with speed variants
  (``duration_stretch`` 0.85 / 1.0 / 1.2) and pitch variants
  (``int_f0_target_mean`` in Hz; ``rms`` ignores it (measured), so it has no
  pitch variants). Ids: ``flite_slt_d085_p210`` (d: stretch x 100, p: mean F0,
  omitted for the voice's own pitch);
- festival voices ``kal``, ``ked`` (diphones) and ``slt`` (HTS) crossed with
  duration stretches 0.8 / 1.0 / 1.25 and pitch settings: for the diphone
  voices mean F0 and F0 standard deviation (pitch range) in Hz, for slt a
  resampling pitch shift to a mean F0 in Hz (see :mod:`.festival`). Ids:
  ``festival_ked_d080_p130_r28`` (r: F0 std in Hz; p and r omitted for the
  voice's own);
- espeak-ng voices ``en-us``, ``en-gb-x-rp``, ``en-029`` with the variants
  none / ``+m3`` / ``+f2`` and two prosodies (145 words/min at pitch 40, 185 at
  pitch 60). Ids: ``espeak_en_us_m3_s145_p40``;
- espeak-ng's formant (Klatt) variants ``+klatt`` ... ``+klatt4`` of the same
  three voices, and more voices (``en-gb-scotland``, ``en-gb-x-gbcwmd`` with
  ``+f4``, ``+m7``, ``+croak``), each with three wide prosodies (120 words/min
  at pitch 25 with an extra-low pitch range, 165 at 50 high, 215 at 75
  extra-high; the range is set with SSML ``<prosody range>``). Ids:
  ``espeak_en_us_klatt2_s165_p50_rhigh`` (family ``espeak-klatt``).

Phone segments: flite prints them with ``-psdur`` (each number is the END
time of the segment; verified against the audio: speech starts where the
first ``pau`` ends). They are written as ``UTTID.TextGrid`` beside the audio.
The diphone voices (kal, kal16) render only about half of the final pause, so
their audio ends ~0.11 s before the last ``pau``: the last segment is clipped
to the audio's end (``fit_segments_to_duration``). festival's segments come
from its utterance structure (:mod:`.festival`), espeak-ng's from the phoneme
events of libespeak-ng, called in-process instead of the CLI
(:mod:`.espeak`: the CLI's synthesis calls, espeak's phonemes mapped to
ARPAbet, one utterance at a time under a lock); both are written as
TextGrids like flite's. espeak voices without a phone mapping (non-English
ones named with ``--voices``) get no phones (``Utterance.phones is None``).

Known differences between flite's phones and CMUdict (measured on 271
in-dictionary fortune sentences: 87% identical for awb/rms/slt, 94% with the
rules below): unstressed vowels and the vowels of function words ("to",
"you", "and") are often reduced to schwa (``ax`` -> ``ah``); syllabic
``en``/``el``/``em`` become ``n``/``l``/``m`` (CMUdict spells ``AH0 N``);
``kal``'s diphone inventory has no stressed /ah/ and uses /aa/ (37% identical).

Layout written under ``OUT`` (splits as separate LibriSpeech-layout corpora):

- ``OUT/train/``: training speakers x training sentences;
- ``OUT/test_text/``: training speakers x held-out sentences (no text overlap);
- ``OUT/test_speaker/``: held-out speaker configuration(s) x training sentences;
- each split: ``SPEAKER/0/SPEAKER-0-NNNNNN.flac`` (16 kHz FLAC), ``.TextGrid``
  (every speaker with phones), ``SPEAKER-0.trans.txt``, ``manifest.jsonl``;
- ``OUT/synth.json``: settings, speakers, held-out texts and speakers, summary.

With both held-out fractions 0 the corpus is written directly in ``OUT``.
Utterance ``NNNNNN`` is a fixed function of the settings (seed, count,
voices, text), so a rerun with the same settings resumes: complete files
are kept (audio is written last and atomically), transcripts and manifests
are rewritten at the end. Rerunning with other settings into the same
``OUT`` raises ``InputError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from asr_introspect.audio import audio_info, save_audio
from asr_introspect.errors import CorpusError, InputError
from asr_introspect.io import save_json, write_text_atomic
from asr_introspect.text import normalize_transcript

from .espeak import espeak_input, has_phone_mapping, require_espeak_library
from .espeak import synthesize as espeak_synthesize
from .festival import (
    FESTIVAL_PACKAGES,
    FESTIVAL_VOICES,
    festival_script,
    festival_voice_installed,
    parse_festival_segments,
    rate_factor,
)
from .manifest import save_manifest
from .text_sources import fortune_sentences, read_text_sentences
from .textgrid import read_textgrid, write_textgrid
from .utterance import (
    PhoneSegment,
    Utterance,
    check_segments,
    fit_segments_to_duration,
    merge_silences,
    parse_flite_segments,
)

__all__ = [
    "SAMPLE_RATE",
    "FLITE_VOICES",
    "ESPEAK_VOICES",
    "FAMILIES",
    "SpeakerConfig",
    "PlannedUtterance",
    "default_speakers",
    "select_speakers",
    "speaker_family",
    "plan_corpus",
    "synthesize_utterance",
    "synthesize_corpus",
    "SPLITS",
]

SAMPLE_RATE = 16000
SPLITS = ("train", "test_text", "test_speaker")
CHAPTER = "0"

#: flite voice -> pitch variants (mean F0 in Hz; None = the voice's own, measured
#: medians: kal 90, kal16 89, awb 122, rms 101, slt 168 Hz).
FLITE_VOICES: dict[str, tuple[float | None, ...]] = {
    "kal": (None, 120.0),
    "kal16": (None, 120.0),
    "awb": (None, 95.0, 150.0),
    "rms": (None,),  # ignores int_f0_target_mean
    "slt": (None, 140.0, 210.0),
}
FLITE_STRETCHES = (0.85, 1.0, 1.2)
ESPEAK_VOICES = ("en-us", "en-gb-x-rp", "en-029")
ESPEAK_VARIANTS = ("", "m3", "f2")
#: (words per minute, pitch 0-99) pairs: a slower, lower and a faster, higher speaker
ESPEAK_PROSODY = ((145, 40), (185, 60))
ESPEAK_PITCH = 50  # espeak-ng's default
#: the formant-synthesis (Klatt) variants of espeak-ng
ESPEAK_KLATT_VARIANTS = ("klatt", "klatt2", "klatt3", "klatt4")
#: more espeak-ng accents, with variants of their own (wide prosodies only)
ESPEAK_MORE_VOICES = ("en-gb-scotland", "en-gb-x-gbcwmd")
ESPEAK_MORE_VARIANTS = ("f4", "m7", "croak")
#: (words per minute, pitch 0-99, SSML pitch range) of the klatt and extra voices
ESPEAK_WIDE_PROSODY = ((120, 25, "x-low"), (165, 50, "high"), (215, 75, "x-high"))
ESPEAK_RANGES = ("x-low", "low", "medium", "high", "x-high")
FESTIVAL_STRETCHES = (0.8, 1.0, 1.25)
#: festival voice -> (mean F0 Hz, F0 std Hz) settings; (None, None) = the voice's own.
#: slt (HTS) takes a mean F0 only (a resampling shift, see .festival).
FESTIVAL_PITCHES: dict[str, tuple[tuple[float | None, float | None], ...]] = {
    "kal": ((None, None), (80.0, 6.0), (130.0, 28.0), (170.0, 40.0)),
    "ked": ((None, None), (80.0, 6.0), (130.0, 28.0), (170.0, 40.0)),
    "slt": ((None, None), (140.0, None), (215.0, None)),
}
#: synthesizer families (the first part of every speaker id)
FAMILIES = ("flite", "festival", "espeak", "espeak-klatt")


@dataclass(frozen=True)
class SpeakerConfig:
    """A synthesizer configuration used as one speaker.

    ``engine``: ``"flite"``, ``"festival"`` or ``"espeak"``; ``voice``: flite
    voice, festival voice (a key of ``festival.FESTIVAL_VOICES``) or espeak voice
    (``"en-us+m3"``); ``speed``: flite/festival duration stretch or espeak
    words/minute; ``pitch``: flite/festival mean F0 (Hz, None = voice default) or
    espeak pitch 0-99; ``pitch_range``: festival diphone F0 standard deviation
    (Hz) or an espeak SSML range name (``ESPEAK_RANGES``), None = the voice's own.
    """

    engine: str
    voice: str
    speed: float
    pitch: float | None = None
    pitch_range: float | str | None = None

    @property
    def id(self) -> str:
        """Speaker id (letters, digits, ``_``; no ``-``), starting with the engine."""
        if self.engine in ("flite", "festival"):
            sid = f"{self.engine}_{self.voice}_d{int(round(self.speed * 100)):03d}"
            sid += f"_p{int(round(self.pitch))}" if self.pitch is not None else ""
            return sid + (f"_r{int(round(float(self.pitch_range)))}" if self.pitch_range is not None else "")
        name = self.voice.replace("-", "_").replace("+", "_")
        sid = f"espeak_{name}_s{int(round(self.speed))}"
        sid += f"_p{int(round(self.pitch))}" if self.pitch not in (None, ESPEAK_PITCH) else ""
        return sid + (f"_r{str(self.pitch_range).replace('-', '')}" if self.pitch_range is not None else "")

    @property
    def family(self) -> str:
        """``flite``, ``festival``, ``espeak`` or ``espeak-klatt`` (a Klatt variant)."""
        if self.engine == "espeak" and self.voice.partition("+")[2].lower().startswith("klatt"):
            return "espeak-klatt"
        return self.engine

    @property
    def has_phones(self) -> bool:
        """Whether utterances of this speaker get phone segments (flite, festival, English espeak-ng voices)."""
        return self.engine in ("flite", "festival") or (self.engine == "espeak" and has_phone_mapping(self.voice))

    @property
    def rate_factor(self) -> float:
        """How many times faster than its header says the synthesized wave is read (festival HTS pitch)."""
        return rate_factor(self.voice, self.pitch) if self.engine == "festival" else 1.0

    def command(self, text: str, wav_path: str | os.PathLike) -> tuple[list[str], str | None]:
        """``(argv, stdin)`` that writes ``text`` spoken to ``wav_path``.

        espeak-ng utterances are synthesized by :func:`.espeak.synthesize` with the
        library calls this command line makes (the CLI stays the reference)."""
        if self.engine == "flite":
            argv = ["flite", "-voice", self.voice, "--setf", f"duration_stretch={self.speed:g}"]
            if self.pitch is not None:
                argv += ["--setf", f"int_f0_target_mean={self.pitch:g}"]
            return argv + ["-t", text, "-o", str(wav_path), "-psdur"], None
        if self.engine == "festival":
            script = festival_script(text, self.voice, wav_path, self.speed, self.pitch, self.pitch_range)
            return ["festival", "--pipe"], script
        argv = [
            "espeak-ng",
            "-v",
            self.voice,
            "-s",
            str(int(round(self.speed))),
            "-p",
            str(int(round(self.pitch if self.pitch is not None else ESPEAK_PITCH))),
            "-w",
            str(wav_path),
            "--stdin",
        ]
        spoken, ssml = espeak_input(text, None if self.pitch_range is None else str(self.pitch_range))
        return (argv[:-1] + ["-m", "--stdin"] if ssml else argv), spoken

    def to_dict(self) -> dict:
        """JSON-ready settings plus the id."""
        return {"id": self.id, **asdict(self)}


def speaker_family(speaker_id: str) -> str:
    """The synthesizer family of a speaker id (:data:`FAMILIES`), ``"other"`` for ids of no family."""
    engine = speaker_id.split("_", 1)[0]
    if engine == "espeak":
        return "espeak-klatt" if "_klatt" in speaker_id else "espeak"
    return engine if engine in FAMILIES else "other"


def default_speakers() -> list[SpeakerConfig]:
    """Every default configuration (138): flite voices x speeds x pitches, festival voices x
    stretches x pitches, espeak voices x variants x prosodies, espeak klatt and extra voices x
    wide prosodies. The first 51 (flite and the original espeak set) keep their ids and order."""
    speakers = [
        SpeakerConfig("flite", voice, stretch, pitch)
        for voice, pitches in FLITE_VOICES.items()
        for stretch in FLITE_STRETCHES
        for pitch in pitches
    ]
    speakers += [
        SpeakerConfig("espeak", voice + (f"+{variant}" if variant else ""), rate, pitch)
        for voice in ESPEAK_VOICES
        for variant in ESPEAK_VARIANTS
        for rate, pitch in ESPEAK_PROSODY
    ]
    speakers += [
        SpeakerConfig("festival", voice, stretch, pitch, pitch_range)
        for voice, pitches in FESTIVAL_PITCHES.items()
        for stretch in FESTIVAL_STRETCHES
        for pitch, pitch_range in pitches
    ]
    speakers += [
        SpeakerConfig("espeak", f"{voice}+{variant}", rate, pitch, pitch_range)
        for voices, variants in (
            (ESPEAK_VOICES, ESPEAK_KLATT_VARIANTS),
            (ESPEAK_MORE_VOICES, ESPEAK_MORE_VARIANTS),
        )
        for voice in voices
        for variant in variants
        for rate, pitch, pitch_range in ESPEAK_WIDE_PROSODY
    ]
    return speakers


def _espeak_known() -> tuple[set[str], set[str]]:
    languages, variants = set(), set()
    for arg, target in (("--voices", languages), ("--voices=variant", variants)):
        try:
            out = subprocess.run(["espeak-ng", arg], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise InputError(
                f"espeak-ng cannot list its voices ({exc}); install espeak-ng "
                "(apt-get install espeak-ng) or choose flite voices"
            ) from exc
        for line in out.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 5:
                target.add(fields[1].lower() if target is languages else fields[4].rsplit("/", 1)[-1].lower())
                if target is languages:
                    target.add(fields[4].rsplit("/", 1)[-1].lower())
    return languages, variants


def select_speakers(voices: Sequence[str] | None = None) -> list[SpeakerConfig]:
    """Speaker configurations for ``voices`` (default: all, see :func:`default_speakers`).

    Items: ``all``; a family: ``flite``, ``festival``, ``espeak`` (espeak-ng
    without the klatt variants), ``espeak-klatt`` (the klatt variants); a flite
    voice (``slt``: all its variants); a festival voice (``festival:kal``,
    ``festival:ked``, ``festival:slt``); an espeak voice with or without variant
    (``en-us``: the three default variants x prosodies; ``en-gb+f3``: prosodies
    only; ``espeak:NAME`` forces espeak); or a speaker id from
    :func:`default_speakers`. Order is deterministic; duplicates are removed.
    ``InputError`` for unknown names.
    """
    defaults = default_speakers()
    if not voices:
        return defaults
    by_id = {s.id: s for s in defaults}
    chosen: list[SpeakerConfig] = []
    espeak_names: list[str] = []
    for item in voices:
        for name in str(item).replace(",", " ").split():
            key = name.strip()
            if key == "all":
                chosen += defaults
            elif key in FAMILIES:
                chosen += [s for s in defaults if s.family == key]
            elif key.startswith("festival:"):
                voice = key.split(":", 1)[1]
                if voice not in FESTIVAL_VOICES:
                    raise InputError(f"unknown festival voice {voice!r}: use one of {', '.join(FESTIVAL_VOICES)}")
                chosen += [s for s in defaults if s.engine == "festival" and s.voice == voice]
            elif key in FLITE_VOICES:
                chosen += [s for s in defaults if s.engine == "flite" and s.voice == key]
            elif key in by_id:
                chosen.append(by_id[key])
            else:
                espeak_names.append(key.split(":", 1)[1] if key.startswith("espeak:") else key)
    if espeak_names:
        languages, variants = _espeak_known()
        for name in espeak_names:
            base, _, variant = name.partition("+")
            if base.lower() not in languages or (variant and variant.lower() not in variants):
                raise InputError(
                    f"unknown voice {name!r}: use all, a family ({', '.join(FAMILIES)}), a flite voice "
                    f"({', '.join(FLITE_VOICES)}), festival:kal|ked|slt, an espeak-ng voice such as en-us or "
                    "en-us+m3 (see espeak-ng --voices), or a speaker id"
                )
            names = [name] if variant else [base + (f"+{v}" if v else "") for v in ESPEAK_VARIANTS]
            chosen += [SpeakerConfig("espeak", n, rate, pitch) for n in names for rate, pitch in ESPEAK_PROSODY]
    unique: dict[str, SpeakerConfig] = {}
    for speaker in chosen:
        unique.setdefault(speaker.id, speaker)
    return list(unique.values())


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance to synthesize: ``id``, ``split``, ``speaker``, ``sentence`` (as spoken), ``text``
    (normalized transcript), ``index`` (position in the plan)."""

    index: int
    id: str
    split: str
    speaker: SpeakerConfig
    sentence: str
    text: str

    def relative_dir(self, flat: bool) -> Path:
        """Chapter directory relative to ``OUT``."""
        base = Path() if flat else Path(self.split)
        return base / self.speaker.id / CHAPTER


def _count(n: int, fraction: float) -> int:
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"held-out fraction must be in [0, 1), got {fraction}")
    return int(round(n * fraction))


def plan_corpus(
    sentences: Sequence[str],
    speakers: Sequence[SpeakerConfig],
    n_utterances: int,
    seed: int = 0,
    test_text_fraction: float = 0.1,
    test_speaker_fraction: float = 0.1,
    held_out_speakers: Sequence[str] | None = None,
) -> tuple[list[PlannedUtterance], dict]:
    """Deterministic plan: ``(utterances, info)`` with ``info`` listing held-out texts and speakers.

    Sentences are shuffled with ``seed``; the first ``K`` (about
    ``test_text_fraction`` of the sentences used) are held out. ``train`` cycles
    through the rest, giving each repeat of a sentence the next speaker;
    ``test_text`` speaks the held-out sentences with training speakers;
    ``test_speaker`` speaks training sentences with the held-out speaker(s)
    (default: one flite configuration that is not a voice's default, chosen by
    ``seed``, else such a festival one; none when there are fewer than two speakers).
    """
    if n_utterances < 1:
        raise InputError(f"--utterances must be >= 1, got {n_utterances}")
    if not speakers:
        raise InputError("no speaker configurations selected")
    if len(sentences) < 1:
        raise InputError("no sentences to synthesize")
    rng = np.random.default_rng(seed)
    pool = [sentences[i] for i in rng.permutation(len(sentences))]
    speaker_ids = [s.id for s in speakers]
    if held_out_speakers:
        unknown = [s for s in held_out_speakers if s not in speaker_ids]
        if unknown:
            raise InputError(f"held-out speaker(s) not among the selected speakers: {', '.join(unknown)}")
        held = [s for s in speakers if s.id in set(held_out_speakers)]
    elif test_speaker_fraction > 0 and len(speakers) >= 2:
        candidates = [s for s in speakers if s.engine == "flite" and (s.speed != 1.0 or s.pitch is not None)]
        candidates = candidates or [s for s in speakers if s.engine == "flite"]
        candidates = candidates or [
            s for s in speakers if s.engine == "festival" and (s.speed != 1.0 or s.pitch is not None)
        ]
        candidates = candidates or list(speakers)
        held = [candidates[int(rng.integers(len(candidates)))]]
    else:
        held = []
    train_speakers = [s for s in speakers if s not in held]
    if not train_speakers:
        raise InputError("every speaker is held out: leave at least one for training")
    train_speakers = [train_speakers[i] for i in rng.permutation(len(train_speakers))]

    n_text = _count(n_utterances, test_text_fraction)
    n_speaker = _count(n_utterances, test_speaker_fraction) if held else 0
    n_train = n_utterances - n_text - n_speaker
    if n_train < 1:
        raise InputError(
            f"{n_utterances} utterances leave none for training; use more utterances or smaller held-out fractions"
        )
    k = min(n_text, max(1, int(round(len(pool) * test_text_fraction)))) if n_text else 0
    if len(pool) - k < 1:
        raise InputError(f"only {len(pool)} sentence(s): too few to hold some out; give more text")
    held_texts, train_texts = pool[:k], pool[k:]
    offset = int(rng.integers(len(train_texts)))

    jobs: list[tuple[str, SpeakerConfig, str]] = []
    for i in range(n_train):
        q, r = divmod(i, len(train_texts))
        jobs.append(("train", train_speakers[(r + q) % len(train_speakers)], train_texts[r]))
    for j in range(n_text):
        q, r = divmod(j, k)
        jobs.append(("test_text", train_speakers[(r + q) % len(train_speakers)], held_texts[r]))
    for j in range(n_speaker):
        jobs.append(("test_speaker", held[j % len(held)], train_texts[(offset + j) % len(train_texts)]))
    width = max(6, len(str(n_utterances - 1)))
    plan = []
    for index, (split, speaker, sentence) in enumerate(jobs):
        utt_id = f"{speaker.id}-{CHAPTER}-{index:0{width}d}"
        plan.append(
            PlannedUtterance(
                index, utt_id, split, speaker, sentence, normalize_transcript(sentence, utterance_id=utt_id)
            )
        )
    info = {
        "held_out_texts": [normalize_transcript(t) for t in held_texts],
        "held_out_speakers": [s.id for s in held],
        "train_speakers": sorted(s.id for s in train_speakers),
        "sentences_available": len(pool),
    }
    return plan, info


@dataclass(frozen=True)
class SynthResult:
    """Outcome of one planned utterance: the record (None on failure), ``kept``, ``error``."""

    planned: PlannedUtterance
    utterance: Utterance | None
    kept: bool
    error: str | None = None


def _read_resampled(path: Path, source: str, rate_factor: float = 1.0) -> np.ndarray:
    """Mono float32 audio of ``path`` at ``SAMPLE_RATE``; ``CorpusError`` if empty or not finite.

    ``rate_factor``: read the file as if its sampling rate were that many times
    its header's (a resampling pitch shift: F0 and formants times the factor,
    duration divided by it); the product is rounded to whole Hz."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise CorpusError(f"{source}: the synthesizer wrote no readable audio ({exc})") from exc
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if audio.size == 0 or not np.isfinite(audio).all():
        raise CorpusError(f"{source}: the synthesizer wrote empty or non-finite audio")
    return _resample(audio, int(round(rate * rate_factor)))


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Float32 audio ``(N,)`` at ``rate`` Hz -> ``(M,)`` at ``SAMPLE_RATE``."""
    if rate != SAMPLE_RATE:
        g = int(np.gcd(int(rate), SAMPLE_RATE))
        audio = resample_poly(audio, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
    return audio


def _flite_segments(stdout: str, duration: float, source: str) -> list[PhoneSegment]:
    segments = merge_silences(parse_flite_segments(stdout, source=source))
    if not segments:
        raise CorpusError(f"{source}: flite printed no phone segments")
    segments = fit_segments_to_duration(segments, duration, source)
    check_segments(segments, source, duration)
    return segments


def _festival_segments(stdout: str, duration: float, factor: float, source: str) -> list[PhoneSegment]:
    segments = merge_silences(parse_festival_segments(stdout, time_scale=1.0 / factor, source=source))
    segments = fit_segments_to_duration(segments, duration, source)
    check_segments(segments, source, duration)
    return segments


def _espeak_utterance(
    sentence: str, speaker: SpeakerConfig, source: str
) -> tuple[np.ndarray, tuple[PhoneSegment, ...] | None]:
    """16 kHz float32 audio ``(N,)`` and phone segments (None without a phone mapping) from libespeak-ng.

    The int16 samples become floats as ``soundfile`` reads the CLI's WAV (``/ 32768``)."""
    pitch = speaker.pitch if speaker.pitch is not None else ESPEAK_PITCH
    pitch_range = None if speaker.pitch_range is None else str(speaker.pitch_range)
    speech = espeak_synthesize(sentence, speaker.voice, speaker.speed, pitch, pitch_range, phones=speaker.has_phones)
    audio = _resample(speech.audio.astype(np.float32) / 32768.0, speech.sample_rate)
    if speech.segments is None:
        return audio, None
    duration = len(audio) / SAMPLE_RATE
    # to the nanosecond, as the TextGrid stores them (the manifest and a resumed run then agree)
    rounded = [PhoneSegment(s.phone, round(s.start, 9), round(s.end, 9)) for s in speech.segments]
    segments = fit_segments_to_duration(rounded, duration, source)
    check_segments(segments, source, duration)
    return audio, tuple(segments)


def _run_synthesizer(
    planned: PlannedUtterance, tmp_dir: str | os.PathLike, timeout: float, source: str
) -> tuple[np.ndarray, tuple[PhoneSegment, ...] | None]:
    """16 kHz float32 audio ``(N,)`` and phone segments from a flite or festival run."""
    speaker = planned.speaker
    fd, wav = tempfile.mkstemp(prefix=f"{planned.id}.", suffix=".wav", dir=tmp_dir)
    os.close(fd)
    try:
        argv, stdin = speaker.command(planned.sentence, wav)
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise CorpusError(f"{argv[0]} exited with {proc.returncode}: {proc.stderr.strip()[:200]}")
        audio = _read_resampled(Path(wav), source, speaker.rate_factor)
    finally:
        Path(wav).unlink(missing_ok=True)
    duration = len(audio) / SAMPLE_RATE
    if speaker.engine == "flite":
        return audio, tuple(_flite_segments(proc.stdout, duration, source))
    return audio, tuple(_festival_segments(proc.stdout, duration, speaker.rate_factor, source))


def synthesize_utterance(
    planned: PlannedUtterance, chapter_dir: str | os.PathLike, tmp_dir: str | os.PathLike, timeout: float = 120.0
) -> SynthResult:
    """Synthesize (or keep) one utterance into ``chapter_dir``; never raises for synthesis failures.

    Kept when the audio exists (and, with phones, its TextGrid). Otherwise flite
    or festival writes a temporary WAV (espeak-ng's library returns samples),
    which is resampled to 16 kHz (``scipy.signal.resample_poly``: several times
    faster than torchaudio for 22.05 kHz and free of torch threads); the
    TextGrid is written first, the FLAC last (both atomic).
    """
    chapter_dir = Path(chapter_dir)
    flac = chapter_dir / f"{planned.id}.flac"
    grid = chapter_dir / f"{planned.id}.TextGrid"
    speaker = planned.speaker
    try:
        if flac.is_file() and (not speaker.has_phones or grid.is_file()):
            rate, frames, _ = audio_info(flac)
            phones = tuple(read_textgrid(grid)) if speaker.has_phones else None
            return SynthResult(
                planned, Utterance(planned.id, speaker.id, flac, planned.text, phones, frames / rate), kept=True
            )
        chapter_dir.mkdir(parents=True, exist_ok=True)
        source = f"utt {planned.id}"
        if speaker.engine == "espeak":
            audio, phones = _espeak_utterance(planned.sentence, speaker, source)
        else:
            audio, phones = _run_synthesizer(planned, tmp_dir, timeout, source)
        duration = len(audio) / SAMPLE_RATE
        if phones is not None:
            write_textgrid(grid, phones, xmax=duration)
        save_audio(flac, audio, SAMPLE_RATE)
        return SynthResult(planned, Utterance(planned.id, speaker.id, flac, planned.text, phones, duration), kept=False)
    except (InputError, OSError, subprocess.SubprocessError) as exc:
        return SynthResult(planned, None, kept=False, error=f"utt {planned.id} ({speaker.id}): {exc}")


def _settings_digest(sentences: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()[:16]


def _check_settings(path: Path, settings: dict) -> None:
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8")).get("settings")
    except (OSError, json.JSONDecodeError):
        return
    if previous is not None and previous != settings:
        changed = sorted(k for k in set(settings) | set(previous) if settings.get(k) != previous.get(k))
        raise InputError(
            f"{path.parent}: was synthesized with other settings ({', '.join(changed)} "
            "differ); rerun with the same settings to resume, or use a new --out"
        )


def _require(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        raise InputError(f"{binary} not found: install it (apt-get install {package}) or choose other --voices")


def synthesize_corpus(
    out: str | os.PathLike,
    n_utterances: int = 200,
    voices: Sequence[str] | None = None,
    seed: int = 0,
    workers: int = 2,
    text_file: str | os.PathLike | None = None,
    test_text_fraction: float = 0.1,
    test_speaker_fraction: float = 0.1,
    held_out_speakers: Sequence[str] | None = None,
    progress: bool = False,
) -> dict:
    """Synthesize a corpus into ``out`` (layout in the module docstring); returns the summary.

    Summary keys: ``out``, ``utterances`` (in the corpus), ``synthesized``, ``kept``,
    ``failed``, ``total_seconds`` (audio), ``synthesized_seconds``, ``wall_seconds``,
    ``speed_x_realtime`` (synthesized audio seconds per wall second, ``None`` when
    nothing was synthesized), ``workers``, ``speakers``, ``splits``
    (``{name: {path, manifest, utterances, seconds, speakers}}``), ``settings_path``,
    ``failures`` (first few reasons). ``InputError`` for bad settings or when
    every utterance fails.
    """
    start = time.perf_counter()
    out = Path(out)
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    speakers = select_speakers(voices)
    if any(s.engine == "flite" for s in speakers):
        _require("flite", "flite")
    if any(s.engine == "espeak" for s in speakers):
        require_espeak_library()
    festival_voices = sorted({s.voice for s in speakers if s.engine == "festival"})
    if festival_voices:
        _require("festival", "festival " + " ".join(FESTIVAL_PACKAGES[v] for v in festival_voices))
        missing = [v for v in festival_voices if not festival_voice_installed(v)]
        if missing:
            raise InputError(
                f"festival voice(s) {', '.join(missing)} not installed: apt-get install "
                f"{' '.join(FESTIVAL_PACKAGES[v] for v in missing)}, or choose other --voices"
            )
    sentences = read_text_sentences(text_file) if text_file is not None else fortune_sentences()
    plan, info = plan_corpus(
        sentences, speakers, n_utterances, seed, test_text_fraction, test_speaker_fraction, held_out_speakers
    )
    flat = test_text_fraction == 0 and test_speaker_fraction == 0
    settings = {
        "utterances": n_utterances,
        "seed": seed,
        "speakers": [s.id for s in speakers],
        "text": "file" if text_file is not None else "fortunes",
        "text_digest": _settings_digest(sentences),
        "test_text_fraction": test_text_fraction,
        "test_speaker_fraction": test_speaker_fraction,
        "held_out_speakers": info["held_out_speakers"],
        "sample_rate": SAMPLE_RATE,
        "layout": "flat" if flat else "splits",
    }
    settings_path = out / "synth.json"
    _check_settings(settings_path, settings)
    out.mkdir(parents=True, exist_ok=True)
    save_json(settings_path, {"settings": settings, "complete": False})

    results: list[SynthResult] = []
    with tempfile.TemporaryDirectory(prefix="asr-synth-") as tmp_dir, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(synthesize_utterance, p, out / p.relative_dir(flat), tmp_dir) for p in plan]
        with tqdm(total=len(futures), desc="synthesizing", unit="utt", disable=not progress) as bar:
            try:
                for future in as_completed(futures):
                    results.append(future.result())
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    results.sort(key=lambda r: r.planned.index)
    done = [r for r in results if r.utterance is not None]
    failures = [r.error for r in results if r.error is not None]
    if not done:
        raise InputError(f"every utterance failed to synthesize; first: {failures[0] if failures else '?'}")

    splits: dict[str, dict] = {}
    for split in SPLITS:
        members = [r for r in done if r.planned.split == split]
        if not members:
            continue
        root = out if flat else out / split
        chapters: dict[Path, list[SynthResult]] = {}
        for r in members:
            chapters.setdefault(out / r.planned.relative_dir(flat), []).append(r)
        for chapter_dir, items in chapters.items():
            speaker_id = items[0].planned.speaker.id
            lines = "".join(
                f"{r.planned.id} {r.planned.text.upper()}\n" for r in sorted(items, key=lambda r: r.planned.id)
            )
            write_text_atomic(chapter_dir / f"{speaker_id}-{CHAPTER}.trans.txt", lines)
        utterances = sorted((r.utterance for r in members), key=lambda u: u.id)
        manifest = save_manifest(utterances, root / "manifest.jsonl")
        splits[split] = {
            "path": str(root),
            "manifest": str(manifest),
            "utterances": len(members),
            "seconds": round(sum(u.duration for u in utterances), 3),
            "speakers": len({u.speaker for u in utterances}),
        }
    wall = time.perf_counter() - start
    new = [r.utterance for r in done if not r.kept]
    new_seconds = sum(u.duration for u in new)
    summary = {
        "out": str(out),
        "utterances": len(done),
        "synthesized": len(new),
        "kept": len(done) - len(new),
        "failed": len(failures),
        "total_seconds": round(sum(r.utterance.duration for r in done), 3),
        "synthesized_seconds": round(new_seconds, 3),
        "wall_seconds": round(wall, 3),
        "speed_x_realtime": round(new_seconds / wall, 2) if new else None,
        "workers": workers,
        "speakers": len(speakers),
        "splits": splits,
        "settings_path": str(settings_path),
        "failures": failures[:5],
    }
    save_json(
        settings_path,
        {
            "settings": settings,
            "complete": not failures,
            "summary": summary,
            "speakers": [s.to_dict() for s in speakers],
            **info,
        },
    )
    return summary
