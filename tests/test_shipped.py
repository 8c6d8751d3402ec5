"""The shipped default model and evaluation corpus: present, within budget, and as good as stated."""

from __future__ import annotations

from collections import Counter

import pytest

from asr_introspect.corpus import load_corpus
from asr_introspect.corpus.synth import FAMILIES, speaker_family
from asr_introspect.defaults import DEFAULT_CORPUS, DEFAULT_MODEL, shipped_models
from asr_introspect.errors import InputError
from asr_introspect.loading import load_model
from asr_introspect.models import load_checkpoint, read_checkpoint_info


def test_shipped_files_exist_within_budget():
    assert DEFAULT_MODEL.is_file(), "the default model must ship inside the package"
    assert DEFAULT_MODEL.stat().st_size <= 15e6
    corpus_bytes = sum(p.stat().st_size for p in DEFAULT_CORPUS.rglob("*") if p.is_file())
    assert corpus_bytes <= 13e6  # 9.5 MB of flite, then about 0.9 MB per family added (#17)


def test_shipped_corpus_has_phone_segments_and_held_out_text():
    utterances = load_corpus(DEFAULT_CORPUS)
    assert len(utterances) >= 150
    assert all(u.phones for u in utterances)
    assert all(str(u.audio_path).endswith(".flac") for u in utterances)
    card = read_checkpoint_info(DEFAULT_MODEL)["metadata"]["model_card"]
    assert card["evaluation"]["shipped evaluation corpus"]["utterances"] == len(utterances)


def test_shipped_corpus_speaks_every_voice_family():
    """It grew by whole families (#17): the first 160 flite utterances, then each family's own."""
    families = Counter(speaker_family(u.speaker) for u in load_corpus(DEFAULT_CORPUS))
    assert set(families) == set(FAMILIES)
    assert families["flite"] == 160 and all(families[f] >= 16 for f in FAMILIES)


def corpus_as_measured(card: dict) -> list:
    """The shipped corpus as a model's card measured it.

    The corpus grows by whole voice families and never loses an utterance: it
    began as 160 flite utterances, so a card that counted fewer utterances than
    the corpus has now measured its flite part.
    """
    utterances = load_corpus(DEFAULT_CORPUS)
    stated = card["evaluation"]["shipped evaluation corpus"]["utterances"]
    if stated < len(utterances):
        utterances = [u for u in utterances if speaker_family(u.speaker) == "flite"]
    assert len(utterances) == stated, "the card's corpus is not the shipped corpus or its flite part"
    return utterances


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_model_reaches_its_stated_error_rate(name):
    from asr_introspect.training import evaluate

    model, metadata = load_checkpoint(shipped_models()[name])
    stated = metadata["metrics"]
    result = evaluate(model, corpus_as_measured(metadata["model_card"]), batch_size=32)
    # measured at packaging time on the weights as stored, on the same corpus: equal up to
    # batching and thread-count rounding
    assert result["cer"] == pytest.approx(stated["cer"], abs=0.005)
    assert result["wer"] == pytest.approx(stated["wer"], abs=0.01)
    assert result["cer"] < 0.6, "a trained model, far from the all-blank plateau"


def test_shipped_models_load_by_name_and_an_unknown_name_lists_them(tmp_path, monkeypatch):
    assert "default_model" in shipped_models()
    model, path = load_model("default_model")
    assert path == DEFAULT_MODEL and model.layer_names[-1] == "conv11"
    monkeypatch.chdir(tmp_path)  # a file of that name in the working directory wins over the shipped one
    with pytest.raises(InputError, match="no-such-model: no such checkpoint.*shipped: .*default_model"):
        load_model("no-such-model")


def test_every_shipped_model_has_its_own_card_which_the_demo_reads():
    """default_model -> MODEL_CARD.md, NAME -> NAME.md (the demo once showed the default card for every model)."""
    from asr_introspect.defaults import model_card_path

    for name, path in shipped_models().items():
        card = model_card_path(path)
        assert card.is_file(), f"{name}: no model card at {card}"
        assert card.read_text().startswith("# Model card: ")
        if name != "default_model":
            assert f"`{name}`" in card.read_text().splitlines()[0]
    assert model_card_path("runs/x/best.safetensors").name == "best.md"
