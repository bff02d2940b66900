"""What a checkpoint's restored state may make a run do: nothing outside the run folder.

Lightning restores each callback's state, the loops' counters and the optimizers' and
schedulers' states from a checkpoint, and then acts on them. ``ModelCheckpoint``'s state
holds file paths (``dirpath``, ``best_k_models``, ``best_model_path``,
``kth_best_model_path``, ``last_model_path``) that it later reads (testing the best
checkpoint) and deletes (a "worse" top-k file). A checkpoint is data, so none of those paths
is taken from it:

- the state of a ``ModelCheckpoint`` is restored only when the checkpoint being loaded lies
  in that callback's own folder (``resume=true``, testing the run's best checkpoint); its
  scores must be numbers (not NaN); its files are the regular files of that folder (no links,
  never ``last*``) that the checkpoint lists by name; every other name is dropped. A run
  started from a checkpoint elsewhere (``ckpt_path=``) starts its own checkpoints afresh;
- every other callback's state holds plain values only (each callback checks their sense
  as it loads them: ``ValidationHistory``), and the loops' counters and the optimizers' and
  schedulers' states must have the types the run's own objects have (a counter is a whole
  number of at least 0, a hyperparameter a finite number, a tensor of the parameter's
  shape).

Anything else raises ``CheckpointStateError``, which the run turns into one sentence naming
the checkpoint (``dlfoundations.run.train``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

#: the ModelCheckpoint fields that hold scores; the rest of its state is file names
SCORE_FIELDS = ("best_model_score", "current_score", "kth_value")


class CheckpointStateError(ValueError):
    """A checkpoint's restored state does not have the form the run's own state has."""


def is_number(value: Any) -> bool:
    """A Python number or a one-element tensor that is not NaN (infinity is allowed: a
    ``ModelCheckpoint`` starts its ``kth_value`` at it)."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.is_floating_point() and not torch.isnan(value)
    return isinstance(value, int | float) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))


def is_recorded_number(value: Any) -> bool:
    """A Python int or float (not a bool), NaN and infinities included: a metric a run
    recorded (a validation loss can overflow while training goes on)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_plain(value: Any, where: str, *, hyperparameters: bool = False) -> None:
    """Raise ``CheckpointStateError`` unless ``value`` is a number (``is_number``; or, except
    in ``hyperparameters``, ``is_recorded_number``: a run's history records a validation loss
    that overflowed), a string, a bool, None, or a list or dict (string keys)
    of such values. ``hyperparameters``: no tensor, and no dict with a ``_target_`` (they are
    values, never config to instantiate)."""
    if isinstance(value, dict):
        if hyperparameters and "_target_" in value:
            raise CheckpointStateError(f"{where} holds a _target_ ({value['_target_']!r}); "
                                       "hyperparameters are values, never classes to build")
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointStateError(f"{where} has a key that is not a string ({key!r})")
            check_plain(item, f"{where}.{key}", hyperparameters=hyperparameters)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]", hyperparameters=hyperparameters)
    elif not (value is None or isinstance(value, str | bool) or (
            is_number(value) and not (hyperparameters and isinstance(value, torch.Tensor)))
            or (is_recorded_number(value) and not hyperparameters)):
        raise CheckpointStateError(f"{where} is {value!r}, not a plain value")


def check_like(reference: Any, value: Any, where: str) -> None:
    """Raise ``CheckpointStateError`` unless ``value`` has the form of ``reference``: a dict
    with the same keys (recursively), a list or tuple of the same length, a whole number of
    at least 0 for an int, a finite number for a float, a bool for a bool, a tensor of the
    same shape for a tensor. ``None`` in the reference accepts None or a number, an empty list
    any list of plain values (``check_plain``)."""
    if isinstance(reference, dict):
        if not isinstance(value, dict):
            raise CheckpointStateError(f"{where} is a {type(value).__name__}, not a dict")
        for key in reference:
            if key not in value:
                raise CheckpointStateError(f"{where} has no {key!r}")
            check_like(reference[key], value[key], f"{where}.{key}")
        extra = sorted(map(str, set(value) - set(reference)))
        if extra:
            raise CheckpointStateError(f"{where} holds {extra[0]!r}, which the run does not have")
    elif isinstance(reference, list | tuple) and not reference:
        if not isinstance(value, list | tuple):
            raise CheckpointStateError(f"{where} is a {type(value).__name__}, not a list")
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
    elif isinstance(reference, list | tuple):
        if not isinstance(value, list | tuple) or len(value) != len(reference):
            raise CheckpointStateError(f"{where} is not a list of {len(reference)} items")
        for index, (ref, item) in enumerate(zip(reference, value, strict=True)):
            check_like(ref, item, f"{where}[{index}]")
    elif isinstance(reference, bool):
        if not isinstance(value, bool):
            raise CheckpointStateError(f"{where} is {value!r}, not true or false")
    elif isinstance(reference, int):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise CheckpointStateError(f"{where} is {value!r}, not a whole number of at least 0")
    elif isinstance(reference, float):
        if not (is_number(value) and math.isfinite(float(value))):
            raise CheckpointStateError(f"{where} is {value!r}, not a finite number")
    elif isinstance(reference, torch.Tensor):
        if not isinstance(value, torch.Tensor) or value.shape != reference.shape:
            raise CheckpointStateError(f"{where} is not a tensor of shape "
                                       f"{tuple(reference.shape)}")
    elif reference is None:
        if value is not None and not is_number(value):
            raise CheckpointStateError(f"{where} is {value!r}, not a number")
    elif type(value) is not type(reference):
        raise CheckpointStateError(f"{where} is a {type(value).__name__}, not a "
                                   f"{type(reference).__name__}")


def own_checkpoint_files(callback: ModelCheckpoint) -> dict[str, str]:
    """The regular files (no links) in ``callback``'s folder that it may manage, by name, as
    the paths it would write them to; its ``last*`` files are never among them."""
    folder = Path(callback.dirpath)
    if not folder.is_dir():
        return {}
    return {entry.name: os.path.join(callback.dirpath, entry.name) for entry in folder.iterdir()
            if entry.name.endswith(callback.FILE_EXTENSION)
            and not entry.name.startswith(callback.CHECKPOINT_NAME_LAST)
            and entry.is_file() and not entry.is_symlink()}


def model_checkpoint_state(callback: ModelCheckpoint, state: Any, where: str
                           ) -> dict[str, Any]:
    """The state of ``callback`` to restore: its top-k files, the ones ``state`` lists by
    name among its own files (``own_checkpoint_files``) with their scores; the best and the
    k-th of them, and their scores, derived from those; its folder its own."""
    if not isinstance(state, dict):
        raise CheckpointStateError(f"{where} is a {type(state).__name__}, not a dict")
    for field in SCORE_FIELDS:
        if state.get(field) is not None and not is_number(state[field]):
            raise CheckpointStateError(f"{where}.{field} is {state[field]!r}, not a number")
    files = own_checkpoint_files(callback)

    def own(name: Any) -> str:
        return files.get(Path(name).name, "") if isinstance(name, str) else ""

    listed = state.get("best_k_models") or {}
    if not isinstance(listed, dict):
        raise CheckpointStateError(f"{where}.best_k_models is a {type(listed).__name__}")
    best_k = {}
    for name, score in listed.items():
        if not is_number(score):
            raise CheckpointStateError(f"{where}.best_k_models holds {score!r}, not a number")
        if own(name):
            best_k[own(name)] = score
    last = os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
    ranked = sorted(best_k, key=lambda path: float(best_k[path]),
                    reverse=callback.mode == "max")  # best first
    worst = torch.tensor(math.inf if callback.mode == "min" else -math.inf)
    return {
        "monitor": callback.monitor, "dirpath": callback.dirpath, "best_k_models": best_k,
        "current_score": state.get("current_score"),
        "best_model_path": ranked[0] if ranked else "",
        "best_model_score": best_k[ranked[0]] if ranked else None,
        "kth_best_model_path": ranked[-1] if ranked else "",
        "kth_value": best_k[ranked[-1]] if ranked else worst,
        "last_model_path": last if os.path.isfile(last) and not os.path.islink(last) else "",
    }


def loaded_from_own_folder(trainer: L.Trainer, callback: ModelCheckpoint) -> bool:
    """Whether the checkpoint being loaded lies in ``callback``'s own folder."""
    if not trainer.ckpt_path or not callback.dirpath:
        return False
    return Path(trainer.ckpt_path).resolve().parent == Path(callback.dirpath).resolve()


class RestoredStateGuard(L.Callback):
    """Checks and rewrites a checkpoint's state before Lightning restores it (see the module);
    ``restored`` turns true once the training state is restored and training starts."""

    def __init__(self) -> None:
        self.checkpoint: dict[str, Any] | None = None
        self.restored = False

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Called before any callback loads its state: rewrite ``checkpoint["callbacks"]``
        and check the loops' counters against the trainer's own."""
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.callbacks:
            key = callback.state_key
            if key not in states:
                continue
            if isinstance(callback, ModelCheckpoint):
                if loaded_from_own_folder(trainer, callback):
                    states[key] = model_checkpoint_state(callback, states[key],
                                                         f"callbacks[{key!r}]")
                else:
                    del states[key]
            else:  # plain values; the callback's own load_state_dict checks their sense
                check_plain(states[key], f"callbacks[{key!r}]")
        if trainer.state.fn == "fit" and "loops" in checkpoint:
            loops = checkpoint["loops"]
            if not isinstance(loops, dict):
                raise CheckpointStateError(f"loops is a {type(loops).__name__}, not a dict")
            own = trainer.fit_loop.state_dict()
            saved = loops.get("fit_loop")
            check_like({key: own[key] for key in own if key != "state_dict"},
                       {key: value for key, value in saved.items() if key != "state_dict"}
                       if isinstance(saved, dict) else saved, "loops.fit_loop")
        self.checkpoint = checkpoint

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Called after the optimizers exist and before their state is restored: check the
        saved optimizer and scheduler states against them."""
        if self.checkpoint is None:
            return
        saved = self.checkpoint.get("optimizer_states")
        optimizers = trainer.optimizers
        check_like([None] * len(optimizers), [None] * len(saved or []), "optimizer_states")
        for index, (optimizer, state) in enumerate(zip(optimizers, saved, strict=True)):
            check_optimizer_state(optimizer, state, f"optimizer_states[{index}]")
        schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
        saved = self.checkpoint.get("lr_schedulers") or []
        check_like([None] * len(schedulers), [None] * len(saved), "lr_schedulers")
        for index, (scheduler, state) in enumerate(zip(schedulers, saved, strict=True)):
            check_like(scheduler.state_dict(), state, f"lr_schedulers[{index}]")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.restored, self.checkpoint = True, None


def check_optimizer_state(optimizer: torch.optim.Optimizer, state: Any, where: str) -> None:
    """The saved state of ``optimizer``: its param groups as the live ones (same keys, the
    same types of values), and per parameter only tensors of that parameter's shape,
    one-element tensors, None (an unused buffer) or whole step counts."""
    own = optimizer.state_dict()
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise CheckpointStateError(f"{where} is not an optimizer state")
    check_like(own["param_groups"], state.get("param_groups"), f"{where}.param_groups")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in state["state"].items():
        if not (isinstance(index, int) and 0 <= index < len(params)
                and isinstance(values, dict)):
            raise CheckpointStateError(f"{where}.state holds {index!r}, not a parameter's state")
        for name, value in values.items():
            count = type(value) is int and value >= 0  # a step count (the notes' optimizers)
            if not (isinstance(value, torch.Tensor) or value is None or count):
                raise CheckpointStateError(f"{where}.state[{index}].{name} is {value!r}, not "
                                           "a tensor or a step count")
            if isinstance(value, torch.Tensor) and value.numel() != 1 and \
                    value.shape != params[index].shape:
                raise CheckpointStateError(
                    f"{where}.state[{index}].{name} has shape {tuple(value.shape)} where the "
                    f"parameter has {tuple(params[index].shape)}")
