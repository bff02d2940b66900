"""The side-by-side launcher (hydra/launcher=side_by_side): a sweep's jobs in worker processes
on this machine, each pinned to its share of the cores or to one GPU."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from dlfoundations.errors import UserError
from dlfoundations.run.train import physical_device
from dlfoundations.side_by_side import Slot, plan_slots
from tests.conftest import run_script, start_script, wait_for
from tests.in_process import run_in_process

COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "epochs", "global_step", "lr")
SMALL = ("model=mlp", "threads=1", "trainer.max_epochs=2", "trainer.limit_train_batches=10",
         "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
         "hydra.sweep.subdir=${hydra.job.num}")
#: long enough (about 0.3 s an epoch here) for a signal sent after the first epochs of two
#: jobs started together to land in training
LONG = ("model=mlp", "threads=1", "trainer.max_epochs=12", "trainer.limit_train_batches=60",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "hydra.sweep.subdir=${hydra.job.num}")


def metrics_of(sweep_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text())
            for path in sweep_dir.glob("*/metrics.json")}


@pytest.mark.parametrize(("n_jobs", "jobs_per_gpu", "threads", "cores", "gpus", "expected"), [
    (None, 1, None, 2, [], [Slot(0, 1, None), Slot(1, 1, None)]),   # n_jobs x threads = cores
    (None, 1, 2, 4, [], [Slot(0, 2, None), Slot(1, 2, None)]),
    (3, 1, None, 2, [], [Slot(i, 1, None) for i in range(3)]),
    (None, 4, None, 16, ["0", "1"], [Slot(i, 2, str(i % 2)) for i in range(8)]),  # round-robin
    (None, 2, None, 16, ["3"], [Slot(0, 8, "3"), Slot(1, 8, "3")]),
])
def test_slots_fill_the_machine(n_jobs, jobs_per_gpu, threads, cores, gpus, expected) -> None:
    assert plan_slots(n_jobs, jobs_per_gpu, threads, cores, gpus) == expected


@pytest.mark.parametrize(("n_jobs", "jobs_per_gpu", "key"), [
    (0, 1, "hydra.launcher.n_jobs=0"), ("two", 1, "hydra.launcher.n_jobs='two'"),
    (None, 0, "hydra.launcher.jobs_per_gpu=0")])
def test_bad_slot_settings_are_refused(n_jobs, jobs_per_gpu, key: str) -> None:
    with pytest.raises(UserError, match=key):
        plan_slots(n_jobs, jobs_per_gpu, None, 2, [])


def test_a_job_names_the_gpu_it_ran_on_as_the_machine_numbers_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert physical_device(torch.device("cuda", 0)) == "cuda:3"
    assert physical_device(torch.device("cpu")) == "cpu"


@pytest.mark.slow
def test_jobs_side_by_side_equal_jobs_one_after_another(tmp_path: Path, raw_paths: dict
                                                        ) -> None:
    """Four jobs on two workers: the numbers of Hydra's own launcher's sweep, each job in a
    worker process of its own (two processes for four jobs), not the launcher's."""
    sweep = ("-m", "optim=sgd,adam", "seed=0,1", *SMALL)
    side = run_script("train.py", *sweep, "hydra/launcher=side_by_side",
                      "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'side'}")
    assert side.returncode == 0, side.stderr[-3000:]
    lines = [line for line in side.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 4 and all(": completed, val/acc " in line for line in lines), lines
    one_by_one = run_script("train.py", *sweep, "hydra/launcher=basic",
                            f"hydra.sweep.dir={tmp_path / 'serial'}")
    assert one_by_one.returncode == 0, one_by_one.stderr[-3000:]
    got, expected = metrics_of(tmp_path / "side"), metrics_of(tmp_path / "serial")
    assert sorted(got) == ["0", "1", "2", "3"]
    for job, metrics in got.items():
        assert metrics["status"] == "completed" and metrics["device"] == "cpu"
        assert {k: metrics[k] for k in COMPARED} == {k: expected[job][k] for k in COMPARED}
    workers = {json.loads((tmp_path / "side" / job / ".claim").read_text())["pid"]
               for job in got}
    assert len(workers) == 2


@pytest.mark.slow
def test_ddp_jobs_are_refused_before_any_job_runs(tmp_path: Path) -> None:
    """(The default launcher runs them in its own process: tests/test_default_launcher.py.)"""
    result = run_script("train.py", "-m", "hydra/launcher=side_by_side", "trainer=ddp_cpu",
                        "optim=sgd,adam", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: trainer.devices=2 is not allowed with hydra/launcher=side_by_side: each job runs "
        "in one process on one device; run multi-process jobs with the default launcher (which "
        "runs them in its own process, one after another) or with hydra/launcher=slurm.")
    assert not list(tmp_path.glob("*/metrics.json"))


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_jobs_and_resume_finishes_them(tmp_path: Path,
                                                                raw_paths: dict) -> None:
    """SIGINT to the sweep (as Ctrl-C sends it) reaches each running job once: both save and
    end interrupted, the third job never starts, exit status 3; resume=true finishes all three
    to the numbers of a sweep never interrupted."""
    sweep_dir = tmp_path / "sweep"
    command = ("-m", "optim=sgd,adam,momentum", *LONG, "hydra/launcher=side_by_side",
               "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}")
    sweep = start_script("train.py", *command, log=tmp_path / "sweep.log")
    # both workers in training (a worker still starting would end its job before it began);
    # last.ckpt stays, while epoch00.ckpt goes once a better epoch is saved
    wait_for(lambda: all((sweep_dir / job / "checkpoints" / "last.ckpt").exists()
                         for job in ("0", "1")), "the first epochs", sweep)
    sweep.send_signal(signal.SIGINT)
    assert sweep.wait(timeout=300) == 3, (tmp_path / "sweep.log").read_text()[-3000:]
    log = (tmp_path / "sweep.log").read_text()
    assert "Sweep stopped by SIGINT; no further job starts" in log and "Traceback" not in log
    stopped = metrics_of(sweep_dir)
    assert sorted(stopped) == ["0", "1"]
    for metrics in stopped.values():
        assert metrics["status"] == "interrupted" and "SIGINT" in metrics["reason"]
    assert all((sweep_dir / job / "checkpoints" / "last.ckpt").is_file() for job in stopped)

    resumed = run_script("train.py", *command, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = run_script("train.py", "-m", "hydra/launcher=basic", "optim=sgd,adam,momentum",
                           *LONG, f"hydra.sweep.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = metrics_of(tmp_path / "reference")
    for job, metrics in metrics_of(sweep_dir).items():
        assert metrics["status"] == "completed", job
        assert {k: metrics[k] for k in COMPARED} == {k: expected[job][k] for k in COMPARED}


@pytest.mark.slow
def test_a_dead_worker_fails_its_job_and_the_sweep_goes_on(tmp_path: Path,
                                                          raw_paths: dict) -> None:
    """SIGKILL to the worker of the first job: that job is recorded failed with the reason,
    a new worker takes the third job, the sweep ends normally."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_script("train.py", "-m", "optim=sgd,adam,momentum", *LONG,
                         "hydra/launcher=side_by_side", "hydra.launcher.n_jobs=2",
                         f"hydra.sweep.dir={sweep_dir}", log=tmp_path / "sweep.log")
    first = sweep_dir / "0"
    wait_for(lambda: (first / "checkpoints" / "last.ckpt").exists(), "the first epoch", sweep)
    os.kill(json.loads((first / ".claim").read_text())["pid"], signal.SIGKILL)
    assert sweep.wait(timeout=300) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    metrics = metrics_of(sweep_dir)
    assert metrics["0"]["status"] == "failed"
    assert metrics["0"]["reason"] == "its worker process ended with signal SIGKILL"
    assert metrics["1"]["status"] == metrics["2"]["status"] == "completed"
    lines = [line for line in (tmp_path / "sweep.log").read_text().splitlines()
             if not line.startswith("|") and ("optim=sgd" in line or "worker process" in line)]
    assert len(lines) == 1, lines  # one progress line for the lost job, with its reason
    assert "optim=sgd: failed (its worker process ended with signal SIGKILL);" in lines[0]


def test_two_jobs_given_one_folder_are_refused_before_any_runs(tmp_path: Path,
                                                              raw_paths: dict) -> None:
    """``hydra.sweep.subdir=${optim._target_}`` with ``optim=sgd,sgd``: one sentence naming
    both jobs and the folder, exit 2, nothing trained (found by a hostile try: one job trained,
    the other failed on its claim, which one by timing, exit 0)."""
    outcome = run_in_process("train.py", "-m", "hydra/launcher=side_by_side", "optim=sgd,sgd",
                             *SMALL, "hydra.sweep.subdir=${optim._target_}",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert outcome.status == 2, outcome.output[-3000:]
    assert "gives jobs 0 and 1 one folder" in outcome.output
    assert "Traceback" not in outcome.output
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))
