import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asr_introspect.decoding import edit_distance, error_rates, greedy_decode
from asr_introspect.text import Alphabet


def test_edit_distance_known_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance(["a", "b"], ["b"]) == 1


@settings(max_examples=60, deadline=None)
@given(st.text("abc", max_size=8), st.text("abc", max_size=8), st.text("abc", max_size=8))
def test_edit_distance_is_a_metric(a, b, c):
    assert edit_distance(a, b) == edit_distance(b, a)
    assert edit_distance(a, c) <= edit_distance(a, b) + edit_distance(b, c)
    assert (edit_distance(a, b) == 0) == (a == b)


def test_error_rates_are_corpus_level():
    cer, wer = error_rates(["ab cd", "e"], ["ab cx", "e"])
    assert cer == pytest.approx(1 / 6)
    assert wer == pytest.approx(1 / 3)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    alphabet = Alphabet.default()
    a, b = alphabet.encode("a")[0], alphabet.encode("b")[0]
    frames = [a, a, 0, a, b, b, 0, 0, b]
    logits = torch.full((1, len(alphabet), len(frames)), -5.0)
    for t, k in enumerate(frames):
        logits[0, k, t] = 5.0
    assert greedy_decode(logits, torch.tensor([len(frames)]), alphabet) == ["aabb"]
    assert greedy_decode(logits, torch.tensor([4]), alphabet) == ["aa"]
