"""The multirun's default launcher (``hydra/launcher=auto``): the jobs a fused group computes
exactly train fused, the rest alone as Hydra's own launcher runs them; a resumed job goes back
to the launcher that wrote its ``last.ckpt``. Real data, real steps, the scripts run in this
process (``tests.in_process``) as on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlfoundations.fused.grouping import plan_line
from tests.fused_runs import largest_difference, metrics_of, weights
from tests.in_process import SMALL, run_in_process


def written_by_fused_group(run_dir: Path) -> bool:
    return "fused" in torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def test_the_plan_line_names_why_jobs_run_alone() -> None:
    assert plan_line([[0, 2]], 2, ["trainer.limit_val_batches=0"]) == \
        "4 jobs: 2 in 1 fused group of 2, 2 alone (not fused: trainer.limit_val_batches=0)"
    assert plan_line([], 1, ["no other job of its shape"]) == \
        "1 job alone (not fused: no other job of its shape)"
    assert plan_line([[0, 1]], 5, list("abcde")) == \
        "7 jobs: 2 in 1 fused group of 2, 5 alone (not fused: a; b; c; and 2 more)"


#: two jobs the fused launcher computes (limit_val_batches=2) and two it does not (0), in
#: float64, where a member's weights are its solo run's within 1e-9
MIXED = ("model=softmax", "optim=sgd,adam", "trainer.precision=64-true", "threads=1",
         "trainer.max_epochs=2", "trainer.limit_train_batches=5",
         "trainer.limit_test_batches=2", "trainer.limit_val_batches=2,0",
         "hydra.sweep.subdir=${hydra.job.num}")


@pytest.mark.parametrize("n_jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_the_default_fuses_what_it_computes_exactly_and_runs_the_rest_alone(
        n_jobs: int, tmp_path: Path, raw_paths: dict) -> None:
    """The plan line first; the fused jobs' weights within 1e-9 of Hydra's own launcher's, the
    jobs alone its to the last bit, every job's metrics its own."""
    auto = run_in_process("train.py", "-m", *MIXED, f"hydra.launcher.n_jobs={n_jobs}",
                          f"hydra.sweep.dir={tmp_path / 'auto'}")
    assert auto.status == 0, auto.output[-3000:]
    plan = "4 jobs: 2 in 1 fused group of 2, 2 alone (not fused: trainer.limit_val_batches=0)"
    assert plan + (", 2 at a time" if n_jobs == 2 else "\n") in auto.output
    basic = run_in_process("train.py", "-m", "hydra/launcher=basic", *MIXED,
                           f"hydra.sweep.dir={tmp_path / 'basic'}")
    assert basic.status == 0, basic.output[-3000:]
    for job, fused in (("0", True), ("1", False), ("2", True), ("3", False)):
        ours, theirs = tmp_path / "auto" / job, tmp_path / "basic" / job
        assert written_by_fused_group(ours) is fused and not written_by_fused_group(theirs)
        difference = largest_difference(weights(ours), weights(theirs))
        assert difference < 1e-9 if fused else difference == 0, (job, difference)
        assert metrics_of(ours)["status"] == "completed"
        for key in ("test/acc", "global_step", "epochs", "lr"):
            assert metrics_of(ours)[key] == metrics_of(theirs)[key], (job, key)


@pytest.mark.parametrize("launcher", ["fused", "basic"])
def test_a_resumed_sweep_goes_back_to_the_launcher_that_wrote_each_job(
        launcher: str, tmp_path: Path, raw_paths: dict) -> None:
    """A sweep started fused or one job after another, its jobs stopped, resumed with the
    default launcher: each job continues with the launcher that wrote its last.ckpt, none is
    refused, and each ends with the numbers it had."""
    sweep = ("model=softmax", *SMALL, "optim=sgd,adam", "hydra.sweep.subdir=${hydra.job.num}",
             f"hydra.sweep.dir={tmp_path}")
    assert run_in_process("train.py", "-m", f"hydra/launcher={launcher}", *sweep).status == 0
    before = {job: metrics_of(tmp_path / job) for job in ("0", "1")}
    for job in ("0", "1"):
        (tmp_path / job / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    outcome = run_in_process("train.py", "-m", *sweep, "resume=true")
    assert outcome.status == 0, outcome.output[-3000:]
    assert "not allowed" not in outcome.output
    assert ("2 jobs in 1 fused group of 2" if launcher == "fused" else
            "2 jobs alone (not fused: its last.ckpt was written by a run alone)") in outcome.output
    for job in ("0", "1"):
        after = metrics_of(tmp_path / job)
        assert after["status"] == "completed"
        assert written_by_fused_group(tmp_path / job) is (launcher == "fused")
        for key in ("test/acc", "val/acc", "global_step"):
            assert after[key] == before[job][key], (job, key)
