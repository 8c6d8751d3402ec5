"""Import a ``data_prep/`` or ``experiments/`` script as a module (the scripts are not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def _load(folder: str, name: str) -> ModuleType:
    """``FOLDER/NAME.py`` as module ``NAME``, registered in ``sys.modules`` (dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_data_prep(name: str) -> ModuleType:
    """``data_prep/NAME.py`` as module ``NAME``."""
    return _load("data_prep", name)


def load_experiment(name: str) -> ModuleType:
    """``experiments/NAME.py`` as module ``NAME``."""
    return _load("experiments", name)
