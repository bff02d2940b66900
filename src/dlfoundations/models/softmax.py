"""Softmax regression: one linear layer from pixels to class scores."""

from __future__ import annotations

from typing import Any

from torch import nn

from dlfoundations.init import initialise
from dlfoundations.models.base import SchedulerFactory
from dlfoundations.models.classifier import Classifier
from dlfoundations.optim import OptimizerFactory


class SoftmaxRegression(Classifier):
    """p(y | x) = softmax(W x + b), x the 784 flattened pixels, W of shape (10, 784)."""

    def __init__(self, num_inputs: int = 784, num_classes: int = 10,
                 init: dict[str, Any] | None = None,
                 optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None):
        super().__init__(num_classes, optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_classes))
        initialise(self.net, **(init or {}))
