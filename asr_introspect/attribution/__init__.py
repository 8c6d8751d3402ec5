"""Attribution for every output frame: LRP (zennit-style rules and composites) and the gradient family.

- :func:`attribute` (``frames.py``): relevance (N, F, T_in) or receptive-field crops
  (N, F, RF) for selected output frames, all frames in batched backward passes.
- :mod:`.lrp`: rules (``Epsilon``, ``ZPlus``, ``AlphaBeta``, ``Gamma``, ``Flat``,
  ``WSquare``, ``ZBox``), composites (``EpsilonPlus``, ``EpsilonAlpha2Beta1``,
  ``EpsilonGammaBox``, ...), ``conv_stack`` (the model as folded layers).
- :mod:`.gradients`: ReLU backward rules, Grad-CAM, SmoothGrad, integrated gradients,
  ``relu_backward`` (the rules for plain autograd).
- :mod:`.evaluation`: cascading randomization and deletion/insertion curves.
"""

from asr_introspect.attribution.frames import (
    LRP_METHODS,
    METHODS,
    Attribution,
    CropGeometry,
    attribute,
    compute_crops,
    crop_logits,
    select_frames,
    select_targets,
)
from asr_introspect.attribution.lrp import (
    COMPOSITES,
    AlphaBeta,
    Composite,
    ConvLayer,
    ConvStack,
    Epsilon,
    EpsilonAlpha1Beta0,
    EpsilonAlpha2Beta1,
    EpsilonComposite,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    Flat,
    Gamma,
    Rule,
    WSquare,
    ZBox,
    ZPlus,
    conv_stack,
    fold_batchnorm,
)
from asr_introspect.attribution.gradients import RELU_RULES, relu_backward
from asr_introspect.attribution.evaluation import (
    CurveResult,
    RandomizationResult,
    faithfulness,
    perturbation_curves,
    randomization_test,
    rank_correlation,
)

__all__ = [
    "AlphaBeta", "attribute", "CurveResult", "faithfulness", "perturbation_curves", "RandomizationResult",
    "randomization_test", "rank_correlation", "Attribution", "COMPOSITES", "Composite", "compute_crops", "conv_stack",
    "ConvLayer", "ConvStack", "crop_logits", "CropGeometry", "Epsilon", "EpsilonAlpha1Beta0",
    "EpsilonAlpha2Beta1", "EpsilonComposite", "EpsilonGammaBox", "EpsilonPlus", "EpsilonPlusFlat", "Flat",
    "fold_batchnorm", "Gamma", "LRP_METHODS", "METHODS", "relu_backward", "RELU_RULES", "Rule",
    "select_frames", "select_targets", "WSquare", "ZBox", "ZPlus",
]
