"""The sweep's worker processes on a CPU machine: forked from a server that imported torch and
Lightning once, and gone with the sweep, however it ends. Real sweeps in their own session,
real signals, the processes read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import script_command, wait_for
from tests.fused_runs import metrics_of
from tests.in_process import run_in_process

#: two jobs that cannot be fused (the CSV logger): one on each of the two workers, each
#: long enough to be stopped while it trains
TWO_ALONE = ("-m", "model=mlp", "optim=sgd,adam", "logger=csv", "trainer.max_epochs=5",
             "trainer.limit_train_batches=300", "trainer.limit_val_batches=2",
             "trainer.limit_test_batches=2", "hydra.launcher.n_jobs=2",
             "hydra.sweep.subdir=${hydra.job.num}")


def start_sweep(sweep_dir: Path, log: Path) -> subprocess.Popen:
    """The sweep in a session of its own (as a terminal starts it), SIGINT as Python's."""
    command, env = script_command("train.py")
    return subprocess.Popen(
        [*command, *TWO_ALONE, f"hydra.sweep.dir={sweep_dir}"], env=env, stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))


def in_session(session: int) -> list[tuple[int, int, str]]:
    """The processes of ``session`` (pid, parent's pid, command line), workers in their own
    groups too."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append((int(entry.name), int(fields[1]), command))
    return found


def server(sweep: subprocess.Popen) -> int | None:
    """The server the sweep's workers are forked from (they share its command line)."""
    servers = [pid for pid, parent, command in in_session(sweep.pid)
               if parent == sweep.pid and "multiprocessing.forkserver" in command]
    return servers[0] if servers else None


def both_claimed(sweep_dir: Path) -> bool:
    return all((sweep_dir / job / ".claim").exists() for job in ("0", "1"))


def both_training(sweep_dir: Path) -> bool:
    """Both jobs past their first epoch (a job stopped before its first step ends
    ``interrupted`` with nothing to resume from)."""
    return all((sweep_dir / job / "checkpoints" / "last.ckpt").exists() for job in ("0", "1"))


def none_left(session: int, seconds: float = 120) -> list[tuple[int, int, str]]:
    """Wait until no process of ``session`` is left; what is left after ``seconds``."""
    deadline = time.monotonic() + seconds
    while in_session(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    return in_session(session)


def both_ended(sweep_dir: Path, seconds: float = 300) -> bool:
    """Wait until both jobs have a status (without reaping the sweep's process)."""
    deadline = time.monotonic() + seconds
    while not all((sweep_dir / job / "metrics.json").exists() and
                  "status" in metrics_of(sweep_dir / job) for job in ("0", "1")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.slow
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "left_a_zombie"])
def test_a_killed_sweep_leaves_no_worker_training(reaped: bool, tmp_path: Path,
                                                  raw_paths: dict) -> None:
    """SIGKILL to the sweep's process while both jobs train: each worker stops its job as a
    signal would (``interrupted`` by SIGTERM), and the workers and their server end; also
    while the killed process is a zombie its caller has not waited for."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(sweep_dir, tmp_path / "sweep.log")
    wait_for(lambda: both_training(sweep_dir), "both jobs in training", sweep)
    sweep.kill()
    if not reaped:  # the jobs must end while the killed process is still a zombie
        assert both_ended(sweep_dir), "the workers trained on after the launcher was killed"
    sweep.wait()
    assert none_left(sweep.pid) == []
    for job in ("0", "1"):
        metrics = metrics_of(sweep_dir / job)
        assert metrics["status"] == "interrupted" and "SIGTERM" in metrics["reason"], metrics


@pytest.mark.slow
def test_a_killed_server_leaves_its_workers_jobs_to_finish(tmp_path: Path,
                                                           raw_paths: dict) -> None:
    """SIGKILL to the server the workers were forked from, while they train: the jobs go on
    and complete, each reported once; nothing is left behind."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(sweep_dir, tmp_path / "sweep.log")
    wait_for(lambda: both_claimed(sweep_dir), "both jobs started", sweep)
    os.kill(server(sweep), signal.SIGKILL)
    assert sweep.wait(timeout=600) == 0
    lines = [line for line in (tmp_path / "sweep.log").read_text().splitlines()
             if line.startswith("[")]
    assert len(lines) == 2 and all(": completed, val/acc" in line for line in lines), lines
    assert [metrics_of(sweep_dir / job)["status"] for job in ("0", "1")] == ["completed"] * 2
    assert none_left(sweep.pid) == []


@pytest.mark.slow
def test_ctrl_c_while_the_server_imports_ends_the_sweep_quietly(tmp_path: Path,
                                                               raw_paths: dict) -> None:
    """Ctrl-C (SIGINT to the whole group, as a terminal sends it) while the server still
    imports: the sweep stops with exit status 3, no traceback, and no server is started
    again."""
    sweep = start_sweep(tmp_path / "sweep", tmp_path / "sweep.log")
    wait_for(lambda: server(sweep) is not None, "the server started", sweep)
    os.killpg(sweep.pid, signal.SIGINT)
    assert sweep.wait(timeout=600) == 3
    assert "Traceback" not in (tmp_path / "sweep.log").read_text()
    assert none_left(sweep.pid) == []


def test_n_jobs_must_be_a_whole_number_with_every_launcher(tmp_path: Path) -> None:
    for launcher in ("hydra/launcher=auto", "hydra/launcher=fused"):
        outcome = run_in_process("train.py", "-m", launcher, "optim=sgd,adam",
                                 "hydra.launcher.n_jobs=true", f"hydra.sweep.dir={tmp_path}")
        assert outcome.status == 2, outcome.output[-3000:]
        assert ("error: hydra.launcher.n_jobs=True is not allowed: hydra.launcher.n_jobs must "
                "be null or a whole number of at least 1.") in outcome.output


def test_a_server_that_cannot_import_ends_the_sweep_in_one_sentence(tmp_path: Path) -> None:
    """The workers' server dies on one of its imports (``MPLBACKEND`` naming a backend that
    matplotlib refuses, which Lightning's import reaches): started once more, it dies again,
    and the sweep is refused in one sentence (exit status 2) after the server's own error,
    with no job run and nothing left behind."""
    command, env = script_command("train.py")
    sweep = subprocess.Popen(
        [*command, *TWO_ALONE, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        env={**env, "MPLBACKEND": "nonsense"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 2, output[-3000:]
    assert "'nonsense' is not a valid value for backend" in output
    assert output.rstrip().splitlines()[-1] == (
        "error: the sweep's workers cannot start: the server they are forked from, which "
        "imports torch, Lightning and the project for them, ended twice before forking one; "
        "its error, if it printed one, is above (e.g. MPLBACKEND naming a backend matplotlib "
        "refuses, which the jobs' own imports meet too).")
    assert "EOFError" not in output
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))
    assert none_left(sweep.pid) == []
