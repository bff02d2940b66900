"""The default launcher's plan (``hydra/launcher=auto``): which jobs of a sweep train fused,
and which run alone as their solo runs, and why.

A job trains fused where the fused group computes it exactly as its run alone would
(``check_fusable`` and the optimizer's rule) and another job shares the shape of its work;
a resumed job goes back to the launcher that wrote its ``last.ckpt``. Every other job runs
alone, as Hydra's own launcher runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from dlfoundations.errors import UserError, first_line
from dlfoundations.fused.controls import check_fusable
from dlfoundations.fused.grouping import fused_groups

#: why a job of a shape no other job shares runs alone (a group of one gains nothing)
ALONE = "no other job of its shape"
#: why a resumed job whose ``last.ckpt`` a single run wrote runs alone
SOLO_CHECKPOINT = "its last.ckpt was written by a run alone"


@dataclass
class Plan:
    """The fused groups (positions of their jobs), the jobs that run alone, and why those
    do, each reason once, in the order of the jobs."""

    groups: list[list[int]]
    alone: list[int]
    reasons: list[str] = field(default_factory=list)


def reason(err: BaseException) -> str:
    """The part of a refusal that names what cannot be fused, e.g. ``trainer.max_steps=10``
    from "trainer.max_steps=10 is not allowed with hydra/launcher=fused: ..."."""
    text = first_line(err)
    return text.split(" is not allowed")[0] if " is not allowed" in text else text


def check_optimizer(sweep_config: DictConfig) -> None:
    """The job's optimizer is one a fused rule computes, with options it computes
    (``rules.hyperparameters`` on the optimizer the job's config builds)."""
    import torch
    from hydra.utils import instantiate

    from dlfoundations.fused import rules

    factory: Any = instantiate(sweep_config.optim)
    rules.hyperparameters(factory([{"params": [torch.zeros(1, requires_grad=True)]}]))


def why_not_fused(sweep_config: DictConfig, written_fused: bool | None) -> str | None:
    """Why the job cannot train in a fused group (None: it can). ``written_fused``: whether
    the ``last.ckpt`` the job resumes from is a fused group's (None: nothing to resume)."""
    if written_fused is False:
        return SOLO_CHECKPOINT
    try:
        check_fusable(sweep_config)
        check_optimizer(sweep_config)
    except UserError as err:
        return reason(err)
    except Exception as err:  # e.g. an optimizer torch refuses: the job's own run says so
        return f"its optimizer cannot be built ({first_line(err)})"
    return None


def plan_jobs(configs: list[DictConfig], written_fused: list[bool | None]) -> Plan:
    """Fused groups of the jobs that can be fused (a group of one only for a job resuming a
    fused group's state), the rest alone."""
    reasons: dict[int, str] = {}
    fusable: list[int] = []
    for position, (sweep_config, written) in enumerate(zip(configs, written_fused, strict=True)):
        why = why_not_fused(sweep_config, written)
        if why is None:
            fusable.append(position)
        else:
            reasons[position] = why
    groups = []
    for group in fused_groups([configs[position] for position in fusable]):
        positions = [fusable[index] for index in group]
        if len(positions) > 1 or written_fused[positions[0]]:
            groups.append(positions)
        else:
            reasons[positions[0]] = ALONE
    alone = sorted(reasons)
    return Plan(groups, alone, list(dict.fromkeys(reasons[position] for position in alone)))
