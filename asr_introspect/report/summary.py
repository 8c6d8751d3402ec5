"""``OUT/summary.json``: reading it, checking it against the contract (see :mod:`asr_introspect.report`)
and copying outside files into the report folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from asr_introspect.errors import InputError
from asr_introspect.io import atomic_path

__all__ = [
    "IMAGE_TYPES",
    "AUDIO_TYPES",
    "RESERVED_IDS",
    "SUMMARY_FILE",
    "load_summary",
    "validate_summary",
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

SUMMARY_FILE = "summary.json"


def load_summary(out_dir: str | os.PathLike) -> dict:
    """Read ``OUT/summary.json`` (InputError if it is missing or not a JSON object)."""
    path = Path(out_dir) / SUMMARY_FILE
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
        raise InputError(f"{SUMMARY_FILE}: {where} must be an object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        if default is ...:
            raise InputError(f"{SUMMARY_FILE}: {where} has no {key!r}")
        return default
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{SUMMARY_FILE}: {where}.{key} must be {names}, got {type(value).__name__}")
    return value


def _check_file(out_dir: Path, rel: Any, where: str, types: dict[str, str], what: str) -> str:
    """Validate a relative asset path; return it normalized to POSIX form."""
    if not isinstance(rel, str) or not rel.strip():
        raise InputError(f"{SUMMARY_FILE}: {where} must be a non-empty relative path, got {rel!r}")
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", rel) or "://" in rel:
        raise InputError(
            f"{SUMMARY_FILE}: {where} = {rel!r} is not a relative path; copy the file into "
            f"{out_dir} and give its path relative to that folder"
        )
    if ".." in posix.parts:
        raise InputError(
            f"{SUMMARY_FILE}: {where} = {rel!r} points outside the report folder; copy the file "
            f"into {out_dir} (see report.copy_asset) so the folder can be moved"
        )
    suffix = posix.suffix.lower()
    if suffix not in types:
        raise InputError(
            f"{SUMMARY_FILE}: {where} = {rel!r}: unsupported {what} type {suffix or '(no suffix)'!r} "
            f"(use {', '.join(sorted(types))})"
        )
    full = out_dir.joinpath(*posix.parts)
    if not full.is_file():
        raise InputError(f"{full}: {what} file referenced by {SUMMARY_FILE} ({where}) not found")
    if full.stat().st_size == 0:
        raise InputError(f"{full}: {what} file referenced by {SUMMARY_FILE} ({where}) is empty")
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
                f"{SUMMARY_FILE}: {where}.id = {sid!r} is not a valid anchor (a letter, then letters, "
                "digits, '-', '_', '.', ':')"
            )
        if sid in seen or sid in RESERVED_IDS:
            why = "used twice" if sid in seen else f"reserved by the page ({', '.join(RESERVED_IDS)})"
            raise InputError(f"{SUMMARY_FILE}: {where}.id = {sid!r} is {why}; pick another id")
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
                        f"{SUMMARY_FILE}: {tw}.rows[{r_idx}] must be a list of {len(columns)} cells "
                        f"(one per column), got {got}"
                    )
            tables.append({"caption": _require(table, "caption", str, tw, ""), "columns": columns, "rows": rows})
        sections.append(
            {
                "id": sid,
                "title": _require(sec, "title", str, where),
                "text": _require(sec, "text", str, where, ""),
                "figures": figures,
                "numbers": _require(sec, "numbers", dict, where, {}),
                "audio": audio,
                "tables": tables,
            }
        )

    examples = []
    for e_idx, ex in enumerate(examples_in):
        where = f"examples[{e_idx}]"
        eid = _require(ex, "id", (str, int), where)
        where = f"examples[{e_idx}] ({eid!r})"
        path = _check_file(out_dir, _require(ex, "audio", str, where), f"{where}.audio", AUDIO_TYPES, "audio")
        examples.append(
            {
                "id": str(eid),
                "audio": path,
                "reference": _require(ex, "reference", str, where, ""),
                "hypothesis": _require(ex, "hypothesis", str, where, ""),
            }
        )
    return {
        "title": title,
        "model_card_markdown": card,
        "key_numbers": key_numbers,
        "sections": sections,
        "examples": examples,
    }


def copy_asset(
    out_dir: str | os.PathLike, source: str | os.PathLike, subdir: str = "audio", name: str | None = None
) -> str:
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
