#!/usr/bin/env python3
"""Figure family (f): audio network dissection (neuron labels and polysemanticity by layer, top clips,
concept-specific ablation against random and top-activation neurons).

Settings are the flags (see --help); defaults reproduce the report's section.
Example: python experiments/f_network_dissection.py --out out/f [--model CKPT] [--data DIR] [--limit 40]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("f"))
