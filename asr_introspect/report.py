"""The static HTML report: ``OUT/summary.json`` -> ``OUT/index.html``.

``asr-introspect demo`` (and anyone else) writes figures, audio and a
``summary.json`` into one folder ``OUT`` and calls :func:`write_report`. The
page is static and self-contained: inline CSS, no scripts, no external fonts
or CDNs, and every figure/audio file is referenced by a *relative* URL, so the
folder can be moved, zipped or served by any static file server.

``summary.json`` (the contract)::

    {"title": str,
     "model_card_markdown": str,                      # optional, markdown
     "key_numbers": {name: number | str},             # optional
     "sections": [{"id": str, "title": str,
                   "text": str,                       # markdown, how to read the figures
                   "figures": [{"path": "rel/fig.png", "caption": str}],
                   "numbers": {name: value},
                   "audio": [{"path": "rel/sound.wav", "caption": str}],
                   "tables": [{"caption": str, "columns": [...], "rows": [[...], ...]}]}],
     "examples": [{"id": str, "audio": "rel/utt.flac", "reference": str, "hypothesis": str}]}

Paths are relative to ``OUT`` and must stay inside it (no absolute paths, no
``..``): copy outside files in first, e.g. with :func:`copy_asset`. Every
referenced file must exist and be non-empty, otherwise :func:`write_report`
raises :class:`~asr_introspect.errors.InputError` naming the file and the
summary entry that references it, and writes nothing.

Markdown (model card, section texts) goes through :func:`markdown_to_html`, a
small converter for a safe subset: ATX headings, paragraphs, bullet and
numbered lists (nested by indentation), pipe tables, fenced and indented code
blocks, block quotes, horizontal rules, ``code`` spans, **bold**, *italic* and
``[links](url)`` with http(s)/mailto/relative URLs. Everything else, raw HTML
included, is escaped and shown as text.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from asr_introspect.errors import InputError
from asr_introspect.io import atomic_path, write_text_atomic

__all__ = [
    "IMAGE_TYPES",
    "AUDIO_TYPES",
    "markdown_to_html",
    "load_summary",
    "validate_summary",
    "render_report",
    "write_report",
    "copy_asset",
]

#: image suffix -> MIME type accepted for figures
IMAGE_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
#: audio suffix -> MIME type of the ``<source type=...>``
AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp3": "audio/mpeg",
}

#: ids the page itself uses; a section may not take them
RESERVED_IDS = ("contents", "key-numbers", "examples", "model-card")

_SUMMARY = "summary.json"
_INDEX = "index.html"


# --------------------------------------------------------------------------- markdown

def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


_ESCAPABLE = re.compile(r"\\([!-/:-@\[-`{-~])")
_LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S)
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])", re.S)
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_SAFE_SCHEMES = ("", "http", "https", "mailto")


def _safe_url(url: str) -> bool:
    """True for http(s), mailto and scheme-less (relative or #fragment) URLs."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return False
    return scheme in _SAFE_SCHEMES and not any(ord(c) < 32 for c in url)


def _inline_plain(text: str, stash: list[str]) -> str:
    """Escape ``text`` (no code spans in it) and apply links, bold and italic."""

    def keep(html_text: str) -> str:
        stash.append(html_text)
        return f"\x00{len(stash) - 1}\x00"

    text = _ESCAPABLE.sub(lambda m: keep(_esc(m.group(1))), text)
    text = _esc(text)

    def link(m: re.Match) -> str:
        label, url = m.group(1), m.group(2)
        if not _safe_url(html.unescape(url)):
            return m.group(0)
        return keep(f'<a href="{url}">') + label + keep("</a>")

    text = _LINK.sub(link, text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1)}</em>", text)
    return text


def _inline(text: str) -> str:
    """Inline markdown -> HTML: code spans, backslash escapes, links, bold, italic."""
    text = text.replace("\x00", "\ufffd")  # \x00 marks placeholders
    stash: list[str] = []
    plain: list[str] = []  # text with code spans replaced by placeholders
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and _ESCAPABLE.match(text, i):
            plain.append(text[i:i + 2])  # resolved by _inline_plain
            i += 2
            continue
        if ch == "`":
            run = len(text) - i - len(text[i:].lstrip("`"))
            close = _closing_backticks(text, i + run, run)
            if close < 0:
                plain.append("`" * run)
                i += run
                continue
            code = text[i + run:close].replace("\n", " ")
            if code.startswith(" ") and code.endswith(" ") and code.strip():
                code = code[1:-1]
            plain.append(_placeholder(stash, f"<code>{_esc(code)}</code>"))
            i = close + run
            continue
        plain.append(ch)
        i += 1
    return _PLACEHOLDER.sub(lambda m: stash[int(m.group(1))], _inline_plain("".join(plain), stash))


def _closing_backticks(text: str, start: int, run: int) -> int:
    """Index of the next run of exactly ``run`` backticks at or after ``start`` (-1: none)."""
    j = text.find("`", start)
    while j >= 0:
        length = len(text) - j - len(text[j:].lstrip("`"))
        if length == run:
            return j
        j = text.find("`", j + length)
    return -1


def _placeholder(stash: list[str], html_text: str) -> str:
    stash.append(html_text)
    return f"\x00{len(stash) - 1}\x00"


_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
_HR = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_LIST_ITEM = re.compile(r"^( *)([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$")
_TABLE_SEP = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}> ?(.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_table_start(lines: list[str], i: int) -> bool:
    return (
        i + 1 < len(lines)
        and "|" in lines[i]
        and "|" in lines[i + 1]
        and bool(_TABLE_SEP.match(lines[i + 1]))
        and "-" in lines[i + 1]
    )


def _starts_block(lines: list[str], i: int) -> bool:
    """Whether ``lines[i]`` begins a block other than a paragraph (so it ends a paragraph)."""
    line = lines[i]
    if not line.strip():
        return True
    if _HEADING.match(line) or _FENCE.match(line) or _HR.match(line) or _QUOTE.match(line):
        return True
    m = _LIST_ITEM.match(line)
    if m and m.group(3) is not None and len(m.group(1)) <= 3:
        return True
    return _is_table_start(lines, i)


def _split_row(line: str) -> list[str]:
    """Cells of a pipe-table row; ``\\|`` and pipes inside code spans do not split."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells, current, i = [], [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            current.append(line[i:i + 2])
            i += 2
            continue
        if ch == "`":
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            close = line.find("`" * run, i + run)
            if close != -1:
                current.append(line[i:close + run])
                i = close + run
                continue
        if ch == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    cells.append("".join(current).strip())
    return cells


def _table(header: str, sep: str, body: list[str]) -> str:
    columns = _split_row(header)
    aligns = []
    for spec in _split_row(sep):
        spec = spec.strip()
        if spec.startswith(":") and spec.endswith(":"):
            aligns.append("center")
        elif spec.endswith(":"):
            aligns.append("right")
        elif spec.startswith(":"):
            aligns.append("left")
        else:
            aligns.append(None)
    aligns += [None] * (len(columns) - len(aligns))

    def cell(tag: str, text: str, k: int) -> str:
        style = f' style="text-align:{aligns[k]}"' if aligns[k] else ""
        return f"<{tag}{style}>{_inline(text)}</{tag}>"

    out = ['<div class="table-wrap"><table class="md">', "<thead><tr>"]
    out += [cell("th", c, k) for k, c in enumerate(columns)]
    out.append("</tr></thead>")
    if body:
        out.append("<tbody>")
        for row in body:
            cells = _split_row(row)
            cells = (cells + [""] * len(columns))[: len(columns)]
            out.append("<tr>" + "".join(cell("td", c, k) for k, c in enumerate(cells)) + "</tr>")
        out.append("</tbody>")
    out.append("</table></div>")
    return "".join(out)


def _marker_kind(marker: str) -> str:
    """``-``, ``*``, ``+`` for bullets, ``.`` or ``)`` for numbered items: a change starts a new list."""
    return marker[-1]


def _list(lines: list[str], i: int, heading_offset: int) -> tuple[str, int]:
    """Parse the list starting at ``lines[i]``; return its HTML and the next line index."""
    first = _LIST_ITEM.match(lines[i])
    assert first is not None
    base = len(first.group(1))
    kind = _marker_kind(first.group(2))
    ordered = kind in ".)"
    start = int(first.group(2)[:-1]) if ordered else 1
    items: list[list[str]] = []
    loose = False
    n = len(lines)
    while i < n:
        m = _LIST_ITEM.match(lines[i])
        if m is None or len(m.group(1)) != base or _marker_kind(m.group(2)) != kind:
            break
        spaces = m.group(3) or " "
        content_indent = base + len(m.group(2)) + (len(spaces) if len(spaces) <= 4 else 1)
        item = [m.group(4) or ""]
        i += 1
        while i < n:
            line = lines[i]
            if not line.strip():
                # a blank line: the item goes on if the next text is indented under it
                j = i
                while j < n and not lines[j].strip():
                    j += 1
                if j < n and _indent(lines[j]) >= max(content_indent, base + 2):
                    item.extend([""] * (j - i))
                    loose = True
                    i = j
                    continue
                if j < n:
                    nxt = _LIST_ITEM.match(lines[j])
                    if nxt and len(nxt.group(1)) == base and _marker_kind(nxt.group(2)) == kind:
                        loose = True
                i = j
                break
            lead = _indent(line)
            if lead >= base + 2:
                item.append(line[min(lead, content_indent):])
                i += 1
                continue
            if _starts_block(lines, i):
                break
            item.append(line.strip())  # lazy continuation of the item's paragraph
            i += 1
        items.append(item)
        if i < n and not lines[i].strip():
            break
    tag = "ol" if ordered else "ul"
    start_attr = f' start="{start}"' if ordered and start != 1 else ""
    out = [f"<{tag}{start_attr}>"]
    for item in items:
        blocks = _blocks(item, heading_offset)
        if not loose:
            blocks = [(kind, inner if kind == "p" else html_) for kind, html_, inner in blocks]
            out.append("<li>" + "\n".join(h for _, h in blocks) + "</li>")
        else:
            out.append("<li>" + "\n".join(h for _, h, _ in blocks) + "</li>")
    out.append(f"</{tag}>")
    return "\n".join(out), i


def _blocks(lines: list[str], heading_offset: int) -> list[tuple[str, str, str]]:
    """Block-level parse: ``[(kind, html, inner_html)]`` (``inner_html`` unwraps paragraphs)."""
    out: list[tuple[str, str, str]] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            marker, lang = fence.group(2), fence.group(3)
            strip = len(fence.group(1))
            body = []
            i += 1
            while i < n and not re.match(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$", lines[i]):
                body.append(lines[i][min(strip, _indent(lines[i])):])
                i += 1
            i += 1  # the closing fence (or the end of the text)
            cls = f' class="language-{_esc(lang)}"' if lang else ""
            code = "\n".join(body)
            out.append(("pre", f"<pre><code{cls}>{_esc(code)}</code></pre>", ""))
            continue
        if _indent(line) >= 4:
            body = []
            while i < n and (not lines[i].strip() or _indent(lines[i]) >= 4):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            out.append(("pre", f"<pre><code>{_esc(chr(10).join(body))}</code></pre>", ""))
            continue
        heading = _HEADING.match(line)
        if heading:
            level = min(6, len(heading.group(1)) + heading_offset)
            inner = _inline((heading.group(2) or "").strip())
            out.append(("h", f"<h{level}>{inner}</h{level}>", inner))
            i += 1
            continue
        if _HR.match(line):
            out.append(("hr", "<hr>", ""))
            i += 1
            continue
        if _QUOTE.match(line):
            body = []
            while i < n and _QUOTE.match(lines[i]):
                body.append(_QUOTE.match(lines[i]).group(1))
                i += 1
            inner = "\n".join(h for _, h, _ in _blocks(body, heading_offset))
            out.append(("quote", f"<blockquote>{inner}</blockquote>", inner))
            continue
        if _is_table_start(lines, i):
            header, sep = lines[i], lines[i + 1]
            i += 2
            body = []
            while i < n and lines[i].strip() and "|" in lines[i]:
                body.append(lines[i])
                i += 1
            html_ = _table(header, sep, body)
            out.append(("table", html_, html_))
            continue
        item = _LIST_ITEM.match(line)
        if item and item.group(3) is not None:
            html_, i = _list(lines, i, heading_offset)
            out.append(("list", html_, html_))
            continue
        para = [line.strip()]
        i += 1
        while i < n and not _starts_block(lines, i):
            para.append(lines[i].strip())
            i += 1
        inner = _inline("\n".join(para))
        out.append(("p", f"<p>{inner}</p>", inner))
    return out


def markdown_to_html(text: str, heading_offset: int = 0) -> str:
    """Convert a safe subset of markdown to HTML (see the module docstring).

    ``heading_offset`` shifts heading levels (``# x`` becomes ``<h{1+offset}>``,
    capped at ``<h6>``), so embedded markdown nests under the page's headings.
    Raw HTML in ``text`` is escaped, never passed through; links keep only
    http(s), mailto and relative URLs.
    """
    if not isinstance(text, str):
        raise TypeError(f"markdown text must be a str, got {type(text).__name__}")
    text = text.replace("\x00", "\ufffd").replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    return "\n".join(h for _, h, _ in _blocks(text.split("\n"), heading_offset))


# --------------------------------------------------------------------------- summary

def load_summary(out_dir: str | os.PathLike) -> dict:
    """Read ``OUT/summary.json`` (InputError if it is missing or not a JSON object)."""
    path = Path(out_dir) / _SUMMARY
    if not path.is_file():
        raise InputError(f"{path}: report summary not found (run the demo, or write summary.json first)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); rewrite the summary") from exc
    if not isinstance(summary, dict):
        raise InputError(f"{path}: must hold a JSON object, got {type(summary).__name__}")
    return summary


def _require(obj: Any, key: str, kind: type | tuple, where: str, default: Any = ...) -> Any:
    if not isinstance(obj, dict):
        raise InputError(f"{_SUMMARY}: {where} must be an object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        if default is ...:
            raise InputError(f"{_SUMMARY}: {where} has no {key!r}")
        return default
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{_SUMMARY}: {where}.{key} must be {names}, got {type(value).__name__}")
    return value


def _check_file(out_dir: Path, rel: Any, where: str, types: dict[str, str], what: str) -> str:
    """Validate a relative asset path; return it normalized to POSIX form."""
    if not isinstance(rel, str) or not rel.strip():
        raise InputError(f"{_SUMMARY}: {where} must be a non-empty relative path, got {rel!r}")
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", rel) or "://" in rel:
        raise InputError(
            f"{_SUMMARY}: {where} = {rel!r} is not a relative path; copy the file into "
            f"{out_dir} and give its path relative to that folder"
        )
    if ".." in posix.parts:
        raise InputError(
            f"{_SUMMARY}: {where} = {rel!r} points outside the report folder; copy the file "
            f"into {out_dir} (see report.copy_asset) so the folder can be moved"
        )
    suffix = posix.suffix.lower()
    if suffix not in types:
        raise InputError(
            f"{_SUMMARY}: {where} = {rel!r}: unsupported {what} type {suffix or '(no suffix)'!r} "
            f"(use {', '.join(sorted(types))})"
        )
    full = out_dir.joinpath(*posix.parts)
    if not full.is_file():
        raise InputError(f"{full}: {what} file referenced by {_SUMMARY} ({where}) not found")
    if full.stat().st_size == 0:
        raise InputError(f"{full}: {what} file referenced by {_SUMMARY} ({where}) is empty")
    return str(PurePosixPath(*[p for p in posix.parts if p != "."]))


def _slug_ok(ident: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_.:-]*", ident))


def validate_summary(summary: dict, out_dir: str | os.PathLike) -> dict:
    """Check ``summary`` against the contract and the files under ``out_dir``.

    Returns a normalized copy (optional fields filled in, paths in POSIX form).
    Raises InputError naming the entry (and the file, for a missing asset).
    """
    out_dir = Path(out_dir)
    title = _require(summary, "title", str, "summary")
    card = _require(summary, "model_card_markdown", str, "summary", "")
    key_numbers = _require(summary, "key_numbers", dict, "summary", {})
    sections_in = _require(summary, "sections", list, "summary", [])
    examples_in = _require(summary, "examples", list, "summary", [])

    seen: set[str] = set()
    sections = []
    for s_idx, sec in enumerate(sections_in):
        where = f"sections[{s_idx}]"
        sid = _require(sec, "id", str, where)
        if not _slug_ok(sid):
            raise InputError(
                f"{_SUMMARY}: {where}.id = {sid!r} is not a valid anchor (a letter, then letters, "
                "digits, '-', '_', '.', ':')"
            )
        if sid in seen or sid in RESERVED_IDS:
            why = "used twice" if sid in seen else f"reserved by the page ({', '.join(RESERVED_IDS)})"
            raise InputError(f"{_SUMMARY}: {where}.id = {sid!r} is {why}; pick another id")
        seen.add(sid)
        where = f"sections[{s_idx}] ({sid!r})"
        figures = []
        for f_idx, fig in enumerate(_require(sec, "figures", list, where, [])):
            fw = f"{where}.figures[{f_idx}]"
            path = _check_file(out_dir, _require(fig, "path", str, fw), f"{fw}.path", IMAGE_TYPES, "figure")
            figures.append({"path": path, "caption": _require(fig, "caption", str, fw, "")})
        audio = []
        for a_idx, item in enumerate(_require(sec, "audio", list, where, [])):
            aw = f"{where}.audio[{a_idx}]"
            path = _check_file(out_dir, _require(item, "path", str, aw), f"{aw}.path", AUDIO_TYPES, "audio")
            audio.append({"path": path, "caption": _require(item, "caption", str, aw, "")})
        tables = []
        for t_idx, table in enumerate(_require(sec, "tables", list, where, [])):
            tw = f"{where}.tables[{t_idx}]"
            columns = _require(table, "columns", list, tw)
            rows = _require(table, "rows", list, tw, [])
            for r_idx, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(columns):
                    got = len(row) if isinstance(row, list) else type(row).__name__
                    raise InputError(
                        f"{_SUMMARY}: {tw}.rows[{r_idx}] must be a list of {len(columns)} cells "
                        f"(one per column), got {got}"
                    )
            tables.append({"caption": _require(table, "caption", str, tw, ""), "columns": columns, "rows": rows})
        sections.append({
            "id": sid,
            "title": _require(sec, "title", str, where),
            "text": _require(sec, "text", str, where, ""),
            "figures": figures,
            "numbers": _require(sec, "numbers", dict, where, {}),
            "audio": audio,
            "tables": tables,
        })

    examples = []
    for e_idx, ex in enumerate(examples_in):
        where = f"examples[{e_idx}]"
        eid = _require(ex, "id", (str, int), where)
        where = f"examples[{e_idx}] ({eid!r})"
        path = _check_file(out_dir, _require(ex, "audio", str, where), f"{where}.audio", AUDIO_TYPES, "audio")
        examples.append({
            "id": str(eid),
            "audio": path,
            "reference": _require(ex, "reference", str, where, ""),
            "hypothesis": _require(ex, "hypothesis", str, where, ""),
        })
    return {
        "title": title,
        "model_card_markdown": card,
        "key_numbers": key_numbers,
        "sections": sections,
        "examples": examples,
    }


# --------------------------------------------------------------------------- rendering

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
    return _esc(quote(rel, safe="/"))


def _numbers_html(numbers: dict, cls: str) -> str:
    if not numbers:
        return ""
    items = "".join(
        f'<div class="kv"><dt>{_esc(k)}</dt><dd>{_esc(_format_value(v))}</dd></div>' for k, v in numbers.items()
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
        f'<a href="{url}" title="open full size"><img src="{url}" alt="{_esc(alt)}"></a>'
        + (f"<figcaption>{_inline(caption)}{extra}</figcaption>" if caption or extra else "")
        + "</figure>"
    )


def _audio_html(path: str, caption: str | None) -> str:
    """An audio player (``<source>`` with the file's MIME type); ``caption=None``: no frame."""
    url = _url(path)
    mime = AUDIO_TYPES[PurePosixPath(path).suffix.lower()]
    player = (
        f'<audio controls preload="metadata"><source src="{url}" type="{mime}">'
        f'<a href="{url}">download {_esc(PurePosixPath(path).name)}</a></audio>'
    )
    if caption is None:
        return player
    label = caption.strip() or PurePosixPath(path).name
    return f'<figure class="audio">{player}<figcaption>{_inline(label)}</figcaption></figure>'



def _table_html(table: dict) -> str:
    caption = f"<caption>{_inline(table['caption'])}</caption>" if table["caption"] else ""
    head = "".join(f"<th>{_esc(_format_value(c))}</th>" for c in table["columns"])
    body = []
    for row in table["rows"]:
        cells = []
        for v in row:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td class="num">{_esc(_format_value(v))}</td>' if num else f"<td>{_esc(_format_value(v))}</td>")
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
        r = " ".join(_esc(w) for w in ref[i1:i2])
        h = " ".join(_esc(w) for w in hyp[j1:j2])
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
            '<section id="key-numbers"><h2>Key numbers</h2>'
            f"{_numbers_html(summary['key_numbers'], 'key')}</section>"
        )

    for sec in summary["sections"]:
        toc.append((sec["id"], sec["title"]))
        parts = [f'<section id="{_esc(sec["id"])}"><h2>{_esc(sec["title"])}</h2>']
        if sec["text"].strip():
            parts.append(f'<div class="prose">{markdown_to_html(sec["text"], heading_offset=2)}</div>')
        if sec["figures"]:
            figs = "".join(
                _figure_html(fig, n + 1, sec["title"], out_dir) for n, fig in enumerate(sec["figures"])
            )
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
                f'<div class="example"><h3>{_esc(ex["id"])} <small>({rate})</small></h3>'
                f'{_audio_html(ex["audio"], None)}'
                f'<p><span class="label">reference</span> {ref_html}</p>'
                f'<p><span class="label">transcript</span> {hyp_html}</p></div>'
            )
        parts.append("</section>")
        body.append("".join(parts))

    if summary["model_card_markdown"].strip():
        toc.append(("model-card", "Model card"))
        card_title, card = _split_title(summary["model_card_markdown"])
        body.append(
            f'<section id="model-card"><h2>{_inline(card_title) if card_title else "Model card"}</h2>'
            f'<div class="prose">{markdown_to_html(card, heading_offset=1 if card_title else 2)}</div></section>'
        )

    toc_html = "".join(f'<li><a href="#{_esc(i)}">{_esc(t)}</a></li>' for i, t in toc)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'none'; object-src 'none'; "
        "base-uri 'none'; form-action 'none'\">\n"
        '<meta name="generator" content="asr-introspect">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        '<div class="page">\n'
        f'<nav class="toc" id="contents" aria-label="Contents"><h2>Contents</h2><ol>{toc_html}</ol></nav>\n'
        "<main>\n"
        f'<header><h1>{_esc(title)}</h1><p class="meta">Generated by asr-introspect on {_esc(generated)}. '
        "Click a figure to open it at full size.</p></header>\n"
        + "\n".join(body)
        + '\n<footer>A static page: every figure and sound is a file next to this page '
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
    return write_text_atomic(out_dir / _INDEX, render_report(summary, out_dir))


def copy_asset(out_dir: str | os.PathLike, source: str | os.PathLike, subdir: str = "audio",
               name: str | None = None) -> str:
    """Copy ``source`` into ``OUT/subdir/`` (atomically) and return its path relative to ``OUT``.

    Use it for files that live outside the report folder (e.g. corpus audio),
    since summary paths must stay inside ``OUT``.
    """
    source = Path(source)
    if not source.is_file():
        raise InputError(f"{source}: file to copy into the report not found")
    target = Path(out_dir) / subdir / (name or source.name)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target.relative_to(Path(out_dir)).as_posix()
