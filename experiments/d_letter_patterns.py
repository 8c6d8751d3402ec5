#!/usr/bin/env python3
"""Figure family (d): letter- and phoneme-averaged inputs.

Settings are the flags (see --help); defaults reproduce the report's figures.
Example: python experiments/d_letter_patterns.py --out out/d [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("d"))
