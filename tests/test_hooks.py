import numpy as np
import pytest
import torch

from asr_introspect.hooks import ActivationRecorder
from asr_introspect.models import build_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    # make BatchNorm non-trivial so padding errors would show
    for module in model.module.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


def test_padded_batch_equals_each_utterance_alone(tiny):
    lengths = torch.tensor([250, 181, 97])
    features = torch.zeros(3, 64, 250)
    singles = []
    for b, n in enumerate(lengths.tolist()):
        x = torch.randn(1, 64, n)
        features[b, :, :n] = x[0]
        with torch.no_grad(), ActivationRecorder(tiny, ["conv3", "conv11"]) as rec:
            logits, _ = rec.run(x)
            singles.append((logits[0], dict(rec.activations)))
    with torch.no_grad(), ActivationRecorder(tiny, ["conv3", "conv11"]) as rec:
        logits, out_lengths = rec.run(features, lengths)
        batch_acts = dict(rec.activations)
    for b, (single_logits, single_acts) in enumerate(singles):
        n_out = int(out_lengths[b])
        torch.testing.assert_close(logits[b, :, :n_out], single_logits, atol=1e-5, rtol=1e-5)
        n3 = int(tiny.layer_length("conv3", lengths[b]))
        torch.testing.assert_close(batch_acts["conv3"][b, :, :n3], single_acts["conv3"][0], atol=1e-5, rtol=1e-5)
        assert torch.all(batch_acts["conv3"][b, :, n3:] == 0)


def test_without_masking_padding_leaks(tiny):
    """The control: a padded batch run without exact padding differs near the end."""
    x = torch.randn(1, 64, 120)
    padded = torch.zeros(2, 64, 300)
    padded[0, :, :120] = x[0]
    padded[1] = torch.randn(64, 300)
    lengths = torch.tensor([120, 300])
    with torch.no_grad():
        alone, _ = tiny.logits(x)
        leaky = tiny.module(padded)
        exact, n = tiny.logits(padded, lengths)
    n0 = int(n[0])
    assert not torch.allclose(leaky[0, :, :n0], alone[0], atol=1e-4)
    torch.testing.assert_close(exact[0, :, :n0], alone[0], atol=1e-5, rtol=1e-5)


def test_hooks_are_removed_and_model_unchanged(tiny):
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    with ActivationRecorder(tiny) as rec:
        rec.run(torch.randn(2, 64, 80), torch.tensor([80, 60]))
        assert set(rec.activations) == set(tiny.layer_names)
    assert all(len(m._forward_hooks) == 0 for m in tiny.module.modules())
    for k, v in tiny.module.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(KeyError, match="conv99"):
        ActivationRecorder(tiny, ["conv99"])


def test_stream_corpus_visits_each_utterance_once_with_masks(tiny, tmp_path):
    """The corpus stream records through ActivationRecorder: each utterance once, padding masked and
    zero, and every utterance's valid activations, logits and features equal to it run alone."""
    from asr_introspect.audio import save_audio
    from asr_introspect.corpus import Utterance
    from asr_introspect.features import featurize_file
    from asr_introspect.stream import stream_corpus

    rng = np.random.default_rng(0)
    utts = []
    for i, seconds in enumerate([0.9, 1.7, 1.2, 0.6, 2.0]):
        path = tmp_path / f"u{i}.wav"
        save_audio(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        utts.append(Utterance(f"u{i}", "s", path, "a b"))
    seen = []
    for batch in stream_corpus(tiny, utts, layers=["conv9"], batch_size=2):
        acts = batch.activations["conv9"]
        mask = batch.mask("conv9")
        assert mask.dtype == bool and mask.shape == acts.shape[::2]
        lengths = batch.layer_lengths("conv9")
        np.testing.assert_array_equal(lengths, batch.lengths["conv9"].numpy())
        np.testing.assert_array_equal(mask.sum(1), lengths)
        assert torch.all(acts[~torch.from_numpy(mask)[:, None, :].expand_as(acts)] == 0)
        # the valid frames of the batch, utterance by utterance: exactly the masked frames
        valid = [batch.valid("conv9", b) for b in range(len(batch))]
        assert [v.shape[1] for v in valid] == lengths.tolist()
        assert sum(v.shape[1] for v in valid) == int(batch.lengths["conv9"].sum())
        # padded frames-major copy: frame b*T + t is utterance b, frame t; made once per layer
        padded = batch.padded_frames("conv9")
        B, C, T = acts.shape
        assert padded.shape == (B * T, C) and padded.dtype == np.float32 and padded.flags.c_contiguous
        np.testing.assert_array_equal(padded.reshape(B, T, C).transpose(0, 2, 1), acts.numpy())
        np.testing.assert_array_equal(padded[mask.reshape(-1)], np.concatenate([v.T.numpy() for v in valid]))
        assert batch.padded_frames("conv9") is padded
        # letter labels live on the same axis: -1 exactly on the padding (every row aligns here)
        assert batch.letter_rows().all()
        assert np.array_equal(batch.letter_labels("conv9") >= 0, mask)
        for b, utt in enumerate(batch.utterances):  # each utterance alone: same features, logits, activations
            features = featurize_file(utt.audio_path, tiny.feature_config)[None]
            np.testing.assert_array_equal(batch.utterance_features(b), features[0].numpy())
            with torch.no_grad(), ActivationRecorder(tiny, ["conv9"]) as rec:
                logits, _ = rec.run(features)
                alone = rec.activations["conv9"][0]
            torch.testing.assert_close(valid[b], alone, atol=1e-5, rtol=1e-5)
            n_out = int(batch.out_lengths[b])
            assert n_out == logits.shape[-1]
            torch.testing.assert_close(batch.logits[b, :, :n_out], logits[0], atol=1e-5, rtol=1e-5)
        seen += [u.id for u in batch.utterances]
    assert sorted(seen) == [u.id for u in utts]
