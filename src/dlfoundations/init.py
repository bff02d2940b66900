"""Weight initialisers for Linear and Conv layers (biases always start at 0).

- ``default``: PyTorch's own (Kaiming-uniform with a = sqrt(5)), left untouched;
- ``normal``: w ~ N(0, std^2), std = 0.01 as in the notes;
- ``xavier``: w ~ U(-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out)));
- ``kaiming``: w ~ N(0, 2 / fan_in) (He, for ReLU);
- ``zeros``: w = 0, which leaves every hidden unit identical (the symmetry problem).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from dlfoundations.errors import require

INITIALISED_LAYERS = (nn.Linear, nn.Conv2d)


def _normal(weight: nn.Parameter, std: float) -> None:
    nn.init.normal_(weight, mean=0.0, std=std)


def _xavier(weight: nn.Parameter, std: float) -> None:
    nn.init.xavier_uniform_(weight)


def _kaiming(weight: nn.Parameter, std: float) -> None:
    nn.init.kaiming_normal_(weight, nonlinearity="relu")


def _zeros(weight: nn.Parameter, std: float) -> None:
    nn.init.zeros_(weight)


WEIGHT_INITS: dict[str, Callable[[nn.Parameter, float], None]] = {
    "normal": _normal,
    "xavier": _xavier,
    "kaiming": _kaiming,
    "zeros": _zeros,
}
INIT_NAMES = ("default", *WEIGHT_INITS)


def initialise(module: nn.Module, name: str = "default", std: float = 0.01) -> None:
    """Initialise every Linear and Conv2d weight of ``module`` by ``name``; biases to 0."""
    require(name in INIT_NAMES, "init.name", name, f"one of {', '.join(INIT_NAMES)}")
    require(isinstance(std, int | float) and std > 0, "init.std", std, "a number above 0")
    if name == "default":
        return
    for layer in module.modules():
        if isinstance(layer, INITIALISED_LAYERS):
            WEIGHT_INITS[name](layer.weight, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
