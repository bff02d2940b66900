"""The default launcher's plan (``hydra/launcher=auto``): which jobs of a sweep train fused,
and which run alone as their solo runs, and why.

A job trains fused where the fused group computes it exactly as its run alone would
(``check_fusable`` and the optimizer's rule) and another job shares the shape of its work;
a resumed job goes back to the launcher that wrote its ``last.ckpt``. Every other job runs
alone, as Hydra's own launcher runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig

from dlfoundations.errors import UserError, first_line
from dlfoundations.fused.controls import check_fusable
from dlfoundations.fused.grouping import fused_groups
from dlfoundations.run.resume import written_by_fused_group

#: why a job of a shape no other job shares runs alone (a group of one gains nothing)
ALONE = "no other job of its shape"
#: what the ``last.ckpt`` a resumed job continues from holds: a fused group's state, a run
#: alone's, or nothing readable (the job's run alone then refuses it in its sentence); None:
#: there is nothing to resume (no such file, or the run finished)
Written = Literal["fused", "alone", "unreadable"] | None
#: why a resumed job runs alone, by what its ``last.ckpt`` holds
RESUMED_ALONE = {"alone": "its last.ckpt was written by a run alone",
                 "unreadable": "its last.ckpt cannot be read"}


def resumed_from(sweep_config: DictConfig, run_dir: Path) -> Written:
    """With ``resume=true``, what the job's ``last.ckpt`` holds (``Written``)."""
    if sweep_config.get("resume") is not True:
        return None
    try:
        fused = written_by_fused_group(run_dir / "checkpoints" / "last.ckpt")
    except Exception:
        return "unreadable"
    return None if fused is None else "fused" if fused else "alone"


@dataclass
class Plan:
    """The fused groups (positions of their jobs), the jobs that run alone, and why those
    do, each reason once, in the order of the jobs."""

    groups: list[list[int]]
    alone: list[int]
    reasons: list[str] = field(default_factory=list)


def reason(err: BaseException) -> str:
    """The part of a refusal that names what cannot be fused: ``trainer.max_steps=10`` from
    "trainer.max_steps=10 is not allowed with hydra/launcher=fused: ...", ``no
    callbacks.model_checkpoint`` from "callbacks.model_checkpoint is required with ..."."""
    text = first_line(err).split(" with hydra/launcher=fused")[0]
    if text.endswith(" is required"):
        return "no " + text.removesuffix(" is required")
    return text.split(" is not allowed")[0]


def check_optimizer(sweep_config: DictConfig) -> None:
    """The job's optimizer is one a fused rule computes, with options it computes
    (``rules.hyperparameters_of`` on the options its config gives, ``rules.options``; the
    values torch refuses are refused as the job's members are built, as its run alone
    refuses them)."""
    from hydra.utils import instantiate

    from dlfoundations.fused import rules

    factory: Any = instantiate(sweep_config.optim)
    rules.hyperparameters_of(factory.func, rules.options(factory))


def why_not_fused(sweep_config: DictConfig, written: Written) -> str | None:
    """Why the job cannot train in a fused group (None: it can); ``written``: what the
    ``last.ckpt`` it resumes from holds."""
    if written in RESUMED_ALONE:
        return RESUMED_ALONE[written]
    try:
        check_fusable(sweep_config)
        check_optimizer(sweep_config)
    except UserError as err:
        return reason(err)
    except Exception as err:  # e.g. an optimizer torch refuses: the job's own run says so
        return f"its optimizer cannot be built ({first_line(err)})"
    return None


def plan_jobs(configs: list[DictConfig], written: list[Written]) -> Plan:
    """Fused groups of the jobs that can be fused (a group of one only for a job resuming a
    fused group's state), the rest alone."""
    reasons: dict[int, str] = {}
    fusable: list[int] = []
    for position, sweep_config in enumerate(configs):
        why = why_not_fused(sweep_config, written[position])
        if why is None:
            fusable.append(position)
        else:
            reasons[position] = why
    groups = []
    for group in fused_groups([configs[position] for position in fusable]):
        positions = [fusable[index] for index in group]
        if len(positions) > 1 or written[positions[0]] == "fused":
            groups.append(positions)
        else:
            reasons[positions[0]] = ALONE
    alone = sorted(reasons)
    return Plan(groups, alone, list(dict.fromkeys(reasons[position] for position in alone)))
