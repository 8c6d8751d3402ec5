"""``asr-introspect claims`` end to end on a tiny model: files, JSON line, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from asr_introspect.models import build_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("claims") / "tiny.safetensors", build_model("tiny").eval())


def _main(argv) -> int:
    """The ``asr-introspect`` dispatch with the claims subcommand registered (as cli/__init__.py does)."""
    from asr_introspect.cli import claims
    from asr_introspect.cli._common import OneLineArgumentParser, add_debug, run_command

    parser = OneLineArgumentParser(prog="asr-introspect")
    add_debug(parser)
    sub = parser.add_subparsers(dest="command", parser_class=OneLineArgumentParser)
    claims.register(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors: one line, exit 2
        return int(exc.code)
    return run_command(args, argv=argv)


def test_claims_cli_writes_files_and_one_json_line(checkpoint, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "claims"
    argv = ["claims", "--model", str(checkpoint), "--data", str(tiny_corpus.root), "--out", str(out)]
    argv += [
        "--bootstrap",
        "5",
        "--max-frames",
        "120",
        "--min-count",
        "1",
        "--layer-claims-only",
        "--layers",
        "conv2,conv9,conv10,conv11",
        "--json",
        "--quiet",
    ]
    assert _main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["claims"]) == {
        "phoneme_clusters_layer9",
        "phoneme_clusters_sharper_layer10",
        "letters_best_at_output",
    }
    assert summary["utterances"] == 7 and summary["bootstrap"] == 5
    names = {Path(p).name for p in summary["files"]}
    assert {"claims.json", "layer_trend.npz", "cka.png", "claims.png", "index.html"} <= names
    # the figures with their captions, the claims chart first (the demo's section shows these)
    assert summary["figures"][0]["path"] == "figures/claims.png"
    assert all((out / f["path"]).is_file() and f["caption"] for f in summary["figures"])
    assert {f["path"] for f in summary["figures"]} == {
        str(Path(p).relative_to(out)) for p in summary["files"] if p.endswith(".png")
    }
    report = json.loads((out / "claims.json").read_text())
    assert report["settings"]["layer_randomization"].startswith("independent")
    assert {c["verdict"] for c in report["claims"]} <= {"supported", "not supported", "inconclusive"}
    trend = np.load(out / "layer_trend.npz")
    assert trend["phoneme/manner/ward@model/samples"].shape == (5, 4)
    assert trend["letter/vowel/ward@random/band"].shape == (2, 4)
    assert (out / "run.json").is_file()
    assert "Claims" in (out / "index.html").read_text()


@pytest.mark.parametrize(
    "flags, needle",
    [(["--bootstrap", "0"], "--bootstrap"), (["--layers", "conv99"], "conv99"), (["--min-count", "x"], "--min-count")],
)
def test_claims_cli_bad_flags_exit_2_with_one_line(checkpoint, tiny_corpus, tmp_path, capsys, flags, needle):
    out = tmp_path / "bad"
    argv = ["claims", "--model", str(checkpoint), "--data", str(tiny_corpus.root), "--out", str(out), "--quiet"]
    code = _main(argv + flags)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()
