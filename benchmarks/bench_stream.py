"""NAP and pattern passes before and after the shared corpus stream, alternating in one run.

The baseline is commit 4a41d7c, the last one with a corpus loop per analysis
(``stream_naps``, ``PatternAverager.fit`` over ``align_corpus`` and
``_utterance_features``). Each side runs in its own subprocess from its own
source tree (``git archive`` of the commit for the baseline, this checkout for
the current code), on the shipped model and corpus, repeated and alternated so
that load on the machine hits both alike. Timed passes:

- ``naps``: letter and phoneme NAPs of all 11 layers in one pass;
- ``patterns letter``: predicted-letter patterns (what the demo draws);
- ``patterns phoneme``: phoneme patterns.

Usage::

    .venv/bin/python benchmarks/bench_stream.py [--repeats 3] [--baseline 4a41d7c]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OLD = """
from asr_introspect.naps import NAPEstimator, stream_naps
from asr_introspect.patterns import PatternAverager
def naps(model, utts):
    stream_naps(model, utts, [NAPEstimator(model, by) for by in ("letter", "phoneme")])
def patterns_letter(model, utts):
    PatternAverager(by="letter", source="predicted").fit(model, utts).result()
def patterns_phoneme(model, utts):
    PatternAverager(by="phoneme").fit(model, utts).result()
"""

NEW = """
from asr_introspect.naps import NAPEstimator
from asr_introspect.patterns import PatternAverager
from asr_introspect.stream import fit_estimators
def naps(model, utts):
    fit_estimators(model, utts, [NAPEstimator(by) for by in ("letter", "phoneme")])
def patterns_letter(model, utts):
    PatternAverager("letter", source="predicted").fit(model, utts).result()
def patterns_phoneme(model, utts):
    PatternAverager("phoneme").fit(model, utts).result()
"""

TIMER = """
import json, sys, time
from asr_introspect.loading import load_model_and_corpus
model, utts, _, _ = load_model_and_corpus()
patterns_phoneme(model, utts[:8])  # warm-up: Numba compilation, caches
naps(model, utts[:8])
times = {}
for name, fn in (("naps", naps), ("patterns letter", patterns_letter), ("patterns phoneme", patterns_phoneme)):
    t0 = time.perf_counter()
    fn(model, utts)
    times[name] = time.perf_counter() - t0
print(json.dumps(times))
"""


def baseline_tree(commit: str, directory: Path) -> Path:
    """The package as of ``commit``, unpacked under ``directory``."""
    archive = directory / "baseline.tar"
    subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(archive), commit, "asr_introspect"], cwd=ROOT, check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return directory


def run(tree: Path, code: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", code + TIMER], env=env, cwd=tree, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="4a41d7c")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = baseline_tree(args.baseline, Path(tmp))
        old, new = [], []
        for _ in range(args.repeats):
            old.append(run(old_tree, OLD))
            new.append(run(ROOT, NEW))
    print(f"{'pass':18s} {'baseline s':>22s} {'stream s':>22s} {'median ratio':>13s}")
    for name in old[0]:
        o, n = [r[name] for r in old], [r[name] for r in new]
        ratio = statistics.median(a / b for a, b in zip(o, n))
        print(
            f"{name:18s} {' '.join(f'{x:6.1f}' for x in o):>22s} {' '.join(f'{x:6.1f}' for x in n):>22s} {ratio:12.2f}x"
        )
    print("ratio = baseline time / stream time of the same repeat (> 1: the stream is faster)")


if __name__ == "__main__":
    main()
