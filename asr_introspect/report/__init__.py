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

Modules: :mod:`.markdown` (the converter), :mod:`.summary` (reading and
validating ``summary.json``, :func:`copy_asset`), :mod:`.render` (the page,
:func:`render_report`, :func:`write_report`), :mod:`.claims` (the claims
section: :func:`claims_section`).
"""

from asr_introspect.report.claims import claims_section
from asr_introspect.report.markdown import markdown_to_html
from asr_introspect.report.render import render_report, write_report
from asr_introspect.report.summary import AUDIO_TYPES, IMAGE_TYPES, copy_asset, load_summary, validate_summary

__all__ = [
    "IMAGE_TYPES",
    "AUDIO_TYPES",
    "markdown_to_html",
    "load_summary",
    "validate_summary",
    "render_report",
    "write_report",
    "copy_asset",
    "claims_section",
]
