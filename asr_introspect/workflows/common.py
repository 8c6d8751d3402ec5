"""Small helpers shared by the workflows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def finite(x: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def path_str(path: str | Path | None) -> str | None:
    """``str(path)``, or None when no path is known (a model or corpus built in Python)."""
    return None if path is None else str(path)
