"""Multirun sweeps as a user runs them: real subprocesses with tiny budgets."""

from __future__ import annotations

import csv
import json
import subprocess
from contextlib import nullcontext
from pathlib import Path

import pytest
from hydra.utils import get_class
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlfoundations.optim import scaled_lr
from tests.conftest import ROOT, compose_train, run_script, script_command

COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "epochs", "global_step", "lr")
TINY = ("trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2")
#: the jobs one after another in the sweep's own process, where a probe's signal to its own
#: process is the user's Ctrl-C (on workers, Ctrl-C reaches the launcher, which hands it on:
#: tests/test_side_by_side.py, tests/test_fused.py)
IN_THE_SWEEPS_PROCESS = "hydra.launcher.n_jobs=1"


def sweep(tmp_path: Path, *overrides: str) -> tuple[Path, str]:
    """Run a multirun into ``tmp_path``; return its sweep folder and stdout."""
    result = run_script("train.py", "-m", *overrides, f"paths.output_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "multiruns").iterdir()
    return sweep_dir, result.stdout


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def job_metrics(sweep_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text())
            for path in sweep_dir.glob("*/metrics.json")}


def test_lr_scaling_rules() -> None:
    assert scaled_lr(0.1, 1024, 256, "sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 64, 256, "linear") == pytest.approx(0.025)
    assert scaled_lr(0.1, 4096, 256, "none") == pytest.approx(0.1)


@pytest.mark.slow
def test_two_by_two_sweep_summarises_four_jobs(tmp_path: Path, raw_paths: dict) -> None:
    sweep_dir, stdout = sweep(tmp_path, "lr_scaling.rule=sqrt,linear",
                              "data.batch_size=64,1024", *TINY)
    jobs = job_metrics(sweep_dir)
    assert len(jobs) == 4
    assert all(m["status"] == "completed" for m in jobs.values())
    rows = summary_rows(sweep_dir)
    assert len(rows) == 4
    assert [float(r["val/acc"]) for r in rows] == sorted(
        (float(r["val/acc"]) for r in rows), reverse=True)
    assert (sweep_dir / "curves.png").stat().st_size > 10_000
    assert "| data.batch_size=64,lr_scaling.rule=sqrt |" in stdout

    def lr(rule: str, batch: int) -> float:
        (metrics,) = [m for name, m in jobs.items()
                      if f"lr_scaling.rule={rule}" in name and f"data.batch_size={batch}," in name]
        return metrics["lr"]

    assert lr("sqrt", 1024) / lr("sqrt", 64) == pytest.approx(4)
    assert lr("linear", 1024) / lr("linear", 64) == pytest.approx(16)
    for name in jobs:
        events = EventAccumulator(str(sweep_dir / name)).Reload()
        assert len(events.Scalars("val/acc")) == 2


@pytest.mark.slow
def test_failed_and_diverged_jobs_do_not_stop_the_sweep(tmp_path: Path, raw_paths: dict) -> None:
    sweep_dir, _ = sweep(tmp_path, "model=mlp", "optim=sgd", "optim.lr=0.1,-1,1e20", *TINY)
    status = {row["job"]: row for row in summary_rows(sweep_dir)}
    assert status["optim.lr=0.1"]["status"] == "completed"
    assert status["optim.lr=-1"]["status"] == "failed"
    assert status["optim.lr=-1"]["reason"].startswith("optim.lr=-1 is not allowed")
    assert status["optim.lr=1e+20"]["status"] == "diverged"  # Hydra writes 1e20 as 1e+20
    assert "the training loss became nan" in status["optim.lr=1e+20"]["reason"]
    assert list(status)[0] == "optim.lr=0.1"  # completed jobs first


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_sweep_with_a_summary(tmp_path: Path, raw_paths: dict) -> None:
    """Three jobs; SIGINT at step 2 of the second: it is saved as interrupted, the third never
    starts, the summary covers what ran, exit status 3, no traceback."""
    result = run_script("train.py", "-m", f"paths.output_root={tmp_path}", *TINY,
                        "+callbacks.probe._target_=tests.signal_probe.SignalAtStep",
                        "+callbacks.probe.step=100,2,99", IN_THE_SWEEPS_PROCESS)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "Sweep stopped by SIGINT; no further job starts" in result.stderr
    (sweep_dir,) = (tmp_path / "multiruns").iterdir()
    status = {row["job"]: row["status"] for row in summary_rows(sweep_dir)}
    assert status == {"+callbacks.probe.step=100": "completed",
                      "+callbacks.probe.step=2": "interrupted"}
    (interrupted,) = sweep_dir.glob("*probe.step=2,*")
    assert len(list(sweep_dir.glob("*probe.step=100,*"))) == 1
    assert not list(sweep_dir.glob("*probe.step=99,*"))  # the third job has no folder
    assert (interrupted / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((interrupted / "metrics.json").read_text())["global_step"] == 2
    assert (sweep_dir / "summary.md").is_file()


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_to_the_uninterrupted_result(tmp_path: Path,
                                                                 raw_paths: dict) -> None:
    """Three jobs, the second stopped by SIGINT at step 2. The same command with resume=true:
    the completed job is reported, not retrained; the interrupted one continues from its
    last.ckpt; the third runs. Every job then equals a sweep that was never interrupted."""
    probe = ("+callbacks.probe._target_=tests.signal_probe.SignalAtStep",
             "+callbacks.probe.step=100,2,99", f"+callbacks.probe.once_file={tmp_path / 'sent'}",
             "hydra.sweep.subdir=${hydra.job.num}",  # job folders 0, 1, 2: short names
             IN_THE_SWEEPS_PROCESS)
    first = tmp_path / "sweep"
    command = ("train.py", "-m", *TINY, *probe, f"hydra.sweep.dir={first}")
    assert run_script(*command).returncode == 3
    assert sorted(p.name for p in first.iterdir() if p.is_dir()) == ["0", "1"]
    completed = first / "0"
    before = {p.name: p.stat().st_mtime_ns for p in completed.iterdir()
              if p.is_file() and p.name != "train.log"}
    log = (completed / "train.log").read_text()

    other = run_script("train.py", "-m", *TINY, *probe, "optim=sgd", f"hydra.sweep.dir={first}",
                       "resume=true")
    assert other.returncode == 2 and "resume=true is not allowed here" in other.stderr

    resumed = run_script(*command, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in completed.iterdir()
            if p.is_file() and p.name != "train.log"} == before
    # its log keeps its lines and gains the one that reports the run again
    assert (completed / "train.log").read_text().startswith(log)
    rows = summary_rows(first)
    assert len(rows) == 3 and all(row["status"] == "completed" for row in rows)

    reference = tmp_path / "reference"
    assert run_script("train.py", "-m", *TINY, *probe, f"hydra.sweep.dir={reference}"
                      ).returncode == 0
    # the summary of the resumed sweep is that of a sweep never interrupted
    assert [row["job"] for row in rows] == [row["job"] for row in summary_rows(reference)]
    assert all("resume" not in line for line in (first / "summary.md").read_text().splitlines())
    report = run_script("report.py", str(first))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr[-2000:]
    for job in (reference / name for name in ("0", "1", "2")):
        expected = json.loads((job / "metrics.json").read_text())
        got = json.loads((first / job.name / "metrics.json").read_text())
        assert {k: got[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}, job.name


@pytest.mark.slow
def test_k_fold_sweep_reports_mean_and_std(tmp_path: Path, raw_paths: dict) -> None:
    sweep_dir, stdout = sweep(tmp_path, "data.num_folds=3", "data.fold=0,1,2", *TINY)
    assert len(summary_rows(sweep_dir)) == 3
    summary = (sweep_dir / "summary.md").read_text()
    assert "Cross-validation" in summary and "| val/acc | 3 | 0." in summary and " ± " in summary
    assert "Cross-validation" in stdout


@pytest.mark.parametrize(("overrides", "node", "target"), [
    (["hydra/launcher=slurm", "trainer.num_nodes=2"], "launcher",
     "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    (["hydra/launcher=slurm_cpu", "trainer=ddp_cpu"], "launcher",
     "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    (["hparams_search=mlp"], "sweeper", "hydra_plugins.dlfoundations_search.sweeper.SearchSweeper"),
    (["hparams_search=lenet"], "sweeper",
     "hydra_plugins.dlfoundations_search.sweeper.SearchSweeper"),
])
def test_launcher_and_sweeper_configs_compose(overrides: list[str], node: str,
                                              target: str) -> None:
    cfg = compose_train(*overrides, hydra=True)
    assert cfg.hydra[node]._target_ == target
    get_class(target)
    if "hydra/launcher=slurm" in overrides:  # GPUs: one task per GPU
        assert cfg.hydra.launcher.nodes == 2 and cfg.hydra.launcher.gpus_per_node == 8
        assert cfg.hydra.launcher.tasks_per_node == 8 and cfg.hydra.launcher.partition is None
    if "hydra/launcher=slurm_cpu" in overrides:  # no GPU request, one task per process
        assert cfg.hydra.launcher.gpus_per_node is None and cfg.hydra.launcher.gres is None
        assert cfg.hydra.launcher.tasks_per_node == 2 and cfg.hydra.launcher.max_num_timeout == 3


@pytest.mark.parametrize("stdout", ["closed_pipe", "full_disk"])
def test_a_sweep_whose_stdout_cannot_be_written_still_runs_and_summarises(
        stdout: str, tmp_path: Path) -> None:
    """Its output read by a program that stops early (``| head -1``: a closed pipe) or sent to
    a full disk (/dev/full): every job still runs and the summary files are written, exit
    status 0 and nothing on stderr, as with Hydra's own launcher (the lines go nowhere)."""
    command, env = script_command("train.py")
    sweep_dir = tmp_path / "sweep"
    arguments = [*command, "-m", "model=softmax", "optim=sgd,adam", "data.batch_size=256,1024",
                 *TINY, f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}"]
    closed = stdout == "closed_pipe"
    with nullcontext(subprocess.PIPE) if closed else open("/dev/full", "w") as target:
        process = subprocess.Popen(arguments, cwd=ROOT, env=env, stdout=target,
                                   stderr=subprocess.PIPE, text=True)
        if closed:
            process.stdout.close()  # the reader is gone before the first line
        errors = process.stderr.read()
        assert process.wait(timeout=600) == 0, errors[-3000:]
    assert errors == ""
    assert sorted(job["status"] for job in job_metrics(sweep_dir).values()) == ["completed"] * 4
    for name in ("summary.md", "summary.csv", "curves.png", "heatmap.png"):
        assert (sweep_dir / name).stat().st_size > 0, name
