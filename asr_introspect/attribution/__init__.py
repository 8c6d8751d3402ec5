"""Attribution for every output frame: LRP (zennit-style rules and composites) and the gradient family.

- :func:`attribute` (``frames.py``): relevance (N, F, T_in) or receptive-field crops
  (N, F, RF) for selected output frames, all frames in batched backward passes.
- :mod:`.stack`: ``conv_stack`` (the model as folded layers: ``ConvStack`` of ``ConvLayer``).
- :mod:`.crops`: receptive-field crops (``CropGeometry``) and the batched backward driver.
- :mod:`.lrp`: rules (``Epsilon``, ``ZPlus``, ``AlphaBeta``, ``Gamma``, ``Flat``,
  ``WSquare``, ``ZBox``) and composites (``EpsilonPlus``, ``EpsilonAlpha2Beta1``,
  ``EpsilonGammaBox``, ...).
- :mod:`.gradients`: ReLU backward rules, Grad-CAM, SmoothGrad, integrated gradients,
  ``relu_backward`` (the rules for plain autograd).
- :mod:`.evaluation`: cascading randomization and deletion/insertion curves.
- :mod:`.dense`: the gradient family for models with self-attention or residual blocks
  (every frame from one forward pass, the input gradient split at the last local layer).
- :mod:`.wavelets`: wavelet attribution (WAM) of the waveform, listenable explanations;
  :mod:`.wam_faithfulness`: insertion/deletion in the wavelet and log-mel domains.
"""

from asr_introspect.attribution.crops import CropGeometry, crop_logits
from asr_introspect.attribution.evaluation import (
    CurveResult,
    RandomizationResult,
    faithfulness,
    perturbation_curves,
    randomization_test,
    rank_correlation,
)
from asr_introspect.attribution.frames import (
    LRP_METHODS,
    Attribution,
    attribute,
    compute_crops,
    select_frames,
    select_targets,
)
from asr_introspect.attribution.frames import METHODS as FEATURE_METHODS
from asr_introspect.attribution.gradients import RELU_RULES, relu_backward
from asr_introspect.attribution.lrp import (
    COMPOSITES,
    AlphaBeta,
    Composite,
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
)
from asr_introspect.attribution.stack import ConvLayer, ConvStack, conv_stack, fold_batchnorm
from asr_introspect.attribution.wavelets import (
    WAVELET_METHODS,
    WaveletAttribution,
    WaveletMap,
    explain_targets,
    wavelet_attribution,
)

#: every method name: the feature-domain methods of :func:`attribute` and the wavelet methods
METHODS = FEATURE_METHODS + WAVELET_METHODS

__all__ = [
    "AlphaBeta",
    "attribute",
    "CurveResult",
    "faithfulness",
    "perturbation_curves",
    "RandomizationResult",
    "randomization_test",
    "rank_correlation",
    "Attribution",
    "COMPOSITES",
    "Composite",
    "compute_crops",
    "conv_stack",
    "ConvLayer",
    "ConvStack",
    "crop_logits",
    "CropGeometry",
    "Epsilon",
    "EpsilonAlpha1Beta0",
    "EpsilonAlpha2Beta1",
    "EpsilonComposite",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "Flat",
    "fold_batchnorm",
    "Gamma",
    "LRP_METHODS",
    "METHODS",
    "FEATURE_METHODS",
    "WAVELET_METHODS",
    "WaveletAttribution",
    "WaveletMap",
    "explain_targets",
    "wavelet_attribution",
    "relu_backward",
    "RELU_RULES",
    "Rule",
    "select_frames",
    "select_targets",
    "WSquare",
    "ZBox",
    "ZPlus",
]
