"""Flag choices copied from library modules that import torch, so that ``--help`` does not.

tests/test_cli.py checks that each copy equals the library's value.
"""

#: ``naps.LINKAGES``
LINKAGES = ("average", "complete", "ward", "single")
#: ``naps.METRICS``
METRICS = ("euclidean", "correlation", "cosine")
#: ``naps.NORMALIZATIONS``
NAP_NORMALIZATIONS = ("none", "center", "zscore", "standardize")
#: ``attribution.METHODS``
ATTRIBUTION_METHODS = (
    "lrp-epsilon",
    "lrp-epsilon-plus",
    "lrp-epsilon-plus-flat",
    "lrp-alpha2beta1",
    "lrp-alpha1beta0",
    "lrp-epsilon-gamma-box",
    "sensitivity",
    "sensitivity-squared",
    "gradient-x-input",
    "deconvnet",
    "guided-backprop",
    "smoothgrad",
    "integrated-gradients",
    "grad-cam:LAYER",
    "guided-grad-cam:LAYER",
    "wam-grad",
    "wam-smoothgrad",
    "wam-ig",
)
#: the figure family letters of ``workflows.figures.FAMILIES``
FIGURE_FAMILIES = "abcdefghi"
