#!/usr/bin/env python3
"""Figure family (a): sensitivity vs LRP for one frame.

Settings are the flags (see --help); defaults reproduce the report's figures.
Example: python experiments/a_attribution_maps.py --out out/a [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("a"))
