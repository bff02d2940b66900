"""A DataLoader that can resume in the middle of an epoch, exactly.

The shuffle order of epoch e is a function of (seed, e) alone (``EpochRandomSampler``), the
loaders draw no number from the global RNG (they get their own generator), and the loader
counts the batches it has handed out in the current epoch. Lightning stores that count in a
checkpoint (``state_dict``) and gives it back on resume (``load_state_dict``); the next epoch
then skips the batches already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler


class EpochRandomSampler(RandomSampler):
    """A random permutation per epoch: ``randperm(n)`` from a generator seeded by seed + epoch.

    A ``RandomSampler``, so that Lightning knows it shuffles and, under DDP, replaces it with a
    ``DistributedSampler`` (seeded the same way from the run's seed).
    """

    def __init__(self, data_source: Any, seed: int = 0):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position within the epoch is saved and restored by Lightning."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.batches_done = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:
        self.batches_done, skip, self._skip = 0, self._skip, 0
        for index, batch in enumerate(super().__iter__()):
            self.batches_done = index + 1
            if index >= skip:
                yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = state["batches_done"]
