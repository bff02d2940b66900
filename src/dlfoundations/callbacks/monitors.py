"""Scalars about the training itself: the learning rate in use, epoch time and throughput."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class LearningRateLogger(L.Callback):
    """Logs ``train/lr``, the rate of the first parameter group after scaling and scheduling,
    every ``log_every_n_steps`` steps."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if trainer.global_step % trainer.log_every_n_steps or not trainer.optimizers:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        for logger in trainer.loggers:
            logger.log_metrics({"train/lr": lr}, step=trainer.global_step)


class EpochTimer(L.Callback):
    """Logs ``train/epoch_s`` (training part of an epoch) and ``train/samples_per_s``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.samples = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started, self.samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.samples += len(batch[-1])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self.started
        samples = self.samples * trainer.world_size
        pl_module.log_dict({"train/epoch_s": seconds, "train/samples_per_s": samples / seconds},
                           rank_zero_only=True)
