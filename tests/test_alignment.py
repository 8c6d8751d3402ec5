import numpy as np
import pytest
import torch

from asr_introspect.alignment import (
    PhoneTimeline,
    TokenSpan,
    UtteranceAlignment,
    estimate_shift,
    forced_align,
    frame_times,
    letter_labels,
    min_frames_for,
    phone_labels,
    shift_labels,
    token_spans,
    transfer_index,
    transfer_labels,
)
from asr_introspect.corpus import PhoneSegment, Utterance
from asr_introspect.errors import AlignmentError
from asr_introspect.models import build_model
from asr_introspect.models.frame_map import ConvSpec, FrameMap
from asr_introspect.text import PHONES, Alphabet


def peaked_log_probs(path: list[int], n_classes: int = 29) -> torch.Tensor:
    logits = torch.full((len(path), n_classes), -8.0)
    logits[torch.arange(len(path)), torch.tensor(path)] = 8.0
    return logits.log_softmax(-1)


def test_forced_align_recovers_the_path_and_spans_match_targets():
    a = Alphabet.default()
    targets = a.encode("hello")
    path = [0, targets[0], 0, targets[1], targets[1], 0, targets[2], 0, targets[3], 0, 0, targets[4], 0]
    result = forced_align(peaked_log_probs(path), targets)
    assert result.tolist() == path
    spans = token_spans(result)
    assert [s.token for s in spans] == targets  # "ll" stays two spans
    assert spans[1].start == 3 and spans[1].end == 5


def test_forced_align_error_names_the_utterance():
    a = Alphabet.default()
    targets = a.encode("aab")
    assert min_frames_for(targets) == 4
    with pytest.raises(AlignmentError, match=r"utt u-1: .*at least 4 output frames.* gives 3"):
        forced_align(peaked_log_probs([0, 0, 0]), targets, utterance_id="u-1")


def test_letter_labels_spike_and_span():
    tokens = np.array([0, 5, 0, 0, 1, 0, 7, 7, 0])
    assert letter_labels(tokens, "spike").tolist() == tokens.tolist()
    assert letter_labels(tokens, "span").tolist() == [0, 5, 5, 5, 1, 1, 7, 7, 7]
    with pytest.raises(ValueError):
        letter_labels(tokens, "other")


def test_phone_labels_use_the_frame_centre():
    segs = [PhoneSegment("sil", 0.0, 0.1), PhoneSegment("k", 0.1, 0.15), PhoneSegment("ae", 0.15, 0.3)]
    times = np.array([0.0, 0.099, 0.1, 0.149, 0.15, 0.299, 0.3, 0.5])
    names = [PHONES[i] if i >= 0 else None for i in phone_labels(segs, times)]
    assert names == ["sil", "sil", "k", "k", "ae", "ae", None, None]


def test_transfer_and_time_axes_agree_with_the_frame_map():
    model = build_model("tiny")
    fm, fc = model.frame_map, model.feature_config
    n_in = 301
    n_out = int(model.output_lengths(n_in))
    labels = np.arange(n_out)
    # output -> output is the identity; output -> input puts each input frame on the nearest output frame
    assert transfer_labels(labels, fm, "conv11", "conv11", n_in).tolist() == labels.tolist()
    on_input = transfer_labels(labels, fm, "conv11", "input", n_in)
    assert len(on_input) == n_in
    out_times = frame_times(fm, "conv11", n_out, fc)
    in_times = np.arange(n_in) * fc.frame_seconds
    nearest = np.abs(in_times[:, None] - out_times[None, :]).argmin(1)
    assert np.mean(on_input == nearest) > 0.95  # ties may go either way
    assert np.all(np.diff(on_input) >= 0)


def test_transfer_labels_follow_the_frame_map_rule_between_every_pair_of_axes():
    fm = build_model("tiny").frame_map
    axes = ["input", *fm.names]
    for n_in in (1, 37, 301):
        for source in axes:
            n_source = int(fm.output_length(source, n_in))
            labels = np.arange(n_source) * 10 + 3
            for target in axes:
                n_target = int(fm.output_length(target, n_in))
                got = transfer_labels(labels, fm, source, target, n_in) if n_source else None
                if not n_source or not n_target:
                    continue
                centers = fm.center(target, np.arange(n_target)) if target != "input" else np.arange(n_target)
                if source == "input":
                    want = np.clip(np.floor(np.asarray(centers, float) + 0.5).astype(int), 0, n_source - 1)
                else:
                    want = np.atleast_1d(fm.layer_frame_of_input(source, centers, T_in=n_in))
                assert got.tolist() == labels[want].tolist(), (n_in, source, target)


def test_shift_labels():
    x = np.array([1, 2, 3, 4])
    assert shift_labels(x, 1).tolist() == [-1, 1, 2, 3]
    assert shift_labels(x, -2).tolist() == [3, 4, -1, -1]
    assert shift_labels(x, 0).tolist() == [1, 2, 3, 4]
    assert shift_labels(x, 9).tolist() == [-1, -1, -1, -1]


def test_estimate_shift_measures_a_planted_delay():
    """Letters emitted 0.1 s after their word's centre are measured as +0.1 s."""
    a = Alphabet.default()
    model = build_model("tiny")
    fm, fc = model.frame_map, model.feature_config
    step = fm.layer("conv11").stride * fc.frame_seconds
    words = ["the", "cat", "sat"]
    phones, t = [PhoneSegment("sil", 0.0, 0.2)], 0.2
    for p in ["dh", "ah", "k", "ae", "t", "s", "ae", "t"]:
        phones.append(PhoneSegment(p, t, t + 0.08))
        t += 0.08
    phones.append(PhoneSegment("sil", t, t + 0.3))
    word_phones = [phones[1:3], phones[3:6], phones[6:9]]
    n_out = 100
    times = frame_times(fm, "conv11", n_out, fc)
    spans = []
    for w_i, (word, ph) in enumerate(zip(words, word_phones)):
        centre = int(np.argmin(np.abs(times - (0.5 * (ph[0].start + ph[-1].end) + 0.1))))
        first = centre - (len(word) - 1) // 2
        spans += [TokenSpan(tok, first + k, first + k + 1) for k, tok in enumerate(a.encode(word))]
        if w_i < len(words) - 1:
            spans.append(TokenSpan(a.encode(" ")[0], first + len(word) + 1, first + len(word) + 2))
    path = np.zeros(n_out, dtype=np.int64)
    for span in spans:
        path[span.start : span.end] = span.token
    assert token_spans(path) == spans
    utt = Utterance("u", "s", "u.flac", " ".join(words), phones=tuple(phones))
    report = estimate_shift([UtteranceAlignment(utt, path, path, spans, 200)], fm, fc, "conv11")
    assert report.utterances_used == 1 and report.utterances_skipped == 0
    assert len(report.center_shifts) == 3
    assert report.median == pytest.approx(0.1, abs=step)
    assert report.correction_frames == round(report.median / step)
    assert report.summary()["center_shift_seconds"]["n"] == 3
    # an utterance without phones is skipped, not fatal
    bare = Utterance("v", "s", "v.flac", "the cat sat")
    assert estimate_shift([UtteranceAlignment(bare, path, path, spans, 200)], fm, fc, "conv11").utterances_skipped == 1


def _noise_corpus(tmp_path, texts):
    from asr_introspect.audio import save_audio

    rng = np.random.default_rng(0)
    utts = []
    for i, text in enumerate(texts):
        path = tmp_path / f"n{i}.wav"
        seconds = 0.6 + 0.25 * i
        save_audio(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        phones = (PhoneSegment("sil", 0.0, 0.2), PhoneSegment("ae", 0.2, seconds))
        utts.append(Utterance(f"n{i}", "s", path, text, phones=phones, duration=seconds))
    return utts


def test_align_corpus_emits_one_span_per_character(tmp_path):
    from asr_introspect.stream import align_corpus

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    utts = _noise_corpus(tmp_path, ["a b", "hello", "a cab", "ll"])
    alignments = list(align_corpus(model, utts, batch_size=3))
    assert [a.utterance.id for a in alignments] == [u.id for u in utts]
    for a in alignments:
        targets = model.alphabet.encode(a.utterance.text)
        assert [s.token for s in a.spans] == targets
        assert len(a.frame_tokens) == int(model.output_lengths(a.n_input_frames))
        assert np.isfinite(a.log_prob)


def test_align_cli_writes_labels_and_shift_report(tmp_path):
    import json

    from asr_introspect.cli import main
    from asr_introspect.corpus import save_manifest
    from asr_introspect.io import load_npz
    from asr_introspect.models import save_checkpoint

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", model)
    utts = _noise_corpus(tmp_path, ["a b", "hello", "a cab"]) + [
        Utterance("long", "s", tmp_path / "n0.wav", "this transcript is far too long for the clip")
    ]
    save_manifest(utts, tmp_path / "manifest.jsonl")
    code = main(
        [
            "align",
            "--model",
            str(ckpt),
            "--data",
            str(tmp_path / "manifest.jsonl"),
            "--out",
            str(tmp_path / "out"),
            "--layers",
            "input,conv5",
            "--quiet",
            "--json",
        ]
    )
    assert code == 0
    labels = load_npz(tmp_path / "out" / "labels.npz")
    assert labels["ids"].tolist() == ["n0", "n1", "n2"]
    offsets = labels["offsets@input"]
    assert len(offsets) == 4 and offsets[-1] == len(labels["phones@input"])
    assert len(labels["letters_forced@conv5"]) == labels["offsets@conv5"][-1]
    report = json.loads((tmp_path / "out" / "shift.json").read_text())
    assert report["skipped"] == ["long"]


@pytest.mark.parametrize("model", ["tiny", "strided"])
def test_transfer_index_clipped_per_utterance_equals_transfer_labels(model):
    """One index array for the padded batch, clipped to each utterance's last source frame, is
    transfer_labels for every utterance (what NAPEstimator relies on). "strided" (kernel 2, stride 4,
    no padding) puts the last input frames nearest an output frame past the end, so the clip matters."""
    fm = build_model("tiny").frame_map if model == "tiny" else FrameMap([ConvSpec(2, 4)], ["out"])
    source = fm.output_layer
    lengths = (1, 9, 37, 300, 301)
    clipped = False
    for target in ["input", *fm.names]:
        n_pad = int(fm.output_length(target, max(lengths)))
        index = transfer_index(fm, source, target, n_pad)
        for n_in in lengths:
            n_source, n_target = int(fm.output_length(source, n_in)), int(fm.output_length(target, n_in))
            if not n_source:
                continue
            labels = np.arange(n_source) * 7 + 1
            got = labels[np.minimum(index[:n_target], n_source - 1)]
            assert got.tolist() == transfer_labels(labels, fm, source, target, n_in).tolist(), (target, n_in)
            clipped |= bool((index[:n_target] > n_source - 1).any())
    assert clipped == (model == "strided")


def test_phone_timeline_labels_segments_gaps_and_unsorted_times():
    segs = [PhoneSegment("sil", 0.0, 0.1), PhoneSegment("k", 0.1, 0.15), PhoneSegment("ae", 0.2, 0.3)]
    timeline = PhoneTimeline.from_segments(segs)
    sil, k, ae = (PHONES.index(p) for p in ("sil", "k", "ae"))
    times = np.array([-0.01, 0.0, 0.1, 0.149, 0.15, 0.199, 0.2, 0.299, 0.3])
    assert timeline.labels(times).tolist() == [-1, sil, k, k, -1, -1, ae, ae, -1]  # a gap at [0.15, 0.2)
    assert timeline.labels(times[::-1]).tolist() == [-1, sil, k, k, -1, -1, ae, ae, -1][::-1]  # any order
    assert timeline.labels(np.zeros(0)).tolist() == []
    assert PhoneTimeline.from_segments([]).labels(np.array([0.1])).tolist() == [-1]
