"""A test-only callback: the process sends itself a signal after a given training step."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L


class SignalAtStep(L.Callback):
    """``os.kill(own pid, signal)`` once ``trainer.global_step`` reaches ``step``."""

    def __init__(self, step: int, signal_name: str = "SIGINT"):
        self.step = step
        self.signum = signal.Signals[signal_name]
        self.sent = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)
