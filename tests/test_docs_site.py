"""The documentation site: it builds with no warnings, its tutorials execute, and it works in a browser.

One ``mkdocs build --strict`` per test module (about a minute on two cores: the three
tutorials run on the shipped model and corpus while the site builds) into ``tmp_path``;
the tests then read the built pages, and open every one of them in headless Chromium
(``docs_browser_check.py``, offline like the report's browser test): every page loads,
no internal link or image is broken, and the search finds pages.

The build needs the ``docs`` extra (MkDocs, mkdocs-material, mkdocstrings, mkdocs-jupyter,
latex2mathml); without it, or without Chromium, the tests skip, except in CI (``CI=true``)
where a missing tool is a failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser_check import Chromium, find_chromium, serve_directory
from docs_browser_check import SiteReport, check_links, check_site, search, site_pages

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.ipynb"))
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocs_jupyter", "latex2mathml", "ipykernel")
sys.path.insert(0, str(DOCS / "hooks"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _need(missing: list[str], what: str) -> None:
    if missing:
        reason = f"{what} not installed ({', '.join(missing)}): pip install -e '.[docs]'"
        if _in_ci():
            pytest.fail(reason + " (required in CI)")
        pytest.skip(reason)


def _nav_pages(nav) -> list[str]:
    """Every Markdown/notebook path in mkdocs.yml's nav, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def _mkdocs_config() -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built with --strict into a temporary folder; the build log is kept beside it."""
    _need([p for p in DOCS_PACKAGES if importlib.util.find_spec(p) is None], "the docs extra")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out / "html")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (out / "build.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out / "html"


# --------------------------------------------------------------------------- the build


def test_every_nav_page_is_built_without_warnings(site):
    log = (site.parent / "build.log").read_text()
    assert not re.search(r"^(WARNING|ERROR)\b", log, re.M), log
    pages = _nav_pages(_mkdocs_config()["nav"])
    assert len(pages) >= 25
    for page in pages:
        assert (DOCS / page).is_file(), f"nav names {page}, which is not in docs/"
        html = site / re.sub(r"\.(md|ipynb)$", ".html", page)
        assert html.is_file(), f"{page} was not built"
    assert (site / "search" / "search_index.json").is_file()


def test_cli_reference_lists_every_subcommand_and_option(site):
    from asr_introspect.cli import build_parser

    html = (site / "reference" / "cli.html").read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert len(subparsers.choices) >= 12
    for name, sub in subparsers.choices.items():
        assert f'id="{name}"' in html, f"no section for the subcommand {name}"
        section = html.split(f'id="{name}"', 1)[1]
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"<code>{flag}</code>" in section, f"{name}: {flag} missing from the CLI reference"
    assert "<!-- cli-reference -->" not in html


def test_cli_reference_of_a_known_parser():
    """The generator on a small parser gives exactly the expected table rows."""
    from cli_reference import subcommand_markdown

    parser = argparse.ArgumentParser(prog="tool demo")
    parser.add_argument("--by", choices=("letter", "phoneme"), default="letter", help="group by %(choices)s")
    parser.add_argument("--layers", nargs="+", metavar="LAYER", help="layers | names")
    parser.add_argument("--out", required=True, help="output <dir>")
    parser.add_argument("--json", action="store_true", help="print JSON")
    text = subcommand_markdown("demo", parser, "run the demo")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `--by` | `letter` `phoneme` | `letter` | group by ('letter', 'phoneme') |",
        "| `--layers` | `LAYER` ... |  | layers &#124; names |",
        "| `--out` | `OUT` | required | output &lt;dir&gt; |",
        "| `--json` |  |  | print JSON |",
    ]
    assert text.startswith("## `demo`\n\nRun the demo.\n")


def test_formulas_become_mathml(site):
    from mathml import render_math

    html = render_math('<p><span class="arithmatex">\\(R_i = \\sum_j z_{ij}\\)</span></p>', "test")
    assert html.startswith('<p><math alttext="R_i = \\sum_j z_{ij}" ')
    assert "<msub><mi>R</mi><mi>i</mi></msub>" in html and "&#x02211;" in html  # R_i and the sum sign
    with pytest.raises(ValueError, match="test: cannot convert formula"):
        render_math('<span class="arithmatex">\\(x^\\)</span>', "test")  # a superscript with nothing

    page = (site / "key-ideas.html").read_text()
    assert page.count("<math ") >= 10 and 'display="block"' in page
    assert "arithmatex" not in page and "\\(" not in page
    assert not re.search(r"<script[^>]+(mathjax|katex)", page, re.I)


def test_tutorials_are_stored_without_outputs_and_built_with_them(site):
    assert [p.stem for p in TUTORIALS] == ["lrp_sanity", "naps_own_model", "patterns"]
    for path in TUTORIALS:
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: outputs in git"
        html = (site / "tutorials" / f"{path.stem}.html").read_text()
        assert html.count("data:image/png;base64") >= 1, f"{path.name}: no figure in the rendered tutorial"
        assert "Traceback" not in html, f"{path.name}: a cell raised"
        stderr = re.findall(r'(?<!\[)data-mime-type="application/vnd.jupyter.stderr"', html)  # not the CSS rule
        assert not stderr, f"{path.name}: a cell wrote to stderr (a warning?)"
    # numbers the tutorials compute on the shipped model appear in the pages
    patterns = (site / "tutorials" / "patterns.html").read_text()
    lags = [float(x) for x in re.findall(r"peak (-?[\d.]+) ms", patterns)]
    assert len(lags) == 2 and lags[0] < -50 and abs(lags[1]) < abs(lags[0])  # the CTC lag, then corrected
    lrp = (site / "tutorials" / "lrp_sanity.html").read_text()
    assert re.search(r"correlation of sum\(relevance\) with the target logit: 0\.9\d", lrp)
    naps = (site / "tutorials" / "naps_own_model.html").read_text()
    assert "conv9 NAPs: (39, 448)" in naps


def test_included_pages_follow_their_sources(site):
    benchmarks = (site / "benchmarks.html").read_text()
    model_card = (site / "model-card.html").read_text()
    for source, html in (
        (ROOT / "benchmarks" / "README.md", benchmarks),
        (ROOT / "asr_introspect/data/MODEL_CARD.md", model_card),
    ):
        headings = re.findall(r"^#+ (.+)$", source.read_text(), re.M)
        assert headings
        for heading in headings[:6]:
            words = re.sub(r"[`*]", "", heading).split()[:3]
            assert " ".join(words) in re.sub(r"<[^>]+>", "", html), f"{source.name}: {heading!r} not in the page"


def test_api_reference_documents_the_public_functions(site):
    pages = {name: (site / "reference" / "api" / f"{name}.html").read_text() for name in ("naps", "attribution")}
    for name in ("compute_naps", "cluster_naps", "naps_quality", "NAPEstimator"):
        assert f'id="asr_introspect.naps.{name}"' in pages["naps"], name
    for name in ("attribute", "randomization_test", "perturbation_curves"):
        assert f'id="asr_introspect.attribution.{name}"' in pages["attribution"], name
    for page in pages.values():  # the docstrings' Sphinx roles are tidied away
        assert not re.search(r":(func|class|mod|meth):<code>", page)


def test_sphinx_roles_become_code_spans():
    from rst_roles import tidy_roles

    html = (
        "<p>see :func:<code>~asr_introspect.stream.fit_estimators</code> and :mod:<code>.cluster</code>. Example::</p>"
    )
    assert tidy_roles(html) == "<p>see <code>fit_estimators</code> and <code>.cluster</code>. Example:</p>"


# --------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def chromium():
    executable = find_chromium()
    if executable is None:
        reason = "Chromium not found: install the Debian package `chromium` (`make setup` does so as root)"
        if _in_ci() or os.geteuid() == 0:
            pytest.fail(reason + " (required in CI and when running as root)")
        pytest.skip(reason)
    with Chromium(executable) as browser:
        yield browser


def test_every_page_loads_with_working_links_and_search(site, chromium):
    pages = site_pages(site)
    with serve_directory(site) as (base, _server):
        report = check_site(chromium, base, site, pages)
        found = search(chromium, base + "getting-started.html", "receptive field")
    assert report.problems() == [], json.dumps(report.to_dict(), indent=1)[:6000]
    assert len(report.pages) == len(pages) >= 25
    assert sum(len(links) for links in report.links.values()) > 500
    assert report.math["key-ideas.html"] >= 10 and report.math["analyses/attribution.html"] >= 10
    assert found["error"] is None and found["results"], found
    hrefs = [r["href"] for r in found["results"]]
    assert any("key-ideas.html" in h for h in hrefs), hrefs  # the page that defines receptive fields


def test_site_checker_reports_broken_links(chromium, tmp_path):
    """The link check can fail: a missing page, a missing anchor on another page and a broken image."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'><title>i</title></head>"
        "<body><a href='sub/page.html#there'>ok</a> <a href='sub/page.html#nowhere'>bad anchor</a> "
        "<a href='missing.html'>missing</a> <a href='https://example.invalid/'>elsewhere</a></body></html>"
    )
    (tmp_path / "sub" / "page.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'><title>p</title></head>"
        "<body><h2 id='there'>there</h2><a href='../index.html'>home</a><img src='gone.png' alt='gone'></body></html>"
    )
    with serve_directory(tmp_path) as (base, _server):
        report = check_site(chromium, base, tmp_path)
    problems = "\n".join(report.problems())
    assert "index.html: link to a missing anchor sub/page.html#nowhere" in problems
    assert "index.html: broken link to missing.html" in problems
    assert f"sub/page.html: image did not load: {base}sub/gone.png" in problems
    assert "#there" not in problems and "example.invalid" not in problems and "../index.html" not in problems


def test_link_check_without_a_browser(tmp_path):
    """check_links alone, on hand-made link lists (resolved URLs, as the browser gives them)."""
    (tmp_path / "a.html").write_text('<h1 id="top">a</h1>')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "index.html").write_text('<h1 id="b">b</h1>')
    base = "http://127.0.0.1:1/"
    report = SiteReport(
        base, links={"a.html": [base + "b/", base + "b/#b", base + "b/#c", base + "a.html#top", base + "c.html"]}
    )
    report.ids = {"a.html": ["top"]}
    check_links(report, tmp_path)
    assert report.link_problems == [
        "a.html: link to a missing anchor b/index.html#c",
        f"a.html: broken link to c.html ({base}c.html)",
    ]
