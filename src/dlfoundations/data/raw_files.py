"""Find, verify and read the four raw Fashion-MNIST IDX files.

Search order: ``<data_dir>/FashionMNIST/raw/`` (torchvision's layout, ``.gz`` or uncompressed),
then each system location (Debian's ``dataset-fashion-mnist`` puts the ``.gz`` files in
``/usr/share/datasets/fashion-mnist/``), then torchvision's own download into ``data_dir``.
A user's files are only ever read: a download only writes into a raw folder that holds none of
them, and ``keep_uncompressed`` only adds the uncompressed files beside the ``.gz`` ones.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlfoundations.errors import UserError

SYSTEM_DIRS: tuple[str, ...] = ("/usr/share/datasets/fashion-mnist",)


@dataclass(frozen=True)
class IdxSpec:
    """What one uncompressed IDX file must be: magic number, shape and CRC-32."""

    magic: int
    shape: tuple[int, ...]
    crc32: int

    @property
    def header_size(self) -> int:
        """Magic number plus one 4-byte size per dimension."""
        return 4 + 4 * len(self.shape)

    @property
    def size(self) -> int:
        """Header plus one byte per value."""
        return self.header_size + math.prod(self.shape)


#: each file's CRC-32 of its uncompressed bytes, the one every ``.gz`` of it carries in its
#: trailer (``gzip -lv`` shows it): it catches a damaged or different file (not a crafted one,
#: which MD5 no longer does either) in 11 ms for the training images where MD5 took 61 ms on
#: the 2-core CPU, in every process that reads them
FILES: dict[str, IdxSpec] = {
    "train-images-idx3-ubyte": IdxSpec(2051, (60000, 28, 28), 0xB4F29F28),
    "train-labels-idx1-ubyte": IdxSpec(2049, (60000,), 0x741A4657),
    "t10k-images-idx3-ubyte": IdxSpec(2051, (10000, 28, 28), 0x678FE0B1),
    "t10k-labels-idx1-ubyte": IdxSpec(2049, (10000,), 0x80142C1F),
}


def raw_dir(data_dir: str | Path) -> Path:
    """torchvision's raw folder for Fashion-MNIST under ``data_dir``."""
    return Path(data_dir) / "FashionMNIST" / "raw"


def missing_data_message(data_dir: str | Path) -> str:
    return (
        "Fashion-MNIST was not found and could not be downloaded: install it with "
        "`apt-get install dataset-fashion-mnist` (Debian, as root), copy the four "
        f"*-ubyte.gz files into {raw_dir(data_dir)}/, or run once with internet access "
        "(data.download=true)."
    )


def _file_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_files(data_dir: str | Path, system_dirs: tuple[str, ...] | list[str] = SYSTEM_DIRS,
               download: bool = True) -> dict[str, Path]:
    """Paths of the four raw files from the first location that holds all four.

    Raises ``UserError`` with the three ways to get the data when no location has them.
    """
    own = raw_dir(data_dir)
    for folder in (own, *map(Path, system_dirs)):
        found = {name: _file_in(folder, name) for name in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    partial = [name for name in FILES if _file_in(own, name)]
    if partial:
        missing = sorted(set(FILES) - set(partial))
        raise UserError(
            f"{own} holds only part of Fashion-MNIST (missing {', '.join(missing)}); "
            "add the missing files there or move that folder away to use another source."
        )
    if download and _download(data_dir):
        return find_files(data_dir, (), download=False)
    raise UserError(missing_data_message(data_dir))


def _download(data_dir: str | Path) -> bool:
    """torchvision's download into ``data_dir``; False when offline or refused."""
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(data_dir), train=True, download=True)
    except (OSError, RuntimeError, ValueError):
        return False
    return True


def read_bytes(path: Path, most: int) -> bytearray:
    """The uncompressed bytes of ``path`` (gunzipped when it ends in .gz), at most ``most`` + 1
    of them (a larger file is then refused for its size, never read whole), writable, for
    ``torch.frombuffer``: an uncompressed file is read straight into them (a copy of the 47 MB
    of training images took 26 ms on the 2-core CPU, in every process that reads it)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                return bytearray(file.read(most + 1))
        with path.open("rb") as file:
            data = bytearray(min(os.fstat(file.fileno()).st_size, most + 1))
            read = file.readinto(data)
        return data[:read] if read < len(data) else data
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise UserError(f"{path} cannot be read as Fashion-MNIST data: {err}.") from err


def verify(name: str, path: Path, data: bytes) -> None:
    """Check size, IDX magic number, dimensions and CRC-32 of one uncompressed file."""
    spec = FILES[name]
    if len(data) != spec.size:
        holds = f"more than {spec.size:,}" if len(data) > spec.size else f"{len(data):,}"
        raise UserError(
            f"{path} is corrupt or truncated: it holds {holds} bytes uncompressed "
            f"where {name} has {spec.size:,}."
        )
    magic = int.from_bytes(data[0:4], "big")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(len(spec.shape)))
    if magic != spec.magic or dims != spec.shape:
        raise UserError(
            f"{path} is not {name}: its IDX header says magic {magic} and shape {dims} "
            f"where {spec.magic} and {spec.shape} are expected."
        )
    crc = zlib.crc32(data)
    if crc != spec.crc32:
        raise UserError(
            f"{path} is corrupt: the CRC-32 of its uncompressed data is {crc:#010x} "
            f"where {name} has {spec.crc32:#010x}."
        )


def verified_bytes(name: str, path: Path) -> bytearray:
    """The uncompressed bytes of ``path``, checked to be the real ``name`` (``verify``)."""
    data = read_bytes(path, FILES[name].size)
    verify(name, path, data)
    return data


def keep_uncompressed(paths: dict[str, Path], data_dir: str | Path) -> list[Path]:
    """Write the verified uncompressed bytes of any ``.gz`` file in ``paths`` into
    ``<data_dir>/FashionMNIST/raw/``, as torchvision's download does, so that later runs skip
    the gunzip; never over an existing file, all four or none. Returns the files written.

    The copies are an optimisation: where the folder cannot be written (read-only, full) none
    are made and the ``.gz`` files are used as they are. Temporary ``.partial`` files never
    outlive this call, also when a later file fails its check.
    """
    own = raw_dir(data_dir)
    todo = {name: path for name, path in paths.items()  # nothing there, not even a link
            if path.suffix == ".gz" and not os.path.lexists(own / name)}
    written: list[tuple[Path, Path]] = []
    try:
        if todo:
            own.mkdir(parents=True, exist_ok=True)
        for name, path in todo.items():
            data = verified_bytes(name, path)
            partial = own / f".{name}.{os.getpid()}.partial"  # nodes sharing data_dir never collide
            written.append((partial, own / name))
            partial.write_bytes(data)
        for partial, final in written:
            partial.replace(final)
    except OSError:
        return []
    finally:
        for partial, _ in written:
            if partial.exists():
                partial.unlink()
    return [final for _, final in written]


#: the verified tensors this process has read, by file, inode, size and change times: the jobs
#: of a sweep that share a process read and check each file once
_LOADED: dict[tuple[Any, ...], torch.Tensor] = {}


def load_tensor(name: str, path: Path) -> torch.Tensor:
    """The verified contents of one IDX file as a uint8 tensor of its declared shape, read once
    per process while the file is unchanged (``_LOADED``); callers index it, never write it."""
    try:
        stat = path.stat()
    except OSError:
        return read_tensor(name, path)  # verified_bytes says why in one sentence
    key = (name, path.resolve(), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _LOADED:
        _LOADED[key] = read_tensor(name, path)
    return _LOADED[key]


def read_tensor(name: str, path: Path) -> torch.Tensor:
    """``verified_bytes`` of one IDX file as a uint8 tensor of its declared shape."""
    spec = FILES[name]
    return torch.frombuffer(verified_bytes(name, path), dtype=torch.uint8,
                            offset=spec.header_size).reshape(spec.shape)
