"""Concepts inside a layer: dictionaries of its frame activations, grounded in phones and letters, checked
for stability and faithfulness, and listenable interpretations of the model's letters.

- :mod:`.estimator`: :class:`ConceptEstimator` (``method="nmf"`` or ``"sae"``, ``partial_fit`` on
  :mod:`asr_introspect.stream` batches, several passes) and :func:`fit_concepts` (several estimators,
  one forward pass, later passes replayed); the result is a :class:`ConceptDictionary`.
- :mod:`.nmf`: :class:`StreamedNMF`, NMF from streamed sufficient statistics (exactly mergeable passes).
- :mod:`.sae`: :class:`StreamedSAE`, a TopK or L1 sparse autoencoder trained on streamed frames.
- :mod:`.grounding`: :class:`ConceptGrounding` (phone and letter purity of each concept's top events,
  top clips, average input patterns), :func:`concept_gram` for one utterance, :func:`save_concept_clips`.
- :mod:`.stability`: :func:`concept_stability`, Hungarian matching of dictionaries fitted with other seeds.
- :mod:`.faithfulness`: :func:`faithfulness`, the model with the layer replaced by its reconstruction,
  mean-ablated, or with single concepts removed: CER, KL, top-1 agreement, the letters that suffer.
- :mod:`.l2i`: :class:`ListenableInterpreter`, L2I-style interpretation of letters and words by
  NMF components of the spectrogram, resynthesized into audio; fidelity and faithfulness.

Figures: :mod:`asr_introspect.plotting.concepts`. Command line: ``asr-introspect concepts``.

Example::

    est = ConceptEstimator("conv9", "nmf", n_concepts=32).fit(model, utterances)
    dictionary = est.result()
    grounding = ConceptGrounding(dictionary).fit(model, utterances).result()
    grounding.table()[0]        # dominant phone / letter, purity, lift, top events of concept 0
    faithfulness(model, utterances[:20], dictionary, concepts=[0, 1]).summary()
"""

from asr_introspect.concepts.dictionary import METHODS, ConceptDictionary
from asr_introspect.concepts.estimator import DEFAULT_PASSES, ConceptEstimator, fit_concepts
from asr_introspect.concepts.faithfulness import Faithfulness, concept_contribution, faithfulness, replaced_layer
from asr_introspect.concepts.grounding import (
    ConceptGram,
    ConceptGrounding,
    Grounding,
    concept_clips,
    concept_gram,
    save_concept_clips,
)
from asr_introspect.concepts.l2i import (
    Interpretation,
    Interpreter,
    ListenableInterpreter,
    features_to_magnitude,
    magnitude_to_features,
)
from asr_introspect.concepts.nmf import StreamedNMF, nmf_codes
from asr_introspect.concepts.sae import SPARSITIES, SparseAutoencoder, StreamedSAE
from asr_introspect.concepts.stability import Stability, concept_stability, match_concepts

__all__ = [
    "METHODS",
    "SPARSITIES",
    "DEFAULT_PASSES",
    "ConceptDictionary",
    "ConceptEstimator",
    "fit_concepts",
    "StreamedNMF",
    "nmf_codes",
    "StreamedSAE",
    "SparseAutoencoder",
    "ConceptGrounding",
    "Grounding",
    "ConceptGram",
    "concept_gram",
    "concept_clips",
    "save_concept_clips",
    "Stability",
    "concept_stability",
    "match_concepts",
    "Faithfulness",
    "faithfulness",
    "replaced_layer",
    "concept_contribution",
    "ListenableInterpreter",
    "Interpreter",
    "Interpretation",
    "features_to_magnitude",
    "magnitude_to_features",
]
