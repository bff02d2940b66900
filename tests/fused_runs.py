"""Helpers of the fused launcher's tests: a fused sweep and a solo run in this process
(``tests.in_process``), and what their folders hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from tests.in_process import run_in_process


def jobs(sweep_dir: Path) -> dict[str, Path]:
    """The sweep's job folders by name."""
    return {path.parent.name: path.parent for path in sweep_dir.glob("*/metrics.json")}


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def log_lines(run_dir: Path) -> list[str]:
    """The project's lines of the run's ``train.log``, their times, numbers and folder left
    out (a library's warning is printed once per process, so runs in one test process differ
    in those)."""
    lines = [line.split("] ", 1)[-1] for line in (run_dir / "train.log").read_text()
             .splitlines() if line.strip() and "site-packages" not in line]
    return [re.sub(r"-?\d+(\.\d+)?(e[+-]?\d+)?", "N", line.replace(str(run_dir), "RUN"))
            for line in lines]


def weights(run_dir: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / name, weights_only=False)["state_dict"]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[key].double() - b[key].double()).abs().max().item() for key in a)


def fused_sweep(sweep_dir: Path, *overrides: str) -> dict[str, Path]:
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", *overrides,
                             f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}")
    assert outcome.status == 0, outcome.output[-3000:]
    return jobs(sweep_dir)


def solo_run(run_dir: Path, *overrides: str) -> Path:
    outcome = run_in_process("train.py", *overrides, f"hydra.run.dir={run_dir}")
    assert outcome.status == 0, outcome.output[-3000:]
    return run_dir
