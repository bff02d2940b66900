"""A DataLoader that can resume in the middle of an epoch, exactly.

The shuffle order of epoch e is a function of (seed, e) alone (``EpochRandomSampler``), the
loaders draw no number from the global RNG (they get their own generator), and the loader
counts the batches it has handed out in the current epoch. Lightning stores that count in a
checkpoint (``state_dict``) and gives it back on resume (``load_state_dict``); the next epoch
then skips the batches already trained on. Batches are index tensors sliced from the epoch's
order (``IndexTensorBatchSampler``), so no per-sample Python runs per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler


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

    def order(self) -> torch.Tensor:
        """This epoch's permutation of the indices, as one int64 tensor."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.data_source), generator=generator)

    def __iter__(self) -> Iterator[int]:
        yield from self.order().tolist()


class IndexTensorBatchSampler(BatchSampler):
    """A ``BatchSampler`` whose batches are int64 tensor slices, not lists of Python ints.

    ``BatchSampler`` gathers a batch index by index in Python and ``InMemoryImages`` then turns
    the list into a tensor, a cost per batch that a small model feels (docs/performance.md);
    this one takes the epoch's order as one tensor and hands out slices of it. Lightning
    re-creates it around its ``DistributedSampler`` under DDP (same ``sampler, batch_size,
    drop_last`` arguments).
    """

    def __iter__(self) -> Iterator[torch.Tensor]:
        if isinstance(self.sampler, EpochRandomSampler):
            order = self.sampler.order()
        else:
            order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]


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
        """Skip the batches a checkpoint says were done (a whole number of at least 0)."""
        done = state.get("batches_done") if isinstance(state, dict) else None
        if not (type(done) is int and done >= 0):
            raise ValueError(f"the loader's batches_done is {done!r}, not a whole number of at "
                             "least 0")
        self._skip = done
