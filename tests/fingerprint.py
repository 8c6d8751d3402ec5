"""Fingerprints of results, to hold refactors to "results do not change".

A fingerprint is small JSON: every number in a ``summary.json`` (by its key
path), and for every numeric array of an ``.npz`` its shape, NaN count, sum,
sum of absolute values and up to 16 evenly spaced values. ``compare`` lists
the differences beyond a tolerance, so a test can assert the list is empty.

``python tests/fingerprint.py OUT_DIR > reference.json`` fingerprints a demo
folder (its ``summary.json`` and every ``.npz`` below it).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

#: summary keys that measure the run, not the results
VOLATILE = {"timings_seconds", "seconds", "generated", "report", "files"}


def summary_numbers(obj, prefix: str = "") -> dict[str, float]:
    """Every int/float leaf of a JSON object by its key path (volatile keys left out)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key not in VOLATILE:
                out.update(summary_numbers(value, f"{prefix}/{key}"))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            ident = value.get("id") if isinstance(value, dict) else None
            out.update(summary_numbers(value, f"{prefix}/{ident if isinstance(ident, str) else i}"))
    elif isinstance(obj, bool):
        out[prefix] = float(obj)
    elif isinstance(obj, (int, float)):
        out[prefix] = float(obj)
    return out


def array_fingerprint(array: np.ndarray) -> dict | None:
    """Shape, NaN count, sum, sum of |x| and <= 16 evenly spaced values of a numeric array."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        return None
    x = np.asarray(array, dtype=np.float64).reshape(-1)
    finite = np.where(np.isfinite(x), x, 0.0)
    picks = np.unique(np.linspace(0, max(x.size - 1, 0), num=min(16, x.size)).astype(np.int64)) if x.size else []
    return {
        "shape": list(array.shape),
        "nan": int(np.isnan(x).sum()),
        "sum": float(finite.sum()),
        "abs": float(np.abs(finite).sum()),
        "values": [float(v) if math.isfinite(v) else None for v in x[picks]],
    }


def npz_fingerprint(path: Path) -> dict[str, dict]:
    with np.load(path, allow_pickle=False) as data:
        return {key: fp for key in sorted(data.files) if (fp := array_fingerprint(data[key])) is not None}


def fingerprint(out_dir: Path, npz_glob: str = "**/*.npz") -> dict:
    """Fingerprint of a results folder: ``summary.json`` numbers (if any) and every npz under it."""
    out_dir = Path(out_dir)
    summary = out_dir / "summary.json"
    result = {
        "summary": summary_numbers(json.loads(summary.read_text())) if summary.is_file() else {},
        "arrays": {str(p.relative_to(out_dir)): npz_fingerprint(p) for p in sorted(out_dir.glob(npz_glob))},
    }
    return result


def _close(a, b, rtol: float, atol: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def compare(
    reference: dict,
    actual: dict,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    summary_rtol: float = 1e-3,
    summary_atol: float = 1e-3,
) -> list[str]:
    """Differences between two fingerprints, one line each (empty: the same within tolerance)."""
    problems = []
    ref_s, act_s = reference.get("summary", {}), actual.get("summary", {})
    for key in sorted(set(ref_s) | set(act_s)):
        if key not in act_s or key not in ref_s:
            problems.append(f"summary {key}: only in {'reference' if key in ref_s else 'actual'}")
        elif not _close(ref_s[key], act_s[key], summary_rtol, summary_atol):
            problems.append(f"summary {key}: {ref_s[key]} -> {act_s[key]}")
    ref_a, act_a = reference.get("arrays", {}), actual.get("arrays", {})
    for name in sorted(set(ref_a) | set(act_a)):
        if name not in act_a or name not in ref_a:
            problems.append(f"{name}: only in {'reference' if name in ref_a else 'actual'}")
            continue
        for key in sorted(set(ref_a[name]) | set(act_a[name])):
            r, a = ref_a[name].get(key), act_a[name].get(key)
            if r is None or a is None:
                problems.append(f"{name}[{key}]: only in {'reference' if a is None else 'actual'}")
            elif r["shape"] != a["shape"] or r["nan"] != a["nan"]:
                problems.append(f"{name}[{key}]: shape/NaNs {r['shape']}/{r['nan']} -> {a['shape']}/{a['nan']}")
            else:
                scale = max(r["abs"], 1e-12)
                if not _close(r["sum"], a["sum"], rtol, atol * scale) or not _close(r["abs"], a["abs"], rtol, atol):
                    problems.append(f"{name}[{key}]: sum {r['sum']} -> {a['sum']}, |sum| {r['abs']} -> {a['abs']}")
                bad = [i for i, (x, y) in enumerate(zip(r["values"], a["values"])) if not _close(x, y, rtol * 10, atol)]
                if bad:
                    i = bad[0]
                    problems.append(
                        f"{name}[{key}]: {len(bad)} sampled values differ, e.g. {r['values'][i]} -> {a['values'][i]}"
                    )
    return problems


if __name__ == "__main__":
    print(json.dumps(fingerprint(Path(sys.argv[1])), sort_keys=True))
