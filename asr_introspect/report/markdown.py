"""A small Markdown converter for a safe subset (the report's model card and section texts).

Supported: ATX headings, paragraphs, bullet and numbered lists (nested by
indentation), pipe tables, fenced and indented code blocks, block quotes,
horizontal rules, ``code`` spans, **bold**, *italic* and ``[links](url)`` with
http(s)/mailto/relative URLs. Everything else, raw HTML included, is escaped
and shown as text.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ["markdown_to_html", "inline_to_html", "escape"]


def escape(text: Any) -> str:
    """``str(text)`` with ``& < > " '`` escaped for HTML text and attributes."""
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

    text = _ESCAPABLE.sub(lambda m: keep(escape(m.group(1))), text)
    text = escape(text)

    def link(m: re.Match) -> str:
        label, url = m.group(1), m.group(2)
        if not _safe_url(html.unescape(url)):
            return m.group(0)
        return keep(f'<a href="{url}">') + label + keep("</a>")

    text = _LINK.sub(link, text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1)}</em>", text)
    return text


def inline_to_html(text: str) -> str:
    """Inline markdown -> HTML: code spans, backslash escapes, links, bold, italic."""
    text = text.replace("\x00", "\ufffd")  # \x00 marks placeholders
    stash: list[str] = []
    plain: list[str] = []  # text with code spans replaced by placeholders
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and _ESCAPABLE.match(text, i):
            plain.append(text[i : i + 2])  # resolved by _inline_plain
            i += 2
            continue
        if ch == "`":
            run = len(text) - i - len(text[i:].lstrip("`"))
            close = _closing_backticks(text, i + run, run)
            if close < 0:
                plain.append("`" * run)
                i += run
                continue
            code = text[i + run : close].replace("\n", " ")
            if code.startswith(" ") and code.endswith(" ") and code.strip():
                code = code[1:-1]
            plain.append(_placeholder(stash, f"<code>{escape(code)}</code>"))
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
            current.append(line[i : i + 2])
            i += 2
            continue
        if ch == "`":
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            close = line.find("`" * run, i + run)
            if close != -1:
                current.append(line[i : close + run])
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
        return f"<{tag}{style}>{inline_to_html(text)}</{tag}>"

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
                item.append(line[min(lead, content_indent) :])
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
                body.append(lines[i][min(strip, _indent(lines[i])) :])
                i += 1
            i += 1  # the closing fence (or the end of the text)
            cls = f' class="language-{escape(lang)}"' if lang else ""
            code = "\n".join(body)
            out.append(("pre", f"<pre><code{cls}>{escape(code)}</code></pre>", ""))
            continue
        if _indent(line) >= 4:
            body = []
            while i < n and (not lines[i].strip() or _indent(lines[i]) >= 4):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            out.append(("pre", f"<pre><code>{escape(chr(10).join(body))}</code></pre>", ""))
            continue
        heading = _HEADING.match(line)
        if heading:
            level = min(6, len(heading.group(1)) + heading_offset)
            inner = inline_to_html((heading.group(2) or "").strip())
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
        inner = inline_to_html("\n".join(para))
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
