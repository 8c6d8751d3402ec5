#!/usr/bin/env python3
"""Copy the README's figures from a demo run (``make demo``), downscaled, into docs/figures/.

python docs/make_figures.py out/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

FIGURES = {
    "attribution.png": "a_attribution/a_frame_attribution.png",
    "ctc_alignment.png": "c_ctc_alignment/c_predictions_vs_spectrogram.png",
    "patterns.png": "d_patterns/phoneme_before_after.png",
}


def shrink(src: Path, dest: Path, width: int, max_height: int | None = None) -> None:
    image = Image.open(src).convert("RGB")
    if max_height is not None:
        image = image.crop((0, 0, image.width, min(image.height, max_height)))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)


def main(demo: str) -> int:
    demo_dir, here = Path(demo), Path(__file__).resolve().parent / "figures"
    here.mkdir(exist_ok=True)
    for name, rel in FIGURES.items():
        shrink(demo_dir / rel, here / name, 900)
    screenshot = demo_dir / "screenshot.png"
    if not screenshot.is_file():
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from browser_check import check_report

        report = check_report(demo_dir, screenshot=screenshot)
        if report.problems():
            print("report problems:", report.problems(), file=sys.stderr)
            return 1
    shrink(screenshot, here / "report.png", 900, max_height=2200)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/demo"))
