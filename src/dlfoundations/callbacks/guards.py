"""Guards: stop on a non-finite loss; stop cleanly, resumably, on SIGINT, SIGTERM or SIGUSR2."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L

from dlfoundations.interrupts import INTERRUPTS, RunInterrupted


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


class GracefulInterrupt(L.Callback):
    """Ctrl-C (SIGINT), SIGTERM or SIGUSR2 during the training steps stops the run after the
    current step: the step is finished, ``last.ckpt`` is saved beside the other checkpoints
    (mid-epoch, resumable exactly) and ``RunInterrupted`` is raised.

    Elsewhere (validation, testing) the process's ``InterruptHandler`` stops the run at once.
    Outside the command-line scripts, which install that handler for the whole process, it is
    installed for the span of ``fit``.
    """

    def __init__(self) -> None:
        self.installed_here = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.installed_here = INTERRUPTS.install()
        if self.installed_here:
            INTERRUPTS.own_run()

    def _uninstall(self) -> None:
        INTERRUPTS.leave_steps()
        if self.installed_here:
            INTERRUPTS.release()
            self.installed_here = False

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._uninstall()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._uninstall()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        INTERRUPTS.reclaim()  # SIGTERM: ours, not Lightning's SystemExit at the next step

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        INTERRUPTS.enter_steps()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        INTERRUPTS.stop_deferring()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        INTERRUPTS.stop_deferring()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if INTERRUPTS.received is None:
            return
        checkpoint = trainer.checkpoint_callback
        ckpt_dir = checkpoint.dirpath if checkpoint and checkpoint.dirpath else \
            Path(trainer.default_root_dir) / "checkpoints"
        path = Path(ckpt_dir) / "last.ckpt"
        if path.is_symlink():  # save_last="link": never write through it into a best checkpoint
            path.unlink()
        with INTERRUPTS.shield():
            trainer.save_checkpoint(path)
        INTERRUPTS.leave_steps()
        raise RunInterrupted(
            f"{INTERRUPTS.signal_name()} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}); last.ckpt holds the state to resume from"
        )
