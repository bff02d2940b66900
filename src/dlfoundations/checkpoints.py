"""Reading checkpoints safely and checking that they fit a model."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlfoundations.errors import UserError, first_line


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True`` (plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key}={str(path)!r} is not allowed: {key} must be an existing "
                        "checkpoint file (e.g. <run>/checkpoints/last.ckpt).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{key}={str(path)!r} is not a readable checkpoint "
                        f"({first_line(err)}).") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{key}={str(path)!r} is not a Lightning checkpoint: it has no "
                        "state_dict.")
    return checkpoint


def check_matches(model: nn.Module, checkpoint: dict[str, Any], path: str | Path,
                  key: str = "ckpt_path") -> None:
    """Refuse a checkpoint whose weights do not have the model's names and shapes."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()}
    if expected == found:
        return
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
    problem = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
               if unexpected else f"{reshaped[0]} has shape {found[reshaped[0]]} where the "
               f"model has {expected[reshaped[0]]}")
    raise UserError(f"{key}={str(path)!r} does not match model {type(model).__name__}: {problem}"
                    "; use the model options the checkpoint was trained with.")
