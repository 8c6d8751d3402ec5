"""The command-line contract: one JSON object as the last stdout line with --json; exit 2 + one line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from asr_introspect.cli import main
from asr_introspect.models import build_model, save_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", build_model("tiny").eval())


def test_eval_prints_one_json_object_last(tiny_ckpt, tiny_corpus, capsys):
    assert main(["eval", "--model", str(tiny_ckpt), "--data", str(tiny_corpus.root), "--json", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["utterances"] == len(tiny_corpus.expected)
    assert 0.0 <= summary["cer"] and 0.0 <= summary["wer"]


def test_eval_speakers_selects_utterances(tiny_ckpt, tiny_corpus, capsys):
    speaker = tiny_corpus.expected[0].speaker
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_ckpt),
                "--data",
                str(tiny_corpus.root),
                "--json",
                "--quiet",
                "--speakers",
                speaker,
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["speakers"] == speaker
    assert summary["utterances"] == sum(u.speaker == speaker for u in tiny_corpus.expected) < len(tiny_corpus.expected)


def test_eval_out_has_per_speaker_rates(tiny_ckpt, tiny_corpus, tmp_path, capsys):
    from asr_introspect.decoding import error_rates

    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_ckpt), "--data", str(tiny_corpus.root), "--quiet", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    speakers = {u.speaker for u in tiny_corpus.expected}
    assert set(report["per_speaker"]) == speakers
    assert sum(r["utterances"] for r in report["per_speaker"].values()) == report["utterances"]
    cers = [r["cer"] for r in report["per_speaker"].values()]
    assert cers == sorted(cers, reverse=True)  # worst first
    speaker_of = {u.id: u.speaker for u in tiny_corpus.expected}
    for spk, rates in report["per_speaker"].items():
        mine = [e for e in report["examples"] if speaker_of[e["id"]] == spk]
        cer, wer = error_rates([e["reference"] for e in mine], [e["hypothesis"] for e in mine])
        assert rates == {"cer": round(cer, 4), "wer": round(wer, 4), "utterances": len(mine)}


def test_transcribe_json(tiny_ckpt, tiny_corpus, capsys):
    audio = str(tiny_corpus.expected[0].audio_path)
    assert main(["transcribe", "--model", str(tiny_ckpt), audio, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["transcripts"][0]["audio"] == audio


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["transcribe", "{ckpt}", "/nonexistent/clip.wav"], "/nonexistent/clip.wav"),
        (["eval", "--data", "/nonexistent/corpus"], "/nonexistent/corpus"),
        (["align", "--data", "{corpus}", "--out", "{tmp}/a", "--layers", "conv99"], "conv99"),
        (["eval", "--model", "{tmp}/missing.safetensors", "--data", "{corpus}"], "missing.safetensors"),
        (["eval", "--data", "{corpus}", "--speakers", "nobody*"], "no speaker matches 'nobody*'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, fragment, tiny_ckpt, tiny_corpus, tmp_path):
    argv = [a.format(ckpt=tiny_ckpt, corpus=tiny_corpus.root, tmp=tmp_path) for a in argv]
    if argv[0] == "transcribe":
        argv = ["transcribe", "--model", argv[1], argv[2]]
    elif "--model" not in argv:
        argv += ["--model", str(tiny_ckpt)]
    proc = subprocess.run([sys.executable, "-m", "asr_introspect.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-1500:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_help_does_not_import_torch():
    """`asr-introspect --help` and `<cmd> --help` build the parser from argparse and light modules only."""
    code = textwrap.dedent("""
        import contextlib, io, sys
        from asr_introspect.cli import SUBCOMMANDS, build_parser
        parser = build_parser()
        assert "torch" not in sys.modules
        for argv in [["--help"]] + [[name, "--help"] for name in SUBCOMMANDS]:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    parser.parse_args(argv)
                except SystemExit as exc:
                    assert exc.code == 0, argv
            assert "usage:" in out.getvalue(), argv
        heavy = sorted(m for m in ("torch", "torchaudio", "scipy", "matplotlib", "sklearn") if m in sys.modules)
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_flag_choices_equal_the_library_values():
    """The CLI keeps copies of choices that live in torch-importing modules; they must not drift."""
    from asr_introspect import naps
    from asr_introspect.attribution import METHODS
    from asr_introspect.cli import _choices
    from asr_introspect.workflows.figures import FAMILIES

    assert _choices.LINKAGES == naps.LINKAGES
    assert _choices.METRICS == naps.METRICS
    assert _choices.NAP_NORMALIZATIONS == naps.NORMALIZATIONS
    assert _choices.ATTRIBUTION_METHODS == METHODS
    assert _choices.FIGURE_FAMILIES == "".join(FAMILIES)


def test_eval_workflow_returns_what_the_cli_prints(tiny_ckpt, tiny_corpus, capsys):
    from asr_introspect.loading import load_model_and_corpus
    from asr_introspect.workflows.eval import evaluate_corpus

    model, utterances, model_path, data_path = load_model_and_corpus(tiny_ckpt, tiny_corpus.root)
    run = evaluate_corpus(model, utterances, limit=3, model_path=model_path, data_path=data_path)
    assert run.evaluation["utterances"] == len(run.utterances) == 3
    assert (
        main(["eval", "--model", str(tiny_ckpt), "--data", str(tiny_corpus.root), "--limit", "3", "--json", "--quiet"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the command line adds the corpus validation report of what it loaded
    assert printed.pop("corpus") == utterances.report.to_dict(limit=20)
    assert printed == json.loads(json.dumps(run.summary))


def test_demo_rejects_an_unknown_family_before_loading(tmp_path, capsys):
    """--only is checked by argparse: exit 2 before the (missing) model is looked at."""
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "demo",
                "--only",
                "az",
                "--model",
                str(tmp_path / "missing.safetensors"),
                "--out",
                str(tmp_path / "demo"),
                "--quiet",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--only: unknown figure family 'z'" in err and "missing.safetensors" not in err
    assert not (tmp_path / "demo").exists()


def test_corpus_problems_are_listed_in_the_summary_or_stop_the_run_with_strict(tiny_ckpt, tiny_corpus_factory, capsys):
    corpus = tiny_corpus_factory()
    transcripts = corpus.root / "19" / "198" / "19-198.trans.txt"
    with transcripts.open("a") as f:
        f.write("19-198-0099 A LINE WITHOUT AUDIO\n")
    argv = ["eval", "--model", str(tiny_ckpt), "--data", str(corpus.root), "--json", "--quiet"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["utterances"] == len(corpus.expected)
    assert summary["corpus"]["skipped"] == 1
    (item,) = summary["corpus"]["skipped_items"]
    assert item["id"] == "19-198-0099" and "without audio" in item["reason"]
    assert main([*argv, "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "19-198.trans.txt" in err[0] and "19-198-0099" in err[0]


def test_every_corpus_command_takes_speakers(tiny_ckpt, tiny_corpus, tmp_path, capsys):
    """--speakers is a shared data flag (e.g. 'flite_*' for the shipped corpus' flite part), not eval's alone."""
    speaker = tiny_corpus.expected[0].speaker
    argv = ["naps", "--model", str(tiny_ckpt), "--data", str(tiny_corpus.root), "--by", "letter"]
    assert main([*argv, "--out", str(tmp_path / "n"), "--json", "--quiet", "--speakers", speaker]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        summary["utterances"]["letter"]
        == sum(u.speaker == speaker for u in tiny_corpus.expected)
        < len(tiny_corpus.expected)
    )
    assert main([*argv, "--out", str(tmp_path / "m"), "--quiet", "--speakers", "nobody*"]) == 2
    assert "no speaker matches 'nobody*'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
