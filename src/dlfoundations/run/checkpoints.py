"""Checkpoints are data: read with plain values only, checked, and written atomically.

Every checkpoint the project reads (eval, resume, testing the best checkpoint) goes through
``read_checkpoint``: ``torch.load(weights_only=True)`` (no pickled code), then a check that
each field the project or Lightning uses has the type it must have, so a crafted or damaged
file is refused in one sentence instead of failing somewhere inside training. Nothing in a
checkpoint ever chooses code to import or call (see ``dlfoundations.run.rebuild``).
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import nn

from dlfoundations.callbacks.restored_state import check_plain
from dlfoundations.errors import UserError
from dlfoundations.folder import write_atomically
from dlfoundations.interrupts import RunInterrupted

#: top-level fields and the types they must have when present
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "epoch": int, "global_step": int, "pytorch-lightning_version": str,
    "hyper_parameters": dict, "datamodule_hyper_parameters": dict,
    "model_class": str, "datamodule_class": str, "torch_rng_state": torch.Tensor,
    "optimizer_states": list, "lr_schedulers": list, "callbacks": dict, "loops": dict,
}


def _refuse(key: str, path: Path, problem: str) -> UserError:
    return UserError(f"{key}={str(path)!r} is not a checkpoint of this project: {problem}.")


def check_fields(checkpoint: Any) -> None:
    """Raise ``ValueError`` naming the first field of ``checkpoint`` that has the wrong type."""
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError("it has no state_dict")
    state = checkpoint["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"its state_dict is a {type(state).__name__}, not a dict of tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"state_dict[{name!r}] is a {type(value).__name__}, not a tensor")
    for field, expected in FIELD_TYPES.items():
        if field in checkpoint and not isinstance(checkpoint[field], expected):
            raise ValueError(f"its {field} is a {type(checkpoint[field]).__name__}")
    for field in ("hyper_parameters", "datamodule_hyper_parameters"):
        check_plain(checkpoint.get(field, {}), field, hyperparameters=True)
    rng = checkpoint.get("torch_rng_state")
    if rng is not None and (rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape):
        raise ValueError("its torch_rng_state is not a CPU generator state")


def unreadable(path: Path, key: str, err: Exception) -> UserError:
    """The sentence for a file ``torch.load`` cannot read as data: the file named (and the
    file a link leads to), what the project reads, and never torch's own advice, which may
    be to load the file with ``weights_only=False``, i.e. to run the code it names."""
    target = path.resolve()
    subject = f"the file it links to, {target}," if path.is_symlink() else "it"
    if cut_short(target):
        return UserError(f"{key}={str(path)!r} is not a readable checkpoint: {subject} begins "
                         "as a file saved by torch.save but its end is missing or damaged "
                         "(e.g. a copy cut short); use a whole one (e.g. "
                         "<run>/checkpoints/last.ckpt).")
    if isinstance(err, OSError) and err.strerror:
        return UserError(f"{key}={str(path)!r} is not a readable checkpoint ({err.strerror}).")
    # torch's words for a global it refuses: "Unsupported global: GLOBAL m.f" and, for a
    # module it blocks (torch >= 2.6), "unsupported GLOBAL posix.system whose module posix ..."
    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(err))
    if found and zipfile.is_zipfile(target):
        return UserError(f"{key}={str(path)!r} is not a readable checkpoint: {subject} holds "
                         f"a pickled {found[1]}, and this project reads a checkpoint only as "
                         "data (tensors, numbers, strings, lists and dicts).")
    return UserError(f"{key}={str(path)!r} is not a readable checkpoint: {subject} is not a "
                     "file saved by torch.save, the only checkpoints this project can read "
                     "(e.g. <run>/checkpoints/last.ckpt).")


#: how a file saved by ``torch.save`` (a zip archive) begins
ZIP_START = b"PK\x03\x04"


def cut_short(path: Path) -> bool:
    """Whether ``path`` begins as a zip archive (what ``torch.save`` writes) but is not a
    whole one: its end, the archive's directory, is missing or damaged."""
    try:
        with path.open("rb") as file:
            start = file.read(len(ZIP_START))
    except OSError:
        return False
    return start == ZIP_START and not zipfile.is_zipfile(path)


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True`` and checked field by
    field (``check_fields``); anything else is refused with a ``UserError`` naming ``key``.
    A file that is not a checkpoint can make ``torch.load`` fail in any way (random bytes, a
    text file, ``/etc/passwd`` behind a link), so every failure but a signal is the file's."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key}={str(path)!r} is not allowed: {key} must be an existing "
                        "checkpoint file (e.g. <run>/checkpoints/last.ckpt).")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": not a checkpoint
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except RunInterrupted:
        raise
    except Exception as err:
        raise unreadable(path, key, err) from err
    try:
        check_fields(checkpoint)
    except ValueError as err:
        raise _refuse(key, path, str(err)) from err
    return checkpoint


def check_matches(model: nn.Module, checkpoint: dict[str, Any], path: str | Path,
                  key: str = "ckpt_path") -> None:
    """Refuse a checkpoint whose weights do not have the model's names and shapes, or hold
    another kind of number (whole numbers where the model has floating-point ones: a float64
    checkpoint of a float32 model is read, as Lightning reads it)."""
    ours, theirs = model.state_dict(), checkpoint["state_dict"]
    expected = {name: tuple(t.shape) for name, t in ours.items()}
    found = {name: tuple(t.shape) for name, t in theirs.items()}
    retyped = sorted(name for name in set(ours) & set(theirs)
                     if ours[name].is_floating_point() != theirs[name].is_floating_point())
    if expected == found and not retyped:
        return
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
    if missing:
        problem = f"missing {missing[0]}"
    elif unexpected:
        problem = f"unexpected {unexpected[0]}"
    elif reshaped:
        problem = (f"{reshaped[0]} has shape {found[reshaped[0]]} where the model has "
                   f"{expected[reshaped[0]]}")
    else:
        problem = (f"{retyped[0]} holds {theirs[retyped[0]].dtype} numbers where the model "
                   f"has {ours[retyped[0]].dtype}")
    net = getattr(model, "net", None)
    name = type(model).__name__ + (f" with {type(net).__name__}" if net is not None else "")
    raise UserError(f"{key}={str(path)!r} does not match model {name}: {problem}; use the "
                    "model options the checkpoint was trained with.")


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reading and writing, made safe.

    Saving writes a temporary file beside the target and renames it over the target, so a
    full disk or a signal never leaves a truncated ``.ckpt``. Loading (resume, testing the best
    checkpoint) goes through ``read_checkpoint``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = serialized(checkpoint)
        write_atomically(path, lambda file: file.write(data))

    def load_checkpoint(self, path: Any, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path)


def serialized(checkpoint: dict[str, Any]) -> memoryview:
    """``checkpoint`` as ``torch.save`` writes it, in memory first: torch's zip writer hides
    a full disk's ``OSError``, which the write of these bytes then raises."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getbuffer()
