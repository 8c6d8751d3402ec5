#!/usr/bin/env python3
"""Figure family (b): optimal inputs, weakly vs strongly regularized.

Settings are the flags (see --help); defaults reproduce the report's figures.
Example: python experiments/b_optimal_inputs.py --out out/b [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("b"))
