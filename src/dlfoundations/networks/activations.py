"""The activation functions the models can be built with, by name."""

from __future__ import annotations

from torch import nn

from dlfoundations.errors import require

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def activation_layer(name: str, key: str = "model.net.activation") -> nn.Module:
    """A new activation layer: relu max(0, z), sigmoid 1 / (1 + e^-z) or tanh."""
    require(name in ACTIVATIONS, key, name, f"one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
