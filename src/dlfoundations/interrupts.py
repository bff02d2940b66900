"""Ctrl-C (SIGINT), SIGTERM and SIGUSR2 at any point of a run end it with a status, never a
traceback. SIGUSR2 is what SLURM sends (through submitit) before a job's time limit or on
preemption.

One handler serves the whole process. Inside the training steps a signal is only recorded:
the step is finished, ``last.ckpt`` saved and the run stopped (``GracefulInterrupt``), so
the run resumes exactly where it stopped. Anywhere else in a run (set-up, validation,
testing) the first signal raises ``RunInterrupted`` at once. Outside a run (between the jobs
of a sweep) and while a run writes its final files, a signal is recorded and acted on as
soon as that is done. A second signal always stops at once.

``RunInterrupted`` is an ``Exception``, not a ``KeyboardInterrupt``: Lightning answers a
``KeyboardInterrupt`` in ``fit`` with ``sys.exit(1)``, while an exception reaches the run.

A handler that was there before (submitit's, which requeues a SLURM job) is not lost: once the
run has saved its state and written its status, ``hand_on`` calls it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dlfoundations.errors import found_in_causes

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class RunInterrupted(Exception):
    """SIGINT, SIGTERM or SIGUSR2 stopped the run."""


def interruption(err: BaseException | None) -> RunInterrupted | None:
    """The signal's ``RunInterrupted`` behind ``err`` (``found_in_causes``): Lightning's
    TensorBoard logger raises a ``ValueError`` from whatever its writer raised."""
    return found_in_causes(err, RunInterrupted)


class InterruptHandler:
    """Records SIGINT, SIGTERM and SIGUSR2 and decides when they stop the run (see the
    module)."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first signal
        self.count = 0                     # how many arrived
        self.in_run = False      # raise at once (a run is under way)
        self.deferring = False   # inside training steps: record only
        self.shielded = False    # writing final files: record only
        self._previous: dict[int, Any] = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> bool:
        """Handle ``SIGNALS`` in this process (main thread only); True if done now."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return False
        self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return True

    def reclaim(self) -> None:
        """Handle SIGTERM here again where another handler took it over meanwhile: Lightning's
        signal connector, set at the start of ``fit``, ends a run that receives SIGTERM with a
        ``SystemExit`` at its next step, before ``last.ckpt`` or the run's status is written
        (under submitit, a job that then leaves no result); Lightning puts ours back at the
        end of ``fit``."""
        if self.installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def hand_on(self) -> None:
        """Call the handler that was installed before ours for the signal received (e.g.
        submitit's, which requeues the job and exits); nothing for Python's own handlers."""
        previous = self._previous.get(self.received) if self.received is not None else None
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self.received, None)

    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        second = self.received is not None
        if not second:
            self.received = signum
        if self.in_run and not self.shielded and (second or not self.deferring):
            raise RunInterrupted(f"{signal.Signals(signum).name} before the run finished")

    def enter_steps(self) -> None:
        """Inside the training steps: a signal is only recorded, so that the step finishes and
        ``GracefulInterrupt`` saves ``last.ckpt`` before the run stops."""
        self.deferring = True

    def leave_steps(self) -> None:
        """Leave the training steps without acting on a signal (the caller stops the run)."""
        self.deferring = False

    def stop_deferring(self) -> None:
        """Leave the training steps; a signal recorded meanwhile stops the run now."""
        self.deferring = False
        if self.received is not None and self.in_run and not self.shielded:
            raise RunInterrupted(f"{self.signal_name()} before the run finished")

    def own_run(self) -> None:
        """A run outside the scripts (which install the handler for the whole process):
        signals stop it from now on, as they do a script's run."""
        self.in_run = True

    def forget(self) -> None:
        """Forget the signals received (a new command in the same process starts afresh)."""
        self.received, self.count = None, 0

    def release(self) -> None:
        """Give the signals back to the handlers there were before ``install`` and forget
        this run's state."""
        self.uninstall()
        self.in_run = self.deferring = False
        self.forget()

    @contextmanager
    def run(self) -> Iterator[None]:
        """The span of one run: signals stop it at once (outside training steps)."""
        self.in_run, self.deferring = True, False
        try:
            if self.received is not None:
                raise RunInterrupted(f"{self.signal_name()} before the run started")
            yield
        finally:
            self.in_run = self.deferring = False

    @contextmanager
    def shield(self) -> Iterator[None]:
        """Signals are only recorded while the run writes its final files."""
        self.shielded = True
        try:
            yield
        finally:
            self.shielded = False


#: the process's one handler
INTERRUPTS = InterruptHandler()
