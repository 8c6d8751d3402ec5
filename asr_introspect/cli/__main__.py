"""``python -m asr_introspect.cli`` (used by ``torchrun -m asr_introspect.cli train``)."""

import sys

from asr_introspect.cli import main

sys.exit(main())
