"""What a run prints, and its copy in the run's ``train.log``.

Quiet by default: Lightning's info lines (device lines, tips, checkpoint restores), its
model summary, and warnings about dependencies (deprecations, hints) are left out;
``verbose=true`` brings them back, routed like every other line. Each line the project prints
goes to the console and to the log file Hydra opened for the job (``train.log``); in a
multirun the job's result line goes to its ``train.log`` only, and the sweep prints one line
per job (``dlfoundations.progress``).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import suppress
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

#: loggers of Lightning that print to the console on their own
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class RunLog(logging.Handler):
    """The job's log file (``train.log``, ``eval.log``), written only into a claimed folder.

    Hydra opens a job's log file before the job runs; this handler (``hydra/job_logging:
    run_log``) instead keeps the lines in memory until the run has claimed its folder
    (``open``), then appends them and every later line. A refused run's lines are printed but
    never written, so a refusal leaves an existing ``train.log`` as it was, and the file is
    opened without following a symbolic link (``O_NOFOLLOW``).
    """

    def __init__(self, filename: str) -> None:
        super().__init__()
        self.path = Path(filename)
        self.pending: list[str] = []
        self.fd: int | None = None

    def open(self) -> None:
        """Append the lines held so far, and all later ones, to the file."""
        if self.fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
            self.fd = os.open(self.path, flags, 0o644)
            lines, self.pending = self.pending, []
            for line in lines:
                os.write(self.fd, line.encode())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self.fd is None:
                self.pending.append(line)
            else:
                os.write(self.fd, line.encode())
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        super().close()


def run_logs() -> list[RunLog]:
    """The job's log files among the root logger's handlers."""
    return [handler for handler in logging.getLogger().handlers if isinstance(handler, RunLog)]


def close_run_logs() -> None:
    """Detach and close the log files of jobs that ended: Hydra leaves a job's handlers on
    the root logger until the next job's logging is set up, so lines of what runs next in
    this process (a fused group) would reach them."""
    root = logging.getLogger()
    for handler in run_logs():
        root.removeHandler(handler)
        handler.close()


def in_multirun() -> bool:
    """Whether this process runs one job of a Hydra multirun (-m)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def configure(verbose: bool) -> None:
    """Route Lightning's loggers and Python's warnings through the job's handlers (console
    and train.log); without ``verbose``, keep only their warnings and leave out deprecation
    warnings and Lightning's hints."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    if not verbose:
        for category in (DeprecationWarning, FutureWarning, PossibleUserWarning):
            warnings.filterwarnings("ignore", category=category)


def write_out(text: str, *, error: bool = False) -> None:
    """Print ``text`` to stdout (to stderr for an error). Where the stream cannot take it
    (its reader gone, e.g. ``| head -3``, or a full disk), it goes to /dev/null from then on
    and the work goes on: the runs end and write their files and a sweep its summary, as
    under Hydra's own launcher, which makes such a failure of its callbacks a warning."""
    stream = sys.stderr if error else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except OSError:
        with suppress(OSError, ValueError):  # e.g. a stream with no file descriptor
            target = stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, target)
            finally:
                os.close(null)


def say(line: str, *, error: bool = False, console: bool = True) -> None:
    """Print ``line`` (to stderr for an error) and append it to the job's log files."""
    if console:
        write_out(line, error=error)
    record = logging.LogRecord("dlfoundations", logging.ERROR if error else logging.INFO,
                               __file__, 0, line, None, None)
    for handler in run_logs():
        handler.handle(record)


def say_outcome(metrics: dict, run_dir: Path | str) -> None:
    """A run's last line: its status, final test and validation metrics, and its folder (in a
    sweep to its log only, where the sweep's progress line says it)."""
    finals = [f"{key} {value:.4g}" for key, value in sorted(metrics.items())
              if key.startswith(("test/", "val/"))]
    say(f"{metrics['status']}: {'  '.join(finals)}  run folder {run_dir}",
        console=not in_multirun())
