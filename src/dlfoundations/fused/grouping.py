"""Which jobs of a sweep train together: those whose work has the same shape.

Members of a group may differ in what only changes numbers: the optimizer and its keys, the
learning rate and its scaling, the scheduler, the initialiser, the seed (and ``data.seed``,
which follows it), the dropout rates. Everything else (model and network options, batch
size, epochs and the trainer's limits, the other data options, precision, gradients) must be
equal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: the config keys in which the members of one group may differ
MEMBER_KEYS = ("optim", "lr_scaling", "scheduler", "init", "seed", "data.seed",
               "model.net.dropout", "paths", "resume", "verbose", "report")


def shape_key(cfg: DictConfig) -> str:
    """What must be equal for two jobs to train together, as one string."""
    values: dict[str, Any] = OmegaConf.to_container(cfg, resolve=False)
    values.pop("hydra", None)
    for key in MEMBER_KEYS:
        *parents, last = key.split(".")
        node = values
        for parent in parents:
            node = node.get(parent) or {}
        node.pop(last, None)
    return json.dumps(values, sort_keys=True, default=str)


def fused_groups(configs: Sequence[DictConfig]) -> list[list[int]]:
    """The positions of the jobs of each group, groups in the order of their first job."""
    groups: dict[str, list[int]] = {}
    for position, cfg in enumerate(configs):
        groups.setdefault(shape_key(cfg), []).append(position)
    return list(groups.values())


def split_groups(groups: list[list[int]], workers: int) -> list[list[int]]:
    """Groups split in halves, the largest first, until there are ``workers`` of them (the
    launcher passes at most one per core) or no group has two jobs: on a CPU, where a step is
    arithmetic, a process per core computes more than threads in one process (32 MLPs on a
    2-core CPU: a member-step takes 4.3 ms on one thread, 3.2 ms on two; two processes of one
    thread each do two every 4.3 ms)."""
    groups = [list(group) for group in groups]
    while len(groups) < workers and any(len(group) > 1 for group in groups):
        largest = max(range(len(groups)), key=lambda index: len(groups[index]))
        group = groups[largest]
        groups[largest:largest + 1] = [group[:(len(group) + 1) // 2],
                                       group[(len(group) + 1) // 2:]]
    return groups


def plan_line(groups: list[list[int]], alone: int = 0, reasons: Sequence[str] = ()) -> str:
    """E.g. ``18 jobs in 3 fused groups of 6`` or ``7 jobs in 3 fused groups of 4, 2 and 1``;
    with jobs that run alone (``hydra/launcher=auto``), e.g. ``8 jobs: 6 in 1 fused group of 6,
    2 alone (not fused: trainer.max_steps=10)`` (the caller may add ``, 2 at a
    time``)."""
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3
                                      else "")
    alone_part = f"alone (not fused: {shown})"
    if not groups:
        return f"{alone} {'job' if alone == 1 else 'jobs'} {alone_part}"
    fused = sum(len(group) for group in groups)
    sizes = [str(len(group)) for group in groups]
    of = sizes[0] if len(set(sizes)) == 1 else f"{', '.join(sizes[:-1])} and {sizes[-1]}"
    in_groups = f"in {len(groups)} fused {'group' if len(groups) == 1 else 'groups'} of {of}"
    if not alone:
        return f"{fused} jobs {in_groups}"
    return f"{fused + alone} jobs: {fused} {in_groups}, {alone} {alone_part}"
