"""Corpus reading, phone segments, manifests, splits and batching (no synthesizer needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_introspect.corpus import (
    PhoneSegment,
    TextGridError,
    Utterance,
    batch_plan,
    filter_speakers,
    iterate_batches,
    load_corpus,
    load_manifest,
    parse_flite_segments,
    read_librispeech,
    read_textgrid,
    save_manifest,
    scan_librispeech,
    split_by_speaker,
    split_by_text,
    write_textgrid,
)
from asr_introspect.corpus.text_sources import fortune_sentences, is_plain_sentence, split_sentences
from asr_introspect.errors import CorpusError
from asr_introspect.features import FeatureConfig, compute_features
from asr_introspect.text import Alphabet

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- LibriSpeech layout


def test_read_librispeech_returns_the_fixture_exactly(tiny_corpus):
    utts = read_librispeech(tiny_corpus.root)
    assert utts == tiny_corpus.expected
    assert {u.speaker for u in utts} == {"19", "84", "103"}
    aligned = [u for u in utts if u.phones is not None]
    assert [u.id for u in aligned] == ["19-198-0000", "19-227-0002"]
    # the MFA "spn" interval is dropped (a gap); "sp" + "" merge into one silence
    assert PhoneSegment("sil", 0.5, 0.6) in aligned[0].phones
    assert all(seg.phone != "spn" for seg in aligned[1].phones)


def test_wav_files_are_read_too(tiny_corpus_factory):
    corpus = tiny_corpus_factory(audio_format="wav")
    assert read_librispeech(corpus.root) == corpus.expected


@pytest.mark.parametrize("layout", ["speaker", "mirror", "flat"])
def test_textgrid_dir_in_mfa_layouts(tiny_corpus_factory, mfa_textgrids, tmp_path, layout):
    corpus = tiny_corpus_factory(textgrids_beside_audio=False)
    without = read_librispeech(corpus.root)
    assert all(u.phones is None for u in without)
    mfa_textgrids(tmp_path / "aligned", layout)
    assert read_librispeech(corpus.root, textgrid_dir=tmp_path / "aligned") == corpus.expected


def test_missing_directory_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        read_librispeech(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no utterances"):
        read_librispeech(tmp_path / "empty")


@pytest.mark.filterwarnings("error")  # skips are reported, never warned about
def test_missing_transcript_lines_and_audio_are_skipped_with_reasons(tiny_corpus_factory):
    corpus = tiny_corpus_factory()
    trans = corpus.root / "84" / "121" / "84-121.trans.txt"
    lines = trans.read_text().splitlines()
    trans.write_text(
        "\n".join(l for l in lines if not l.startswith("84-121-0003")) + "\n84-121-0099 A LINE WITHOUT AUDIO\n"
    )
    missing = corpus.root / "103" / "1240" / "103-1240.trans.txt"
    missing.unlink()
    bad = corpus.root / "19" / "198" / "19-198.trans.txt"
    bad.write_text(bad.read_text().replace("IT'S A TONE", "IT'S A TONE \u65e5\u672c"))

    scan = scan_librispeech(corpus.root)
    skipped = {s.id: s for s in scan.skipped}
    assert set(skipped) == {"84-121-0003", "84-121-0099", "103-1240-0005", "103-1240-0006", "19-198-0001"}
    assert skipped["84-121-0003"].kind == "no transcript line"
    assert skipped["84-121-0003"].path == corpus.root / "84" / "121" / "84-121-0003.flac"
    assert skipped["84-121-0099"].kind == "transcript line without audio"
    assert (skipped["84-121-0099"].path, skipped["84-121-0099"].line) == (trans, 2)
    assert str(missing) in skipped["103-1240-0005"].reason
    assert skipped["19-198-0001"].kind == "bad transcript" and (
        skipped["19-198-0001"].path,
        skipped["19-198-0001"].line,
    ) == (bad, 2)
    assert "'\u65e5', '\u672c'" in skipped["19-198-0001"].reason
    assert [u.id for u in scan.utterances] == ["19-198-0000", "19-227-0002", "84-121-0004"]
    assert scan.skipped_by_reason()["no transcript line"] == 3

    loaded = read_librispeech(corpus.root)
    assert loaded == [u for u in corpus.expected if u.id in ("19-198-0000", "19-227-0002", "84-121-0004")]
    assert loaded.report.skipped == scan.skipped and loaded.report.to_dict()["skipped"] == 5
    json.dumps(loaded.report.to_dict())
    with pytest.raises(CorpusError) as info:
        read_librispeech(corpus.root, strict=True)
    message = str(info.value)
    assert "\n" not in message and "strict" in message and "4 more problem(s)" in message
    assert message.startswith(f"{skipped[scan.skipped[0].id].message}")


def test_index_librispeech_script_reports_skips(tiny_corpus_factory, mfa_textgrids, tmp_path):
    corpus = tiny_corpus_factory(textgrids_beside_audio=False)
    mfa_textgrids(tmp_path / "tg", "speaker")
    (corpus.root / "19" / "198" / "19-198-0009.flac").write_bytes(b"")  # audio without a transcript line
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "data_prep" / "index_librispeech.py"),
            str(corpus.root),
            "--textgrids",
            str(tmp_path / "tg"),
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["utterances"] == 7 and report["with_phones"] == 2 and report["skipped"] == 1
    assert report["skipped_items"][0]["id"] == "19-198-0009"
    assert "skipped 1" in proc.stdout
    assert load_manifest(report["manifest"]) == [
        Utterance(u.id, u.speaker, u.audio_path.resolve(), u.text, u.phones, u.duration) for u in corpus.expected
    ]
    bad = subprocess.run(
        [sys.executable, str(REPO / "data_prep" / "index_librispeech.py"), str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not found" in bad.stderr


# ---------------------------------------------------------------- TextGrids and flite segments

SHORT_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

0
0.9
<exists>
3
"TextTier"
"events"
0
0.9
1
0.45
"click"
"IntervalTier"
"words"
0
0.9
2
0
0.5
"say ""hi"""
0.5
0.9
""
"IntervalTier"
"phones"
0
0.9
5
0
0.1
""
0.1
0.3
"HH"
0.3
0.5
"AY1"
0.5
0.6
"spn"
0.6
0.9
"sil"
'''

EXPECTED_SHORT = [
    PhoneSegment("sil", 0.0, 0.1),
    PhoneSegment("hh", 0.1, 0.3),
    PhoneSegment("ay", 0.3, 0.5),
    PhoneSegment("sil", 0.6, 0.9),
]


def test_textgrid_short_format_utf8_and_utf16(tmp_path):
    path = tmp_path / "short.TextGrid"
    path.write_text(SHORT_TEXTGRID, encoding="utf-8")
    assert read_textgrid(path) == EXPECTED_SHORT
    path16 = tmp_path / "short16.TextGrid"
    path16.write_bytes(SHORT_TEXTGRID.encode("utf-16"))
    assert read_textgrid(path16) == EXPECTED_SHORT


def test_textgrid_long_format_from_fixture(tiny_corpus):
    expected = next(u for u in tiny_corpus.expected if u.id == "19-198-0000")
    assert tuple(read_textgrid(tiny_corpus.root / "19" / "198" / "19-198-0000.TextGrid")) == expected.phones


def test_textgrid_tier_choice(tmp_path):
    body = SHORT_TEXTGRID.replace('"phones"', '"Speaker 1 - phones"')
    (tmp_path / "a.TextGrid").write_text(body)
    assert read_textgrid(tmp_path / "a.TextGrid") == EXPECTED_SHORT
    body = SHORT_TEXTGRID.replace('"phones"', '"segments"')  # found by its ARPAbet labels
    (tmp_path / "b.TextGrid").write_text(body)
    assert read_textgrid(tmp_path / "b.TextGrid") == EXPECTED_SHORT
    body = SHORT_TEXTGRID.replace('"phones"', '"tier"').replace('"AY1"', '"xyz"')
    (tmp_path / "c.TextGrid").write_text(body)
    with pytest.raises(CorpusError, match="c.TextGrid.*no phone tier"):
        read_textgrid(tmp_path / "c.TextGrid")
    body = SHORT_TEXTGRID.replace('"AY1"', '"Q9"')
    (tmp_path / "d.TextGrid").write_text(body)
    with pytest.raises(CorpusError, match="d.TextGrid.*'Q9'"):
        read_textgrid(tmp_path / "d.TextGrid")
    (tmp_path / "e.TextGrid").write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n0\n')
    with pytest.raises(CorpusError, match="e.TextGrid"):
        read_textgrid(tmp_path / "e.TextGrid")


def test_textgrid_errors_name_the_line_of_the_interval(tmp_path):
    path = tmp_path / "short.TextGrid"
    path.write_text(SHORT_TEXTGRID)
    lines = SHORT_TEXTGRID.splitlines()
    spn_line = lines.index('"AY1"') + 2  # interval 4 (spn, 0.5-0.6 s) starts on the line after "AY1"
    assert read_textgrid(path, duration=0.9) == EXPECTED_SHORT
    assert read_textgrid(path, duration=0.89) == EXPECTED_SHORT  # within 10 ms
    with pytest.raises(TextGridError, match=rf"short.TextGrid line {spn_line}: interval 4 \('spn'\).*0.600 s.*0.550 s"):
        read_textgrid(path, duration=0.55)
    path.write_text(SHORT_TEXTGRID.replace('0.5\n0.6\n"spn"', '0.6\n0.5\n"spn"'))
    with pytest.raises(TextGridError, match=rf"line {spn_line}: interval 4 .*runs backwards") as info:
        read_textgrid(path)
    assert info.value.line == spn_line and isinstance(info.value, CorpusError)
    path.write_text(SHORT_TEXTGRID.replace('"AY1"', '"Q9"'))
    with pytest.raises(TextGridError, match=rf"line {spn_line - 3}: phone label 'Q9'"):
        read_textgrid(path)


def test_textgrid_write_read_round_trip(tmp_path):
    segments = [
        PhoneSegment("sil", 0.0, 0.123456),
        PhoneSegment("dh", 0.123456, 0.2),
        PhoneSegment("ah", 0.2, 0.31),
        PhoneSegment("k", 0.4, 0.55),  # a gap 0.31-0.4
        PhoneSegment("sil", 0.55, 0.8),
    ]
    path = write_textgrid(
        tmp_path / "rt.TextGrid", segments, words=[("the", 0.123456, 0.31), ('"k"', 0.4, 0.55)], xmax=0.9
    )
    text = path.read_text()
    assert text.startswith('File type = "ooTextFile"') and 'name = "words"' in text and '"""k"""' in text
    # the tail 0.8-0.9 is unlabeled as well
    assert read_textgrid(path) == segments
    assert not list(tmp_path.glob(".*.tmp"))


def test_parse_flite_segments():
    segments = parse_flite_segments("pau:0.184 dh:0.236 ax:0.270 k:0.3\npau:0.5 \n")
    assert segments == [
        PhoneSegment("sil", 0.0, 0.184),
        PhoneSegment("dh", 0.184, 0.236),
        PhoneSegment("ah", 0.236, 0.270),
        PhoneSegment("k", 0.270, 0.3),
        PhoneSegment("sil", 0.3, 0.5),
    ]
    assert parse_flite_segments("") == []
    with pytest.raises(CorpusError, match="utt X.*'dh=0.2'"):
        parse_flite_segments("pau:0.1 dh=0.2", source="utt X")
    with pytest.raises(CorpusError, match="before its start"):
        parse_flite_segments("pau:0.3 dh:0.2")
    with pytest.raises(CorpusError, match="unknown flite phone"):
        parse_flite_segments("pau:0.1 qq:0.2")


# ---------------------------------------------------------------- manifest


def _resolved(utts):
    return [Utterance(u.id, u.speaker, u.audio_path.resolve(), u.text, u.phones, u.duration) for u in utts]


def test_manifest_round_trip_with_relative_paths(tiny_corpus, tmp_path):
    path = save_manifest(tiny_corpus.expected, tmp_path / "m" / "manifest.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == len(tiny_corpus.expected)
    assert all(not Path(r["audio"]).is_absolute() for r in records)
    assert load_manifest(path) == _resolved(tiny_corpus.expected)
    with pytest.raises(CorpusError, match="line 2"):
        (tmp_path / "bad.jsonl").write_text(path.read_text().splitlines()[0] + "\n{not json\n")
        load_manifest(tmp_path / "bad.jsonl")


def test_load_corpus_uses_a_fresh_manifest_and_rescans_a_stale_one(tiny_corpus_factory):
    corpus = tiny_corpus_factory()
    manifest = corpus.root / "manifest.jsonl"
    marked = [
        Utterance(u.id, u.speaker, u.audio_path, "from the manifest", u.phones, u.duration) for u in corpus.expected
    ]
    save_manifest(marked, manifest)
    now = manifest.stat().st_mtime
    os.utime(manifest, (now + 10, now + 10))
    assert [u.text for u in load_corpus(corpus.root)] == ["from the manifest"] * len(marked)
    assert load_corpus(manifest) == _resolved(marked)
    trans = corpus.root / "84" / "121" / "84-121.trans.txt"
    os.utime(trans, (now + 20, now + 20))  # a transcript newer than the manifest
    assert load_corpus(corpus.root) == corpus.expected


def test_load_corpus_on_a_directory_of_splits_names_them(tiny_corpus, tmp_path):
    for split in ("train", "test_text"):
        save_manifest(tiny_corpus.expected[:2], tmp_path / split / "manifest.jsonl")
    with pytest.raises(CorpusError, match="test_text, train"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "missing")


# ---------------------------------------------------------------- splits


def test_split_by_speaker_does_not_leak(tiny_corpus):
    utts = tiny_corpus.expected
    train, test = split_by_speaker(utts, fraction=0.34, seed=3)
    assert {u.speaker for u in train}.isdisjoint({u.speaker for u in test})
    assert sorted(u.id for u in train + test) == sorted(u.id for u in utts)
    assert len({u.speaker for u in test}) == 1
    assert split_by_speaker(utts, fraction=0.34, seed=3) == (train, test)
    picks = {split_by_speaker(utts, fraction=0.34, seed=s)[1][0].speaker for s in range(20)}
    assert len(picks) > 1
    train, test = split_by_speaker(utts, held_out_speakers=["84"])
    assert {u.speaker for u in test} == {"84"} and "84" not in {u.speaker for u in train}
    with pytest.raises(CorpusError, match="nobody"):
        split_by_speaker(utts, held_out_speakers=["nobody"])


def test_split_by_text_keeps_each_text_on_one_side(tiny_corpus):
    utts = tiny_corpus.expected
    for seed in range(10):
        train, test = split_by_text(utts, fraction=0.4, seed=seed)
        assert {u.text for u in train}.isdisjoint({u.text for u in test})
        assert sorted(u.id for u in train + test) == sorted(u.id for u in utts)
        assert len({u.text for u in test}) == 2  # 40% of 5 distinct texts
    # "hello world" has two utterances by different speakers: they move together
    sides = [split_by_text(utts, 0.4, seed) for seed in range(40)]
    assert any(sum(u.text == "hello world" for u in test) == 2 for _, test in sides)


def test_filter_speakers_by_glob(tiny_corpus):
    utts = tiny_corpus.expected
    speakers = sorted({u.speaker for u in utts})
    assert len(speakers) >= 2
    first = speakers[0]
    kept = filter_speakers(utts, first)
    assert kept == [u for u in utts if u.speaker == first]  # order kept
    both = filter_speakers(utts, f"{speakers[0]}, {speakers[1]}")
    assert {u.speaker for u in both} == set(speakers[:2])
    assert filter_speakers(utts, ["*"]) == list(utts)
    assert {u.speaker for u in filter_speakers(utts, first[:1] + "*")} == {s for s in speakers if s[0] == first[0]}
    with pytest.raises(CorpusError, match=r"my/corpus: no speaker matches 'nobody\*'.*check the pattern"):
        filter_speakers(utts, "nobody*", source="my/corpus")
    with pytest.raises(ValueError, match="at least one"):
        filter_speakers(utts, " , ")


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("bucket", [False, True])
@pytest.mark.parametrize("max_frames", [None, 900])
def test_batch_plan_uses_every_utterance_once(shuffle, bucket, max_frames):
    rng = np.random.default_rng(0)
    frames = rng.integers(50, 400, size=203)
    plan = batch_plan(frames, 8, shuffle=shuffle, seed=5, bucket=bucket, max_frames=max_frames, pool_batches=4)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(203))
    assert all(1 <= len(b) <= 8 for b in plan)
    if max_frames is not None:
        assert all(len(b) == 1 or len(b) * frames[b].max() <= max_frames for b in plan)
    assert plan == batch_plan(frames, 8, shuffle=shuffle, seed=5, bucket=bucket, max_frames=max_frames, pool_batches=4)
    if shuffle:
        assert plan != batch_plan(frames, 8, shuffle=True, seed=6, bucket=bucket, max_frames=max_frames, pool_batches=4)
        assert plan != batch_plan(
            frames, 8, shuffle=True, seed=5, bucket=bucket, max_frames=max_frames, pool_batches=4, epoch=1
        )
    if bucket:  # bucketed batches hold similar lengths: less padding than the given order
        padded = sum(len(b) * frames[b].max() for b in plan)
        plain = sum(len(b) * frames[b].max() for b in batch_plan(frames, 8, bucket=False, max_frames=max_frames))
        assert padded < plain
    if not shuffle and not bucket and max_frames is None:
        assert flat == list(range(203))


def test_iterate_batches_pads_and_encodes(tiny_corpus):
    config = FeatureConfig.small()
    alphabet = Alphabet.default()
    utts = tiny_corpus.expected
    batches = list(iterate_batches(utts, config, alphabet, batch_size=3, shuffle=True, seed=1))
    assert sorted(u.id for b in batches for u in b.utterances) == sorted(u.id for u in utts)
    again = list(iterate_batches(utts, config, alphabet, batch_size=3, shuffle=True, seed=1))
    assert [[u.id for u in b.utterances] for b in batches] == [[u.id for u in b.utterances] for b in again]
    for batch in batches:
        n = len(batch)
        assert batch.features.dtype == torch.float32 and batch.features.shape[:2] == (n, config.n_mels)
        assert batch.feature_lengths.dtype == torch.int64 and batch.targets.dtype == torch.int64
        assert batch.features.shape[2] == int(batch.feature_lengths.max())
        for row, utt in enumerate(batch.utterances):
            t = int(batch.feature_lengths[row])
            assert t == config.frames(int(round(utt.duration * config.sample_rate)))
            assert torch.all(batch.features[row, :, t:] == 0)
            ids = alphabet.encode(utt.text)
            assert int(batch.target_lengths[row]) == len(ids)
            assert batch.targets[row, : len(ids)].tolist() == ids
            assert torch.all(batch.targets[row, len(ids) :] == 0)
            data, rate = sf.read(str(utt.audio_path), dtype="float32")
            single = compute_features(torch.from_numpy(data), config)
            assert torch.allclose(batch.features[row, :, :t], single, atol=1e-4)


def test_iterate_batches_max_frames_and_order(tiny_corpus):
    config = FeatureConfig.small()
    utts = tiny_corpus.expected
    longest = max(config.frames(int(round(u.duration * config.sample_rate))) for u in utts)
    batches = list(iterate_batches(utts, config, Alphabet.default(), batch_size=7, max_frames=longest))
    assert all(b.features.shape[0] * b.features.shape[2] <= longest for b in batches)
    assert [u.id for b in batches for u in b.utterances] == [u.id for u in sorted(utts, key=lambda u: u.duration)]
    plain = list(iterate_batches(utts, config, Alphabet.default(), batch_size=7, bucket=False))
    assert len(plain) == 1 and [u.id for u in plain[0].utterances] == [u.id for u in utts]


# ---------------------------------------------------------------- text sources


def test_sentence_filter_and_split():
    assert split_sentences("Mr. Smith went home. He slept! Did he?") == ["Mr. Smith went home.", "He slept!", "Did he?"]
    assert is_plain_sentence("A sinking ship gathers no moss.")
    assert not is_plain_sentence("Mr. Smith went home.")  # abbreviation
    assert not is_plain_sentence("IBM makes big computers.")  # acronym
    assert not is_plain_sentence("He has 2 dogs and a cat.")  # digits
    assert not is_plain_sentence("Too short.")
    assert not is_plain_sentence('She said "no" to that idea.')  # quotes
    assert not is_plain_sentence("Lower case l is here.")  # letter name
    assert not is_plain_sentence("no capital at the start.")


def test_fortune_sentences_from_a_file(tmp_path):
    path = tmp_path / "fort"
    path.write_text(
        "A banker is a fellow who lends you his umbrella.  It rains.\n\t\t-- Mark Twain\n%\n"
        "A banker is a fellow who lends you his UMBRELLA.\n%\nSee 42 ways to do it right now.\n"
        "%\nWake now my merry lads!\n"
    )
    assert fortune_sentences(files=[path]) == [
        "A banker is a fellow who lends you his umbrella.",
        "Wake now my merry lads!",
    ]


# ---------------------------------------------------------------- the validation pass: one table of defects

GOOD_IDS = (
    "103-1240-0005",
    "103-1240-0006",
    "19-198-0000",
    "19-198-0001",
    "19-227-0002",
    "84-121-0003",
    "84-121-0004",
)


def _chapter(root: Path, speaker: str, chapter: str) -> Path:
    return root / speaker / chapter


def _interval_line(textgrid: Path, number: int) -> int:
    """1-based line of the ``xmin`` of interval ``number`` of the fixture's phone tier."""
    lines = textgrid.read_text().splitlines()
    return lines.index(f"        intervals [{number}]:", lines.index('        name = "phones"')) + 2


def _edit_interval(textgrid: Path, number: int, start: float, end: float) -> int:
    """Set interval ``number``'s times in a fixture TextGrid; returns its line."""
    line = _interval_line(textgrid, number)
    lines = textgrid.read_text().splitlines()
    lines[line - 1] = f"            xmin = {start}"
    lines[line] = f"            xmax = {end}"
    textgrid.write_text("\n".join(lines) + "\n")
    return line


def _append_line(path: Path, line: str) -> int:
    text = path.read_text()
    path.write_text(text + line + "\n")
    return len(text.splitlines()) + 1


def _replace_line(path: Path, startswith: str, line: str) -> int:
    lines = path.read_text().splitlines()
    index = next(i for i, l in enumerate(lines) if l.startswith(startswith))
    lines[index] = line
    path.write_text("\n".join(lines) + "\n")
    return index + 1


# each case: (build kwargs, defect(root) -> (id, file at fault, line or None, reason kind, detail), ids kept)


def _duplicate_across_chapters(root):
    other = root / "84" / "122"
    other.mkdir()
    shutil.copy(root / "84" / "121" / "84-121-0003.flac", other / "84-121-0003.flac")
    (other / "84-122.trans.txt").write_text("84-121-0003 HELLO AGAIN\n")
    first = root / "84" / "121" / "84-121.trans.txt"
    return "84-121-0003", other / "84-122.trans.txt", 1, "duplicate id", f"{first} line 1"


def _duplicate_line(root):
    trans = root / "84" / "121" / "84-121.trans.txt"
    line = _append_line(trans, "84-121-0004 ANOTHER TEXT")
    return "84-121-0004", trans, line, "duplicate id", f"{trans} line 2"


def _reversed_interval(root):
    grid = root / "19" / "198" / "19-198-0000.TextGrid"
    line = _edit_interval(grid, 3, 0.3, 0.2)
    return "19-198-0000", grid, line, "bad TextGrid", "runs backwards: xmin 0.3 s > xmax 0.2 s"


def _overlapping_intervals(root):
    grid = root / "19" / "198" / "19-198-0000.TextGrid"
    line = _edit_interval(grid, 4, 0.25, 0.4)
    return "19-198-0000", grid, line, "bad TextGrid", "before interval 3 ends (0.3 s): intervals overlap"


def _textgrid_past_the_end(root):
    grid = root / "19" / "227" / "19-227-0002.TextGrid"
    line = _edit_interval(grid, 12, 1.2, 60.0)
    return "19-227-0002", grid, line, "bad TextGrid", "ends at 60.000 s, after the audio ends (1.250 s)"


def _line_without_audio(root):
    (root / "84" / "121" / "84-121-0004.flac").unlink()
    trans = root / "84" / "121" / "84-121.trans.txt"
    return "84-121-0004", trans, 2, "transcript line without audio", "no 84-121-0004.flac or .wav"


def _audio_without_line(root):
    extra = root / "84" / "121" / "84-121-0007.flac"
    shutil.copy(root / "84" / "121" / "84-121-0003.flac", extra)
    return "84-121-0007", extra, None, "no transcript line", "84-121.trans.txt"


def _outside_alphabet(root):
    trans = root / "19" / "198" / "19-198.trans.txt"
    line = _replace_line(trans, "19-198-0001", "19-198-0001 IT'S A TONE \u0436")
    return "19-198-0001", trans, line, "bad transcript", "characters outside the alphabet: '\u0436'"


def _empty_transcript(root):
    trans = root / "19" / "198" / "19-198.trans.txt"
    line = _replace_line(trans, "19-198-0001", "19-198-0001 !!! ...")
    return "19-198-0001", trans, line, "empty transcript", "'!!! ...'"


def _truncated_audio(suffix):
    def defect(root):
        path = root / "84" / "121" / f"84-121-0004.{suffix}"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "84-121-0004", path, None, "unreadable audio", "truncated file"

    return defect


def _manifest_case(edit):
    """A defect in a manifest written from the fixture (lines in id order: GOOD_IDS)."""

    def defect(root):
        corpus = read_librispeech(root)
        path = save_manifest(corpus, root / "manifest.jsonl")
        records = [json.loads(l) for l in path.read_text().splitlines()]
        result = edit(records, path)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return result

    return defect


def _m_duplicate(records, path):
    records.append(dict(records[3], text="another text"))
    return "19-198-0001", path, 8, "duplicate id", f"{path} line 4"


def _m_missing_audio(records, path):
    records[6]["audio"] = "84/121/nowhere.flac"
    return "84-121-0004", path, 7, "missing audio file", "nowhere.flac not found"


def _m_past_the_end(records, path):
    records[2]["phones"][-1][2] = 60.0
    return "19-198-0000", path, 3, "phones past the audio's end", "end at 60.000 s, the audio at 0.900 s"


def _m_overlap(records, path):
    records[2]["phones"][2][1] = 0.15
    return "19-198-0000", path, 3, "bad phones", "segments overlap"


def _m_reversed(records, path):
    records[4]["phones"][1][1:] = [0.3, 0.2]
    return "19-227-0002", path, 5, "bad phones", "empty or reversed"


def _m_outside_alphabet(records, path):
    records[5]["text"] = "hello \u65e5\u672c"
    return "84-121-0003", path, 6, "bad transcript", "'\u65e5', '\u672c'"


DEFECTS = {
    "duplicate id across chapters": ({}, _duplicate_across_chapters),
    "duplicate transcript line": ({}, _duplicate_line),
    "TextGrid xmin > xmax": ({}, _reversed_interval),
    "TextGrid overlapping intervals": ({}, _overlapping_intervals),
    "TextGrid ends at 60 s on 1.25 s of audio": ({}, _textgrid_past_the_end),
    "transcript line without audio": ({}, _line_without_audio),
    "audio without transcript line": ({}, _audio_without_line),
    "transcript outside the alphabet": ({}, _outside_alphabet),
    "transcript empty after normalization": ({}, _empty_transcript),
    "truncated flac": ({}, _truncated_audio("flac")),
    "truncated wav": ({"audio_format": "wav"}, _truncated_audio("wav")),
    "manifest: duplicate id": ({}, _manifest_case(_m_duplicate)),
    "manifest: missing audio file": ({}, _manifest_case(_m_missing_audio)),
    "manifest: phones past the audio's end": ({}, _manifest_case(_m_past_the_end)),
    "manifest: overlapping phones": ({}, _manifest_case(_m_overlap)),
    "manifest: reversed phone": ({}, _manifest_case(_m_reversed)),
    "manifest: transcript outside the alphabet": ({}, _manifest_case(_m_outside_alphabet)),
}


@pytest.mark.filterwarnings("error")  # a warning is not a report
@pytest.mark.parametrize("case", list(DEFECTS))
def test_each_corpus_defect_is_a_reported_skip_and_a_strict_error(tiny_corpus_factory, case):
    build, defect = DEFECTS[case]
    corpus = tiny_corpus_factory(**build)
    utt_id, path, line, kind, detail = defect(corpus.root)
    target = corpus.root / "manifest.jsonl" if case.startswith("manifest") else corpus.root

    loaded = load_corpus(target)
    assert len(loaded.report.skipped) == 1, loaded.report.skipped
    skip = loaded.report.skipped[0]
    assert (skip.id, skip.path, skip.line, skip.kind) == (utt_id, path, line, kind)
    assert detail in skip.reason
    # the good utterances still load, exactly (a duplicate keeps its first record)
    keep = [u for u in corpus.expected if u.id != utt_id or kind == "duplicate id"]
    if target.is_file():
        keep = _resolved(keep)
    assert sorted(loaded, key=lambda u: u.id) == keep
    assert len({u.id for u in loaded}) == len(loaded)
    summary = json.loads(json.dumps(loaded.report.to_dict()))
    assert summary["skipped"] == 1 and summary["skipped_by_reason"] == {kind: 1}
    assert summary["skipped_items"][0] == {"id": utt_id, "path": str(path), "line": line, "reason": skip.reason}

    with pytest.raises(CorpusError) as info:
        load_corpus(target, strict=True)
    message = str(info.value)
    where = f"{path} line {line}: " if line is not None else f"{path}: "
    assert message.startswith(where + f"utt {utt_id}: {kind}"), message
    assert detail in message and "\n" not in message


@pytest.mark.filterwarnings("error")
def test_gaps_and_a_few_milliseconds_past_the_end_are_accepted(tiny_corpus_factory):
    corpus = tiny_corpus_factory()
    grid = corpus.root / "19" / "198" / "19-198-0000.TextGrid"
    lines = grid.read_text().splitlines()
    # drop interval 4 ("L", 0.3-0.4) entirely: a gap between 0.3 and 0.4
    start = lines.index("        intervals [4]:", lines.index('        name = "phones"'))
    del lines[start : start + 4]
    lines = [l.replace("intervals: size = 11", "intervals: size = 10") for l in lines]
    assert lines[-2] == "            xmax = 0.9"
    lines[-2] = "            xmax = 0.906"  # the last interval ends 6 ms after the 0.9 s audio
    grid.write_text("\n".join(lines) + "\n")

    loaded = load_corpus(corpus.root, strict=True)
    assert loaded.report.skipped == []
    phones = next(u for u in loaded if u.id == "19-198-0000").phones
    assert [p.phone for p in phones][:4] == ["sil", "hh", "ah", "ow"]  # 'l' is gone, the rest stays
    assert phones[-1].end == 0.906
    _edit_interval(grid, 10, 0.85, 0.95)  # 50 ms past the end: too far
    assert load_corpus(corpus.root).report.skipped[0].kind == "bad TextGrid"


# ---------------------------------------------------------------- one normalization policy; empty corpora


@pytest.mark.filterwarnings("error")
def test_one_normalization_policy_for_both_layouts_reported_per_utterance(tiny_corpus_factory):
    corpus = tiny_corpus_factory()
    trans = corpus.root / "19" / "198" / "19-198.trans.txt"
    line = _replace_line(trans, "19-198-0001", "19-198-0001 Café 42!")
    scanned = load_corpus(corpus.root)
    by_id = {n.id: n for n in scanned.report.normalized}
    # LibriSpeech's upper case is the expected form, not a change worth listing
    assert set(by_id) == {"19-198-0001", "19-227-0002"}
    assert (by_id["19-198-0001"].original, by_id["19-198-0001"].normalized) == ("Café 42!", "cafe forty two")
    assert (by_id["19-198-0001"].path, by_id["19-198-0001"].line) == (trans, line)
    assert by_id["19-227-0002"].normalized == "numbers two dogs"
    assert next(u for u in scanned if u.id == "19-198-0001").text == "cafe forty two"

    # the same text in a hand-written manifest: the same result, reported with the manifest's line
    records = [json.loads(l) for l in save_manifest(scanned, corpus.root / "m.jsonl").read_text().splitlines()]
    records[3]["text"] = "café 42!"
    manifest = corpus.root / "m.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    listed = load_corpus(manifest)
    assert [u.text for u in listed] == [u.text for u in scanned]
    assert [(n.id, n.original, n.normalized, n.path, n.line) for n in listed.report.normalized] == [
        ("19-198-0001", "café 42!", "cafe forty two", manifest, 4)
    ]
    assert listed.report.to_dict()["normalized_items"][0]["normalized"] == "cafe forty two"
    assert listed.report.skipped == []


def test_empty_corpora_are_errors_naming_the_path(tiny_corpus_factory, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CorpusError, match=f"^{empty}: no utterances found"):
        load_corpus(empty)
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    with pytest.raises(CorpusError, match="blank.jsonl: no utterances found"):
        load_manifest(tmp_path / "blank.jsonl")

    corpus = tiny_corpus_factory()
    for path in corpus.root.glob("*/*/*.trans.txt"):
        path.write_text("".join(f"{l.split()[0]} \u2603\n" for l in path.read_text().splitlines()))
    with pytest.raises(CorpusError) as info:
        load_corpus(corpus.root)
    message = str(info.value)
    assert message.startswith(f"{corpus.root}: no usable utterances (all 7 item(s) skipped, first: ")
    assert "line 1: utt 103-1240-0005: bad transcript" in message and "'\u2603'" in message


def test_a_clean_corpus_reports_nothing_even_when_strict(tiny_corpus):
    loaded = load_corpus(tiny_corpus.root, strict=True)
    assert loaded == tiny_corpus.expected
    assert loaded.report.skipped == [] and [n.id for n in loaded.report.normalized] == ["19-227-0002"]
    assert loaded.report.source == tiny_corpus.root
    assert loaded[:2] == tiny_corpus.expected[:2]  # still a list
