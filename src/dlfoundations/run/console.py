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
import sys
import warnings

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

#: loggers of Lightning that print to the console on their own
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


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


def say(line: str, *, error: bool = False, console: bool = True) -> None:
    """Print ``line`` (to stderr for an error) and append it to the job's log files."""
    if console:
        print(line, file=sys.stderr if error else sys.stdout, flush=True)
    record = logging.LogRecord("dlfoundations", logging.ERROR if error else logging.INFO,
                               __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
