"""The multilayer perceptron with dropout."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dlfoundations.errors import require_argument
from dlfoundations.networks.activations import activation_layer


class MLP(nn.Sequential):
    """h_l = dropout(phi(W_l h_(l-1) + b_l)) for each hidden layer, then o = W h_L + b.

    ``dropout`` is one probability for every hidden layer or a list of one per layer;
    dropout zeroes a unit with probability p and scales the others by 1 / (1 - p), in
    training mode only.
    """

    def __init__(self, num_inputs: int = 784, hidden: Sequence[int] = (256,),
                 activation: str = "relu", dropout: float | Sequence[float] = 0.0,
                 num_outputs: int = 10):
        require_argument(isinstance(hidden, Sequence) and len(hidden) >= 1
                and all(isinstance(h, int) and h >= 1 for h in hidden),
                "hidden", hidden, "a list of at least one positive integer")
        hidden = list(hidden)
        rates = list(dropout) if isinstance(dropout, Sequence) else [dropout] * len(hidden)
        require_argument(len(rates) == len(hidden), "dropout", dropout,
                f"one probability or a list of {len(hidden)} (one per hidden layer)")
        for rate in rates:
            require_argument(isinstance(rate, int | float) and 0 <= rate < 1, "dropout",
                    dropout, "in [0, 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out, rate in zip([num_inputs, *hidden], hidden, rates, strict=False):
            layers += [nn.Linear(width_in, width_out), activation_layer(activation)]
            if rate > 0:
                layers.append(nn.Dropout(rate))
        layers.append(nn.Linear(hidden[-1], num_outputs))
        super().__init__(*layers)
