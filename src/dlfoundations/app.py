"""The door of every script: a command's faults become one sentence and an exit status.

Exit statuses: 0 when the run completed, 2 for bad input (a config value, an unknown key, a
file, a folder, a checkpoint: refused before training in one sentence), 3 when the run did
not complete (diverged, interrupted, or a fault such as a full disk), 1 for a bug (with its
traceback). Library code raises (``UserError``, ``CommandEnded``); only here do they become
statuses, which the scripts hand to ``exit_with``.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from dlfoundations import folder
from dlfoundations.errors import EXIT_BAD_INPUT, EXIT_NOT_COMPLETED, CommandEnded, UserError
from dlfoundations.interrupts import INTERRUPTS
from dlfoundations.reporting.summary import write_summary
from dlfoundations.run.cli import (
    COMMAND,
    FULL_ERROR_ASKED,
    Command,
    as_user_error,
    full_error_wanted,
    one_line,
)
from dlfoundations.run.console import write_out


def run_app(app: Callable[[], Any]) -> int:
    """Run a ``@hydra.main`` function as the scripts do; its exit status.

    SIGINT and SIGTERM are handled for the whole process (``dlfoundations.interrupts``).
    Hydra is asked to raise what it would print as a traceback (``HYDRA_FULL_ERROR``), so
    that a command line it refuses before any job ran (an unknown key or option, a bad
    override, a value that does not fit a config group) ends here in one sentence with status
    2; a bug still prints its traceback (status 1). A sweep stopped by a signal is summarised.
    A signal that arrived after the last job ended still makes the status 3.
    """
    INTERRUPTS.install()
    os.environ.setdefault(FULL_ERROR_ASKED, "1" if full_error_wanted() else "0")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    command = Command()
    token = COMMAND.set(command)
    try:
        status = run_command(app, command)
    finally:
        COMMAND.reset(token)
    if status == EXIT_BAD_INPUT and not command.job_started:
        give_back_output(command)
    return status


def exit_with(status: int) -> NoReturn:
    """End the process with ``status``: the scripts' last call. It does what the interpreter
    does at exit before its teardown (waits for the threads that are not daemons, runs every
    exit handler: atexit's, e.g. logging's, whenever they were registered; flushes stdout and
    stderr), then ends without the teardown, which freed every object of the 2,000 modules a
    sweep imports (torch, Lightning, matplotlib): 0.15 s of a 2-core CPU after every command.
    A signal that arrived meanwhile makes a completed command's status 3 (``late_signal``);
    output that cannot be flushed is left to the interpreter's end, which says so (status
    120). ``threading._shutdown`` and ``atexit._run_exitfuncs`` are private: the interpreter
    calls them at exit; every script test ends here, so their loss fails loudly."""
    threading._shutdown()
    atexit._run_exitfuncs()
    if status == 0 and INTERRUPTS.received is not None:
        status = late_signal()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (ValueError, AttributeError):  # closed, or None: nothing to flush
            continue
        except OSError:  # a full disk, a reader gone
            sys.exit(status)
    os._exit(status)


def late_signal() -> int:
    """After the work is done: the sentence for a signal that arrived meanwhile, and the
    status it makes (not completed)."""
    write_out(f"error: {INTERRUPTS.signal_name()} arrived before the program ended.",
              error=True)
    return EXIT_NOT_COMPLETED


def run_command(app: Callable[[], Any], command: Command) -> int:
    """Run the Hydra app as ``command``; its exit status (see ``run_app``)."""
    try:
        app()
    except SystemExit as exit_:  # Hydra's own: --help, --cfg, or a refusal (1)
        code = exit_.code if isinstance(exit_.code, int) else 1
        return EXIT_BAD_INPUT if code == 1 and not command.job_started else code
    except CommandEnded as end:
        if end.sweep_dir is not None:
            stopped_sweep(Path(end.sweep_dir))
        if end.message:
            write_out(end.message, error=True)
        return end.status
    except Exception as err:
        if full_error_wanted() or (command.job_started and as_user_error(err) is None):
            raise  # a bug: its traceback, exit status 1
        write_out(f"error: {refusal(err, command)}", error=True)
        return EXIT_BAD_INPUT
    if command.summary_refused is not None:
        write_out(f"error: {command.summary_refused}", error=True)
    if INTERRUPTS.received is not None:
        return late_signal()
    return EXIT_BAD_INPUT if command.summary_refused is not None else 0


def give_back_output(command: Command) -> None:
    """A command refused before any job ran (exit status 2) leaves its output folder as it
    was, whatever the launcher: the claim of a sweep folder it claimed anew and Hydra's
    ``multirun.yaml`` there are removed, and then the folders it created for it, while they
    are empty; so the corrected command can run into the same folder. Nothing is removed from
    a folder that holds anything more, nor from the folder of a resumed sweep that held it
    before or of a search (not claimed anew), nor where another process claimed it."""
    if command.output_dir is None or not command.claimed:
        return
    if folder.give_back(command.output_dir, "multirun.yaml") and command.made_dir is not None:
        folder.remove_made_dirs(command.output_dir, command.made_dir)


def refusal(err: Exception, command: Command) -> str:
    """What Hydra says of a command line it refuses (its whole message: the options there
    are, for an unknown one), or the one line of any other refusal."""
    if isinstance(err, HydraException) and as_user_error(err) is None:
        cause = err.__cause__
        return str(err).strip() + (f"\n{cause}" if isinstance(cause, OmegaConfBaseException)
                                   else "")
    if as_user_error(err) is None and not command.job_started:
        return f"the command line does not compose into a config ({one_line(err)})."
    return one_line(err)


def stopped_sweep(sweep_dir: Path) -> None:
    """After a signal in a sweep: summarise the jobs that ran (or say why it cannot be)."""
    stopped = f"\nSweep stopped by {INTERRUPTS.signal_name()}; no further job starts."
    try:
        with INTERRUPTS.shield():
            summary = write_summary(sweep_dir)
    except UserError as err:
        write_out(f"{stopped}\nerror: {err}", error=True)
        return
    write_out(f"{stopped} Summary ({sweep_dir}):\n\n{summary}", error=True)
