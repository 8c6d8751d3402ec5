"""Marker for tests that need the shipped default model and evaluation corpus.

They ship with the package, so in a checkout these tests run; ``test_shipped.py``
fails outright when the files are missing, so the skip can never hide them in CI.
"""

import pytest

from asr_introspect.defaults import DEFAULT_CORPUS, DEFAULT_MODEL

requires_shipped = pytest.mark.skipif(
    not DEFAULT_MODEL.is_file() or not DEFAULT_CORPUS.is_dir(),
    reason="the shipped default model / evaluation corpus is not installed",
)
