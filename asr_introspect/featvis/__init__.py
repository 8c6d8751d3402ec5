"""Feature visualization by optimization for speech models (lucent's ideas for log-mel windows).

Find the input window (F, W) that maximizes part of the network:

    from asr_introspect import featvis
    obj = featvis.channel("conv5", 17) + 0.5 * featvis.class_logit("a")   # or parse_objective("conv5:17", model)
    result = featvis.render(model, obj, param="fourier", regularizers="strong", prior=prior, steps=256)
    result.features (F, W), result.trace (steps,), result.response (C,), result.top_letters()

- :mod:`.objectives`: composable objectives (neuron, channel, DeepDream, class
  logit/probability, diversity) and spec strings;
- :mod:`.param`: raw, Fourier (1/f-scaled) and whitened-PCA parameterizations;
- :mod:`.regularizers`: L1/L2, total variation, high-frequency penalty, blur,
  transformation robustness, learned-prior penalty, and named sets;
- :mod:`.prior`: real feature windows and a Gaussian prior (Mahalanobis distance);
- :mod:`.optimize`: :func:`render`, :class:`Result`, the optimal-inputs grid.
"""

from asr_introspect.featvis.objectives import (
    OUTPUT,
    SPEC_FORMS,
    Objective,
    ObjectiveContext,
    Target,
    channel,
    class_logit,
    class_probability,
    deep_dream,
    diversity,
    layer_norm,
    neuron,
    parse_objective,
)
from asr_introspect.featvis.optimize import (
    Result,
    evaluate_objective,
    grid_objectives,
    letter_response,
    optimal_inputs,
    render,
    window_frames,
)
from asr_introspect.featvis.param import PARAMS, FourierParam, Parameterization, PCAParam, RawParam, make_param
from asr_introspect.featvis.prior import GaussianPrior, feature_windows, fit_prior
from asr_introspect.featvis.regularizers import (
    L1,
    L2,
    REGULARIZATION_SETS,
    Blur,
    HighFrequencyPenalty,
    PriorPenalty,
    Regularizer,
    TotalVariation,
    TransformRobustness,
    gaussian_blur,
    high_frequency_energy,
    l1_norm,
    l2_norm,
    regularizer_set,
    total_variation,
)

__all__ = [
    "OUTPUT",
    "SPEC_FORMS",
    "Objective",
    "ObjectiveContext",
    "Target",
    "channel",
    "class_logit",
    "class_probability",
    "deep_dream",
    "diversity",
    "layer_norm",
    "neuron",
    "parse_objective",
    "Result",
    "evaluate_objective",
    "grid_objectives",
    "letter_response",
    "optimal_inputs",
    "render",
    "window_frames",
    "PARAMS",
    "FourierParam",
    "Parameterization",
    "PCAParam",
    "RawParam",
    "make_param",
    "GaussianPrior",
    "feature_windows",
    "fit_prior",
    "L1",
    "L2",
    "REGULARIZATION_SETS",
    "Blur",
    "HighFrequencyPenalty",
    "PriorPenalty",
    "Regularizer",
    "TotalVariation",
    "TransformRobustness",
    "gaussian_blur",
    "high_frequency_energy",
    "l1_norm",
    "l2_norm",
    "regularizer_set",
    "total_variation",
]
