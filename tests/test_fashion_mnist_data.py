"""The Fashion-MNIST DataModule on the real data: splits, batches, statistics, bad files."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dlfoundations.data import FashionMNISTDataModule, raw_files
from dlfoundations.errors import UserError


def test_split_sizes(fashion_mnist: FashionMNISTDataModule) -> None:
    sizes = {name: len(split) for name, split in fashion_mnist.splits.items()}
    assert sizes == {"train": 55_000, "val": 5_000, "test": 10_000}
    train, val = set(fashion_mnist.train_indices.tolist()), set(fashion_mnist.val_indices.tolist())
    assert not train & val and len(train | val) == 60_000


def test_split_is_deterministic_by_seed(raw_paths: dict[str, Path]) -> None:
    def val_indices(seed: int, val_size: int = 5_000) -> torch.Tensor:
        datamodule = FashionMNISTDataModule(seed=seed, val_size=val_size)
        datamodule.setup()
        return datamodule.val_indices

    assert torch.equal(val_indices(0), val_indices(0))
    assert not torch.equal(val_indices(0), val_indices(1))
    assert len(val_indices(0, val_size=12_000)) == 12_000


def test_stored_as_uint8_and_batches_as_normalised_float(
    fashion_mnist: FashionMNISTDataModule,
) -> None:
    for split in fashion_mnist.splits.values():
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (28, 28)
    x, y = next(iter(fashion_mnist.train_dataloader()))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (256,) and y.dtype == torch.int64


def test_labels_in_range_and_test_set_balanced(fashion_mnist: FashionMNISTDataModule) -> None:
    for split in fashion_mnist.splits.values():
        assert split.labels.min() >= 0 and split.labels.max() <= 9
    counts = torch.bincount(fashion_mnist.splits["test"].labels, minlength=10)
    assert counts.tolist() == [1_000] * 10


def test_training_batch_is_standardised(fashion_mnist: FashionMNISTDataModule) -> None:
    x, _ = fashion_mnist.splits["train"].__getitems__(list(range(8_192)))
    assert abs(x.mean().item()) < 0.02
    assert abs(x.std().item() - 1) < 0.02
    assert 0.27 < fashion_mnist.mean < 0.30 and 0.34 < fashion_mnist.std < 0.37


def test_training_loader_covers_the_split_once_per_epoch_in_a_new_order(
    fashion_mnist: FashionMNISTDataModule,
) -> None:
    loader = fashion_mnist.train_dataloader()

    def labels_in_epoch(epoch: int) -> torch.Tensor:
        loader.batch_sampler.sampler.set_epoch(epoch)  # as Lightning does before each epoch
        return torch.cat([y for _, y in loader])

    first = labels_in_epoch(0)
    assert len(first) == 55_000
    assert torch.equal(torch.bincount(first), torch.bincount(fashion_mnist.splits["train"].labels))
    assert torch.equal(labels_in_epoch(0), first)  # the order is a function of seed and epoch
    assert not torch.equal(labels_in_epoch(1), first)


def _copy_raw(raw_paths: dict[str, Path], data_dir: Path, gunzip: bool = False) -> Path:
    """The four files in ``data_dir``'s raw folder: uncompressed, or as ``.gz`` files (copied
    when the source is compressed, as Debian installs them)."""
    raw = raw_files.raw_dir(data_dir)
    raw.mkdir(parents=True)
    for name, path in raw_paths.items():
        if gunzip:
            (raw / name).write_bytes(raw_files.verified_bytes(name, path))
        elif path.suffix == ".gz":
            shutil.copy(path, raw / path.name)
        else:
            (raw / f"{name}.gz").write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    return raw


def _setup(data_dir: Path) -> FashionMNISTDataModule:
    datamodule = FashionMNISTDataModule(data_dir=str(data_dir), system_dirs=(), download=False)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_uncompressed_files_in_data_dir_are_used_and_left_untouched(
    raw_paths: dict[str, Path], tmp_path: Path
) -> None:
    raw = _copy_raw(raw_paths, tmp_path, gunzip=True)
    before = {f.name: (f.stat().st_mtime_ns, f.stat().st_size) for f in raw.iterdir()}
    datamodule = _setup(tmp_path)
    assert len(datamodule.splits["test"]) == 10_000
    assert {f.name: (f.stat().st_mtime_ns, f.stat().st_size) for f in raw.iterdir()} == before


def test_a_system_copy_is_kept_uncompressed_in_data_dir_once(
    raw_paths: dict[str, Path], tmp_path: Path
) -> None:
    system = _copy_raw(raw_paths, tmp_path / "system")  # .gz files, as Debian installs them
    data_dir = tmp_path / "data"
    FashionMNISTDataModule(data_dir=str(data_dir), system_dirs=(str(system),),
                           download=False).prepare_data()
    raw = raw_files.raw_dir(data_dir)
    assert sorted(f.name for f in raw.iterdir()) == sorted(raw_files.FILES)
    for name in raw_files.FILES:
        assert (raw / name).read_bytes() == gzip.decompress((system / f"{name}.gz").read_bytes())
    written = {f.name: f.stat().st_mtime_ns for f in raw.iterdir()}
    datamodule = _setup(data_dir)  # now found in data_dir alone, and nothing rewritten
    assert len(datamodule.splits["train"]) == 55_000
    assert {f.name: f.stat().st_mtime_ns for f in raw.iterdir()} == written
    gz_files = {name: system / f"{name}.gz" for name in raw_files.FILES}
    assert raw_files.keep_uncompressed(gz_files, data_dir) == []  # never over a file


def test_a_link_where_a_copy_would_go_is_left_as_it_is(raw_paths: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """A link in the data folder where an uncompressed copy would go, here one that loops, is
    the user's: never replaced; the data come from the system's copy."""
    system = _copy_raw(raw_paths, tmp_path / "system")
    raw = raw_files.raw_dir(tmp_path / "data")
    raw.mkdir(parents=True)
    loop = raw / "train-labels-idx1-ubyte"
    loop.symlink_to(loop.name)
    datamodule = FashionMNISTDataModule(data_dir=str(tmp_path / "data"),
                                        system_dirs=(str(system),), download=False)
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.splits["train"]) == 55_000
    assert loop.is_symlink() and os.readlink(loop) == loop.name


def test_truncated_file_names_the_file(raw_paths: dict[str, Path], tmp_path: Path) -> None:
    raw = _copy_raw(raw_paths, tmp_path, gunzip=True)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1_000_000])
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte is corrupt or truncated"):
        _setup(tmp_path)


def test_a_file_far_larger_than_it_should_be_is_refused_without_reading_it_whole(
        raw_paths: dict[str, Path], tmp_path: Path) -> None:
    """A sparse file of 100 GB in place of the training images, and a .gz file that unpacks to
    far more than its labels: each refused for its size in one sentence, having read one byte
    more than the file should hold (reading either whole would not fit in memory or time)."""
    raw = _copy_raw(raw_paths, tmp_path, gunzip=True)
    images = raw / "train-images-idx3-ubyte"
    with images.open("r+b") as file:
        file.truncate(100 << 30)
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte is corrupt or truncated: it "
                       r"holds more than 47,040,016 bytes uncompressed"):
        raw_files.read_tensor(images.name, images)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(bytes(1 << 28), compresslevel=1))  # 256 MB of zeros
    with pytest.raises(UserError, match=r"holds more than 60,008 bytes"):
        raw_files.read_tensor("train-labels-idx1-ubyte", labels)


def test_truncated_gzip_names_the_file(raw_paths: dict[str, Path], tmp_path: Path) -> None:
    raw = _copy_raw(raw_paths, tmp_path)
    labels = raw / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:5_000])
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte.gz cannot be read"):
        _setup(tmp_path)


@pytest.mark.parametrize(("name", "offset", "change", "message"), [
    ("train-labels-idx1-ubyte", 100, lambda label: (label + 1) % 10,
     r"train-labels-idx1-ubyte is corrupt: the CRC-32"),
    ("t10k-labels-idx1-ubyte", 3, lambda _: 3,  # magic 2051 (images) where 2049 belongs
     r"is not t10k-labels-idx1-ubyte: .* says magic 2051"),
])
def test_a_changed_byte_is_caught(raw_paths: dict[str, Path], tmp_path: Path, name: str,
                                  offset: int, change: Callable[[int], int], message: str) -> None:
    path = _copy_raw(raw_paths, tmp_path, gunzip=True) / name
    data = bytearray(path.read_bytes())
    data[offset] = change(data[offset])
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=message):
        _setup(tmp_path)


def test_a_file_changed_after_it_was_read_is_read_and_checked_again(
        raw_paths: dict[str, Path], tmp_path: Path) -> None:
    """The jobs of a sweep in one process read each file once, while it is unchanged."""
    path = _copy_raw(raw_paths, tmp_path, gunzip=True) / "train-labels-idx1-ubyte"
    first = raw_files.load_tensor(path.name, path)
    assert raw_files.load_tensor(path.name, path) is first
    data = bytearray(path.read_bytes())
    data[100] = (data[100] + 1) % 10
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="train-labels-idx1-ubyte is corrupt: the CRC-32"):
        raw_files.load_tensor(path.name, path)


def test_no_data_anywhere_gives_the_three_ways(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        _setup(tmp_path)
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert f"{tmp_path}/FashionMNIST/raw/" in message
    assert "internet" in message
    assert message.count(". ") == 0  # one sentence


def test_part_of_the_files_is_refused(raw_paths: dict[str, Path], tmp_path: Path) -> None:
    raw = raw_files.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    shutil.copy(raw_paths["train-images-idx3-ubyte"], raw)
    with pytest.raises(UserError, match=r"holds only part of Fashion-MNIST \(missing t10k"):
        _setup(tmp_path)


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", 0), ("batch_size", -4), ("val_size", 0), ("val_size", 60_000),
     ("num_workers", -1)],
)
def test_bad_values_name_the_key(key: str, value: int) -> None:
    with pytest.raises(UserError, match=rf"^data\.{key}={value} is not allowed"):
        FashionMNISTDataModule(**{key: value})


def test_k_fold_validation_sets_are_disjoint_and_cover_the_training_split() -> None:
    folds = [FashionMNISTDataModule(num_folds=3, fold=i).split_indices() for i in range(3)]
    val_sets = [set(val.tolist()) for _, val in folds]
    assert all(len(v) == 20_000 for v in val_sets)
    assert set.union(*val_sets) == set(range(60_000))
    assert sum(len(v) for v in val_sets) == 60_000
    for train, val in folds:
        assert not set(train.tolist()) & set(val.tolist()) and len(train) == 40_000


def test_train_subset_keeps_that_many_training_images() -> None:
    train, val = FashionMNISTDataModule(train_subset=1_000).split_indices()
    assert len(train) == 1_000 and len(val) == 5_000


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"num_folds": 1}, "num_folds"), ({"num_folds": 5, "fold": 5}, "fold"),
    ({"num_folds": 5, "fold": -1}, "fold"), ({"train_subset": 0}, "train_subset"),
    ({"train_subset": 55_001}, "train_subset"),
])
def test_bad_fold_options_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(UserError, match=rf"^data\.{key}="):
        FashionMNISTDataModule(**kwargs)
