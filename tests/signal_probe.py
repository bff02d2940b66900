"""Test-only probes: the process sends itself a signal at a chosen point of a run."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger, TensorBoardLogger


def send_once(signum: int, once_file: Path | None) -> bool:
    """Signal this process, unless ``once_file`` exists (then nothing; else it is created)."""
    if once_file is not None:
        if once_file.exists():
            return False
        once_file.touch()
    os.kill(os.getpid(), signum)
    return True


class SignalAtStep(L.Callback):
    """``os.kill(own pid, signal)`` once ``trainer.global_step`` reaches ``step`` (with
    ``once_file``: only the first time, across processes; see ``SignalAtHook``)."""

    def __init__(self, step: int, signal_name: str = "SIGINT", once_file: str | None = None):
        self.step = step
        self.signum = signal.Signals[signal_name]
        self.once_file = Path(once_file) if once_file else None
        self.sent = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            send_once(self.signum, self.once_file)


class SignalAtHook(L.Callback):
    """``os.kill(own pid, signal)`` at the first call of ``hook`` (``setup``,
    ``on_validation_start``, ``on_test_start``, ...) in epoch ``epoch`` or later, outside the
    sanity check; with ``once_file``, only if that file does not exist yet (it is created), so
    that the same command run again to resume is not interrupted again."""

    def __init__(self, hook: str, signal_name: str = "SIGINT", epoch: int = 0,
                 once_file: str | None = None):
        self.signum = signal.Signals[signal_name]
        self.epoch = epoch
        self.once_file = Path(once_file) if once_file else None
        self.sent = False
        setattr(self, hook, self._maybe_send)

    def _maybe_send(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.sent or trainer.sanity_checking or trainer.current_epoch < self.epoch:
            return
        self.sent = True
        send_once(self.signum, self.once_file)


class SignalWhileWritingResults(Logger):
    """A logger that signals its own process when the run logs its final results (the only
    ``log_hyperparams`` call of a run: the models keep their hyperparameters from loggers)."""

    def __init__(self, signal_name: str = "SIGINT", once_file: str | None = None):
        super().__init__()
        self.signum = signal.Signals[signal_name]
        self.once_file = Path(once_file) if once_file else None

    @property
    def name(self) -> str:
        return "signal_probe"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        send_once(self.signum, self.once_file)


class SignalInsideTensorBoard(TensorBoardLogger):
    """Lightning's TensorBoard logger whose writer signals this process once while it adds the
    scalar ``tag``: the signal's exception is raised inside ``log_metrics``, which turns any
    exception of its writer into a ``ValueError``."""

    def __init__(self, save_dir: str, tag: str = "val/acc", signal_name: str = "SIGINT"):
        super().__init__(save_dir, name="", version="")
        self.tag, self.signum, self.sent = tag, signal.Signals[signal_name], False

    @property
    def experiment(self) -> Any:
        writer, probe = super().experiment, self

        class Signalling:
            def __getattr__(self, name: str) -> Any:
                return getattr(writer, name)

            def add_scalar(self, tag: str, *args: Any, **kwargs: Any) -> Any:
                if tag == probe.tag and not probe.sent:
                    probe.sent = True
                    os.kill(os.getpid(), probe.signum)
                return writer.add_scalar(tag, *args, **kwargs)

        return Signalling()
