"""Optimizer building: the learning-rate scaling rule and weight decay on weights only."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from dlfoundations.errors import require

#: p in lr_eff = lr * (B / base_batch_size) ** p
LR_SCALING_POWER: dict[str, float] = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}

OptimizerFactory = Callable[[list[dict]], torch.optim.Optimizer]


def scaled_lr(lr: float, global_batch_size: int, base_batch_size: int, rule: str) -> float:
    """lr_eff = lr * (B / base_batch_size) ** p, p = 1/2 (sqrt), 1 (linear) or 0 (none): the
    run's ``lr_scaling`` node.

    ``lr`` is the rate tuned at ``base_batch_size``; B is the global batch size
    (per-device batch x devices x nodes x gradient accumulation).
    """
    require(isinstance(lr, int | float) and 0 < lr < math.inf, "optim.lr", lr,
            "a finite number above 0")
    require(isinstance(base_batch_size, int) and base_batch_size >= 1,
            "lr_scaling.base_batch_size", base_batch_size, "an integer of at least 1")
    require(rule in LR_SCALING_POWER, "lr_scaling.rule", rule,
            f"one of {', '.join(LR_SCALING_POWER)}")
    return float(lr) * (global_batch_size / base_batch_size) ** LR_SCALING_POWER[rule]


def weight_decay_groups(model: nn.Module) -> list[dict]:
    """Two parameter groups: weights (decayed) and biases / norm parameters (never decayed).

    Weight decay is the L2 penalty lambda/2 * ||w||^2 on weight matrices and kernels only;
    a parameter with at most one dimension (a bias, a batch-norm scale or shift) gets none.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim > 1]},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
