"""Hugging Face adapters: wav2vec2 / HuBERT / WavLM (*ForCTC) and Whisper's encoder, on tiny random configs.

Nothing downloads: every model is built from a config here, saved with ``save_pretrained`` into a
temporary directory when loading is tested, and read back with ``local_files_only=True``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from asr_introspect.alignment import PhoneTimeline, frame_times  # noqa: E402
from asr_introspect.corpus import load_corpus  # noqa: E402
from asr_introspect.errors import InputError  # noqa: E402
from asr_introspect.features import featurize  # noqa: E402
from asr_introspect.frontends import WaveformConfig, WhisperFeatureConfig  # noqa: E402
from asr_introspect.hooks import ActivationRecorder  # noqa: E402
from asr_introspect.loading import load_model  # noqa: E402
from asr_introspect.models.huggingface import (  # noqa: E402
    ctc_alphabet,
    load_transformers,
    wrap_hf_ctc,
    wrap_whisper_encoder,
)
from asr_introspect.naps import NAPEstimator  # noqa: E402
from asr_introspect.stream import stream_corpus  # noqa: E402
from asr_introspect.text import PHONES  # noqa: E402

VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5, **{chr(65 + i): 6 + i for i in range(26)}}
TINY = dict(
    vocab_size=len(VOCAB),
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    conv_dim=(8, 8, 8),
    conv_stride=(5, 4, 4),
    conv_kernel=(10, 4, 4),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2,
    pad_token_id=0,
)
FAMILIES = {
    "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2ForCTC, {"do_stable_layer_norm": True}),
    "hubert": (transformers.HubertConfig, transformers.HubertForCTC, {}),
    "wavlm": (transformers.WavLMConfig, transformers.WavLMForCTC, {"num_buckets": 16, "max_bucket_distance": 40}),
}


def tiny_ctc(family: str = "wav2vec2", norm: str = "layer", seed: int = 0):
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(seed)
    return model_cls(config_cls(**TINY, feat_extract_norm=norm, **extra))


def tiny_whisper_encoder(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(
        num_mel_bins=16,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=24,
        max_source_positions=100,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=8,
        vocab_size=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
    )
    return transformers.WhisperModel(config)


def waves(seed: int = 0, lengths=(4800, 3100, 2600)):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def record(model, batch_waves):
    features, lengths = featurize(batch_waves, model.feature_config)
    with torch.no_grad(), ActivationRecorder(model) as recorder:
        logits, out_lengths = recorder.run(features, lengths)
        return logits, out_lengths, dict(recorder.activations)


# ---------------------------------------------------------------------------
# vocabularies


def test_ctc_alphabet_maps_tokens_onto_letters_and_round_trips():
    alphabet = ctc_alphabet(VOCAB, blank=0)
    assert len(alphabet) == len(VOCAB) and alphabet.blank == 0
    assert alphabet.symbols[4] == " " and alphabet.symbols[6] == "a" and alphabet.symbols[5] == "'"
    ids = alphabet.encode("it's a test")
    assert alphabet.decode(ids) == "it's a test"
    # the special tokens exist as symbols but are never written
    assert alphabet.decode([1, 6, 2, 3]) == "a"
    lower = {k.lower() if len(k) == 1 else k: v for k, v in VOCAB.items()}
    assert ctc_alphabet(lower, blank=0).symbols == alphabet.symbols


@pytest.mark.parametrize(
    ("vocab", "match"),
    [
        ({"<pad>": 0, "AH": 1, "EH": 2, "|": 3}, "no letters"),
        ({"<pad>": 0, "A": 1, "a": 2}, "several tokens"),
        ({"<pad>": 0, "a": 2}, "0..1"),
    ],
)
def test_ctc_alphabet_refuses_vocabularies_without_letters(vocab, match):
    with pytest.raises(InputError, match=match):
        ctc_alphabet(vocab, blank=0)


# ---------------------------------------------------------------------------
# front ends equal the Hugging Face feature extractors


def test_front_ends_equal_the_hf_feature_extractors():
    x = waves(1, (24001,))[0]
    ours, _ = WaveformConfig().compute(torch.from_numpy(x)[None])
    ref = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)(x, sampling_rate=16000, return_tensors="np")
    np.testing.assert_allclose(ours[0, 0].numpy(), ref.input_values[0], atol=1e-5)

    whisper = WhisperFeatureConfig()
    mel, lengths = whisper.compute(torch.from_numpy(x)[None])
    ref = transformers.WhisperFeatureExtractor(feature_size=80)(x, sampling_rate=16000, return_tensors="np")
    n = int(lengths[0])
    assert n == whisper.frames(len(x)) and whisper.frames(whisper.samples_for(n)) == n
    window = np.concatenate([mel[0].numpy(), np.full((80, 3000 - n), mel.max().item() - 2.0)], axis=1)
    np.testing.assert_allclose(window, ref.input_features[0], atol=1e-5)


# ---------------------------------------------------------------------------
# the CTC adapters


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ctc_adapter_layers_frame_map_and_logits(family):
    hf = tiny_ctc(family)
    model = wrap_hf_ctc(hf, VOCAB)
    assert model.layer_names[:4] == ["cnn1", "cnn2", "cnn3", "projection"]
    assert model.layer_names[4:7] == ["block1.attn", "block1.mlp", "block1"] and model.output_layer == "logits"
    assert not model.frame_map.is_global("projection") and model.frame_map.is_global("block1.attn")
    x = waves(2, (4000,))
    logits, out_lengths, acts = record(model, x)
    with torch.no_grad():
        ref = hf(WaveformConfig().compute(torch.from_numpy(x[0])[None])[0][:, 0]).logits
    torch.testing.assert_close(logits, ref.transpose(1, 2))
    for name, act in acts.items():
        assert act.shape[-1] == model.layer_length(name, 4000), name
    assert acts["block1"].shape[1] == 16 and acts["cnn1"].shape[1] == 8


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_padded_batch_equals_each_utterance_alone(family):
    model = wrap_hf_ctc(tiny_ctc(family), VOCAB)
    batch = waves(3)
    _, out_lengths, acts = record(model, batch)
    for b, wave in enumerate(batch):
        _, alone_lengths, alone = record(model, [wave])
        assert int(out_lengths[b]) == int(alone_lengths[0])
        for name in model.layer_names:
            n = alone[name].shape[-1]
            torch.testing.assert_close(acts[name][b, :, :n], alone[name][0], atol=2e-5, rtol=1e-4)
            assert not acts[name][b, :, n:].any(), f"{name}: padded frames must be zero"


def test_group_norm_feature_encoders_are_streamed_one_utterance_at_a_time(tiny_corpus):
    model = wrap_hf_ctc(tiny_ctc("wav2vec2", norm="group"), VOCAB)
    assert not model.exact_batch
    utterances = load_corpus(tiny_corpus.root)
    sizes = [len(batch) for batch in stream_corpus(model, utterances, ["block1"], batch_size=8)]
    assert sizes == [1] * len(utterances)


def test_frame_map_matches_autograd_support():
    model = wrap_hf_ctc(tiny_ctc("wav2vec2"), VOCAB)
    n = 3000
    x = torch.zeros(1, 1, n, requires_grad=True)
    with ActivationRecorder(model, detach=False) as recorder:
        recorder.run(x + torch.randn(1, 1, n) * 0.1)
        acts = dict(recorder.activations)
    for name, t in (("cnn3", 5), ("projection", 7), ("block1", 0), ("logits", 3)):
        (grad,) = torch.autograd.grad(acts[name][0, :, t].sum(), x, retain_graph=True)
        support = np.flatnonzero(grad[0, 0].abs().numpy() > 0)
        lo, hi = model.frame_map.input_range(name, t, n)
        if model.frame_map.is_global(name):
            assert (lo, hi) == (0, n) and support[0] < 100 and support[-1] > n - 100
        else:
            assert lo <= support[0] and support[-1] < hi, name


# ---------------------------------------------------------------------------
# Whisper's encoder


def test_whisper_encoder_runs_its_window_and_batches_exactly():
    whisper = tiny_whisper_encoder()
    model = wrap_whisper_encoder(whisper.get_encoder())
    assert not model.has_ctc_head and model.output_layer == "final_norm"
    assert model.feature_config.window_frames == 200
    batch = waves(4, (16000, 9000))
    _, _, acts = record(model, batch)
    for b, wave in enumerate(batch):
        _, _, alone = record(model, [wave])
        for name in model.layer_names:
            n = alone[name].shape[-1]
            assert n == model.layer_length(name, model.feature_config.frames(len(wave)))
            torch.testing.assert_close(acts[name][b, :, :n], alone[name][0], atol=2e-5, rtol=1e-4)
    # the encoder sees the whole window: the adapter's output equals Whisper run on the padded features
    features, _ = featurize([batch[1]], model.feature_config)
    T = features.shape[-1]
    padded = torch.full((1, 16, 200), features.max().item() - 2.0)
    padded[..., :T] = features
    with torch.no_grad():
        ref = whisper.get_encoder()(padded).last_hidden_state[:, : (T + 1) // 2].transpose(1, 2)
    torch.testing.assert_close(alone["final_norm"], ref, atol=2e-5, rtol=1e-4)
    with pytest.raises(InputError, match="at most 200 frames"):
        model.logits(torch.zeros(1, 16, 201))


def test_ctc_analyses_refuse_an_encoder_without_ctc_head(tiny_corpus):
    model = wrap_whisper_encoder(tiny_whisper_encoder().get_encoder())
    with pytest.raises(InputError, match="without a CTC head"):
        NAPEstimator("letter", ["block1"]).fit(model, load_corpus(tiny_corpus.root))


# ---------------------------------------------------------------------------
# NAPs on a transformer equal a NumPy reference


def test_phoneme_naps_on_a_transformer_equal_a_numpy_reference(tiny_corpus):
    model = wrap_hf_ctc(tiny_ctc("hubert"), VOCAB)
    utterances = load_corpus(tiny_corpus.root)
    layers = ["cnn2", "block1", "block2.mlp"]
    naps = NAPEstimator("phoneme", layers, batch_size=4).fit(model, utterances).result()
    from asr_introspect.audio import load_audio

    for layer in layers:
        sums = np.zeros((len(naps.groups), naps.means(layer).shape[1]))
        counts = np.zeros(len(naps.groups))
        index = {g: i for i, g in enumerate(naps.groups)}
        for utt in utterances:
            if not utt.phones:
                continue
            _, _, acts = record(model, [load_audio(utt.audio_path, sample_rate=16000)])
            a = acts[layer][0].T.numpy().astype(np.float64)
            times = frame_times(model.frame_map, layer, len(a), model.feature_config)
            labels = PhoneTimeline.from_segments(utt.phones).labels(times)
            for t, label in enumerate(labels):
                if label >= 0 and PHONES[label] in index:
                    sums[index[PHONES[label]]] += a[t]
                    counts[index[PHONES[label]]] += 1
        np.testing.assert_array_equal(naps.counts(layer), counts)
        seen = counts > 0
        np.testing.assert_allclose(naps.means(layer)[seen], sums[seen] / counts[seen, None], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# loading from a directory, from module:function, and the errors


def _save_ctc(directory, family="wav2vec2"):
    hf = tiny_ctc(family)
    hf.save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps(VOCAB))
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(directory)
    return hf


def test_load_a_save_pretrained_directory_offline(tmp_path):
    hf = _save_ctc(tmp_path / "w2v")
    model, path = load_model(tmp_path / "w2v")
    assert model.model_config["model_type"] == "wav2vec2" and path == tmp_path / "w2v"
    x = torch.randn(1, 1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(model.logits(x)[0], hf.eval()(x[:, 0]).logits.transpose(1, 2))
    whisper = tiny_whisper_encoder()
    whisper.save_pretrained(tmp_path / "whisper")
    encoder, _ = load_model(tmp_path / "whisper")
    assert encoder.model_config["architecture"] == "transformers.whisper-encoder"
    assert encoder.feature_config.n_mels == 16


def test_load_a_model_from_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from asr_introspect.models import build_model\n"
        "def tiny():\n    return build_model('tiny')\n"
        "def wrong():\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model, _ = load_model("my_models:tiny")
    assert model.layer_names[0] == "conv1"
    with pytest.raises(InputError, match="not an ASRModel"):
        load_model("my_models:wrong")
    with pytest.raises(InputError, match="has no function"):
        load_model("my_models:absent")


def test_bad_directories_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_transformers(tmp_path / "empty")
    _save_ctc(tmp_path / "noweights")
    for weights in (tmp_path / "noweights").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(InputError, match="cannot load the weights locally"):
        load_transformers(tmp_path / "noweights")
    _save_ctc(tmp_path / "novocab")
    (tmp_path / "novocab" / "vocab.json").unlink()
    with pytest.raises(InputError, match="no vocab.json"):
        load_transformers(tmp_path / "novocab")
    tiny_ctc().base_model.save_pretrained(tmp_path / "nohead")
    with pytest.raises(InputError, match="without a CTC head"):
        load_transformers(tmp_path / "nohead")


def test_cli_runs_on_a_transformers_directory(tmp_path, tiny_corpus, capsys):
    from asr_introspect.cli import main

    _save_ctc(tmp_path / "w2v")
    code = main(["eval", "--model", str(tmp_path / "w2v"), "--data", str(tiny_corpus.root), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] >= 3 and 0 <= summary["cer"]
    assert main(["eval", "--model", str(tmp_path), "--data", str(tiny_corpus.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no config.json" in err[0]


# ---------------------------------------------------------------------------
# spectrogram methods: Whisper's log-mel takes them, raw waveforms refuse them


def test_feature_visualization_and_patterns_on_whisper(tiny_corpus):
    from asr_introspect.featvis import render
    from asr_introspect.patterns import PatternAverager

    model = wrap_whisper_encoder(tiny_whisper_encoder().get_encoder())
    result = render(model, "block2:3", steps=6, width=40)
    assert result.features.shape[-2:] == (16, 40) and np.isfinite(result.trace).all()
    patterns = PatternAverager("phoneme", window=8).fit(model, load_corpus(tiny_corpus.root)).result()
    assert patterns.sums.shape[-2:] == (16, 8) and patterns.counts.sum() > 0


def test_waveform_models_refuse_spectrogram_methods(tmp_path, tiny_corpus, capsys):
    from asr_introspect.cli import main
    from asr_introspect.patterns import PatternAverager

    model = wrap_hf_ctc(tiny_ctc(), VOCAB)
    with pytest.raises(InputError, match="raw waveform"):
        PatternAverager("letter").fit(model, load_corpus(tiny_corpus.root))
    _save_ctc(tmp_path / "w2v")
    out = tmp_path / "v"
    code = main(["visualize", "--model", str(tmp_path / "w2v"), "--objective", "block1:0", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "raw waveform" in err[-1] and not out.exists()


def test_letter_naps_of_an_encoder_come_from_an_aligner_by_time(tiny_corpus):
    from asr_introspect.models import build_model

    model = wrap_whisper_encoder(tiny_whisper_encoder().get_encoder())
    utterances = [u for u in load_corpus(tiny_corpus.root) if u.duration is None or u.duration < 1.9]
    aligner = build_model("tiny").eval()
    model.aligner = aligner
    naps = NAPEstimator("letter", ["block1"], batch_size=2).fit(model, utterances).result()
    assert naps.groups[:26] == list("abcdefghijklmnopqrstuvwxyz") and naps.counts("block1").sum() > 0
    # the labels are the aligner's forced path, carried over by time
    batch = next(stream_corpus(model, utterances[:1], ["block1"]))
    labels = batch.letter_labels("block1")[0]
    aligner_batch = next(stream_corpus(aligner, utterances[:1], []))
    path = aligner_batch.letter_labels(aligner.output_layer)[0]
    n = int(batch.lengths["block1"][0])
    seconds = frame_times(model.frame_map, "block1", n, model.feature_config)
    nearest = aligner.frame_map.layer_frame_of_input(
        aligner.output_layer, seconds / aligner.feature_config.frame_seconds
    )
    np.testing.assert_array_equal(labels[:n], path[np.minimum(nearest, len(path) - 1)])
