"""The static HTML page of a validated summary: sections, figures, audio players, tables, word diffs.

The page is self-contained (inline CSS, no scripts, no external fonts or CDNs)
and refers to every figure and audio file by a relative URL.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from asr_introspect.io import write_text_atomic
from asr_introspect.report.markdown import escape, inline_to_html, markdown_to_html
from asr_introspect.report.summary import AUDIO_TYPES, load_summary, validate_summary

__all__ = ["INDEX_FILE", "render_report", "write_report"]

INDEX_FILE = "index.html"


def _format_value(value: Any) -> str:
    """A number or string as display text (floats to 4 significant digits)."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "\u221e" if value > 0 else "\u2212\u221e"
        if value == int(value) and abs(value) < 1e6:
            return str(int(value)) if abs(value) >= 1 or value == 0 else f"{value:.4g}"
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _url(rel: str) -> str:
    """A relative POSIX path as an attribute-safe relative URL."""
    return escape(quote(rel, safe="/"))


def _numbers_html(numbers: dict, cls: str) -> str:
    if not numbers:
        return ""
    items = "".join(
        f'<div class="kv"><dt>{escape(k)}</dt><dd>{escape(_format_value(v))}</dd></div>' for k, v in numbers.items()
    )
    return f'<dl class="{cls}">{items}</dl>'


def _figure_html(fig: dict, n: int, section_title: str, out_dir: Path) -> str:
    url = _url(fig["path"])
    caption = fig["caption"].strip()
    alt = caption or f"Figure {n} of the section {section_title}"
    extra = ""
    svg = PurePosixPath(fig["path"]).with_suffix(".svg")
    if PurePosixPath(fig["path"]).suffix.lower() != ".svg" and out_dir.joinpath(*svg.parts).is_file():
        extra = f' <a class="alt-format" href="{_url(str(svg))}">SVG</a>'
    return (
        '<figure class="fig">'
        f'<a href="{url}" title="open full size"><img src="{url}" alt="{escape(alt)}"></a>'
        + (f"<figcaption>{inline_to_html(caption)}{extra}</figcaption>" if caption or extra else "")
        + "</figure>"
    )


def _audio_html(path: str, caption: str | None) -> str:
    """An audio player (``<source>`` with the file's MIME type); ``caption=None``: no frame."""
    url = _url(path)
    mime = AUDIO_TYPES[PurePosixPath(path).suffix.lower()]
    player = (
        f'<audio controls preload="metadata"><source src="{url}" type="{mime}">'
        f'<a href="{url}">download {escape(PurePosixPath(path).name)}</a></audio>'
    )
    if caption is None:
        return player
    label = caption.strip() or PurePosixPath(path).name
    return f'<figure class="audio">{player}<figcaption>{inline_to_html(label)}</figcaption></figure>'


def _table_html(table: dict) -> str:
    caption = f"<caption>{inline_to_html(table['caption'])}</caption>" if table["caption"] else ""
    head = "".join(f"<th>{escape(_format_value(c))}</th>" for c in table["columns"])
    body = []
    for row in table["rows"]:
        cells = []
        for v in row:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = escape(_format_value(v))
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table class="data">{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _word_diff(reference: str, hypothesis: str) -> tuple[str, str, int, int]:
    """Reference and hypothesis HTML with differing words marked; (ref, hyp, errors, n_ref_words)."""
    ref, hyp = reference.split(), hypothesis.split()
    matcher = difflib.SequenceMatcher(None, [w.lower() for w in ref], [w.lower() for w in hyp], autojunk=False)
    ref_html, hyp_html, errors = [], [], 0
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        r = " ".join(escape(w) for w in ref[i1:i2])
        h = " ".join(escape(w) for w in hyp[j1:j2])
        if op == "equal":
            ref_html.append(r)
            hyp_html.append(h)
            continue
        errors += max(i2 - i1, j2 - j1)
        if r:
            ref_html.append(f"<del>{r}</del>")
        if h:
            hyp_html.append(f"<ins>{h}</ins>")
    return " ".join(ref_html), " ".join(hyp_html), errors, len(ref)


_CSS = """
:root{--fg:#1d232b;--muted:#5b6573;--bg:#fff;--panel:#f5f7fa;--line:#d9dee5;--accent:#2458b3;
--del:#fde2e1;--ins:#dff3e4}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ee;--muted:#a3acb9;--bg:#14181d;--panel:#1d232b;
--line:#313a45;--accent:#8ab4f8;--del:#5a2a2a;--ins:#23452e}img{background:#fff}}
*{box-sizing:border-box}
html{scroll-behavior:smooth}
body{margin:0;color:var(--fg);background:var(--bg);line-height:1.55;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.page{display:grid;grid-template-columns:15rem minmax(0,1fr);gap:2rem;max-width:78rem;margin:0 auto;padding:1.5rem}
nav.toc{position:sticky;top:1rem;align-self:start;max-height:calc(100vh - 2rem);overflow:auto;font-size:.92rem}
nav.toc h2{font-size:1rem;margin:.2rem 0 .5rem}
nav.toc ol{padding-left:1.2rem;margin:0}
nav.toc li{margin:.25rem 0}
@media (max-width:60rem){.page{grid-template-columns:minmax(0,1fr)}nav.toc{position:static;max-height:none}}
a{color:var(--accent)}
header h1{margin:.2rem 0 .3rem;font-size:1.9rem;line-height:1.2}
header p.meta{color:var(--muted);margin:0 0 1rem}
section{border-top:1px solid var(--line);padding-top:1rem;margin-top:1.6rem}
h2{font-size:1.45rem;margin:.4rem 0 .6rem}
h3{font-size:1.15rem}
.prose{max-width:48rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;
background:var(--panel);padding:.05em .3em;border-radius:3px}
pre{background:var(--panel);padding:.7rem .9rem;overflow:auto;border-radius:4px}
pre code{background:none;padding:0}
blockquote{margin:0;padding:.2rem 1rem;border-left:4px solid var(--line);color:var(--muted)}
dl.numbers{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.6rem;margin:1rem 0}
dl.numbers .kv,dl.key .kv{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem}
dl.key{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.7rem}
dl dt{font-size:.82rem;color:var(--muted);overflow-wrap:anywhere}
dl dd{margin:0;font-size:1.2rem;font-weight:600;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,24rem),1fr));gap:1.2rem;margin:1rem 0}
figure{margin:0}
figure.fig{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.6rem}
figure.fig img{display:block;max-width:100%;max-height:44rem;height:auto;margin:0 auto;cursor:zoom-in}
figcaption{font-size:.9rem;color:var(--muted);margin-top:.4rem}
.audios{display:grid;grid-template-columns:repeat(auto-fill,minmax(18rem,1fr));gap:.8rem;margin:1rem 0}
figure.audio{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem}
audio{width:100%}
.table-wrap{overflow-x:auto;margin:1rem 0}
table{border-collapse:collapse;font-size:.92rem}
th,td{border:1px solid var(--line);padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:var(--panel)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;color:var(--muted);padding:.3rem 0}
.example{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem;margin:.8rem 0}
.example h3{margin:.1rem 0 .4rem;font-size:1rem}
.example p{margin:.3rem 0}
.example audio{margin:.2rem 0 .3rem}
.example .label{display:inline-block;min-width:6.5rem;color:var(--muted);font-size:.88rem}
del{background:var(--del);text-decoration:line-through}
ins{background:var(--ins);text-decoration:none}
footer{color:var(--muted);font-size:.85rem;margin:2.5rem 0 1rem}
"""


def _split_title(markdown: str) -> tuple[str | None, str]:
    """A leading ``# Title`` line becomes the section heading; the rest is the body."""
    lines = markdown.lstrip("\n").split("\n")
    m = re.match(r"^ {0,3}#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", lines[0])
    if m and m.group(1).strip():
        return m.group(1).strip(), "\n".join(lines[1:])
    return None, markdown


def render_report(summary: dict, out_dir: str | os.PathLike, generated: str | None = None) -> str:
    """The HTML page for a summary already passed through :func:`validate_summary`.

    ``generated`` is the timestamp shown in the footer (default: now, UTC).
    """
    out_dir = Path(out_dir)
    if generated is None:
        generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = summary["title"]
    toc: list[tuple[str, str]] = []
    body: list[str] = []

    if summary["key_numbers"]:
        toc.append(("key-numbers", "Key numbers"))
        body.append(
            f'<section id="key-numbers"><h2>Key numbers</h2>{_numbers_html(summary["key_numbers"], "key")}</section>'
        )

    for sec in summary["sections"]:
        toc.append((sec["id"], sec["title"]))
        parts = [f'<section id="{escape(sec["id"])}"><h2>{escape(sec["title"])}</h2>']
        if sec["text"].strip():
            parts.append(f'<div class="prose">{markdown_to_html(sec["text"], heading_offset=2)}</div>')
        if sec["figures"]:
            figs = "".join(_figure_html(fig, n + 1, sec["title"], out_dir) for n, fig in enumerate(sec["figures"]))
            parts.append(f'<div class="figures">{figs}</div>')
        parts.append(_numbers_html(sec["numbers"], "numbers"))
        parts.extend(_table_html(t) for t in sec["tables"])
        if sec["audio"]:
            players = "".join(_audio_html(a["path"], a["caption"]) for a in sec["audio"])
            parts.append(f'<div class="audios">{players}</div>')
        parts.append("</section>")
        body.append("".join(parts))

    if summary["examples"]:
        toc.append(("examples", "Example utterances"))
        parts = [
            '<section id="examples"><h2>Example utterances</h2>',
            '<p class="prose">Listen to each utterance and compare the greedy CTC transcript with '
            "the reference: words only in the reference are <del>struck out</del>, words the model "
            "got wrong or added are <ins>highlighted</ins>.</p>",
        ]
        for ex in summary["examples"]:
            ref_html, hyp_html, errors, n_words = _word_diff(ex["reference"], ex["hypothesis"])
            rate = f"{errors}/{n_words} word errors" if n_words else f"{errors} word errors"
            parts.append(
                f'<div class="example"><h3>{escape(ex["id"])} <small>({rate})</small></h3>'
                f"{_audio_html(ex['audio'], None)}"
                f'<p><span class="label">reference</span> {ref_html}</p>'
                f'<p><span class="label">transcript</span> {hyp_html}</p></div>'
            )
        parts.append("</section>")
        body.append("".join(parts))

    if summary["model_card_markdown"].strip():
        toc.append(("model-card", "Model card"))
        card_title, card = _split_title(summary["model_card_markdown"])
        body.append(
            f'<section id="model-card"><h2>{inline_to_html(card_title) if card_title else "Model card"}</h2>'
            f'<div class="prose">{markdown_to_html(card, heading_offset=1 if card_title else 2)}</div></section>'
        )

    toc_html = "".join(f'<li><a href="#{escape(i)}">{escape(t)}</a></li>' for i, t in toc)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'none'; object-src 'none'; "
        "base-uri 'none'; form-action 'none'\">\n"
        '<meta name="generator" content="asr-introspect">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        '<div class="page">\n'
        f'<nav class="toc" id="contents" aria-label="Contents"><h2>Contents</h2><ol>{toc_html}</ol></nav>\n'
        "<main>\n"
        f'<header><h1>{escape(title)}</h1><p class="meta">Generated by asr-introspect on {escape(generated)}. '
        "Click a figure to open it at full size.</p></header>\n"
        + "\n".join(body)
        + "\n<footer>A static page: every figure and sound is a file next to this page "
        "(paths are relative), so the folder can be moved or served as is.</footer>\n"
        "</main>\n</div>\n</body>\n</html>\n"
    )


def write_report(out_dir: str | os.PathLike) -> Path:
    """Read ``OUT/summary.json``, validate it and write ``OUT/index.html`` atomically.

    Returns the path of ``index.html``. Raises InputError (and writes nothing)
    when the summary is malformed or references a missing, empty, absolute or
    out-of-folder figure/audio file.
    """
    out_dir = Path(out_dir)
    summary = validate_summary(load_summary(out_dir), out_dir)
    return write_text_atomic(out_dir / INDEX_FILE, render_report(summary, out_dir))
