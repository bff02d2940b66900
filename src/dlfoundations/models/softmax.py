"""Softmax regression: one linear layer from pixels to class scores."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlfoundations.init import initialise
from dlfoundations.models.base import SchedulerFactory
from dlfoundations.models.classifier import Classifier
from dlfoundations.optim import OptimizerFactory


class SoftmaxRegression(Classifier):
    """p(y | x) = softmax(W x + b), x the 784 flattened pixels, W of shape (10, 784)."""

    has_manual_gradients = True

    def __init__(self, num_inputs: int = 784, num_classes: int = 10,
                 init: dict[str, Any] | None = None,
                 optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, gradients: str = "autograd"):
        super().__init__(num_classes, optimizer, scheduler, gradients)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_classes))
        initialise(self.net, **(init or {}))

    def loss_and_gradients(self, x: torch.Tensor, y: torch.Tensor):
        """O = X W^T + b, L = -(1/n) sum_i log softmax(O_i)_(y_i); with Y the one-hot labels,
        dL/dO = (softmax(O) - Y) / n, so dL/dW = (dL/dO)^T X and dL/db = sum_i (dL/dO)_i."""
        linear = self.net[1]
        x = x.flatten(1)
        logits = x @ linear.weight.T + linear.bias
        delta = (logits.softmax(dim=1) - F.one_hot(y, self.num_classes).to(logits.dtype)) / len(y)
        return logits, F.cross_entropy(logits, y), {linear.weight: delta.T @ x,
                                                     linear.bias: delta.sum(dim=0)}
