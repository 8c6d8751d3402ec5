#!/usr/bin/env python3
"""Figure family (i): the papers' claims as numbers, each with a null, a 95 % bootstrap interval and a verdict.

The same analysis as ``asr-introspect claims``. Settings are the flags (see --help); defaults reproduce the
report's section.
Example: python experiments/i_claims.py --out out/i [--n-boot 100] [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("i"))
