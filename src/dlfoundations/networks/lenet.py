"""LeNet-5 as in the notes: two convolution blocks, then three fully connected layers."""

from __future__ import annotations

from torch import nn

from dlfoundations.errors import require_argument
from dlfoundations.networks.activations import activation_layer

POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet(nn.Sequential):
    """Conv(1->6, 5) -> act -> pool 2 -> Conv(6->16, 5) -> act -> pool 2
    -> Linear(16*4*4 -> 120) -> act -> Linear(120 -> 84) -> act -> Linear(84 -> 10),
    on 28x28 grey images.

    ``padding=2`` on the first convolution is the book's later version (16*5*5 inputs to the
    first Linear); ``batch_norm`` adds BatchNorm after each convolution and hidden Linear,
    before the activation.
    """

    def __init__(self, activation: str = "sigmoid", pool: str = "avg", padding: int = 0,
                 batch_norm: bool = False, num_outputs: int = 10):
        require_argument(pool in POOLS, "pool", pool, f"one of {', '.join(POOLS)}")
        require_argument(padding in (0, 2), "padding", padding, "0 (classic) or 2 (padded)")

        def act() -> nn.Module:
            return activation_layer(activation)

        def norm(kind: type[nn.Module], size: int) -> list[nn.Module]:
            return [kind(size)] if batch_norm else []

        side = 4 if padding == 0 else 5
        super().__init__(
            nn.Conv2d(1, 6, kernel_size=5, padding=padding), *norm(nn.BatchNorm2d, 6), act(),
            POOLS[pool](kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), *norm(nn.BatchNorm2d, 16), act(),
            POOLS[pool](kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), *norm(nn.BatchNorm1d, 120), act(),
            nn.Linear(120, 84), *norm(nn.BatchNorm1d, 84), act(),
            nn.Linear(84, num_outputs),
        )
