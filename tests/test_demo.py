"""The demo end to end on a tiny model and corpus: every figure family, summary.json, the report in Chromium."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from asr_introspect.cli import main
from asr_introspect.models import build_model, save_checkpoint

LOADS: dict[str, int] = {}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("demo_ckpt") / "tiny.safetensors", build_model("tiny").eval())


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory, tiny_corpus, tiny_ckpt):
    from asr_introspect import loading

    def counted(name, function):
        def wrapper(*args, **kwargs):
            LOADS[name] = LOADS.get(name, 0) + 1
            return function(*args, **kwargs)

        return wrapper

    out = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loading, "load_checkpoint", counted("model", loading.load_checkpoint))
        patch.setattr(loading, "load_corpus", counted("corpus", loading.load_corpus))
        code = main(
            [
                "demo",
                "--model",
                str(tiny_ckpt),
                "--data",
                str(tiny_corpus.root),
                "--out",
                str(out),
                "--fast",
                "--quiet",
                "--json",
            ]
        )
    assert code == 0
    return out


def test_demo_loads_model_and_corpus_once(demo_out):
    assert LOADS == {"model": 1, "corpus": 1}


def test_demo_writes_every_section_and_the_report(demo_out):
    summary = json.loads((demo_out / "summary.json").read_text())
    assert [s["id"] for s in summary["sections"]] == [
        "attribution",
        "optimal-inputs",
        "ctc-alignment",
        "patterns",
        "naps",
        "dissection",
        "wavelets",
        "concepts",
        "claims",
    ]
    for section in summary["sections"]:
        assert section["figures"], section["id"]
        for figure in section["figures"]:
            assert (demo_out / figure["path"]).stat().st_size > 0
    assert summary["examples"] and (demo_out / summary["examples"][0]["audio"]).is_file()
    html = (demo_out / "index.html").read_text()
    assert all(s["title"] in html for s in summary["sections"])


def test_demo_report_loads_cleanly_in_chromium(demo_out):
    from browser_check import check_report, find_chromium

    if find_chromium() is None:
        if os.environ.get("CI") == "true" or os.geteuid() == 0:
            pytest.fail("chromium is not installed (make setup installs it as root)")
        pytest.skip("chromium is not installed")
    report = check_report(demo_out, screenshot=demo_out / "screenshot.png")
    assert report.problems() == []
    assert len(report.images) >= 5 and all(img["natural_width"] > 0 for img in report.images)
    assert report.audio, "the report has audio players"


def test_experiment_script_runs_a_family(tiny_ckpt, tiny_corpus, tmp_path, capsys):
    from asr_introspect.workflows.script import main as script_main

    out = tmp_path / "c"
    assert (
        script_main(
            "c",
            ["--model", str(tiny_ckpt), "--data", str(tiny_corpus.root), "--out", str(out), "--quiet", "--limit", "4"],
        )
        == 0
    )
    section = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert section["id"] == "ctc-alignment" and section["figures"]
    assert all(Path(f["path"]).is_file() for f in section["figures"])
    saved = json.loads((out / "c_ctc_alignment.json").read_text())
    assert saved["settings"]["limit"] == 4
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["command"] == "figure-c" and manifest["status"] == "complete"
    assert set(manifest["files"]) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"run.json"}
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert script_main("c", ["--model", str(tmp_path / "missing.safetensors"), "--out", str(out), "--quiet"]) == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # a failed run changes nothing


def test_demo_numbers_and_arrays_equal_the_code_before_the_data_path_refactor(demo_out):
    """The reference was written by the demo of commit 4a41d7c (before the corpus stream and the workflows)
    on the same tiny model and corpus: every number of summary.json and every .npz array it wrote."""
    from fingerprint import compare, fingerprint

    reference = json.loads((Path(__file__).parent / "data" / "reference_tiny_demo.json").read_text())
    later = {"f_dissection", "g_wavelets", "h_concepts", "i_claims"}  # the families (f)-(i) came after that commit

    def added_later(difference: str) -> bool:
        where = difference.removeprefix("summary /sections/")
        return difference.endswith("only in actual") and (
            difference.split("/")[0] in later or where.split("/")[0] in ("dissection", "wavelets", "concepts", "claims")
        )

    assert [d for d in compare(reference, fingerprint(demo_out)) if not added_later(d)] == []
