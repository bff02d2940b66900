"""What the command-line scripts share: one sentence and a status for every fault.

Exit statuses: 0 when the run completed, 2 for bad input (a config value, an unknown key, a
file, a folder, a checkpoint: refused before training in one sentence), 3 when the run did
not complete (diverged, interrupted, or a fault such as a full disk), 1 for a bug (with its
traceback).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from dlfoundations.errors import UserError, first_line
from dlfoundations.reporting.summary import write_summary
from dlfoundations.run import console, folder
from dlfoundations.run.console import in_multirun
from dlfoundations.run.interrupts import INTERRUPTS, RunInterrupted

#: exit status of a run stopped by bad input, and of a run that did not complete
EXIT_BAD_INPUT, EXIT_NOT_COMPLETED = 2, 3

# ${path_safe:...} in conf/train.yaml: a job folder named by its overrides stays one folder
# when a value holds a slash (optim=scratch/adam -> optim=scratch-adam).
OmegaConf.register_new_resolver("path_safe", lambda text: str(text).replace("/", "-"),
                                replace=True)

_job_started = False  # set by run_job: whether Hydra got as far as running a job
_app_running = False  # set by run_app: the sweep runs in this process (the default launcher)


def run_app(app: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function as the scripts do.

    SIGINT and SIGTERM are handled for the whole process (``dlfoundations.run.interrupts``). Hydra
    exits with status 1 when it refuses the command line (an unknown key or option, a bad
    override) before any job ran; that is bad input, so the exit status becomes 2. A signal
    that arrived after the last job ended still makes the exit status 3.
    """
    global _app_running
    INTERRUPTS.install()
    _app_running = True
    try:
        app()
    except SystemExit as exit_:
        if exit_.code == 1 and not _job_started:
            sys.exit(EXIT_BAD_INPUT)
        raise
    if INTERRUPTS.received is not None:
        print(f"error: {INTERRUPTS.signal_name()} arrived before the program ended.",
              file=sys.stderr)
        sys.exit(EXIT_NOT_COMPLETED)


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
    """An exception as one line: the user's sentence, the file a system error names, or the
    type and first line."""
    user_error = as_user_error(err)
    if user_error is not None:
        return str(user_error)
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        return one_line(err.__cause__)
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror} ({err.filename})" if err.filename else err.strerror
    return f"{type(err).__name__}: {first_line(err)}"


def check_added_keys(cfg: DictConfig) -> None:
    """Refuse ``+key=value`` for a key nothing reads.

    An added key is read only where it lands inside a node with ``_target_`` (whose class
    refuses arguments it does not take), e.g. ``+callbacks.probe._target_=...``; anywhere else
    (``+foo=1``, ``+monitor.foo=1``) it would be silently ignored.
    """
    if not HydraConfig.initialized():
        return
    groups = set(HydraConfig.get().runtime.choices)
    for override in HydraConfig.get().overrides.task:
        if not override.startswith("+"):
            continue
        key = override.lstrip("+").split("=", 1)[0]
        if key in groups or "@" in key or "/" in key:
            continue
        parts = key.split(".")
        nodes = [OmegaConf.select(cfg, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
        if not any(isinstance(node, DictConfig) and "_target_" in node for node in nodes):
            raise UserError(f"{override} is not allowed: {key} is not a key of this config and "
                            "nothing would read it; see `--cfg job` for the keys there are.")


def take_folder(cfg: DictConfig, run_dir: Path) -> bool:
    """Claim ``run_dir`` for this run (rank 0 only; ``resume=true`` takes over the claim of a
    run that stopped, and leaves a finished run's folder as it is, to be read) and write
    Hydra's record of the command into ``.hydra/``; True where this process owns the folder."""
    from lightning.pytorch.utilities import rank_zero_only  # torch: not for --help

    if rank_zero_only.rank != 0:
        return False
    ran_before = any((run_dir / name).exists()
                     for name in (folder.CLAIM_FILE, *folder.RUN_FILES))
    if cfg.get("resume") is True and ran_before:
        if (folder.read_metrics(run_dir) or {}).get("status") in folder.FINISHED:
            return False
        folder.retake(run_dir)
        return True
    folder.claim(run_dir)
    if HydraConfig.initialized():
        record = run_dir / ".hydra"
        record.mkdir(exist_ok=True)
        folder.write_text(record / "overrides.yaml",
                          OmegaConf.to_yaml(HydraConfig.get().overrides.task))
        folder.write_text(record / "config.yaml", OmegaConf.to_yaml(cfg))
    return True


def refuse(err: UserError) -> NoReturn:
    """Stop before any job ran: the sentence, and exit status 2."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def stop_sweep() -> NoReturn:
    """After a signal in a multirun: summarise the jobs that ran and exit with status 3."""
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    with INTERRUPTS.shield():
        summary = write_summary(sweep_dir)
    print(f"\nSweep stopped by {INTERRUPTS.signal_name()}; no further job starts. Summary "
          f"({sweep_dir}):\n\n{summary}", file=sys.stderr)
    sys.exit(EXIT_NOT_COMPLETED)


def requeued() -> bool:
    """Whether this is a SLURM job started again after its time limit or a preemption."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def run_job(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run one job as the command line wants it.

    The job claims its folder, then runs ``task``. Any fault ends it with a status in its
    ``metrics.json`` (where the folder is its own): ``failed`` with the one-line reason, or
    ``interrupted``. A single run then exits with status 2 (bad input) or 3 (not completed);
    in a multirun the sweep goes on, except after a signal in the sweep's own process, which
    stops the whole sweep. A job in a process of its own (SLURM, side by side) ends with its status
    and hands the signal on (submitit then requeues it); a requeued SLURM job resumes
    (``resume=true``). Set ``HYDRA_FULL_ERROR=1`` for the traceback of a failure.
    """
    global _job_started
    _job_started = True
    console.configure(bool(cfg.get("verbose")))
    INTERRUPTS.install()  # a job in a process of its own (submitit, side_by_side) has no run_app
    if requeued():
        with open_dict(cfg):
            cfg.resume = True
    run_dir = Path(cfg.paths.output_dir)
    owner, bad_input = False, False
    try:
        with INTERRUPTS.run():
            owner = take_folder(cfg, run_dir)
            check_added_keys(cfg)
            metrics = task(cfg)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        interrupted = isinstance(err, RunInterrupted)
        bad_input = as_user_error(err) is not None
        metrics = {"status": "interrupted" if interrupted else "failed", "reason": one_line(err)}
        if owner:
            record_failure(run_dir, metrics)
        if not (interrupted or bad_input or isinstance(err, OSError) or in_multirun()):
            raise  # a bug: Hydra prints the traceback, exit status 1
    if INTERRUPTS.received is not None and metrics.get("status") == "completed":
        metrics = {**metrics, "status": "interrupted", "reason": f"{INTERRUPTS.signal_name()} "
                   "arrived while the results were written; they are complete"}
        if owner:
            record_failure(run_dir, metrics)
    status = metrics.get("status", "completed")
    if status == "interrupted" and not _app_running:
        try:
            INTERRUPTS.hand_on()  # e.g. submitit: requeue this job, which then resumes
        except Exception as err:  # e.g. submitit: no requeue left; the status stays
            console.say(f"job not requeued: {one_line(err)}", error=True)
    if in_multirun():
        if status != "completed":
            console.say(f"job {status}: {metrics.get('reason')}", error=True)
        if status == "interrupted" and _app_running:
            stop_sweep()
        return metrics
    if bad_input:
        console.say(f"error: {metrics['reason']}", error=True)
        sys.exit(EXIT_BAD_INPUT)
    if status != "completed":
        console.say(f"error: the run {status}: {metrics.get('reason')}", error=True)
        sys.exit(EXIT_NOT_COMPLETED)
    return metrics


def record_failure(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Write a failure status to ``metrics.json``, unless the disk refuses even that."""
    try:
        with INTERRUPTS.shield():
            folder.write_metrics(run_dir, {**(folder.read_metrics(run_dir) or {}), **metrics})
    except OSError as err:
        console.say(f"warning: metrics.json could not be written ({one_line(err)})", error=True)
