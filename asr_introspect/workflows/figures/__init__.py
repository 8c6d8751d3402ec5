"""The figure families of the original work, one module each; ``experiments/`` scripts and the demo run them.

Each module has a ``Settings`` dataclass (every setting in one place, fixed
seed), ``FAST`` (small settings for ``asr-introspect demo --fast``), optionally ``DEMO`` (the
settings the demo uses when they differ from the experiment script's defaults) and
``run(model, utterances, out, settings=None, *, progress=False, model_path=None,
data_path=None) -> Section``: it calls the subcommand workflows with the loaded
model and utterances, writes PNG (+ SVG), ``.npz`` data and a JSON of the key
numbers under ``out`` and returns the report :class:`~.section.Section`.
"""

from asr_introspect.workflows.figures import (
    attribution_maps,
    claims,
    concept_dictionaries,
    ctc_alignment,
    letter_patterns,
    nap_clustering,
    network_dissection,
    optimal_inputs,
    wavelet_attribution,
)
from asr_introspect.workflows.figures.section import Section

#: figure family letter -> module: (a)-(e) in the order of the original work, then the methods of the
#: later papers: (f) audio network dissection, (g) wavelet attribution (WAM), (h) concept dictionaries; and
#: (i) the papers' claims as numbers with nulls and intervals
FAMILIES = {
    "a": attribution_maps,
    "b": optimal_inputs,
    "c": ctc_alignment,
    "d": letter_patterns,
    "e": nap_clustering,
    "f": network_dissection,
    "g": wavelet_attribution,
    "h": concept_dictionaries,
    "i": claims,
}

__all__ = ["FAMILIES", "Section"]
