"""SNAPs: saliency curves against autograd per occurrence, the estimator against a slow per-utterance
reference, a planted response lag undone by saliency-peak alignment, merging and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from planted import tiny_model_with_batchnorm

from asr_introspect.alignment import forced_align
from asr_introspect.corpus.utterance import PhoneSegment, Utterance
from asr_introspect.errors import InputError
from asr_introspect.hooks import ActivationRecorder
from asr_introspect.naps import NAPEstimator, SNAPEstimator, letter_groups, phoneme_groups, saliency_curves
from asr_introspect.naps.snap import letter_occurrences
from asr_introspect.stream import StreamBatch, stream_corpus
from asr_introspect.text import PHONE_TO_INDEX

LAYERS = ["conv1", "conv6", "conv11"]


@pytest.fixture(scope="module")
def tiny(one_thread):
    return tiny_model_with_batchnorm()


@pytest.fixture(scope="module")
def utts(tiny_corpus):
    from asr_introspect.corpus import load_corpus

    return load_corpus(tiny_corpus.root)


def _features_alone(model, utt) -> torch.Tensor:
    from asr_introspect.audio import load_audio
    from asr_introspect.features import compute_features

    audio = load_audio(utt.audio_path, sample_rate=model.feature_config.sample_rate)
    return compute_features(audio, model.feature_config)[None]


def _autograd_curve(model, x: torch.Tensor, frames, targets) -> np.ndarray:
    """|d sum_i logit[targets_i, frames_i] / d x| summed over features: one forward and backward pass."""
    xi = x.detach().clone()[None].requires_grad_(True)
    logits = model.logits(xi)[0][0]
    objective = sum(logits[int(c), int(f)] for f, c in zip(frames, targets))
    (grad,) = torch.autograd.grad(objective, xi)
    return grad[0].abs().sum(dim=0).double().numpy()


def _nearest(centres: np.ndarray, value: float) -> int:
    """Index of the centre nearest ``value``, ties to the later one (brute force)."""
    d = np.abs(np.asarray(centres, dtype=np.float64) - value)
    return int(np.flatnonzero(d == d.min())[-1])


# ---------------------------------------------------------------------------
# saliency


@pytest.mark.parametrize("arch, engine", [("tiny", "auto"), ("tiny", None), ("quartznet-tiny", "auto")])
def test_saliency_curves_equal_autograd_per_occurrence(tiny, arch, engine):
    """The crop engine (tiny, auto) and the dense engine (tiny forced, QuartzNet's residual blocks)."""
    if arch == "tiny":
        model = tiny
    else:
        from asr_introspect.models import build_quartznet

        torch.manual_seed(1)
        model = build_quartznet("quartznet-tiny").eval()
    T = 300
    x = torch.randn(model.n_features, T, generator=torch.Generator().manual_seed(2))
    n_out = int(model.output_lengths(T))
    rng = np.random.default_rng(3)
    starts = [0, 5, 20, 60, 61, 100, n_out - 3]
    frames = [np.arange(s, min(s + w, n_out)) for s, w in zip(starts, [2, 1, 4, 1, 3, 7, 3])]
    targets = [rng.integers(0, model.n_classes, len(f)) for f in frames]
    curves = saliency_curves(model, x, frames, targets, stack=engine)
    assert curves.shape == (len(frames), T)
    with torch.enable_grad():
        reference = np.stack([_autograd_curve(model, x, f, t) for f, t in zip(frames, targets)])
    np.testing.assert_allclose(curves, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())
    assert (curves.argmax(axis=1) == reference.argmax(axis=1)).all()


def test_letter_occurrences_are_emissions():
    blank = 0
    path = np.array([0, 3, 3, 0, 3, 0, 0, 5, 4, 4, 0])
    np.testing.assert_array_equal(letter_occurrences(path, blank, "spike"), [-1, 0, 0, -1, 1, -1, -1, 2, 3, 3, -1])
    np.testing.assert_array_equal(letter_occurrences(path, blank, "span"), [-1, 0, 0, 0, 1, 1, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(letter_occurrences(path, blank, "spike", -1), [0, 0, -1, 1, -1, -1, 2, 3, 3, -1, -1])


# ---------------------------------------------------------------------------
# the estimator against a slow reference


def _reference_snaps(model, utts, by, layers, letter_mode="spike", shift=0):
    """SNAPs one utterance at a time, one autograd pass per occurrence, brute-force frame mapping.

    Returns {layer: (means (G, N), counts (G,), rest count)}.
    """
    fm, alphabet, out = model.frame_map, model.alphabet, model.output_layer
    blank = alphabet.blank
    groups = letter_groups(alphabet) if by == "letter" else phoneme_groups()
    index = {g: i for i, g in enumerate(groups)}
    G = len(groups)
    frames_of = {layer: [[] for _ in range(G + 1)] for layer in layers}
    for utt in utts:
        if by == "phoneme" and not utt.phones:
            continue
        feats = _features_alone(model, utt)
        with torch.no_grad(), ActivationRecorder(model, layers) as rec:
            logits, _ = rec.run(feats)
            acts = {layer: rec.activations[layer][0].T.numpy() for layer in layers}  # (T_l, C)
        logits = logits[0]
        n_out = logits.shape[1]
        out_centres = fm.center(out, np.arange(n_out))
        occurrences = []  # (group, output frames, classes)
        layer_occ = {}
        if by == "letter":
            path = forced_align(torch.log_softmax(logits.double(), 0).T.contiguous(), alphabet.encode(utt.text), blank)
            occ, k, prev, emitted = np.full(n_out, -1), -1, blank, []
            for t, tok in enumerate(path):
                if tok != blank and tok != prev:
                    k += 1
                    emitted.append(alphabet.symbols[tok])
                if k >= 0 and (tok != blank or letter_mode == "span"):
                    occ[t] = k
                prev = tok
            occ = np.array([occ[t - shift] if 0 <= t - shift < n_out else -1 for t in range(n_out)])
            for k, letter in enumerate(emitted):
                f = np.flatnonzero(occ == k)
                occurrences.append((index.get(letter, G), f, np.full(len(f), alphabet.index(letter))))
            for layer in layers:
                centres = fm.center(layer, np.arange(acts[layer].shape[0]))
                layer_occ[layer] = np.array([occ[_nearest(out_centres, c)] for c in centres])
        else:
            sec = model.feature_config.frame_seconds
            masked = logits.clone()
            masked[blank] = -torch.inf
            best = masked.argmax(0).numpy()
            for seg in utt.phones:
                f = np.flatnonzero((out_centres * sec >= seg.start) & (out_centres * sec < seg.end))
                if not f.size:
                    f = np.array([_nearest(out_centres, 0.5 * (seg.start + seg.end) / sec)])
                occurrences.append((index.get(seg.phone, G), f, best[f]))
            for layer in layers:
                t = fm.center(layer, np.arange(acts[layer].shape[0])) * sec
                layer_occ[layer] = np.array(
                    [next((k for k, s in enumerate(utt.phones) if s.start <= x < s.end), -1) for x in t]
                )
        peaks = {}
        for k, (g, f, c) in enumerate(occurrences):
            if g < G and len(f):
                with torch.enable_grad():
                    peaks[k] = int(np.argmax(_autograd_curve(model, feats[0], f, c)))
        for layer in layers:
            a, occ = acts[layer], layer_occ[layer]
            centres = fm.center(layer, np.arange(len(a)))
            for j in range(len(a)):
                if occ[j] < 0 or occurrences[occ[j]][0] == G:
                    frames_of[layer][G].append(a[j])
            for k, (g, _, _) in enumerate(occurrences):
                J = np.flatnonzero(occ == k)
                if g == G or not J.size:
                    continue
                moved = J + _nearest(centres, peaks[k]) - (J.min() + J.max()) // 2
                frames_of[layer][g].extend(a[m] for m in moved if 0 <= m < len(a))
    result = {}
    for layer in layers:
        n = acts[layer].shape[1]
        lists = frames_of[layer]
        means = np.array([np.mean(v, axis=0) if v else np.full(n, np.nan) for v in lists[:G]])
        result[layer] = (means, np.array([len(v) for v in lists[:G]]), len(lists[G]))
    return result


@pytest.mark.parametrize(
    "by, letter_mode, shift", [("letter", "spike", 0), ("letter", "span", -1), ("phoneme", "spike", 0)]
)
def test_snaps_equal_the_slow_per_occurrence_reference(tiny, utts, by, letter_mode, shift):
    estimator = SNAPEstimator(by, LAYERS, letter_mode=letter_mode, shift=shift, batch_size=3)
    snaps = estimator.fit(tiny, utts).result()
    reference = _reference_snaps(tiny, utts, by, LAYERS, letter_mode, shift)
    assert snaps.settings["align"] == "saliency-peak" and snaps.settings["occurrences"] > 0
    for layer in LAYERS:
        means, counts, rest = reference[layer]
        np.testing.assert_array_equal(snaps.counts(layer), counts, err_msg=layer)
        assert snaps.stats[layer].counts[-1] == rest
        np.testing.assert_allclose(snaps.means(layer), means, rtol=1e-4, atol=1e-5, err_msg=layer)
    # the alignment moved something: SNAPs differ from the label-aligned NAPs of the same frames
    naps = NAPEstimator(by, LAYERS, letter_mode=letter_mode, shift=shift, batch_size=3).fit(tiny, utts).result()
    kept = snaps.kept("conv1") & naps.kept("conv1")
    assert not np.allclose(snaps.means("conv1")[kept], naps.means("conv1")[kept])


def test_merged_halves_equal_one_fit(tiny, utts):
    whole = SNAPEstimator("letter", ["conv3"], batch_size=2).fit(tiny, utts)
    first = SNAPEstimator("letter", ["conv3"], batch_size=2).fit(tiny, utts[:4])
    second = SNAPEstimator("letter", ["conv3"], batch_size=2).fit(tiny, utts[4:])
    merged = first.merge(second).result()
    expected = whole.result()
    np.testing.assert_array_equal(merged.counts("conv3"), expected.counts("conv3"))
    np.testing.assert_allclose(merged.means("conv3"), expected.means("conv3"), rtol=1e-5, atol=1e-6)
    assert merged.settings["occurrences"] == expected.settings["occurrences"]
    assert merged.settings["peak_offset"]["mean_input_frames"] == pytest.approx(
        expected.settings["peak_offset"]["mean_input_frames"]
    )


# ---------------------------------------------------------------------------
# a planted lag


LAG, SPACING, F = 3, 6, 8
LETTERS = "abcde"


def _lagged_model():
    """conv1: ReLU of the features (identity 1x1); conv2 (output): letter c's logit at frame t is
    ``4 * x[bin(c), t - LAG]``, blank's is 2: every letter is predicted LAG frames after its sound."""
    from asr_introspect.features import FeatureConfig
    from asr_introspect.models.asr_model import ASRModel
    from asr_introspect.models.wav2letter import LayerSpec, Wav2Letter, Wav2LetterConfig
    from asr_introspect.text import Alphabet

    alphabet = Alphabet.default()
    C = len(alphabet)
    config = Wav2LetterConfig(F, [LayerSpec(F, 1), LayerSpec(C, 2 * LAG + 1, activation="none")], C)
    module = Wav2Letter(config).eval()
    with torch.no_grad():
        conv1, conv2 = module.blocks["conv1"].conv, module.blocks["conv2"].conv
        conv1.weight.copy_(torch.eye(F)[:, :, None])
        conv1.bias.zero_()
        conv2.weight.zero_()
        conv2.bias.zero_()
        conv2.bias[alphabet.blank] = 2.0
        for i, letter in enumerate(LETTERS):
            conv2.weight[alphabet.index(letter), i, 0] = 4.0  # tap 0 of a centred kernel: frame t - LAG
    fc = dataclasses.replace(FeatureConfig.paper(), n_mels=F)
    return ASRModel.from_wav2letter(module, alphabet, fc)


def _lagged_batch(model, n_utts=4, n_sounds=12, seed=0) -> StreamBatch:
    """Utterances of one-frame letter sounds (feature bin = letter, amplitude 1) every SPACING frames,
    over a noise floor of 0..0.2; returns a hand-made stream batch (letters from the greedy path)."""
    rng = np.random.default_rng(seed)
    T = SPACING * (n_sounds + 1)
    x = rng.uniform(0.0, 0.2, (n_utts, F, T)).astype(np.float32)
    utterances = []
    for b in range(n_utts):
        letters = rng.integers(0, len(LETTERS), n_sounds)
        for i, c in enumerate(letters):
            x[b, c, SPACING // 2 + SPACING * i] = 1.0
        text = "".join(LETTERS[c] for c in letters)
        utterances.append(Utterance(f"lag-{b}", "spk", f"lag-{b}.flac", text))
    features, lengths = torch.from_numpy(x), torch.full((n_utts,), T)
    with torch.no_grad(), ActivationRecorder(model, ["conv1", "conv2"]) as rec:
        logits, out_lengths = rec.run(features, lengths)
        acts = dict(rec.activations)
    layer_lengths = {n: torch.as_tensor(model.layer_length(n, lengths)) for n in acts}
    return StreamBatch(model, utterances, features, lengths, logits, out_lengths, acts, layer_lengths)


def test_saliency_peak_alignment_undoes_a_planted_lag():
    model = _lagged_model()
    batch = _lagged_batch(model)
    paths = batch.output_paths("predicted")
    assert all((p != model.alphabet.blank).sum() == 12 for p in paths)  # every sound predicted once
    groups = list(LETTERS)
    label = NAPEstimator("letter", ["conv1"], groups=groups, source="predicted").partial_fit(batch).result()
    snap = SNAPEstimator("letter", ["conv1"], groups=groups, source="predicted").partial_fit(batch).result()
    np.testing.assert_array_equal(label.counts("conv1"), snap.counts("conv1"))
    # the peak is LAG input frames before the label, for every occurrence
    offset = snap.settings["peak_offset"]
    assert offset["mean_input_frames"] == pytest.approx(-LAG) and offset["std_input_frames"] == pytest.approx(0)
    # label-aligned conv1 frames see the noise floor; SNAP frames see each letter's own bin
    planted = np.eye(F)[: len(LETTERS)]
    cosine = (snap.means("conv1") * planted).sum(1) / np.linalg.norm(snap.means("conv1"), axis=1)
    assert (cosine > 0.95).all()
    assert (label.means("conv1").max(axis=1) < 0.2).all()
    # groups become sharper: between-group over within-group variance of the letter bins
    sharp_label = label.specificity("conv1")[: len(LETTERS)].mean()
    sharp_snap = snap.specificity("conv1")[: len(LETTERS)].mean()
    assert sharp_snap > 100 * sharp_label


# ---------------------------------------------------------------------------
# bad input


def test_input_errors(tiny, utts):
    with pytest.raises(InputError, match="by='letter' or 'phoneme'"):
        SNAPEstimator(lambda utt, layer, n: np.zeros(n, dtype=int), groups=["x"])
    blank = tiny.alphabet.symbols[tiny.alphabet.blank]
    with pytest.raises(InputError, match="blank"):
        SNAPEstimator("letter", ["conv1"], groups=["a", blank]).prepare(tiny)
    batch = next(iter(stream_corpus(tiny, utts[:2], ["conv1"])))
    with pytest.raises(InputError, match="weighting"):
        SNAPEstimator("letter", ["conv1"], weighting="gradient").partial_fit(batch)
    features_only = next(iter(stream_corpus(tiny, utts[:2], forward=False)))
    with pytest.raises(InputError, match="logits"):
        SNAPEstimator("letter", ["conv1"]).partial_fit(features_only)


def test_phone_segment_shorter_than_an_output_frame_takes_the_nearest(tiny, utts):
    """A 5 ms phone between output-frame centres still gets aligned (its nearest output frame)."""
    utt = next(u for u in utts if u.phones)
    sec = tiny.feature_config.frame_seconds
    centre = float(tiny.frame_map.center(tiny.output_layer, 10)) * sec
    short = PhoneSegment("s", centre + 0.002, centre + 0.007)
    assert PHONE_TO_INDEX["s"] >= 0
    phones = tuple(p for p in utt.phones if p.end <= short.start) + (short,)
    one = dataclasses.replace(utt, phones=phones)
    result = SNAPEstimator("phoneme", ["conv1"], batch_size=1).fit(tiny, [one]).result()
    assert result.settings["occurrences"] == sum(1 for p in phones if p.phone != "sil")
