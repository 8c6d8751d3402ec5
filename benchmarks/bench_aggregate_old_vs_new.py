"""Earlier group_stats kernels against the current one, in one process, with the plain-sum read bound.

Default commits: 94b499b (sorted blocks, float64 adds) and 48a1317 (float32
partials of <= 64 frames, through row views and a per-frame helper); the
current kernel indexes its staging arrays directly. Needs the git history (the
old kernels are read with ``git show``). Usage::

    .venv/bin/python benchmarks/bench_aggregate_old_vs_new.py [--commits 94b499b 48a1317]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

import asr_introspect.aggregate as new

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_aggregate import _read_sum, one_thread  # noqa: E402

OLD_COMMITS = ("94b499b", "48a1317")


def load_old(directory: str, commit: str):
    """aggregate.py as of ``commit``, imported as a module (its Numba cache goes to ``directory``)."""
    source = subprocess.run(
        ["git", "show", f"{commit}:asr_introspect/aggregate.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    path = Path(directory) / f"aggregate_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"aggregate_{commit}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", nargs="+", default=list(OLD_COMMITS), help="earlier kernels to time")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_frames, n_neurons, n_groups = 1_000_000, 256, 70
    values = rng.standard_normal((n_frames, n_neurons), dtype=np.float32)
    labels = rng.integers(0, n_groups, n_frames)
    flat = values.reshape(-1)

    def updates(module, size):
        def run():
            acc = module.GroupStats(n_groups, n_neurons)
            for a in range(0, n_frames, size):
                acc.update(values[a : a + size], labels[a : a + size])
            return acc

        return run

    with tempfile.TemporaryDirectory() as tmp:
        modules = [(commit, load_old(tmp, commit)) for commit in args.commits] + [("current", new)]
        reference = new.group_stats(values.astype(np.float64), labels, n_groups)
        methods = {"read bound: parallel plain sum": lambda: _read_sum(flat)}
        for name, module in modules:
            result = module.group_stats(values, labels, n_groups)  # compiles, and checks
            assert np.array_equal(result[2], reference[2])
            assert np.abs(result[0] - reference[0]).max() < 1e-6 * np.abs(reference[0]).max(), name
            updates(module, 1000)()
            methods[f"{name}: one call, {numba.get_num_threads()} threads"] = lambda module=module: module.group_stats(
                values, labels, n_groups
            )
            methods[f"{name}: 5,000-frame updates"] = updates(module, 5000)
            methods[f"{name}: 1,000-frame updates, 1 thread"] = one_thread(updates(module, 1000))
        _read_sum(flat[:10])
        best = {}
        for _ in range(5):
            for label, fn in methods.items():
                start = time.perf_counter()
                fn()
                best[label] = min(best.get(label, np.inf), time.perf_counter() - start)
    bound = best["read bound: parallel plain sum"]
    print("| run | seconds | / read bound |\n|---|---:|---:|")
    for label, seconds in best.items():
        print(f"| {label} | {seconds:.4f} | {seconds / bound:.2f} |")


if __name__ == "__main__":
    main()
