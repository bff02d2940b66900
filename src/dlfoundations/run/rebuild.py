"""Rebuilding a model and its data from a checkpoint, from the project's own classes only.

A checkpoint names its classes as strings (``model_class``, ``datamodule_class``). They are
looked up in a fixed table of the project's own classes, decided before anything is imported
or called: a checkpoint naming any other class (``subprocess.Popen``, say) is refused in one
sentence. The saved hyperparameters are plain values passed to that class's constructor,
checked against its signature; nothing in them is instantiated. The network among them
(``net``) is named too and built from ``dlfoundations.networks.NETWORKS`` only.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import torch

from dlfoundations.data import FashionMNISTDataModule, SyntheticLinearDataModule
from dlfoundations.errors import UserError, first_line
from dlfoundations.models import BinaryClassifier, Classifier, Regressor
from dlfoundations.models.base import qualified_name
from dlfoundations.run.checkpoints import check_matches

#: the classes a checkpoint may name, by the name it stores (``qualified_name``)
MODEL_CLASSES: dict[str, type[L.LightningModule]] = {
    qualified_name(cls): cls
    for cls in (Classifier, BinaryClassifier, Regressor)}
DATAMODULE_CLASSES: dict[str, type[L.LightningDataModule]] = {
    qualified_name(cls): cls for cls in (FashionMNISTDataModule, SyntheticLinearDataModule)}
#: where the data lives (conf/eval.yaml), for the DataModules that read it; others ignore it
LOCATION_KEYS = ("data_dir", "download")
#: constructor arguments that the run supplies and a checkpoint never does
RUN_SUPPLIED = ("optimizer", "scheduler")


def project_class(checkpoint: dict[str, Any], field: str, table: dict[str, type],
                  path: str | Path) -> type:
    """The class ``checkpoint[field]`` names, if it is in ``table``; else a ``UserError``."""
    name = checkpoint.get(field)
    if name not in table:
        raise UserError(
            f"ckpt_path={str(path)!r} is not allowed: its {field} is {name!r}, and only the "
            f"project's own classes can be rebuilt ({', '.join(sorted(table))}); nothing was "
            "imported or run."
        )
    return table[name]


def construct(cls: type, params: dict[str, Any], field: str, path: str | Path) -> Any:
    """``cls(**params)`` for the keyword arguments ``cls`` takes; one sentence otherwise."""
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(params) - set(accepted) | set(params) & set(RUN_SUPPLIED))
    if unknown:
        raise UserError(f"ckpt_path={str(path)!r} is not allowed: its {field} hold "
                        f"{unknown[0]!r}, which is not an option of {cls.__name__}.")
    try:
        return cls(**params)
    except UserError as err:
        raise UserError(f"ckpt_path={str(path)!r} cannot be rebuilt: {err}") from err
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RuntimeError) as err:
        raise UserError(f"ckpt_path={str(path)!r} cannot be rebuilt: its {field} do not fit "
                        f"{cls.__name__} ({type(err).__name__}: {first_line(err)}).") from err


def rebuild(checkpoint: dict[str, Any], path: str, data_location: dict[str, Any]
            ) -> tuple[L.LightningModule, L.LightningDataModule]:
    """Model and DataModule from a checkpoint read by ``read_checkpoint``.

    ``data_location`` (e.g. ``data_dir``) replaces the saved values the DataModule accepts, so
    a checkpoint evaluates on another machine.
    """
    model_cls = project_class(checkpoint, "model_class", MODEL_CLASSES, path)
    data_cls = project_class(checkpoint, "datamodule_class", DATAMODULE_CLASSES, path)
    model = construct(model_cls, checkpoint.get("hyper_parameters", {}), "hyper_parameters",
                      path)
    check_matches(model, checkpoint, path)
    for name, tensor in checkpoint["state_dict"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"ckpt_path={str(path)!r} is not allowed: its weights {name} are "
                            "not all finite numbers (the run it comes from diverged).")
    model.load_state_dict(checkpoint["state_dict"])
    accepted = inspect.signature(data_cls).parameters
    unknown = sorted(set(data_location) - set(accepted) - set(LOCATION_KEYS))
    if unknown:
        raise UserError(f"data.{unknown[0]} is not an option of {data_cls.__name__}, the data "
                        f"of ckpt_path={str(path)!r}.")
    params = {**checkpoint.get("datamodule_hyper_parameters", {}),
              **{k: v for k, v in data_location.items() if k in accepted}}
    return model, construct(data_cls, params, "datamodule_hyper_parameters", path)
