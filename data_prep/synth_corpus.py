#!/usr/bin/env python3
"""Synthesize a corpus: the same as ``asr-introspect synth`` (see ``--help``).

Example: ``python data_prep/synth_corpus.py --out data/synth --utterances 3000 --workers 2``
"""

import sys

from asr_introspect.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
