"""MkDocs hook: the reStructuredText markup of the package's docstrings, tidied in the API reference.

The docstrings cross-reference with Sphinx roles (``:func:`compute_naps```) and introduce
examples with ``Example::``. mkdocstrings renders them as Markdown, which shows the role
names as text; this hook drops the role prefix before the code span (and the ``~`` that
shortens a dotted name to its last part, applied) and turns a trailing ``::`` into ``:``.
Only pages under ``reference/api/`` are touched.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj|py:[a-z]+):(<code>)(~?)([^<]*)(</code>)")
_DOUBLE_COLON = re.compile(r"::</p>")


def _role(match: re.Match) -> str:
    name = match.group(3)
    if match.group(2):  # ~a.b.c shows as c, as Sphinx does
        name = name.rsplit(".", 1)[-1]
    return f"{match.group(1)}{name}{match.group(4)}"


def tidy_roles(html: str) -> str:
    """``:func:<code>~a.b</code>`` -> ``<code>b</code>``; ``Example::</p>`` -> ``Example:</p>``."""
    return _DOUBLE_COLON.sub(":</p>", _ROLE.sub(_role, html))


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    if not page.file.src_uri.startswith("reference/api/"):
        return html
    return tidy_roles(html)
