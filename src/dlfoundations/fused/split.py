"""The data of a fused group: each member's own split (its seed, folds and normalisation),
stacked so that one index tensor takes every member's batch at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from dlfoundations.fused.member import Member


@dataclass
class StackedSplit:
    """One split of every member: pixels (K, N, H*W) uint8, labels (K, N), and each member's
    normalisation x = pixels * scale - shift."""

    pixels: torch.Tensor
    labels: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    side: tuple[int, int]

    @classmethod
    def of(cls, members: list[Member], split: str, device: torch.device) -> StackedSplit:
        datasets = [member.run.datamodule.splits[split] for member in members]
        return cls(torch.stack([d.images.flatten(1) for d in datasets]).to(device),
                   torch.stack([d.labels for d in datasets]).to(device),
                   torch.tensor([d.scale for d in datasets]).view(-1, 1, 1).to(device),
                   torch.tensor([d.shift for d in datasets]).view(-1, 1, 1).to(device),
                   tuple(datasets[0].images.shape[1:]))

    def __len__(self) -> int:
        return self.labels.shape[1]

    def batch(self, index: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``index`` (K, B) of each member: x (K, B, 1, H, W) in ``dtype``, y (K, B)."""
        rows = torch.arange(len(index), device=index.device).unsqueeze(1)
        x = (self.pixels[rows, index] * self.scale).sub_(self.shift)  # as InMemoryImages
        return x.to(dtype).view(*index.shape, 1, *self.side), self.labels[rows, index]


def batches(limit: int | float | None, size: int, batch_size: int) -> int:
    """How many batches an epoch takes: Lightning's ``limit_*_batches`` (a count, a fraction
    or null: all) of ceil(size / batch_size)."""
    total = math.ceil(size / batch_size)
    if limit is None:
        return total
    if isinstance(limit, float) and limit <= 1.0:
        return int(total * limit)
    return min(total, int(limit))
