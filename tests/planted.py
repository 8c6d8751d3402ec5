"""A tiny model with non-trivial BatchNorm statistics and biases, shared by the attribution tests."""

from __future__ import annotations

import torch
from torch import nn

from asr_introspect.models import build_model


def planted_model(seed: int = 0, bn_bias_std: float = 0.3, conv_bias_std: float | None = None, dtype=torch.float64):
    """``build_model("tiny")`` in eval mode with random BatchNorm statistics/biases (and conv biases)."""
    torch.manual_seed(seed)
    model = build_model("tiny")
    for m in model.module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(0.0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.normal_(0.0, bn_bias_std)
        if conv_bias_std is not None and isinstance(m, nn.Conv1d):
            m.bias.data.normal_(0.0, conv_bias_std)
    model.module.eval().to(dtype)
    return model


def tiny_model_with_batchnorm():
    """The ``tiny`` preset (seed 0, float32, eval mode) with uniform random BatchNorm statistics and
    biases, so that padding errors would show in what an analysis computes (the NAP and SNAP tests)."""
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    for module in model.module.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.5, 0.5)
    return model
