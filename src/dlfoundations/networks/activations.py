"""The activation functions the models can be built with, by name."""

from __future__ import annotations

from torch import nn

from dlfoundations.errors import require_argument

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def activation_layer(name: str) -> nn.Module:
    """A new activation layer: relu max(0, z), sigmoid 1 / (1 + e^-z) or tanh."""
    require_argument(name in ACTIVATIONS, "activation", name, f"one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
