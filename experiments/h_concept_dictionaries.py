#!/usr/bin/env python3
"""Figure family (h): concept dictionaries of a layer (NMF, sparse autoencoder), grounding, stability,
faithfulness, and L2I listenable interpretations.

Settings are the flags (see --help); defaults reproduce the report's figures.
Example: python experiments/h_concept_dictionaries.py --out out/h [--layer conv9] [--model CKPT] [--data DIR]
"""

import sys

from asr_introspect.workflows.script import main

if __name__ == "__main__":
    sys.exit(main("h"))
