"""Per-epoch validation metrics, kept so a run can report its best epoch."""

from __future__ import annotations

from typing import Any

import lightning as L

from dlfoundations.callbacks.restored_state import CheckpointStateError, is_recorded_number


class ValidationHistory(L.Callback):
    """Keeps each epoch's validation metrics (and the model's training-epoch metrics), so a run
    can report those of its best epoch. Read at ``on_validation_end``: the epoch's validation
    metrics reach ``callback_metrics`` only after every ``on_validation_epoch_end`` hook."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        train = getattr(pl_module, "train_epoch_metrics", dict)()
        self.epochs.append({"epoch": trainer.current_epoch, **metrics, **train})

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The epochs of a checkpoint: each a dict of metric names and numbers (infinite or
        NaN where the run's own were: a validation loss can overflow while training goes on),
        its ``epoch`` a whole number of at least 0 (``CheckpointStateError`` otherwise)."""
        epochs = state_dict.get("epochs") if isinstance(state_dict, dict) else None
        if not isinstance(epochs, list):
            raise CheckpointStateError("callbacks['ValidationHistory'].epochs is not a list")
        for index, epoch in enumerate(epochs):
            where = f"callbacks['ValidationHistory'].epochs[{index}]"
            if not isinstance(epoch, dict) or not isinstance(epoch.get("epoch"), int) \
                    or isinstance(epoch["epoch"], bool) or epoch["epoch"] < 0:
                raise CheckpointStateError(f"{where} has no epoch number")
            for key, value in epoch.items():
                if not (isinstance(key, str) and is_recorded_number(value)):
                    raise CheckpointStateError(f"{where}.{key} is {value!r}, not a number")
        self.epochs = [dict(epoch) for epoch in epochs]

    def best(self, monitor: str, mode: str) -> dict[str, float]:
        """The epoch whose ``monitor`` is highest (``mode="max"``) or lowest (``"min"``)."""
        scored = [epoch for epoch in self.epochs if monitor in epoch]
        if not scored:
            return self.last()
        pick = max if mode == "max" else min
        return pick(scored, key=lambda epoch: epoch[monitor])

    def last(self) -> dict[str, float]:
        """The latest epoch's metrics (empty before the first validation)."""
        return self.epochs[-1] if self.epochs else {}
