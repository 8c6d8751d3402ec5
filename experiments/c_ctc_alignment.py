#!/usr/bin/env python3
"""Figure family (c): predictions vs spectrogram and the CTC lag.

Settings are the flags (see --help); defaults reproduce the report's figures.
Example: python experiments/c_ctc_alignment.py --out out/c [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("c"))
