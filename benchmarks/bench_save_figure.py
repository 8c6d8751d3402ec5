"""Saving a many-panel figure as PNG + SVG: one constrained layout (save_figure) vs one per format.

The figure is the letter patterns' ``before_after`` (27 letters: 28 + 27 image
panels of 64 mels x 49 frames in two subfigures, Hz/ms axes, two colour bars),
drawn from random sums (drawing does not depend on the values). Baseline:
``fig.savefig`` to PNG, then to SVG, each solving the layout. Ours:
``plotting.common.save_figure``, which solves it for the PNG and reuses it for
the SVG. Fresh figure per timing, best of ``--repeats``, interleaved; the
script also reports how far the reused SVG layout is from a freshly solved
one (axes positions, fraction of the figure). Usage::

    .venv/bin/python benchmarks/bench_save_figure.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from asr_introspect.plotting.common import save_figure


def pattern_like_figure():
    from asr_introspect.features import FeatureConfig
    from asr_introspect.patterns import PatternResult
    from asr_introspect.plotting.patterns import before_after

    rng = np.random.default_rng(0)
    names = tuple("abcdefghijklmnopqrstuvwxyz'")
    G, F, W = len(names), 64, 49
    counts = rng.integers(50, 500, G)
    result = PatternResult(
        "letter",
        names,
        np.arange(G) + 3,
        rng.standard_normal((G, F, W)) * counts[:, None, None],
        np.full((G, F, W), 2.0) * counts[:, None, None],
        counts,
        np.repeat(counts[:, None], W, axis=1),
        0.008,
        FeatureConfig(n_mels=F),
    )
    return before_after(result)


def positions(fig) -> np.ndarray:
    return np.array([ax.get_position().bounds for ax in fig.get_axes()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:

        def baseline():
            fig = pattern_like_figure()
            fig.savefig(Path(tmp) / "b.png", format="png", dpi=110)
            fig.savefig(Path(tmp) / "b.svg", format="svg", dpi=110)

        def ours():
            save_figure(pattern_like_figure(), Path(tmp) / "o.png", svg=True)

        best = {
            "savefig PNG, then savefig SVG (layout twice)": float("inf"),
            "save_figure PNG + SVG (layout once)": float("inf"),
        }
        for _ in range(args.repeats):
            for name, fn in zip(best, (baseline, ours)):
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    fig = pattern_like_figure()
    fig.savefig(io.BytesIO(), format="png", dpi=110)
    png_layout = positions(fig)
    fig.savefig(io.BytesIO(), format="svg", dpi=110)
    shift = np.abs(positions(fig) - png_layout).max()
    base = best["savefig PNG, then savefig SVG (layout twice)"]
    print("| method | seconds | / layout once |\n|---|---:|---:|")
    ours_s = best["save_figure PNG + SVG (layout once)"]
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {seconds / ours_s:.2f} |")
    print(
        f"\nspeed-up {base / ours_s:.2f}x; a freshly solved SVG layout moves the axes by at most "
        f"{shift:.4f} of the figure"
    )


if __name__ == "__main__":
    main()
