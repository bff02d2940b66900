"""Sweeps on a real single-node SLURM cluster (Debian's slurm-wlm + munge), brought up by
``scripts/slurm_cluster.sh`` as root: jobs through the submitit launcher, a job stopped by the
time-limit signal and requeued, resuming to the uninterrupted result."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_script, service, start_script, wait_for

pytestmark = pytest.mark.slow  # subprocesses, services or many runs

#: one CPU thread everywhere, so that a job computes the same numbers on the cluster and here
SMALL = ("model=mlp", "optim=sgd", "threads=1", "trainer.max_epochs=12",
         "trainer.limit_train_batches=100", "trainer.limit_val_batches=5",
         "trainer.limit_test_batches=5")
COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "epochs", "global_step", "lr")


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    """The cluster of ``scripts/slurm_cluster.sh``, stopped (by its PIDs) after the tests."""
    with service("slurm_cluster.sh", "a SLURM cluster"):
        yield


def jobs_of(sweep_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text())
            for path in sweep_dir.glob("*/metrics.json")}


def test_a_sweep_runs_on_the_cluster(slurm_cluster: None, tmp_path: Path, raw_paths: dict
                                     ) -> None:
    result = run_script("train.py", "-m", "hydra/launcher=slurm_cpu", "optim=sgd,adam",
                        "trainer.max_epochs=1", "trainer.limit_train_batches=5",
                        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
                        f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = jobs_of(tmp_path)
    assert sorted(name.split(",")[0] for name in jobs) == ["optim=adam", "optim=sgd"]
    for metrics in jobs.values():
        assert metrics["status"] == "completed"
        assert metrics["cluster_environment"] == "SLURMEnvironment"
        assert metrics["device"] == "cpu"
    assert len(list((tmp_path / ".submitit").glob("*/*_log.out"))) == 2  # one SLURM task each


def slurm_job_ids() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True
                          ).stdout.split()


def job_state(job_id: str) -> str:
    """``scontrol``'s JobState of a job, with its flags (e.g. ``PENDING`` or ``COMPLETING``)."""
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    return " ".join(word for word in shown.stdout.split() if word.startswith("JobState="))


def release(job_id: str, sweep: subprocess.Popen, seconds: float = 300) -> None:
    """Start a requeued job now, as an administrator may. SLURM holds a requeued job for about
    two minutes, and sets that hold again once the job has finished COMPLETING: so set the
    start time again until the job leaves PENDING."""
    deadline = time.monotonic() + seconds
    # Released within 0.1 s of its requeue, a job was started while its previous run's
    # credential was being revoked, and SLURM killed it ("Job credential revoked"): let the
    # previous run end on the node first.
    time.sleep(5)
    while "PENDING" in job_state(job_id) and sweep.poll() is None:
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                       capture_output=True)
        assert time.monotonic() < deadline, f"job {job_id} stayed pending: {job_state(job_id)}"
        time.sleep(2)


def finished(sweep: subprocess.Popen, seconds: float = 300) -> int | None:
    """The sweep's exit status, or None if it is still running after ``seconds`` (then
    stopped)."""
    try:
        return sweep.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        sweep.kill()
        return None


def diagnosis(log: Path, sweep_dir: Path) -> str:
    """What the sweep, its SLURM jobs and the controller said: the message of a failed test."""
    parts = [f"sweep log:\n{log.read_text()[-3000:]}"]
    for job_log in sorted(sweep_dir.glob(".submitit/*/*_log.*")):
        parts.append(f"{job_log.name}:\n{job_log.read_text()[-2000:]}")
    for command in (["squeue"], ["sinfo", "-R"]):
        parts.append(subprocess.run(command, capture_output=True, text=True).stdout)
    state = Path(os.environ.get("SLURM_CLUSTER_STATE", "/tmp/dlfoundations-slurm"))  # as the script
    controller_log = state / "slurmctld.log"
    if controller_log.exists():
        parts.append("slurmctld.log:\n" + controller_log.read_text()[-2000:])
    return "\n".join(parts)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> dict[str, Any]:
    """The metrics of a run of ``SMALL`` here, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = run_script("train.py", *SMALL, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def start_sweep(tmp_path: Path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    """``SMALL`` as a sweep through the CPU launcher, job folders 0, 1, ...; the sweep's
    process and its folder."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_script("train.py", "-m", "hydra/launcher=slurm_cpu", *SMALL, *overrides,
                         "hydra.launcher.timeout_min=20", f"hydra.sweep.dir={sweep_dir}",
                         "hydra.sweep.subdir=${hydra.job.num}", log=tmp_path / "sweep.log")
    return sweep, sweep_dir


def test_a_job_stopped_at_its_time_limit_is_requeued_and_resumes(
        slurm_cluster: None, tmp_path: Path, reference: dict[str, Any]) -> None:
    """USR2 is what SLURM sends before the time limit (submitit asks for it): the job saves
    last.ckpt, submitit requeues it, and the requeued job continues in its own folder to the
    numbers of a run never interrupted."""
    sweep, sweep_dir = start_sweep(tmp_path)
    job_dir = sweep_dir / "0"
    # 12 epochs: the signal, sent once the first epoch's checkpoint exists, lands in training
    wait_for(lambda: (job_dir / "checkpoints" / "last.ckpt").exists(), "the first epoch",
             sweep)
    (job_id,) = slurm_job_ids()
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    wait_for(lambda: "PD" in subprocess.run(["squeue", "-h", "-o", "%t", "-j", job_id],
                                            capture_output=True, text=True).stdout,
             "the requeue", sweep)
    stopped = json.loads((job_dir / "metrics.json").read_text())
    assert stopped["status"] == "interrupted" and "SIGUSR2" in stopped["reason"]
    release(job_id, sweep)
    assert finished(sweep) == 0, diagnosis(tmp_path / "sweep.log", sweep_dir)
    resumed = json.loads((job_dir / "metrics.json").read_text())
    assert resumed["status"] == "completed"
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}


def test_a_sweep_cancelled_with_scancel_resumes(slurm_cluster: None, tmp_path: Path,
                                                reference: dict[str, Any]) -> None:
    """``scancel --signal=TERM`` stops both jobs of a running sweep (each run saves last.ckpt
    and ends interrupted); the same command with resume=true submits them again and each
    continues to the numbers of a run never interrupted. (A plain ``scancel`` also signals the
    ``srun`` in the job's batch step, which then kills its tasks with SIGKILL: a run may end
    before its handler runs, and without accounting submitit waits for its result for ever.)"""
    sweep, sweep_dir = start_sweep(tmp_path, "seed=0,0")  # two jobs, the reference's numbers
    wait_for(lambda: all((sweep_dir / job / "checkpoints" / "last.ckpt").exists()
                         for job in ("0", "1")), "the first epochs", sweep)
    subprocess.run(["scancel", "--signal=TERM", *slurm_job_ids()], check=True)
    assert finished(sweep) == 0, diagnosis(tmp_path / "sweep.log", sweep_dir)
    for job in ("0", "1"):
        stopped = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert stopped["status"] == "interrupted" and "SIGTERM" in stopped["reason"]

    resumed, _ = start_sweep(tmp_path, "seed=0,0", "resume=true")
    assert finished(resumed) == 0, diagnosis(tmp_path / "sweep.log", sweep_dir)
    for job in ("0", "1"):
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert {k: metrics[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}


def test_a_two_task_ddp_job_equals_a_local_ddp_run(slurm_cluster: None, tmp_path: Path,
                                                   raw_paths: dict) -> None:
    """trainer=ddp_cpu through the CPU launcher: two SLURM tasks, one DDP process each (gloo);
    Lightning forms the group from SLURM's environment. The numbers are those of the same two
    processes started by Lightning on this machine."""
    ddp = ("trainer=ddp_cpu", "threads=1", "model=mlp", "trainer.max_epochs=1",
           "trainer.limit_train_batches=20", "trainer.limit_val_batches=4",
           "trainer.limit_test_batches=4")
    sweep = run_script("train.py", "-m", "hydra/launcher=slurm_cpu", *ddp,
                       f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=job")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    on_cluster = json.loads((tmp_path / "sweep" / "job" / "metrics.json").read_text())
    assert on_cluster["cluster_environment"] == "SLURMEnvironment"
    assert on_cluster["global_batch_size"] == 2 * 256
    local = run_script("train.py", *ddp, f"hydra.run.dir={tmp_path / 'local'}")
    assert local.returncode == 0, local.stderr[-3000:]
    expected = json.loads((tmp_path / "local" / "metrics.json").read_text())
    assert {k: on_cluster[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
