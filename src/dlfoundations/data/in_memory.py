"""A dataset of uint8 images held in one tensor, fetched a whole batch at a time.

``torch.utils.data.DataLoader`` calls ``__getitems__`` with the batch's indices, so a batch
costs one tensor index and one normalisation, x = (pixels / 255 - mean) / std, instead of a
per-sample PIL transform. Samplers, ``DistributedSampler`` (which Lightning injects under
DDP), ``set_epoch``, workers and pinned memory all work as for any map-style dataset.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


def pixel_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 pixels scaled to [0, 1], from a 256-bin histogram."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    var = (counts * (values - mean) ** 2).sum() / counts.sum()
    return mean.item(), var.sqrt().item()


class InMemoryImages(Dataset):
    """Images (N, H, W) uint8 and labels (N,) int64, normalised per batch to (B, 1, H, W) float."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.images.device)
        pixels = torch.index_select(self.images.flatten(1), 0, index)  # one copy of B rows
        x = (pixels * self.scale).sub_(self.shift)  # uint8 -> float32 in the multiply
        return x.view(len(index), 1, *self.images.shape[1:]), self.labels[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def to(self, device: torch.device | str) -> InMemoryImages:
        """Move the stored tensors (e.g. onto the GPU, so no batch is copied per step)."""
        self.images = self.images.to(device)
        self.labels = self.labels.to(device)
        return self


def whole_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``collate_fn`` for ``__getitems__``: the batch is already built."""
    return batch
