"""The demo end to end on a tiny model and corpus: every figure family, summary.json, the report in Chromium."""

from __future__ import annotations

import json
import os

import pytest
import torch

from asr_introspect.cli import main
from asr_introspect.models import build_model, save_checkpoint


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory, tiny_corpus):
    tmp = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / "tiny.safetensors", build_model("tiny").eval())
    out = tmp / "out"
    code = main(["demo", "--model", str(ckpt), "--data", str(tiny_corpus.root), "--out", str(out),
                 "--fast", "--quiet", "--json"])
    assert code == 0
    return out


def test_demo_writes_every_section_and_the_report(demo_out):
    summary = json.loads((demo_out / "summary.json").read_text())
    assert [s["id"] for s in summary["sections"]] == ["attribution", "optimal-inputs", "ctc-alignment",
                                                      "patterns", "naps"]
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
