"""The fused launcher's work: plan the groups, build every member, train each group, and hand
Hydra one ``JobReturn`` per job (progress lines, summary) as the other launchers do."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from omegaconf import OmegaConf

from dlfoundations.errors import UserError, refused
from dlfoundations.fused.grouping import fused_groups, plan_line
from dlfoundations.fused.member import Member, build_member, check_fusable, open_member
from dlfoundations.interrupts import INTERRUPTS, RunInterrupted
from dlfoundations.run import console
from dlfoundations.side_by_side import sweep_configs


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
    from dlfoundations.fused.group import FusedGroup  # torch: only once a sweep launches

    built = [member for member in members if build_member(member)]
    if not built:
        return
    try:
        group = FusedGroup(built)
    except UserError as err:  # e.g. a layer that cannot be stacked: every member says so
        for member in built:
            member.fail(err)
        return
    for member in built:
        member.log.open()
    group.fit()


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
           ) -> Sequence[JobReturn]:
    """Run the sweep's jobs in fused groups, one group after another."""
    from dlfoundations.run.cli import sweep_stopped

    config = launcher.config
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    configs = sweep_configs(launcher, job_overrides, initial_job_idx)
    try:
        for sweep_config in configs:
            check_fusable(sweep_config)
    except UserError as err:
        raise refused(err) from err
    members = [open_member(position, sweep_config)
               for position, sweep_config in enumerate(configs)]
    groups = fused_groups([member.cfg for member in members])
    print(plan_line(groups), flush=True)
    console.configure(bool(config.get("verbose")))
    callbacks = launcher.hydra_context.callbacks
    try:
        for group in groups:
            group_members = [members[position] for position in group]
            for member in group_members:
                callbacks.on_job_start(config=member.sweep_config,
                                       task_function=launcher.task_function)
            try:
                train_group(group_members)
            finally:
                for member in group_members:
                    if member.metrics:
                        callbacks.on_job_end(config=member.sweep_config,
                                             job_return=job_return(member))
    except RunInterrupted as err:
        raise sweep_stopped(config.get("search") is not None,
                            str(config.hydra.sweep.dir)) from err
    if INTERRUPTS.received is not None:
        raise sweep_stopped(config.get("search") is not None, str(config.hydra.sweep.dir))
    return [job_return(member) for member in members if member.metrics]
