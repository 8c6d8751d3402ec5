#!/usr/bin/env python3
"""Figure family (g): wavelet attribution (WAM), per-scale maps, listenable explanations, faithfulness table.

Settings are the flags (see --help); defaults reproduce the report's figures.
Example: python experiments/g_wavelet_attribution.py --out out/g [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("g"))
