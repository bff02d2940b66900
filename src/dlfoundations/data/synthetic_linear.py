"""Synthetic data for linear regression: y = X w + b + noise."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from dlfoundations.errors import require
from dlfoundations.task import Task


class SyntheticLinearDataModule(L.LightningDataModule):
    """X ~ N(0, 1) of shape (n, len(true_w)), y = X true_w + true_b + eps, eps ~ N(0, noise_std^2).

    The textbook's defaults: true_w = [2, -3.4], true_b = 4.2, 1,000 training examples, noise
    std 0.01. Validation and test examples are drawn from the same distribution.
    """

    task = Task.REGRESSION

    def __init__(self, true_w: Sequence[float] = (2.0, -3.4), true_b: float = 4.2,
                 noise_std: float = 0.01, num_train: int = 1000, num_val: int = 200,
                 num_test: int = 200, batch_size: int = 32, seed: int = 0):
        super().__init__()
        for key, value in (("num_train", num_train), ("num_val", num_val),
                           ("num_test", num_test), ("batch_size", batch_size)):
            require(isinstance(value, int) and value >= 1, f"data.{key}", value,
                    "an integer of at least 1")
        require(batch_size <= num_train, "data.batch_size", batch_size,
                f"at most data.num_train ({num_train})")
        require(len(true_w) >= 1, "data.true_w", list(true_w), "a list of at least one weight")
        require(noise_std >= 0, "data.noise_std", noise_std, "a number of at least 0")
        self.save_hyperparameters(logger=False)  # the run logs all hyperparameters once
        self.true_w = torch.tensor(list(true_w), dtype=torch.float32)
        self.true_b = float(true_b)
        self.noise_std = noise_std
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.batch_size = batch_size
        self.seed = seed
        self.splits: dict[str, TensorDataset] = {}

    def split_sizes(self) -> dict[str, int]:
        """How many examples each split holds."""
        return dict(self.sizes)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        generator = torch.Generator().manual_seed(self.seed)
        for split, n in self.sizes.items():
            x = torch.randn(n, len(self.true_w), generator=generator)
            noise = torch.randn(n, generator=generator) * self.noise_std
            self.splits[split] = TensorDataset(x, x @ self.true_w + self.true_b + noise)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.batch_size)
