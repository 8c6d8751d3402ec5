#!/usr/bin/env python3
"""Index a LibriSpeech-layout directory (plus optional MFA TextGrids) into a manifest.

    python data_prep/index_librispeech.py ROOT [--textgrids DIR] [--manifest PATH] [--json]

Writes ``ROOT/manifest.jsonl`` (or ``--manifest``) and prints a report of what
was indexed and what was skipped and why; with ``--json`` the last line of
stdout is one JSON object ``{"manifest", "utterances", "with_phones", "seconds",
"speakers", "skipped", "skipped_by_reason", "skipped_items"}``. Exit code 2 on
bad input (missing directory, no utterances).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_introspect.errors import InputError
from asr_introspect.io import to_json


def index(root: Path, textgrids: Path | None, manifest: Path | None, progress: bool) -> dict:
    from asr_introspect.corpus import save_manifest, scan_librispeech

    scan = scan_librispeech(root, textgrids, progress=progress)
    manifest = manifest if manifest is not None else root / "manifest.jsonl"
    save_manifest(scan.utterances, manifest)
    return {
        "manifest": str(manifest),
        "utterances": len(scan.utterances),
        "with_phones": sum(u.phones is not None for u in scan.utterances),
        "seconds": round(sum(u.duration or 0.0 for u in scan.utterances), 3),
        "speakers": len({u.speaker for u in scan.utterances}),
        "skipped": len(scan.skipped),
        "skipped_by_reason": scan.skipped_by_reason(),
        "skipped_items": [s.to_dict() for s in scan.skipped],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="LibriSpeech-layout directory (SPEAKER/CHAPTER/*.flac)")
    parser.add_argument(
        "--textgrids",
        type=Path,
        default=None,
        help="directory of MFA TextGrids (SPEAKER/UTTID.TextGrid or mirrored layout)",
    )
    parser.add_argument("--manifest", type=Path, default=None, help="output (default: ROOT/manifest.jsonl)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line summarizing the result")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        report = index(args.root, args.textgrids, args.manifest, progress=not args.quiet)
    except InputError as exc:
        print(f"index_librispeech: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"indexed {report['utterances']} utterances ({report['seconds'] / 3600:.2f} h, "
        f"{report['speakers']} speakers, {report['with_phones']} with phones) -> {report['manifest']}"
    )
    if report["skipped"]:
        print(f"skipped {report['skipped']}:")
        for reason, count in sorted(report["skipped_by_reason"].items(), key=lambda kv: -kv[1]):
            print(f"  {count:6d}  {reason}")
        for item in report["skipped_items"][:20]:
            print(f"    {item['id']}: {item['reason']}")
        if report["skipped"] > 20:
            print(f"    ... ({report['skipped'] - 20} more; see --json)")
    if args.json:
        print(to_json(report, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
