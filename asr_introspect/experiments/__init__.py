"""The figure families of the original work, one module each; ``experiments/`` scripts wrap them.

Each module has a ``Settings`` dataclass (every setting in one place, fixed
seed) and ``run(out, model=None, data=None, settings=None, progress=False) ->
Section``: it writes PNG (+ SVG), ``.npz`` data and a JSON of the key numbers
under ``out`` and returns the report section. ``asr-introspect demo`` runs them
all on the shipped model and corpus and renders the HTML report.
"""

from asr_introspect.experiments.common import FAMILIES, Section, load_family

__all__ = ["FAMILIES", "Section", "load_family"]
