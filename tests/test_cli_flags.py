"""Bad flags and empty selections of synth, eval, transcribe, align, patterns, naps and demo (issue 18).

One table: each case is a command line that must exit with code 2 and print
exactly one line (at most 300 characters) on stderr naming the flag or the
file, and must leave a pre-existing output directory byte for byte as it was.
Cases run in-process through ``main`` (fast: the tiny model loads in
milliseconds); the cases that fail in argparse, and a few that fail after
loading, also run as real processes, where warnings and tracebacks would
reach stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr_introspect.cli import build_parser, main
from asr_introspect.errors import CorpusError, InputError
from asr_introspect.models import build_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
MAX_LINE = 300

# (id, argv, fragments the one stderr line must contain). Placeholders: {ckpt} the tiny checkpoint, {corpus}
# the tiny corpus, {nophones} the same without TextGrids, {empty} an empty manifest, {out} an existing output
# directory holding an earlier run's files, {audio} one clip of the corpus.
M = ["--model", "{ckpt}", "--quiet"]
MD = [*M, "--data", "{corpus}"]
CASES = [
    # -- numeric flags: argparse types, before anything is loaded ---------------------------------------------
    ("eval-batch-size-0", ["eval", *MD, "--batch-size", "0"], ["--batch-size", ">= 1"]),
    ("eval-batch-size-negative", ["eval", *MD, "--batch-size", "-4"], ["--batch-size", ">= 1"]),
    ("eval-batch-size-nan", ["eval", *MD, "--batch-size", "nan"], ["--batch-size", "'nan'"]),
    ("eval-batch-size-not-a-number", ["eval", *MD, "--batch-size", "x"], ["--batch-size", "'x'"]),
    ("eval-limit-0", ["eval", *MD, "--limit", "0"], ["--limit", ">= 1"]),
    ("eval-limit-negative", ["eval", *MD, "--limit", "-1"], ["--limit", ">= 1"]),
    ("eval-speakers-comma", ["eval", *MD, "--speakers", ","], ["--speakers", "','"]),
    ("eval-speakers-empty-item", ["eval", *MD, "--speakers", "19,,84"], ["--speakers", "'19,,84'"]),
    ("align-batch-size-0", ["align", *MD, "--out", "{out}", "--batch-size", "0"], ["--batch-size"]),
    ("align-layers-comma", ["align", *MD, "--out", "{out}", "--layers", ","], ["--layers", "','"]),
    ("align-mode-unknown", ["align", *MD, "--out", "{out}", "--mode", "blob"], ["--mode", "spike"]),
    ("align-out-missing", ["align", *MD], ["--out"]),
    ("naps-clusters-0", ["naps", *MD, "--out", "{out}", "--clusters", "0"], ["--clusters", ">= 1"]),
    ("naps-min-count-negative", ["naps", *MD, "--out", "{out}", "--min-count", "-3"], ["--min-count", ">= 1"]),
    ("naps-batch-size-0", ["naps", *MD, "--out", "{out}", "--batch-size", "0"], ["--batch-size"]),
    ("naps-layers-comma", ["naps", *MD, "--out", "{out}", "--layers", ","], ["--layers"]),
    ("naps-layers-empty-item", ["naps", *MD, "--out", "{out}", "--layers", "conv1,,conv2"], ["--layers"]),
    ("naps-shift-float", ["naps", *MD, "--out", "{out}", "--shift", "1.5"], ["--shift", "integer, got '1.5'"]),
    ("naps-by-unknown", ["naps", *MD, "--out", "{out}", "--by", "word"], ["--by", "letter"]),
    ("patterns-window-0", ["patterns", *MD, "--out", "{out}", "--by", "letter", "--window", "0"], ["--window"]),
    ("patterns-limit-0", ["patterns", *MD, "--out", "{out}", "--by", "letter", "--limit", "0"], ["--limit"]),
    (
        "patterns-batch-size-negative",
        ["patterns", *MD, "--out", "{out}", "--by", "letter", "--batch-size", "-2"],
        ["--batch-size"],
    ),
    (
        "patterns-shift-correction-word",
        ["patterns", *MD, "--out", "{out}", "--by", "letter", "--shift-correction", "soon"],
        ["--shift-correction", "auto"],
    ),
    ("patterns-by-missing", ["patterns", *MD, "--out", "{out}"], ["--by"]),
    ("synth-utterances-0", ["synth", "--out", "{out}", "--utterances", "0"], ["--utterances", "[1, 1000000]"]),
    ("synth-utterances-huge", ["synth", "--out", "{out}", "--utterances", "10000000000"], ["--utterances"]),
    ("synth-seed-negative", ["synth", "--out", "{out}", "--seed", "-1"], ["--seed", ">= 0"]),
    ("synth-workers-0", ["synth", "--out", "{out}", "--workers", "0"], ["--workers"]),
    (
        "synth-fraction-nan",
        ["synth", "--out", "{out}", "--test-text-fraction", "nan"],
        ["--test-text-fraction", "finite", "[0, 1)"],
    ),
    (
        "synth-fraction-inf",
        ["synth", "--out", "{out}", "--test-speaker-fraction", "inf"],
        ["--test-speaker-fraction"],
    ),
    ("synth-fraction-1", ["synth", "--out", "{out}", "--test-text-fraction", "1"], ["--test-text-fraction"]),
    ("synth-fraction-negative", ["synth", "--out", "{out}", "--test-text-fraction", "-0.1"], ["--test-text-fraction"]),
    ("demo-only-unknown-family", ["demo", *MD, "--out", "{out}", "--only", "az"], ["--only", "'z'", "abcde"]),
    ("demo-only-empty", ["demo", *MD, "--out", "{out}", "--only", ""], ["--only"]),
    ("demo-examples-negative", ["demo", *MD, "--out", "{out}", "--examples", "-1"], ["--examples", ">= 0"]),
    ("transcribe-no-audio", ["transcribe", *M], ["AUDIO"]),
    # -- checks that need the model or the corpus (workflows), before computing -------------------------------
    (
        "naps-ward-needs-euclidean",
        ["naps", *MD, "--out", "{out}", "--linkage", "ward", "--metric", "cosine"],
        ["--linkage ward", "--metric"],
    ),
    (
        "align-layer-unknown",
        ["align", *MD, "--out", "{out}", "--layers", "input,conv99"],
        ["--layers", "conv99", "input, conv1, conv2"],
    ),
    (
        "naps-layer-unknown",
        ["naps", *MD, "--out", "{out}", "--layers", "conv1,conv99"],
        ["--layers", "conv99", "conv1, conv2"],
    ),
    (
        "naps-clusters-more-than-groups",
        ["naps", *MD, "--out", "{out}", "--clusters", "500"],
        ["--clusters 500", "letter groups"],
    ),
    (
        "patterns-window-longer-than-any-utterance",
        ["patterns", *MD, "--out", "{out}", "--by", "letter", "--window", "99999"],
        ["--window 99999"],
    ),
    (
        "patterns-phoneme-with-shift",
        ["patterns", *MD, "--out", "{out}", "--by", "phoneme", "--shift-correction", "3"],
        ["--shift-correction"],
    ),
    ("eval-speakers-match-nothing", ["eval", *MD, "--speakers", "nobody*"], ["{corpus}", "'nobody*'"]),
    ("eval-empty-manifest", ["eval", *M, "--data", "{empty}"], ["{empty}"]),
    ("eval-empty-manifest-out-file", ["eval", *M, "--data", "{empty}", "--out", "{out}/eval.json"], ["{empty}"]),
    ("align-empty-manifest", ["align", *M, "--data", "{empty}", "--out", "{out}"], ["{empty}"]),
    (
        "patterns-empty-manifest",
        ["patterns", *M, "--data", "{empty}", "--out", "{out}", "--by", "letter"],
        ["{empty}"],
    ),
    ("naps-empty-manifest", ["naps", *M, "--data", "{empty}", "--out", "{out}"], ["{empty}"]),
    ("demo-empty-manifest", ["demo", *M, "--data", "{empty}", "--out", "{out}", "--only", "c"], ["{empty}"]),
    (
        "naps-phonemes-without-textgrids",
        ["naps", *M, "--data", "{nophones}", "--out", "{out}", "--by", "phoneme"],
        ["{nophones}", "phone segments"],
    ),
    (
        "patterns-phonemes-without-textgrids",
        ["patterns", *M, "--data", "{nophones}", "--out", "{out}", "--by", "phoneme"],
        ["{nophones}", "phone segments"],
    ),
    ("transcribe-one-missing-file", ["transcribe", *M, "{audio}", "{out}/missing.wav"], ["{out}/missing.wav"]),
    ("transcribe-a-directory", ["transcribe", *M, "{out}"], ["{out}", "not a file"]),
    # -- passed before issue 18 as well -----------------------------------------------------------------------
    ("eval-data-missing", ["eval", *M, "--data", "{out}/no_corpus"], ["{out}/no_corpus"]),
    (
        "eval-model-missing",
        ["eval", "--model", "{out}/missing.safetensors", "--data", "{corpus}"],
        ["missing.safetensors"],
    ),
    ("eval-out-is-a-directory", ["eval", *MD, "--out", "{out}"], ["--out"]),
]
#: cases that also run as a real process (argparse failures are cheap there: no torch import)
SUBPROCESS = [
    "eval-batch-size-0",
    "eval-limit-negative",
    "eval-speakers-comma",
    "naps-clusters-0",
    "naps-layers-comma",
    "patterns-window-0",
    "synth-fraction-nan",
    "demo-only-unknown-family",
    "transcribe-no-audio",
    "align-layer-unknown",
    "eval-empty-manifest",
    "naps-phonemes-without-textgrids",
]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("flags_ckpt") / "tiny.safetensors", build_model("tiny").eval())


@pytest.fixture
def places(tmp_path, tiny_ckpt, tiny_corpus, tiny_corpus_factory):
    """Placeholder values; ``out`` holds an earlier run's files (a directory, a JSON file, a nested folder)."""
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "naps_letter.json").write_text('{"layers": ["conv9"]}\n')
    (out / "eval.json").write_text('{"cer": 0.25}\n')
    (out / "figures" / "quality.png").write_bytes(bytes(range(256)))
    empty = tmp_path / "empty_manifest.jsonl"
    empty.write_text("")
    return {
        "ckpt": str(tiny_ckpt),
        "corpus": str(tiny_corpus.root),
        "nophones": lambda: str(tiny_corpus_factory(textgrids_beside_audio=False).root),
        "empty": str(empty),
        "out": str(out),
        "audio": str(tiny_corpus.expected[0].audio_path),
    }


def _fill(argv: list[str], fragments: list[str], places: dict) -> tuple[list[str], list[str]]:
    """Placeholders replaced (a corpus built on demand is built once for both lists)."""
    text = " ".join([*argv, *fragments])
    values = {k: (v() if callable(v) else v) for k, v in places.items() if "{" + k + "}" in text}
    return [a.format(**values) for a in argv], [f.format(**values) for f in fragments]


def _checksums(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file, and -> "dir" of every folder, under ``root``."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _assert_one_line(stderr: str, command: str, fragments: list[str]) -> None:
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not exactly one line:\n{stderr}"
    line = stderr.rstrip("\n")
    assert len(line) <= MAX_LINE, f"{len(line)} characters: {line}"
    assert line.startswith(f"asr-introspect {command}: error: "), line
    assert "Traceback" not in line and "internal error" not in line, line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"


def _main(argv: list[str]) -> int:
    """``main`` as a process would end: argparse's SystemExit becomes its code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("case_id, argv, fragments", CASES, ids=[case[0] for case in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_out_unchanged(case_id, argv, fragments, places, one_thread, capsys):
    argv, fragments = _fill(argv, fragments, places)
    out = Path(places["out"])
    before = _checksums(out)
    capsys.readouterr()
    code = _main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    _assert_one_line(captured.err, argv[0], fragments)
    assert _checksums(out) == before


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_bad_input_in_a_real_process(case_id, places, tmp_path):
    """The same in a real process: no warning, traceback or usage block reaches stderr."""
    _, argv, fragments = next(case for case in CASES if case[0] == case_id)
    argv, fragments = _fill(argv, fragments, places)
    out = Path(places["out"])
    before = _checksums(out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "asr_introspect.cli", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    _assert_one_line(proc.stderr, argv[0], fragments)
    assert proc.stdout == ""
    assert _checksums(out) == before


# -- the checks hold for the workflows called from Python, too --------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tiny_ckpt, tiny_corpus):
    from asr_introspect.loading import load_model_and_corpus

    model, utterances, _, data_path = load_model_and_corpus(tiny_ckpt, tiny_corpus.root)
    return model, utterances, data_path


def test_workflows_refuse_an_empty_selection_naming_the_corpus(loaded, tmp_path, one_thread):
    from asr_introspect.workflows.align import align
    from asr_introspect.workflows.eval import evaluate_corpus
    from asr_introspect.workflows.naps import naps
    from asr_introspect.workflows.patterns import patterns

    model, utterances, data_path = loaded
    for call in (
        lambda: evaluate_corpus(model, [], data_path=tmp_path / "m.jsonl"),
        lambda: align(model, [], tmp_path / "a", data_path=tmp_path / "m.jsonl"),
        lambda: patterns(model, [], tmp_path / "p", by="letter", data_path=tmp_path / "m.jsonl"),
        lambda: naps(model, [], tmp_path / "n", data_path=tmp_path / "m.jsonl"),
    ):
        with pytest.raises(CorpusError, match="m.jsonl: the corpus has no utterances"):
            call()
    for limit in (0, -1):
        with pytest.raises(InputError, match=f"--limit must be an integer >= 1, got {limit}"):
            evaluate_corpus(model, utterances, limit=limit, data_path=data_path)
    with pytest.raises(InputError, match="--batch-size must be an integer >= 1, got 0"):
        evaluate_corpus(model, utterances, batch_size=0)
    with pytest.raises(InputError, match="--speakers"):
        evaluate_corpus(model, utterances, speakers=",")
    assert not any(tmp_path.iterdir()), "nothing is written"


def test_eval_limit_takes_exactly_the_first_n(loaded):
    from asr_introspect.workflows.eval import evaluate_corpus

    model, utterances, data_path = loaded
    for n in (1, 2, len(utterances), len(utterances) + 5):
        run = evaluate_corpus(model, utterances, limit=n, data_path=data_path)
        assert [u.id for u in run.utterances] == [u.id for u in utterances[:n]]
        assert run.summary["utterances"] == min(n, len(utterances))


def test_a_long_list_of_layer_names_stays_short():
    from asr_introspect.workflows.checks import check_layers, name_list

    names = [f"encoder.layers.{i}.feed_forward" for i in range(48)]
    text = name_list(names)
    assert len(text) <= 160 and text.startswith(names[0]) and names[-1] in text and "(48 in all)" in text

    class Model:
        layer_names = names

    with pytest.raises(InputError) as info:
        check_layers(Model(), ["nope"] * 30)
    message = str(info.value)
    assert len(message) < MAX_LINE - 40 and message.startswith("--layers: unknown layers nope")


def test_transcribe_checks_every_file_before_the_first(loaded, tmp_path):
    """A missing last file is reported before anything is transcribed (no model call)."""
    from asr_introspect.errors import AudioError
    from asr_introspect.workflows.transcribe import transcribe_files

    model, utterances, _ = loaded
    calls = []

    class Counting:
        feature_config, alphabet, min_input_frames = model.feature_config, model.alphabet, model.min_input_frames

        def logits(self, *args):
            calls.append(1)
            return model.logits(*args)

    with pytest.raises(AudioError, match="missing.wav: no such audio file"):
        transcribe_files(Counting(), [utterances[0].audio_path, tmp_path / "missing.wav"])
    assert calls == []
    assert len(transcribe_files(Counting(), [utterances[0].audio_path])) == 1 and calls == [1]


# -- help ----------------------------------------------------------------------------------------------------------

MINE = ("synth", "eval", "transcribe", "align", "patterns", "naps", "demo")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: action.choices[name] for name in MINE}


@pytest.mark.parametrize("command", MINE)
def test_every_flag_has_help_that_states_its_default(command):
    sub = _subparsers()[command]
    text = " ".join(sub.format_help().split())
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{command} {name}: no help"
        if action.required or action.nargs == 0 or action.default is argparse.SUPPRESS or not action.option_strings:
            continue
        if action.default is None:
            assert "default" in action.help.lower(), f"{command} {name}: help does not say what omitting it means"
        else:
            shown = f"(default: {action.default})"
            assert shown in text or "default" in action.help.lower(), f"{command} {name}: {shown} not in --help"


def test_help_shows_defaults_once():
    text = " ".join(_subparsers()["synth"].format_help().split())
    assert text.count("(default: 200)") == 1 and text.count("(default: 0.1)") == 2


# -- the NLTK tagger fallback warning ------------------------------------------------------------------------------

_TAGGER_WARNING = """
import sys, warnings
import nltk
try:
    nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
    print("HAS_TAGGER")
except LookupError:
    pass
warnings.simplefilter("default")
from asr_introspect.g2p import text_to_phones
from asr_introspect import g2p
text_to_phones("the cat")
text_to_phones("refuse the object")
g2p._STATE.pop("g2p")  # load g2p-en and the tagger again: still no second warning
text_to_phones("object to the refuse")
"""


def test_tagger_fallback_warning_is_one_line_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "PYTHONWARNINGS")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", _TAGGER_WARNING], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    if "HAS_TAGGER" in proc.stdout:
        pytest.skip("NLTK's tagger data is installed here: no fallback, no warning")
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "TaggerFallbackWarning" in lines[0] and "averaged_perceptron_tagger_eng" in lines[0]
    assert len(lines[0]) <= MAX_LINE


def test_json_summary_unchanged_for_good_flags(tiny_ckpt, tiny_corpus, capsys, one_thread):
    """Valid flags still run: the last stdout line is the JSON summary."""
    argv = ["eval", "--model", str(tiny_ckpt), "--data", str(tiny_corpus.root), "--json", "--quiet"]
    assert main([*argv, "--limit", "2", "--batch-size", "1", "--speakers", "19, 84"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["utterances"] == 2 and summary["speakers"] == "19,84"
