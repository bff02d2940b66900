"""One job as the command line runs it: it claims its folder, runs, and ends with a status.

Every fault ends the job with a status in its ``metrics.json`` and one sentence; how the whole
command ends (its exit status) is decided at the door, ``dlfoundations.app.run_app``, from the
``CommandEnded`` a job raises.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from dlfoundations import folder
from dlfoundations.errors import (
    EXIT_BAD_INPUT,
    EXIT_NOT_COMPLETED,
    CommandEnded,
    UserError,
    first_line,
    found_in_causes,
)
from dlfoundations.interrupts import INTERRUPTS, RunInterrupted
from dlfoundations.run import console
from dlfoundations.run.console import in_multirun
from dlfoundations.status import FINISHED, Status

# ${path_safe:...} in conf/train.yaml: a job folder named by its overrides stays one folder
# when a value holds a slash (optim=scratch/adam -> optim=scratch-adam).
OmegaConf.register_new_resolver("path_safe", lambda text: str(text).replace("/", "-"),
                                replace=True)

#: the user's own HYDRA_FULL_ERROR, kept for the job processes (run_app sets Hydra's to 1)
FULL_ERROR_ASKED = "DLFOUNDATIONS_FULL_ERROR"


@dataclass
class Command:
    """The command that ``run_app`` runs in this process; ``job_started``: whether Hydra got
    as far as running a job. A job of a process of its own (side by side, SLURM) has none.

    What a sweep made for its output before any job ran, so that a command refused then
    leaves it as it was (``dlfoundations.app.give_back_output``): ``output_dir``, the folder
    it prepared, ``made_dir``, the topmost folder it created for it (None when the folder
    existed), and ``claimed``, whether it claimed that folder anew (a new sweep: not a
    resumed one, nor a search's, whose folder is its study's)."""

    job_started: bool = False
    output_dir: Path | None = None
    made_dir: Path | None = None
    claimed: bool = False
    #: why a sweep's summary could not be written (``hydra_callbacks.SweepSummary``)
    summary_refused: str | None = None


#: the command run in this process by ``run_app`` (None in a job's own process)
COMMAND: ContextVar[Command | None] = ContextVar("command", default=None)
#: DDP strategies whose extra processes Lightning starts from the run's own process, without
#: re-running the script
START_METHODS_IN_PROCESS = ("ddp_spawn", "ddp_fork", "ddp_notebook")


def full_error_wanted() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1`` when the command
    started; ``run_app`` keeps that answer in ``FULL_ERROR_ASKED`` for its job processes)."""
    return os.environ.get(FULL_ERROR_ASKED, os.environ.get("HYDRA_FULL_ERROR")) == "1"


def as_user_error(err: BaseException | None) -> UserError | None:
    """The ``UserError`` behind ``err`` (also when Hydra's ``instantiate`` wrapped it), or a
    config node that cannot be built as one: a key the target class does not take (e.g.
    ``+model.foo=1``), a value it refuses, a node that is not a config; else None."""
    user_error = found_in_causes(err, UserError)
    built = err if isinstance(err, InstantiationException) else None
    if user_error is not None or built is None:
        return user_error
    node = re.search(r"full_key: (\S+)", str(built))
    cause = built.__cause__
    option = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
    if node and option:
        return UserError(f"{node[1]}.{option[1]} is not an option of {node[1]}: {cause}.")
    return UserError(f"{node[1] if node else 'a config node'} cannot be built from its "
                     f"values: {first_line(cause or built).rstrip('.')}.")


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


def take_folder(cfg: DictConfig, run_dir: Path, fused: bool = False) -> str | None:
    """Claim ``run_dir`` for this run (rank 0 only), start writing its log file there and
    write Hydra's record of the command into ``.hydra/``. ``resume=true`` takes back the
    folder of a run that stopped, once the command is checked to be the one that started it
    (and its launcher: ``fused`` for a fused group's member), and leaves a finished run's
    folder as it is, to be read. Returns ``"claimed"`` (a new
    folder), ``"resumed"``, or None where this process does not own the folder."""
    from lightning.pytorch.utilities import rank_zero_only  # torch: not for --help

    from dlfoundations.run.resume import check_same_command

    if rank_zero_only.rank != 0:
        return None
    ran_before = any((run_dir / name).exists()
                     for name in (folder.CLAIM_FILE, *folder.RUN_FILES))
    if cfg.get("resume") is True and ran_before:
        check_same_command(cfg, run_dir, fused)
        if (folder.read_metrics(run_dir) or {}).get("status") in FINISHED:
            return None
        for log in console.run_logs():
            if log.path.is_symlink():
                raise UserError(f"{log.path} is a symbolic link: a run writes its log only "
                                "into its own folder; remove the link to resume the run.")
        folder.retake(run_dir)
        open_logs()
        return "resumed"
    folder.claim(run_dir)
    open_logs()
    if HydraConfig.initialized():
        record = run_dir / ".hydra"
        record.mkdir(exist_ok=True)
        overrides = [o for o in HydraConfig.get().overrides.task
                     if not o.startswith(folder.RUN_CONTROL)]
        folder.write_text(record / "overrides.yaml", OmegaConf.to_yaml(overrides))
        folder.write_text(record / "config.yaml", OmegaConf.to_yaml(cfg))
    return "claimed"


def open_logs() -> None:
    """Start writing the job's log file in the folder the run now owns."""
    for log in console.run_logs():
        log.open()


def requeued() -> bool:
    """Whether this is a SLURM job started again after its time limit or a preemption."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def run_job(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run one job as the command line wants it.

    The job claims its folder, then runs ``task``. Any fault ends it with a status in its
    ``metrics.json`` (where the folder is its own): ``failed`` with the one-line reason, or
    ``interrupted``; bad input refused before the job trained is marked ``"refused": true``,
    so that the corrected command can take the folder over (``folder.claim``). A single run
    then ends the command (``CommandEnded``) with status 2 (bad input) or 3 (not completed);
    in a multirun the sweep goes on, except after a signal in the sweep's own process, which
    stops the whole sweep. A job in a process of its own (SLURM,
    side by side) ends with its status and hands the signal on (submitit then requeues it); a
    requeued SLURM job resumes (``resume=true``). Set ``HYDRA_FULL_ERROR=1`` for the
    traceback of a failure.
    """
    command = COMMAND.get()
    if command is not None:
        command.job_started = True
    console.configure(bool(cfg.get("verbose")))
    INTERRUPTS.install()  # a job in a process of its own (submitit, side_by_side) has no run_app
    if requeued():
        with open_dict(cfg):
            cfg.resume = True
    run_dir = Path(cfg.paths.output_dir)
    owner, bad_input = None, False
    try:
        with INTERRUPTS.run():
            owner = take_folder(cfg, run_dir)
            check_added_keys(cfg)
            metrics = task(cfg)
    except Exception as err:
        if full_error_wanted():
            raise
        interrupted = isinstance(err, RunInterrupted)
        bad_input = as_user_error(err) is not None
        metrics = {"status": Status.INTERRUPTED if interrupted else Status.FAILED,
                   "reason": one_line(err)}
        record_job_failure(run_dir, owner, metrics, bad_input)
        if not (interrupted or bad_input or isinstance(err, OSError) or in_multirun()):
            raise  # a bug: Hydra prints the traceback, exit status 1
    if INTERRUPTS.received is not None and metrics.get("status") == Status.COMPLETED:
        metrics = {**metrics, "status": Status.INTERRUPTED, "reason": f"{INTERRUPTS.signal_name()} "
                   "arrived while the results were written; they are complete"}
        if owner:
            record_failure(run_dir, metrics)
    status = metrics.get("status", Status.COMPLETED)
    if status == Status.INTERRUPTED and command is None:
        try:
            INTERRUPTS.hand_on()  # e.g. submitit: requeue this job, which then resumes
        except Exception as err:  # e.g. submitit: no requeue left; the status stays
            console.say(f"job not requeued: {one_line(err)}", error=True)
    if in_multirun():
        if status != Status.COMPLETED:
            console.say(f"job {status}: {metrics.get('reason')}", error=True)
        if status == Status.INTERRUPTED and command is not None:  # the sweep runs here
            raise sweep_stopped(cfg.get("search") is not None, str(HydraConfig.get().sweep.dir))
        return metrics
    if bad_input:
        console.say(f"error: {metrics['reason']}", error=True)
        raise CommandEnded(EXIT_BAD_INPUT)
    if status != Status.COMPLETED:
        console.say(f"error: the run {status}: {metrics.get('reason')}", error=True)
        raise CommandEnded(EXIT_NOT_COMPLETED)
    return metrics


def sweep_stopped(search: bool, sweep_dir: str) -> CommandEnded:
    """The end of a sweep that a signal stopped (exit status 3): summarised on the way out,
    or, for a search, by its sweeper, which writes the study's summary as it stops."""
    if search:
        return CommandEnded(EXIT_NOT_COMPLETED, f"\nSearch stopped by "
                            f"{INTERRUPTS.signal_name()}; no further trial starts. The study as "
                            f"it stands: {sweep_dir}/summary.md")
    return CommandEnded(EXIT_NOT_COMPLETED, sweep_dir=sweep_dir)


def writes_its_failure(owner: str | None, bad_input: bool) -> bool:
    """Whether a failed job writes into its folder (``owner``: ``take_folder``'s answer): one
    it claimed, or resumed for any failure but bad input (a refused resume leaves the folder
    as it was)."""
    return owner == "claimed" or (owner == "resumed" and not bad_input)


def record_job_failure(run_dir: Path, owner: str | None, metrics: dict[str, Any],
                       bad_input: bool) -> None:
    """Write a job's failure where it may (``writes_its_failure``), marked ``"refused":
    true`` where bad input refused it before it trained, so that the next command into the
    folder takes it over."""
    if owner == "claimed" and bad_input and not folder.holds_training(run_dir):
        record_failure(run_dir, {**metrics, "refused": True})
    elif writes_its_failure(owner, bad_input):
        record_failure(run_dir, metrics)


def record_failure(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Write a failure status to ``metrics.json``, unless the disk refuses even that."""
    try:
        with INTERRUPTS.shield():
            folder.write_metrics(run_dir, {**(folder.read_metrics(run_dir) or {}), **metrics})
    except OSError as err:
        console.say(f"warning: metrics.json could not be written ({one_line(err)})", error=True)
