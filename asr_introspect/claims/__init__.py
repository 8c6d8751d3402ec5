"""The papers' claims tested as numbers, each with a null, a bootstrap interval and a verdict.

- :mod:`.record`: :class:`Claim`, :func:`percentile_interval`, :func:`verdict_for`.
- :mod:`.layer_trend`: ARI of NAP clusterings against phonetic categories (min-count filter; Ward,
  average-cosine, average-correlation linkages), :func:`layer_at_depth`.
- :mod:`.bootstrap`: per-(utterance, group) sums; resampling utterances re-sums them.
- :mod:`.nulls`: random weights, each layer randomized alone, labels shuffled within utterances.
- :mod:`.probes`: cross-validated ridge probes with a Hewitt & Liang control task.
- :mod:`.cka`: linear CKA between layers.
- :mod:`.patterns`: letter-averaged inputs look alike until the all-letter average is subtracted;
  fricative spectral centroids exceed vowel centroids (:func:`pattern_claims`).
- :mod:`.attribution`: LRP maps against the randomization sanity check (:func:`lrp_randomization_claim`).
- :mod:`.run`: one pass over the corpus (:func:`collect`), the curves and the claims (:func:`run_claims`).
"""

from asr_introspect.claims.attribution import lrp_randomization_claim
from asr_introspect.claims.bootstrap import UtteranceSums, bootstrap_multiplicities, resampled_means
from asr_introspect.claims.cka import cka_matrix, linear_cka
from asr_introspect.claims.layer_trend import (
    DEFAULT_MIN_COUNT,
    LINKAGES,
    adjusted_rand,
    category_ari,
    cut_into,
    layer_at_depth,
    trend_scores,
)
from asr_introspect.claims.nulls import (
    LayerRandomizer,
    random_weights_model,
    randomize_module,
    shuffle_within_utterances,
)
from asr_introspect.claims.patterns import pattern_claims
from asr_introspect.claims.probes import (
    balanced_accuracy,
    control_categories,
    probe_predictions,
    random_projection,
    utterance_folds,
)
from asr_introspect.claims.record import VERDICTS, Claim, percentile_interval, verdict_for
from asr_introspect.claims.run import ClaimsResult, collect, layer_claims, layer_trends, probe_trends, run_claims

__all__ = [
    "Claim",
    "ClaimsResult",
    "DEFAULT_MIN_COUNT",
    "LINKAGES",
    "LayerRandomizer",
    "UtteranceSums",
    "VERDICTS",
    "adjusted_rand",
    "balanced_accuracy",
    "bootstrap_multiplicities",
    "category_ari",
    "cka_matrix",
    "collect",
    "control_categories",
    "cut_into",
    "layer_at_depth",
    "layer_claims",
    "layer_trends",
    "linear_cka",
    "lrp_randomization_claim",
    "pattern_claims",
    "percentile_interval",
    "probe_predictions",
    "probe_trends",
    "random_projection",
    "random_weights_model",
    "randomize_module",
    "resampled_means",
    "run_claims",
    "shuffle_within_utterances",
    "trend_scores",
    "utterance_folds",
    "verdict_for",
]
