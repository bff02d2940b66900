"""What the command-line scripts share: bad input as one sentence, sweeps that keep going."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from dlfoundations.errors import UserError, first_line
from dlfoundations.train import in_multirun, write_metrics

#: exit status of a run stopped by bad input, and of a run that did not complete
EXIT_BAD_INPUT, EXIT_NOT_COMPLETED = 2, 3


def as_user_error(err: BaseException | None) -> UserError | None:
    """The ``UserError`` behind ``err`` (also when Hydra's ``instantiate`` wrapped it), or a
    config key the target class does not take (e.g. ``+model.foo=1``) as one; else None."""
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, TypeError):
        group = re.search(r"full_key: (\S+)", str(err))
        option = re.search(r"unexpected keyword argument '(\w+)'", str(err.__cause__))
        if group and option:
            return UserError(f"{group[1]}.{option[1]} is not an option of {group[1]}: "
                             f"{err.__cause__}.")
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None


def one_line(err: BaseException) -> str:
    """An exception as one line: the user's sentence, or the type and first line."""
    user_error = as_user_error(err)
    if user_error is not None:
        return str(user_error)
    return f"{type(err).__name__}: {first_line(err)}"


def run_job(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run one training job as the command line wants it.

    A single run stops on bad input with one sentence on stderr (exit status 2, no traceback
    unless ``HYDRA_FULL_ERROR=1``) and exits with status 3 when it did not complete (e.g.
    diverged). In a multirun a failing job writes ``metrics.json`` with ``status: failed``
    and its one-line reason, and the sweep goes on.
    """
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        metrics = task(cfg)
    except Exception as err:
        if in_multirun() and not full_error:
            metrics = {"status": "failed", "reason": one_line(err)}
            run_dir = Path(cfg.paths.output_dir)
            if not (run_dir / "metrics.json").exists():  # never over another run's results
                run_dir.mkdir(parents=True, exist_ok=True)
                write_metrics(run_dir, metrics)
            print(f"job failed: {metrics['reason']}", file=sys.stderr)
            return metrics
        if as_user_error(err) is None or full_error:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    if metrics.get("status", "completed") != "completed" and not in_multirun():
        print(f"error: the run {metrics['status']}: {metrics['reason']}", file=sys.stderr)
        sys.exit(EXIT_NOT_COMPLETED)
    return metrics
