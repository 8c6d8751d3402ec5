"""Audio network dissection: name the neurons of a speech recognizer with concepts, and test the names.

For every neuron (channel) of the chosen layers, one streamed pass over a corpus finds its top-K
activating segments and scores it against a closed vocabulary of concepts taken from the alignments
and the audio (letters, phones, phonetic features, silence, word position, voice, F0 / energy /
spectral-centroid bins): IoU of its top-quantile activation with the concept's frames (Network
Dissection), precision, recall and selectivity. Its labels are the concepts above an IoU threshold,
its polysemanticity the number of distinct concepts among them, and a template turns them into a
short description. Concept-specific ablation zeroes the neurons labelled with a concept and measures
the drop on that concept's letters (dA) against the rest (dR), next to random and top-activation
neurons (AND, ICML 2024).

Modules: :mod:`.concepts` (the vocabulary, frame codes), :mod:`.quantiles` (the calibration pass),
:mod:`.kernels` (Numba), :mod:`.topk` (per-neuron heaps), :mod:`.scores`, :mod:`.describe`,
:mod:`.estimator` (:class:`DissectionEstimator`, :class:`Dissection`), :mod:`.ablation`.
"""

from asr_introspect.dissection.ablation import (
    AblationEffect,
    ablation_effects,
    ablation_table,
    concept_ablation,
    zero_channels,
)
from asr_introspect.dissection.concepts import (
    DEFAULT_FAMILIES,
    FAMILIES,
    VOWEL_FEATURES,
    AcousticBins,
    ConceptVocabulary,
    check_families,
    voice_family,
)
from asr_introspect.dissection.describe import describe_neuron, local_language_model, summarize_clips
from asr_introspect.dissection.estimator import Dissection, DissectionEstimator, calibration_sample
from asr_introspect.dissection.quantiles import ActivationQuantiles, top_quantile_thresholds
from asr_introspect.dissection.scores import ConceptScores, LayerCounts, concept_scores, polysemanticity
from asr_introspect.dissection.topk import TopK

__all__ = [
    "FAMILIES",
    "DEFAULT_FAMILIES",
    "VOWEL_FEATURES",
    "AcousticBins",
    "ConceptVocabulary",
    "check_families",
    "voice_family",
    "ActivationQuantiles",
    "top_quantile_thresholds",
    "TopK",
    "LayerCounts",
    "ConceptScores",
    "concept_scores",
    "polysemanticity",
    "describe_neuron",
    "summarize_clips",
    "local_language_model",
    "DissectionEstimator",
    "Dissection",
    "calibration_sample",
    "zero_channels",
    "AblationEffect",
    "ablation_effects",
    "concept_ablation",
    "ablation_table",
]
