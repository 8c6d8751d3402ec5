"""The static HTML report: markdown subset, validation of summary.json, page content."""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr_introspect.audio import save_audio
from asr_introspect.errors import InputError
from asr_introspect.report import copy_asset, markdown_to_html, render_report, validate_summary, write_report

# A 1x1 PNG (the report only checks that the file exists and is not empty).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2ee2f9c0000000049454e44ae426082"
)

ALLOWED_TAGS = {
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "ul",
    "ol",
    "li",
    "code",
    "pre",
    "strong",
    "em",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "div",
    "blockquote",
    "hr",
}
ALLOWED_ATTRS = {"href", "class", "style", "start"}


# --------------------------------------------------------------------------- markdown


def test_headings_shift_and_cap():
    out = markdown_to_html("# Top\n### Three ###\n###### Six", heading_offset=2)
    assert "<h3>Top</h3>" in out
    assert "<h5>Three</h5>" in out
    assert "<h6>Six</h6>" in out  # capped
    assert markdown_to_html("#hashtag") == "<p>#hashtag</p>"


def test_raw_html_is_escaped_everywhere():
    text = (
        "<script>alert(1)</script> & <b onclick=x>bold</b>\n\n"
        "# <img src=x onerror=alert(1)>\n\n"
        "- <iframe src=//evil>\n\n"
        "| <th> | b |\n|---|---|\n| <script> | `<b>` |\n\n"
        "```\n<script>in a block</script>\n```\n\n"
        "`<script>` in a span"
    )
    out = markdown_to_html(text)
    assert "<script" not in out and "<iframe" not in out and "<img" not in out and "<b " not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b onclick=x&gt;bold&lt;/b&gt;" in out
    assert "<code>&lt;script&gt;</code> in a span" in out
    assert "<pre><code>&lt;script&gt;in a block&lt;/script&gt;</code></pre>" in out


def test_inline_formatting():
    out = markdown_to_html("A **bold** and *italic* `x**y**` word, 2 * 3 * 4 and snake_case_name.")
    assert out == (
        "<p>A <strong>bold</strong> and <em>italic</em> <code>x**y**</code> word, 2 * 3 * 4 and snake_case_name.</p>"
    )
    assert markdown_to_html(r"\*not italic\* and \`not code\`") == "<p>*not italic* and `not code`</p>"


def test_links_keep_only_safe_urls():
    out = markdown_to_html(
        "[ok](https://example.org/a?b=1&c=2) [rel](figures/a.png) [mail](mailto:a@b.c) "
        '[bad](javascript:alert(1)) [bad2](JaVaScRiPt:x) [data](data:text/html,x) [q](http://a"onmouseover="x)'
    )
    assert '<a href="https://example.org/a?b=1&amp;c=2">ok</a>' in out
    assert '<a href="figures/a.png">rel</a>' in out
    assert '<a href="mailto:a@b.c">mail</a>' in out
    assert markdown_to_html("[the `x` **y**](#model-card)") == (
        '<p><a href="#model-card">the <code>x</code> <strong>y</strong></a></p>'
    )
    assert markdown_to_html("\x000\x00 [a](b)") == '<p>\ufffd0\ufffd <a href="b">a</a></p>'
    assert "javascript" not in re.sub(r"\[bad\]\(javascript:alert\(1\)\)", "", out).lower().replace(
        "[bad2](javascript:x)", ""
    )
    assert "[bad](javascript:alert(1))" in out  # left as text
    assert 'href="data:' not in out
    assert 'onmouseover="' not in out and "&quot;onmouseover=&quot;" in out


def test_lists_nested_ordered_and_loose():
    out = markdown_to_html("- one\n- two\n  continued\n  - nested\n- three\n\n3. c\n4. d\n\n1) x")
    assert out.startswith("<ul>\n<li>one</li>\n<li>two\ncontinued\n<ul>\n<li>nested</li>\n</ul></li>")
    assert '<ol start="3">\n<li>c</li>\n<li>d</li>\n</ol>' in out
    assert out.endswith("<ol>\n<li>x</li>\n</ol>")  # another delimiter starts another list
    loose = markdown_to_html("- a\n\n- b")
    assert loose == "<ul>\n<li><p>a</p></li>\n<li><p>b</p></li>\n</ul>"
    # '**bold**' at a line start and '---' are not list items
    assert markdown_to_html("**bold** start") == "<p><strong>bold</strong> start</p>"
    assert markdown_to_html("text\n\n---\n\nmore") == "<p>text</p>\n<hr>\n<p>more</p>"


def test_tables_alignment_escaped_pipes_and_ragged_rows():
    out = markdown_to_html("| a | b | c |\n|:--|:-:|--:|\n| 1 | `x|y` | a \\| b |\n| only |")
    assert '<th style="text-align:left">a</th>' in out
    assert '<th style="text-align:center">b</th>' in out
    assert '<td style="text-align:right">a | b</td>' in out
    assert "<code>x|y</code>" in out
    assert out.count("<tr>") == 3 and out.count("<td") == 6  # the short row is padded


def test_code_blocks_and_quotes():
    out = markdown_to_html("```python\nx = 1 < 2\n\n# not a heading\n```\n\n    indented\n    code\n\n> quote\n> more")
    assert '<pre><code class="language-python">x = 1 &lt; 2\n\n# not a heading</code></pre>' in out
    assert "<pre><code>indented\ncode</code></pre>" in out
    assert "<blockquote><p>quote\nmore</p></blockquote>" in out
    # an unclosed fence runs to the end and is still escaped
    assert markdown_to_html("```\n<b>") == "<pre><code>&lt;b&gt;</code></pre>"


class _TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            list("<>&\"'`*_-#|:[]()\\/ \n\tabc=.1!~")
            + ["javascript:", "script", "onerror", "http://", "    ", "```", "- ", "1. ", "> "]
        ),
        max_size=60,
    ).map("".join)
)
def test_output_only_contains_whitelisted_markup(text):
    out = markdown_to_html(text)
    parser = _TagCollector()
    parser.feed(out)
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, (text, out)
        for name, value in attrs:
            assert name in ALLOWED_ATTRS, (text, out)
            if name == "href":
                assert not html.unescape(value or "").lower().strip().startswith(("javascript", "data")), out


# --------------------------------------------------------------------------- report


def _tone(seconds=0.5, freq=440.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_report_dir(root: Path) -> dict:
    """A report folder with two sections, figures, WAV/FLAC audio; returns the summary."""
    (root / "figs").mkdir(parents=True)
    (root / "figs" / "a.png").write_bytes(PNG)
    (root / "figs" / "a.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "figs" / "b c.png").write_bytes(PNG)  # a space: must be URL-encoded
    save_audio(root / "audio" / "pattern.wav", _tone(), 16000)
    save_audio(root / "audio" / "utt 1.flac", _tone(freq=220.0), 16000)
    summary = {
        "title": "Report <for> you",
        "model_card_markdown": "# Model card\n\nTrained on **synthetic** speech.\n\n- 11 layers\n- `small` preset\n",
        "key_numbers": {"CER": 0.123456, "parameters": 4260000, "preset": "small", "missing": None},
        "sections": [
            {
                "id": "lrp",
                "title": "Sensitivity vs LRP",
                "text": "Read the **left** map first. <script>alert('x')</script>",
                "figures": [
                    {"path": "figs/a.png", "caption": "LRP relevance"},
                    {"path": "./figs/b c.png", "caption": ""},
                ],
                "numbers": {"frame": 42},
                "audio": [],
                "tables": [],
            },
            {
                "id": "patterns",
                "title": "Letter patterns",
                "text": "Listen to the patterns.",
                "figures": [],
                "numbers": {},
                "audio": [{"path": "audio/pattern.wav", "caption": "letter *s* pattern"}],
                "tables": [
                    {"caption": "Top letters", "columns": ["letter", "count"], "rows": [["s", 120], ["<e>", 0.5]]}
                ],
            },
        ],
        "examples": [
            {"id": "19-198-0001", "audio": "audio/utt 1.flac", "reference": "hello world", "hypothesis": "hello word"}
        ],
    }
    (root / "summary.json").write_text(json.dumps(summary))
    return summary


def _attrs(page: str, tag: str, attr: str) -> list[str]:
    parser = _TagCollector()
    parser.feed(page)
    return [dict(attrs)[attr] for t, attrs in parser.tags if t == tag and attr in dict(attrs)]


def test_every_section_figure_and_audio_appears(tmp_path):
    summary = make_report_dir(tmp_path)
    index = write_report(tmp_path)
    assert index == tmp_path / "index.html"
    page = index.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for sec in summary["sections"]:
        assert f'id="{sec["id"]}"' in page and f'href="#{sec["id"]}"' in page
        assert html.escape(sec["title"]) in page
    for anchor in ("key-numbers", "examples", "model-card"):
        assert f'id="{anchor}"' in page and f'href="#{anchor}"' in page
    assert _attrs(page, "img", "src") == ["figs/a.png", "figs/b%20c.png"]
    assert _attrs(page, "img", "alt") == ["LRP relevance", "Figure 2 of the section Sensitivity vs LRP"]
    assert "figs/a.svg" in _attrs(page, "a", "href")  # the SVG next to a PNG is linked
    sources = list(zip(_attrs(page, "source", "src"), _attrs(page, "source", "type")))
    assert sources == [("audio/pattern.wav", "audio/wav"), ("audio/utt%201.flac", "audio/flac")]
    assert page.count("<audio controls") == 2
    # text, numbers, tables, examples and the model card
    assert "Read the <strong>left</strong> map first." in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<title>Report &lt;for&gt; you</title>" in page
    assert "0.1235" in page and "4,260,000" in page and "small" in page
    assert ">42<" in page and "Top letters" in page and "&lt;e&gt;" in page
    assert "hello <del>world</del>" in page and "hello <ins>word</ins>" in page
    # the card's leading '# Model card' is the section heading (not repeated)
    assert '<section id="model-card"><h2>Model card</h2>' in page and "<h3>Model card</h3>" not in page
    assert "<strong>synthetic</strong>" in page


def test_page_is_static_and_self_contained(tmp_path):
    make_report_dir(tmp_path)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "script-src 'none'" in page  # CSP: nothing can run even if injected
    assert not re.search(r"""(src|href)=["']?(https?:|//|/)""", page)
    assert "<style>" in page and "@import" not in page and "url(" not in page
    assert str(tmp_path) not in page


def test_relative_paths_survive_moving_the_folder(tmp_path):
    make_report_dir(tmp_path / "a")
    write_report(tmp_path / "a")
    moved = tmp_path / "elsewhere" / "report"
    shutil.move(tmp_path / "a", moved)
    page = (moved / "index.html").read_text(encoding="utf-8")
    links = _attrs(page, "img", "src") + _attrs(page, "source", "src") + _attrs(page, "a", "href")
    files = [unquote(u) for u in links if not u.startswith("#")]
    assert len(files) >= 6
    for rel in files:
        assert (moved / rel).is_file(), rel


@pytest.mark.parametrize("where", ["figure", "audio", "example"])
def test_missing_file_raises_and_writes_nothing(tmp_path, where):
    summary = make_report_dir(tmp_path)
    (tmp_path / "index.html").write_text("old page")
    victim = {"figure": "figs/a.png", "audio": "audio/pattern.wav", "example": "audio/utt 1.flac"}[where]
    (tmp_path / victim).unlink()
    with pytest.raises(InputError, match=re.escape(str(tmp_path / victim))):
        write_report(tmp_path)
    assert (tmp_path / "index.html").read_text() == "old page"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left
    assert summary  # the summary itself was fine


def test_empty_file_is_rejected(tmp_path):
    make_report_dir(tmp_path)
    (tmp_path / "figs" / "a.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"a\.png.*empty"):
        write_report(tmp_path)
    assert not (tmp_path / "index.html").exists()


@pytest.mark.parametrize(
    "bad_path, message",
    [
        ("/etc/hosts.png", "not a relative path"),
        ("../outside.png", "outside the report folder"),
        ("figs/../../x.png", "outside the report folder"),
        ("https://example.org/a.png", "not a relative path"),
        ("figs/a.txt", "unsupported figure type"),
    ],
)
def test_bad_paths_are_rejected(tmp_path, bad_path, message):
    summary = make_report_dir(tmp_path)
    summary["sections"][0]["figures"][0]["path"] = bad_path
    with pytest.raises(InputError, match=message):
        validate_summary(summary, tmp_path)


def test_summary_errors_name_the_entry(tmp_path):
    with pytest.raises(InputError, match="summary.json.*not found"):
        write_report(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        write_report(tmp_path)

    summary = make_report_dir(tmp_path / "r")
    bad = json.loads(json.dumps(summary))
    bad["sections"][1]["id"] = "lrp"
    with pytest.raises(InputError, match=r"sections\[1\]\.id = 'lrp' is used twice"):
        validate_summary(bad, tmp_path / "r")
    bad["sections"][1]["id"] = "model-card"
    with pytest.raises(InputError, match="reserved"):
        validate_summary(bad, tmp_path / "r")
    bad["sections"][1]["id"] = "has space"
    with pytest.raises(InputError, match="not a valid anchor"):
        validate_summary(bad, tmp_path / "r")
    bad = json.loads(json.dumps(summary))
    bad["sections"][1]["tables"][0]["rows"].append(["x"])
    with pytest.raises(InputError, match=r"tables\[0\]\.rows\[2\] must be a list of 2 cells"):
        validate_summary(bad, tmp_path / "r")
    bad = json.loads(json.dumps(summary))
    del bad["sections"][0]["title"]
    with pytest.raises(InputError, match=r"sections\[0\] \('lrp'\) has no 'title'"):
        validate_summary(bad, tmp_path / "r")
    bad = json.loads(json.dumps(summary))
    bad["sections"][0]["figures"] = "figs/a.png"
    with pytest.raises(InputError, match="figures must be list"):
        validate_summary(bad, tmp_path / "r")


def test_minimal_summary_and_number_formatting(tmp_path):
    (tmp_path / "summary.json").write_text(
        json.dumps({"title": "t", "key_numbers": {"nan": float("nan"), "big": 1e9, "tiny": 1.5e-5, "flag": True}})
    )
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "n/a" in page and "1e+09" in page and "1.5e-05" in page and ">yes<" in page
    assert 'id="examples"' not in page and 'id="model-card"' not in page
    normalized = validate_summary({"title": "t"}, tmp_path)
    assert normalized == {"title": "t", "model_card_markdown": "", "key_numbers": {}, "sections": [], "examples": []}
    assert "<h1>t</h1>" in render_report(normalized, tmp_path, generated="now")


def test_copy_asset(tmp_path):
    src = tmp_path / "corpus" / "utt.flac"
    save_audio(src, _tone(), 16000)
    rel = copy_asset(tmp_path / "out", src, subdir="audio/examples")
    assert rel == "audio/examples/utt.flac"
    assert (tmp_path / "out" / rel).read_bytes() == src.read_bytes()
    with pytest.raises(InputError, match="not found"):
        copy_asset(tmp_path / "out", tmp_path / "nope.wav")
