"""Project callbacks."""

from __future__ import annotations

import math
from typing import Any

import lightning as L


class ValidationHistory(L.Callback):
    """Keeps each epoch's validation metrics, so a run can report those of its best epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.epochs.append({"epoch": trainer.current_epoch, **metrics})

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


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite."""


class DivergenceGuard(L.Callback):
    """Stops the run at the first step whose training loss is not finite.

    Raises ``TrainingDiverged`` naming the step and the last finite loss; checkpoints
    already written stay, and the run reports ``status: diverged``.
    """

    def __init__(self) -> None:
        self.last_finite: float | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        value = float(loss)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the training loss became {value} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}); the last finite loss was {self.last_finite}"
            )
        self.last_finite = value
