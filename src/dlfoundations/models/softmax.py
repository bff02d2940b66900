"""Softmax regression: one linear layer from pixels to class scores."""

from __future__ import annotations

from torch import nn

from dlfoundations.models.classifier import Classifier
from dlfoundations.optim import OptimizerFactory


class SoftmaxRegression(Classifier):
    """p(y | x) = softmax(W x + b), x the 784 flattened pixels, W of shape (10, 784)."""

    def __init__(self, num_inputs: int = 784, num_classes: int = 10,
                 optimizer: OptimizerFactory | None = None):
        super().__init__(optimizer=optimizer, num_classes=num_classes)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_classes))
