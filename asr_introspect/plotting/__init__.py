"""Figures, one module per analysis; shared axes and saving in :mod:`.common`.

Every function builds a :class:`matplotlib.figure.Figure` without pyplot (no
global state, no display needed) and returns it; :func:`save_figure` writes it.
"""

from asr_introspect.plotting.common import mel_axis, save_figure, show_features

__all__ = ["mel_axis", "save_figure", "show_features"]
