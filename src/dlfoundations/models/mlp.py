"""The multilayer perceptron with dropout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from dlfoundations.errors import require
from dlfoundations.init import initialise
from dlfoundations.models.activations import activation_layer
from dlfoundations.models.base import SchedulerFactory
from dlfoundations.models.classifier import Classifier
from dlfoundations.optim import OptimizerFactory


class MLP(Classifier):
    """h_l = dropout(phi(W_l h_(l-1) + b_l)) for each hidden layer, then o = W h_L + b.

    ``dropout`` is one probability for every hidden layer or a list of one per layer;
    dropout zeroes a unit with probability p and scales the others by 1 / (1 - p), in
    training mode only.
    """

    def __init__(self, num_inputs: int = 784, hidden: Sequence[int] = (256,),
                 activation: str = "relu", dropout: float | Sequence[float] = 0.0,
                 num_classes: int = 10, init: dict[str, Any] | None = None,
                 optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None):
        super().__init__(num_classes, optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        hidden = list(hidden)
        require(len(hidden) >= 1 and all(isinstance(h, int) and h >= 1 for h in hidden),
                "model.hidden", hidden, "a list of at least one positive integer")
        rates = list(dropout) if isinstance(dropout, Sequence) else [dropout] * len(hidden)
        require(len(rates) == len(hidden), "model.dropout", dropout,
                f"one probability or a list of {len(hidden)} (one per hidden layer)")
        for rate in rates:
            require(isinstance(rate, int | float) and 0 <= rate < 1, "model.dropout", dropout,
                    "in [0, 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out, rate in zip([num_inputs, *hidden], hidden, rates, strict=False):
            layers += [nn.Linear(width_in, width_out), activation_layer(activation)]
            if rate > 0:
                layers.append(nn.Dropout(rate))
        layers.append(nn.Linear(hidden[-1], num_classes))
        self.net = nn.Sequential(*layers)
        initialise(self.net, **(init or {}))


    def report(self) -> dict[str, float]:
        """``hidden_unit_spread``: the largest difference between two hidden units' incoming
        weights in any hidden layer; 0 when every unit is alike (e.g. after zero init)."""
        hidden = [m for m in self.net if isinstance(m, nn.Linear)][:-1]
        spread = max((layer.weight - layer.weight[:1]).abs().max().item() for layer in hidden)
        return {"hidden_unit_spread": spread}
