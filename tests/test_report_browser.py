"""The HTML report in a real browser: headless Chromium over the DevTools protocol.

A report is built in ``tmp_path`` from matplotlib PNGs, a WAV and a FLAC, served
by ``http.server`` on 127.0.0.1 and opened in Chromium (see ``browser_check.py``):
every image must load (``naturalWidth > 0``), every audio element must have a
readable source (HTTP 200, non-empty, metadata decoded, no media error), and the
console must stay free of errors. A full-page screenshot is saved in
``tmp_path`` and, when ``ASR_REPORT_SCREENSHOT_DIR`` is set, copied there as
``screenshot.png``. ``ASR_REPORT_DIR=out/demo`` additionally checks an existing
report (e.g. the demo's).

Chromium comes from the Debian package ``chromium`` (``make setup`` installs it
when run as root; ``ASR_CHROMIUM`` overrides the binary). Without it the tests
skip, except in CI (``CI=true``) or as root, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from browser_check import Chromium, find_chromium, serve_directory

from asr_introspect.audio import save_audio
from asr_introspect.io import save_json
from asr_introspect.plotting.common import new_figure, save_figure
from asr_introspect.report import write_report

CHROMIUM = find_chromium()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        reason = (
            "Chromium not found: install the Debian package `chromium` (`make setup` does so as root) "
            "or point ASR_CHROMIUM at a Chromium binary"
        )
        if _in_ci() or os.geteuid() == 0:
            pytest.fail(reason + " (required in CI and when running as root)")
        pytest.skip(reason)
    with Chromium(CHROMIUM) as browser:
        yield browser


def _tone(freq: float, seconds: float = 0.6, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.25 * np.sin(2 * np.pi * freq * t) * np.hanning(t.size)).astype(np.float32)


def build_report(out: Path) -> dict:
    """A small report with real PNGs (+ SVGs), a WAV and a FLAC; returns the summary."""
    rng = np.random.default_rng(0)
    figures = []
    for name, width in [("relevance", 6.0), ("patterns", 9.0), ("wide", 16.0)]:
        fig = new_figure(width, 3.0)
        ax = fig.add_subplot()
        ax.imshow(rng.normal(size=(32, 120)), aspect="auto", origin="lower", cmap="magma")
        ax.set_title(name)
        save_figure(fig, out / "figures" / f"{name}.png")
        figures.append({"path": f"figures/{name}.png", "caption": f"The {name} figure"})
    save_audio(out / "audio" / "pattern s.wav", _tone(440.0), 16000)
    save_audio(out / "audio" / "examples" / "19-198-0001.flac", _tone(220.0, 1.0), 16000)
    summary = {
        "title": "asr-introspect test report",
        "model_card_markdown": (
            "# Model card\n\nA **tiny** model for tests.\n\n| item | value |\n|---|--:|\n| layers | 11 |\n\n"
            "- trained on `nothing`\n- <script>console.error('injected')</script>\n"
        ),
        "key_numbers": {"CER": 0.25, "parameters": 80000, "preset": "tiny"},
        "sections": [
            {
                "id": "attribution",
                "title": "Sensitivity vs LRP",
                "text": "Relevance is **red** where the frame supports the letter.",
                "figures": figures[:2],
                "numbers": {"frame": 12},
                "audio": [{"path": "audio/pattern s.wav", "caption": "the *s* pattern, sonified"}],
                "tables": [{"caption": "letters", "columns": ["letter", "n"], "rows": [["s", 3], ["e", 5]]}],
            },
            {"id": "wide", "title": "A wide figure", "text": "Must fit the column.", "figures": figures[2:]},
        ],
        "examples": [
            {
                "id": "19-198-0001",
                "audio": "audio/examples/19-198-0001.flac",
                "reference": "hello world",
                "hypothesis": "hello word",
            }
        ],
    }
    save_json(out / "summary.json", summary)
    return summary


def test_report_loads_completely_in_chromium(chromium, tmp_path):
    out = tmp_path / "site" / "report"  # served from its parent: relative URLs under a sub-path
    summary = build_report(out)
    write_report(out)
    screenshot = tmp_path / "screenshot.png"
    with serve_directory(tmp_path / "site") as (base, server):
        report = chromium.check_page(base + "report/index.html", screenshot=screenshot)

    assert report.problems() == [], report.to_dict()
    assert report.title == summary["title"]
    n_figures = sum(len(s.get("figures", [])) for s in summary["sections"])
    assert len(report.images) == n_figures
    assert all(img["natural_width"] > 0 and img["natural_height"] > 0 for img in report.images)
    assert all(img["rendered_width"] <= 1280 for img in report.images)  # width-limited
    assert not report.horizontal_overflow
    assert report.scripts == 0 and report.console_errors == []
    # two players: the sonified pattern (WAV) and the example utterance (FLAC)
    assert sorted(a["type"] for a in report.audio) == ["audio/flac", "audio/wav"]
    for item in report.audio:
        assert item["error"] is None and item["ready_state"] >= 1
        assert item["duration"] == pytest.approx(0.6 if item["type"] == "audio/wav" else 1.0, abs=0.01)
    assert sorted((f["status"], f["bytes"] > 0) for f in report.fetched) == [(200, True), (200, True)]
    assert screenshot.read_bytes().startswith(PNG_SIGNATURE) and screenshot.stat().st_size > 10_000

    target = os.environ.get("ASR_REPORT_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, Path(target) / "screenshot.png")


def test_checker_reports_broken_pages(chromium, tmp_path):
    """The check itself can fail: missing/corrupt/external files and console errors are caught."""
    save_audio(tmp_path / "ok.wav", _tone(330.0), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wave file" * 10)
    (tmp_path / "broken.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
        "<title>broken</title></head><body>"
        "<img src='missing.png' alt='missing'>"
        "<img src='https://example.invalid/remote.png' alt='remote'>"
        "<audio controls src='ok.wav'></audio>"
        "<audio controls src='gone.wav'></audio>"
        "<audio controls src='corrupt.wav'></audio>"
        "<a href='#nowhere'>dead anchor</a>"
        "<script>console.error('boom from the page')</script>"
        "</body></html>"
    )
    with serve_directory(tmp_path) as (base, _server):
        report = chromium.check_page(base + "broken.html", timeout=30)
    problems = "\n".join(report.problems())
    assert f"image did not load: {base}missing.png" in problems
    assert "image did not load: https://example.invalid/remote.png" in problems
    assert "external resource: https://example.invalid/remote.png" in problems
    assert f"audio element error 4: {base}gone.wav" in problems
    assert "audio source not readable (HTTP 404" in problems
    assert f"audio element error 4: {base}corrupt.wav" in problems  # served fine, but not audio
    assert f"{base}ok.wav" not in problems
    assert "ERR_PROXY_CONNECTION_FAILED https://example.invalid/remote.png" in problems  # no network
    assert "console: boom from the page" in problems
    assert "link to a missing anchor: #nowhere" in problems
    assert report.images[0]["natural_width"] == 0


@pytest.mark.skipif(not os.environ.get("ASR_REPORT_DIR"), reason="set ASR_REPORT_DIR to check an existing report")
def test_existing_report(chromium, tmp_path):
    out = Path(os.environ["ASR_REPORT_DIR"])
    assert (out / "index.html").is_file(), f"{out}/index.html not found (run `asr-introspect demo --out {out}`)"
    screenshot = tmp_path / "screenshot.png"
    with serve_directory(out) as (base, _server):
        report = chromium.check_page(base + "index.html", screenshot=screenshot, timeout=60)
    assert report.problems() == [], report.to_dict()
    assert report.images, "the report has no figures"
    target = os.environ.get("ASR_REPORT_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, Path(target) / "screenshot.png")
