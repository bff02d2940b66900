"""Guards: stop on a non-finite loss; stop cleanly, resumably, on SIGINT or SIGTERM."""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite."""


class DivergenceGuard(L.Callback):
    """Stops the run at the first step whose training loss is not finite.

    Raises ``TrainingDiverged`` naming the step and the last finite loss; checkpoints
    already written stay, and the run reports ``status: diverged``. Reading the loss waits for
    the device, so on a GPU the check runs every ``log_every_n_steps`` steps only (the step
    named is then the one where the non-finite loss was seen).
    """

    def __init__(self) -> None:
        self.last_finite: float | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss.device.type != "cpu" and trainer.global_step % trainer.log_every_n_steps:
            return
        value = float(loss)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the training loss became {value} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}); the last finite loss was {self.last_finite}"
            )
        self.last_finite = value


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived during training; ``last.ckpt`` holds the state to resume."""


class GracefulInterrupt(L.Callback):
    """Ctrl-C (SIGINT) or SIGTERM stops training cleanly after the current step.

    The step is finished, ``last.ckpt`` is saved beside the other checkpoints (mid-epoch,
    resumable exactly) and ``TrainingInterrupted`` is raised. A second signal interrupts at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            self._restore()
            raise KeyboardInterrupt
        self.received = signum

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.received is None:
            return
        checkpoint = trainer.checkpoint_callback
        ckpt_dir = checkpoint.dirpath if checkpoint and checkpoint.dirpath else \
            Path(trainer.default_root_dir) / "checkpoints"
        path = Path(ckpt_dir) / "last.ckpt"
        if path.is_symlink():  # save_last="link": never write through it into a best checkpoint
            path.unlink()
        trainer.save_checkpoint(path)
        name = signal.Signals(self.received).name
        raise TrainingInterrupted(
            f"{name} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"resume with ckpt_path={path}"
        )
