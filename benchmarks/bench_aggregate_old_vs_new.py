"""The previous group_stats kernel (sorted blocks, float64 adds; commit 94b499b) against the
current one (float32 partials of <= 64 frames), in one process, with the plain-sum read bound.

Needs the git history (the old kernel is read with ``git show``). Usage::

    .venv/bin/python benchmarks/bench_aggregate_old_vs_new.py
"""

from __future__ import annotations

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

OLD_COMMIT = "94b499b"


def load_old(directory: str):
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:asr_introspect/aggregate.py"], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(directory) / "old_aggregate.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_aggregate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    rng = np.random.default_rng(0)
    n_frames, n_neurons, n_groups = 1_000_000, 256, 70
    values = rng.standard_normal((n_frames, n_neurons), dtype=np.float32)
    labels = rng.integers(0, n_groups, n_frames)
    flat = values.reshape(-1)

    def updates(module, size):
        def run():
            acc = module.GroupStats(n_groups, n_neurons)
            for a in range(0, n_frames, size):
                acc.update(values[a:a + size], labels[a:a + size])
            return acc
        return run

    with tempfile.TemporaryDirectory() as tmp:
        old = load_old(tmp)
        reference = new.group_stats(values.astype(np.float64), labels, n_groups)
        methods = {"read bound: parallel plain sum": lambda: _read_sum(flat)}
        for name, module in (("old", old), ("new", new)):
            result = module.group_stats(values, labels, n_groups)  # compiles, and checks
            assert np.array_equal(result[2], reference[2])
            assert np.abs(result[0] - reference[0]).max() < 1e-6 * np.abs(reference[0]).max(), name
            updates(module, 1000)()
            methods[f"{name}: one call, {numba.get_num_threads()} threads"] = \
                lambda module=module: module.group_stats(values, labels, n_groups)
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
