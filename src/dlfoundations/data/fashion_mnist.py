"""The Fashion-MNIST DataModule: verified raw files, held in memory, batched by indexing."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, SequentialSampler

from dlfoundations.data import raw_files
from dlfoundations.data.in_memory import InMemoryImages, pixel_mean_std, whole_batch
from dlfoundations.data.resumable_loader import (
    EpochRandomSampler,
    IndexTensorBatchSampler,
    ResumableDataLoader,
)
from dlfoundations.errors import UserError, require
from dlfoundations.task import Task

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000
#: the most folds of the 60,000 training images, so that each holds at least 100 of them
MAX_FOLDS = TRAIN_SIZE // 100


class FashionMNISTDataModule(L.LightningDataModule):
    """Fashion-MNIST: 60,000 training images split into train/validation by ``seed``, 10,000 test.

    The validation set is the first ``val_size`` images of a seeded permutation, or, with
    ``num_folds`` = K, fold ``fold`` of K equal parts of it (K-fold cross-validation).
    ``train_subset`` keeps only that many training images (to study overfitting).
    ``classes`` = [a, b] keeps only the images of those two classes in every split, labelled
    0 (a) and 1 (b): the two-class problem of logistic regression.

    Each split lives in memory as uint8; batches are normalised with the training split's
    pixel mean and standard deviation. With ``on_device`` (and no workers) the splits are moved
    to the accelerator once, so a GPU step copies nothing from the host.
    """

    task = Task.CLASSIFICATION
    #: the labels a ten-class model tells apart (0-9)
    num_classes = len(CLASS_NAMES)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 256,
        val_size: int = 5_000,
        seed: int = 0,
        num_folds: int | None = None,
        fold: int = 0,
        train_subset: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        on_device: bool = True,
        download: bool = True,
        system_dirs: Sequence[str] = raw_files.SYSTEM_DIRS,
        classes: Sequence[int] | None = None,
    ):
        super().__init__()
        require(isinstance(batch_size, int) and batch_size >= 1,
                "data.batch_size", batch_size, "an integer of at least 1")
        require(isinstance(val_size, int) and 0 < val_size < TRAIN_SIZE,
                "data.val_size", val_size, f"an integer between 1 and {TRAIN_SIZE - 1}")
        cores = os.cpu_count() or 1
        require(isinstance(num_workers, int) and 0 <= num_workers <= cores,
                "data.num_workers", num_workers, f"an integer from 0 to {cores} (the cores)")
        require(isinstance(seed, int), "data.seed", seed, "an integer")
        if num_folds is not None:
            require(isinstance(num_folds, int) and 2 <= num_folds <= MAX_FOLDS,
                    "data.num_folds", num_folds, f"null or an integer from 2 to {MAX_FOLDS} "
                    "(each fold holds at least 100 images)")
            require(isinstance(fold, int) and 0 <= fold < num_folds, "data.fold", fold,
                    f"an integer from 0 to {num_folds - 1} (data.num_folds - 1)")
        if train_subset is not None:
            held_out = val_size if num_folds is None else math.ceil(TRAIN_SIZE / num_folds)
            require(isinstance(train_subset, int) and 1 <= train_subset <= TRAIN_SIZE - held_out,
                    "data.train_subset", train_subset,
                    f"null or an integer from 1 to {TRAIN_SIZE - held_out} (the training split)")
        if classes is not None:
            classes = list(classes)
            require(len(classes) == 2 and len(set(classes)) == 2
                    and all(isinstance(c, int) and 0 <= c < len(CLASS_NAMES) for c in classes),
                    "data.classes", classes, "null or two different class numbers from 0 to 9 ("
                    + ", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES)) + ")")
        self.save_hyperparameters(logger=False)  # the run logs all hyperparameters once
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.num_folds = num_folds
        self.fold = fold
        self.train_subset = train_subset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.on_device = on_device
        self.download = download
        self.system_dirs = tuple(system_dirs)
        self.classes = classes
        self.splits: dict[str, InMemoryImages] = {}
        self.train_indices = self.val_indices = torch.empty(0, dtype=torch.long)
        self.mean = self.std = float("nan")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the labels in order: the ten classes, or with ``classes`` the two."""
        return tuple(CLASS_NAMES[c] for c in self.classes) if self.classes else CLASS_NAMES

    def prepare_data(self) -> None:
        """Find (or download, on one process) the raw files and keep uncompressed copies of
        ``.gz`` files in ``data_dir`` (``raw_files.keep_uncompressed``)."""
        paths = raw_files.find_files(self.data_dir, self.system_dirs, self.download)
        raw_files.keep_uncompressed(paths, self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        paths = raw_files.find_files(self.data_dir, self.system_dirs, download=False)
        tensors = {name: raw_files.load_tensor(name, path) for name, path in paths.items()}
        images, labels = tensors["train-images-idx3-ubyte"], tensors["train-labels-idx1-ubyte"]
        self.train_indices, self.val_indices = self.split_indices()
        train_images = images.index_select(0, self.train_indices)  # half the time of [...]
        self.mean, self.std = pixel_mean_std(train_images)
        self.splits = {
            "train": self._split(train_images, labels.index_select(0, self.train_indices)),
            "val": self._split(images.index_select(0, self.val_indices),
                               labels.index_select(0, self.val_indices)),
            "test": self._split(tensors["t10k-images-idx3-ubyte"],
                                tensors["t10k-labels-idx1-ubyte"]),
        }
        self.require_sizes(len(self.splits["train"]), len(self.splits["val"]))
        device = self._device()
        if device is not None:
            for split in self.splits.values():
                split.to(device)

    @property
    def split_settings(self) -> tuple[Any, ...]:
        """What decides the splits' contents: two data modules with equal settings hold the
        same splits (``share_splits``)."""
        return (str(self.data_dir), self.system_dirs, self.seed, self.val_size, self.num_folds,
                self.fold, self.train_subset, self.classes)

    def share_splits(self, other: FashionMNISTDataModule) -> None:
        """Hold ``other``'s splits (set up, with equal ``split_settings``), read-only: the
        members of a fused group load and normalise them once."""
        if other.split_settings != self.split_settings or not other.splits:
            raise ValueError("share_splits needs a set-up data module of the same splits")
        self.splits = dict(other.splits)
        self.train_indices, self.val_indices = other.train_indices, other.val_indices
        self.mean, self.std = other.mean, other.std
        self.require_sizes(len(self.splits["train"]), len(self.splits["val"]))

    def split_sizes(self) -> dict[str, int] | None:
        """How many images each split will hold, before any image is loaded (with
        ``classes``, from the labels, where the files are on this machine already; None
        where they are not yet)."""
        train, val = self.split_indices()
        test = TEST_SIZE
        if self.classes is not None:
            try:
                paths = raw_files.find_files(self.data_dir, self.system_dirs, download=False)
            except UserError:
                return None  # not here yet: setup checks once prepare_data has brought them
            kept = {name: torch.isin(raw_files.load_tensor(name, paths[name]).long(),
                                     torch.tensor(self.classes))
                    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")}
            keep = kept["train-labels-idx1-ubyte"]
            train, val = train[keep[train]], val[keep[val]]
            test = int(kept["t10k-labels-idx1-ubyte"].sum())
        return {"train": len(train), "val": len(val), "test": test}

    def check_sizes(self, sizes: dict[str, int] | None) -> None:
        """Refuse, before any data is loaded, a batch larger than the training split and a
        validation split with no image, by ``split_sizes`` (None: not known yet; ``setup``
        checks again)."""
        if sizes is not None:
            self.require_sizes(sizes["train"], sizes["val"])

    def require_sizes(self, train: int, val: int) -> None:
        require(train >= self.batch_size, "data.batch_size", self.batch_size,
                f"at most the training split's size ({train} images)")
        require(val > 0, "data.val_size" if self.num_folds is None else "data.fold",
                self.val_size if self.num_folds is None else self.fold,
                "a choice that leaves images in the validation split (it holds none)")

    def split_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices into the 60,000 training images of the train and validation splits."""
        order = torch.randperm(TRAIN_SIZE, generator=torch.Generator().manual_seed(self.seed))
        if self.num_folds is None:
            val, train = order[: self.val_size], order[self.val_size:]
        else:
            folds = torch.tensor_split(order, self.num_folds)
            val = folds[self.fold]
            train = torch.cat([f for i, f in enumerate(folds) if i != self.fold])
        if self.train_subset is not None:
            train = train[: self.train_subset]
        return train, val

    def _split(self, images: torch.Tensor, labels: torch.Tensor) -> InMemoryImages:
        """The split as normalised batches; with ``classes``, only those classes, as 0 and 1."""
        labels = labels.long()
        if self.classes is not None:
            keep = torch.isin(labels, torch.tensor(self.classes))
            images, labels = images[keep], (labels[keep] == self.classes[1]).long()
        return InMemoryImages(images.contiguous(), labels, self.mean, self.std)

    def _device(self) -> torch.device | None:
        """The accelerator to hold the data on, or None to keep it in host memory."""
        if self.trainer is None or not self.on_device or self.num_workers > 0:
            return None
        device = self.trainer.strategy.root_device
        return device if device.type != "cpu" else None

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        sampler = EpochRandomSampler(dataset, self.seed) if shuffle else SequentialSampler(dataset)
        return ResumableDataLoader(
            dataset,
            batch_sampler=IndexTensorBatchSampler(sampler, self.batch_size, drop_last=False),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and dataset.images.device.type == "cpu",
            collate_fn=whole_batch,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
