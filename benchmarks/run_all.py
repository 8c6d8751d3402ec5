#!/usr/bin/env python3
"""Run every benchmark script in this folder, one after the other (``make bench``)."""

import subprocess
import sys
from pathlib import Path

SCRIPTS = [
    "bench_aggregate.py",
    "bench_patterns.py",
    "bench_naps.py",
    "bench_attribution.py",
    "bench_alignment.py",
    "bench_training.py",
    "bench_claims.py",
    "bench_augment.py",
]

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    failed = [name for name in SCRIPTS if subprocess.call([sys.executable, str(here / name)]) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1 if failed else 0)
