#!/usr/bin/env python3
"""Figure family (e): NAP clustering and the layer-wise quality curve.

Settings are the flags (see --help); defaults reproduce the report's figures.
Example: python experiments/e_nap_clustering.py --out out/e [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("e"))
