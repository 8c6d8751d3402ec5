"""MkDocs hook: LaTeX formulas rendered to MathML at build time (no JavaScript, no network).

``pymdownx.arithmatex`` in generic mode protects ``$...$`` and ``$$...$$`` from
Markdown and wraps them as ``<span class="arithmatex">\\(...\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>``; this hook converts each one with
``latex2mathml`` into a ``<math>`` element, which browsers render natively
(MathML Core). The LaTeX source stays in the element's ``alttext`` for screen
readers and copying. A formula that does not convert fails the build with its
page and source.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_INLINE = re.compile(r'<span class="arithmatex">\\\((.+?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.+?)\\\]</div>', re.S)


def latex_to_mathml(latex: str, display: str = "inline") -> str:
    """MathML of one formula (``display``: "inline" or "block"), with the source as ``alttext``."""
    source = html.unescape(latex).strip()
    mathml = convert(source, display=display)
    return mathml.replace("<math ", f'<math alttext="{html.escape(source)}" ', 1)


def render_math(content: str, where: str = "") -> str:
    """Replace every arithmatex span/div of a page's HTML by MathML."""

    def replace(display: str):
        def inner(match: re.Match) -> str:
            try:
                return latex_to_mathml(match.group(1), display)
            except Exception as exc:  # latex2mathml raises many types; name the formula
                raise ValueError(f"{where}: cannot convert formula {match.group(1)!r}: {exc}") from exc

        return inner

    content = _BLOCK.sub(replace("block"), content)
    return _INLINE.sub(replace("inline"), content)


def on_page_content(html_text: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    return render_math(html_text, page.file.src_uri)
