"""The work of the fused launcher and of the default one (``hydra/launcher=auto``): plan the
groups (and the jobs that run alone), build every member, train each group (here, or on the
side-by-side launcher's workers), and hand Hydra one ``JobReturn`` per job (progress lines,
summary) as the other launchers do."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlfoundations.environment import imports_frozen
from dlfoundations.errors import UserError, refused
from dlfoundations.fused.controls import check_folder_name, check_fusable
from dlfoundations.fused.grouping import fused_groups, plan_line, split_groups
from dlfoundations.fused.plan import Plan, plan_jobs, resumed_from
from dlfoundations.fused.split import batches
from dlfoundations.interrupts import INTERRUPTS, RunInterrupted
from dlfoundations.run import console
from dlfoundations.run.cli import COMMAND
from dlfoundations.side_by_side import (
    check_distinct_folders,
    job_folders,
    multi_process,
    on_workers,
    plan_slots,
    run_one,
    sweep_configs,
    visible_gpus,
)

if TYPE_CHECKING:  # Lightning is imported where a group trains: not by a launcher whose
    from dlfoundations.fused.member import Member  # workers train every group


def job_return(member: Member) -> JobReturn:
    """What Hydra's ``run_job`` would return for the job: its folder and the metric the
    sweep optimises (NaN where the job has none)."""
    hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(member.run_dir)}}})
    value = member.metrics.get(member.cfg.monitor.metric, math.nan)
    return JobReturn(overrides=list(member.sweep_config.hydra.overrides.task),
                     cfg=member.cfg, hydra_cfg=hydra_cfg, working_dir=str(member.run_dir),
                     task_name=member.sweep_config.hydra.job.name, status=JobStatus.COMPLETED,
                     _return_value=value)


def train_group(members: list[Member]) -> None:
    """Build the group's members, train those that were built together, write each one's
    outputs. A signal ends the sweep (``RunInterrupted`` goes up)."""
    from dlfoundations.fused.group import FusedGroup
    from dlfoundations.fused.member import build_member

    built: list[Member] = []
    for member in members:
        if build_member(member, built):
            built.append(member)
    for together in saved_together(built):
        try:
            group = FusedGroup(together)
        except UserError as err:  # e.g. a layer that cannot be stacked: every member says so
            for member in together:
                member.fail(err)
            continue
        for member in together:
            member.log.open()
        try:
            group.fit()
        except (UserError, OSError) as err:  # bad input or a full disk: its jobs fail, the
            group.fail_all(err)                # sweep goes on, as in a multirun
        except RunInterrupted:
            raise
        except Exception as err:  # a bug: each job says so, then its traceback (exit 1)
            group.fail_all(err)
            raise


def saved_together(members: list[Member]) -> list[list[Member]]:
    """The members by the point (epoch, batches done, step) their ``last.ckpt`` holds, in
    order; those that start afresh together. A resumed sweep's members saved at different
    points (in groups split otherwise, e.g. by another ``hydra.launcher.n_jobs``) each train
    on from where they stood, one set after another."""
    points: dict[tuple[int, int, int] | None, list[Member]] = {}
    for member in members:
        state = member.resume_from
        point = (state["epoch"], state["batches_done"], state["global_step"]) if state else None
        points.setdefault(point, []).append(member)
    return list(points.values())


def run_group(hydra_context: Any, task_function: Any,
              jobs: list[tuple[int, DictConfig]]) -> list[JobReturn]:
    """One fused group (its jobs' positions and configs) trained in this process, with
    Hydra's callbacks around each job; every job's return, in order. A signal stops the
    group (each member saved ``interrupted``); the caller ends the sweep."""
    with imports_frozen("dlfoundations.fused.member"):  # torch and Lightning, once
        from dlfoundations.fused.member import open_member
    console.close_run_logs()  # e.g. of a job that ran alone before the group, in this process
    members = [open_member(position, sweep_config) for position, sweep_config in jobs]
    console.configure(any(member.cfg.get("verbose") for member in members))
    callbacks = hydra_context.callbacks
    for member in members:
        callbacks.on_job_start(config=member.sweep_config, task_function=task_function)
    try:
        train_group(members)
    except RunInterrupted:
        pass
    finally:
        returns = [job_return(member) for member in members]
        for member, returned in zip(members, returns, strict=True):
            callbacks.on_job_end(config=member.sweep_config, job_return=returned)
    return returns


@dataclass(frozen=True)
class Task:
    """What a worker (or this process) runs at a time: a fused group, or one job alone, as
    Hydra's own launcher runs it (``hydra/launcher=auto``); its jobs' positions and configs."""

    jobs: list[tuple[int, DictConfig]]
    fused: bool

    @property
    def positions(self) -> list[int]:
        return [position for position, _ in self.jobs]


#: the training images of a job whose config names no count (Fashion-MNIST less its 5,000
#: validation images)
DEFAULT_TRAIN_IMAGES = 55_000


def expected_steps(task: Task) -> float:
    """About how many steps the task trains: its first job's epochs times batches an epoch
    (``limit_train_batches`` of its training images over its batch size); 0 where the config
    does not say (that job's own run refuses it). Only to hand the longest tasks out first,
    so that the workers end together."""
    _, sweep_config = task.jobs[0]
    try:
        data, trainer = sweep_config.data, sweep_config.trainer
        images = data.get("train_subset") or data.get("num_train") or DEFAULT_TRAIN_IMAGES
        return float(trainer.max_epochs) * batches(trainer.get("limit_train_batches"),
                                                   int(images), int(data.batch_size))
    except (OmegaConfBaseException, TypeError, ValueError, AttributeError, ArithmeticError):
        return 0.0


def longest_first(tasks: list[Task]) -> list[Task]:
    """The tasks by expected steps, then members, most first (in order among equals): a
    sweep given ``data.batch_size=1024,256,64`` would otherwise start its batch-64 group last
    and leave one worker idle while it trains (21.1 s against 16-18 s on the 2-core CPU)."""
    return sorted(tasks, key=lambda task: (-expected_steps(task), -len(task.jobs)))


def run_task(hydra_context: Any, task_function: Any, task: Task) -> list[JobReturn]:
    """Every job's return of the task, in order."""
    if task.fused:
        return run_group(hydra_context, task_function, task.jobs)
    [(_, sweep_config)] = task.jobs
    return run_one(hydra_context, task_function, sweep_config)


def plan(launcher: Any, configs: list[DictConfig], folders: list[Path]) -> Plan:
    """The fused groups and the jobs alone: with ``runs_the_rest_alone`` (the default
    launcher) as ``plan_jobs`` finds them, else every job fused (``UserError`` naming the
    first that cannot be)."""
    if launcher.runs_the_rest_alone:
        return plan_jobs(configs, [resumed_from(sweep_config, run_dir) for
                                   sweep_config, run_dir in zip(configs, folders, strict=True)])
    for sweep_config in configs:
        check_fusable(sweep_config)
    return Plan(fused_groups(configs), [])


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
           ) -> Sequence[JobReturn]:
    """Plan the groups (and, for the default launcher, the jobs alone); run them one after
    another here (``n_jobs: 1``, or one slot) or side by side on the side-by-side launcher's
    workers (several groups share a GPU with ``jobs_per_gpu``). A job alone that is more than
    one process (DDP) runs here, after the workers' tasks."""
    from dlfoundations.run.cli import sweep_stopped

    config = launcher.config
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    configs = sweep_configs(launcher, job_overrides, initial_job_idx)
    try:
        folders = job_folders(configs)
        for run_dir in folders:
            check_folder_name(run_dir)
        check_distinct_folders(configs, folders)
        jobs = plan(launcher, configs, folders)
        gpus, cores = visible_gpus(), len(os.sched_getaffinity(0))
        slots = plan_slots(launcher.n_jobs, launcher.jobs_per_gpu, config.get("threads"),
                           cores, gpus)  # checks every value, n_jobs=1 too
        if launcher.n_jobs == 1:
            slots = []
    except UserError as err:
        raise refused(err) from err
    HydraConfig.instance().set_config(config)  # the sweep's again, as the workers get it
    command = COMMAND.get()
    if command is not None:  # from here on a fault is a job's or a bug, not the command line's
        command.job_started = True
    processes = {position for position in jobs.alone if multi_process(configs[position])}
    if len(slots) > 1 and not gpus:  # on a GPU, more members per step cost nothing
        jobs.groups = split_groups(jobs.groups, min(len(slots), cores) -
                                   len(jobs.alone) + len(processes))
    tasks = sorted([Task([(p, configs[p]) for p in group], True) for group in jobs.groups] +
                   [Task([(p, configs[p])], False) for p in jobs.alone],
                   key=lambda task: task.positions[0])
    spread = longest_first([task for task in tasks
                            if task.fused or task.positions[0] not in processes])
    if len(slots) < 2 or len(spread) < 2:
        spread = []
    if config.get("search") is None:  # a search's trials are never fused: its own lines
        console.write_out(plan_line(jobs.groups, len(jobs.alone), jobs.reasons) +
                          (f", {min(len(slots), len(spread))} at a time" if spread else ""))
    returns = on_workers(launcher, slots, configs, [(task.positions, task) for task in spread],
                         run_task) if spread else {}
    for task in tasks:
        if task in spread:
            continue
        returned = run_task(launcher.hydra_context, launcher.task_function, task)
        returns.update(zip(task.positions, returned, strict=True))
        if INTERRUPTS.received is not None:
            raise sweep_stopped(config.get("search") is not None, str(config.hydra.sweep.dir))
    return [returns[position] for position in sorted(returns)]
