"""A search stopped and started again: a sweeper killed mid-trial, a Ctrl-C, a finished study
run again; real SQLite studies and real training on Fashion-MNIST."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from dlfoundations.search.study import RETRY_OF, counted
from tests.conftest import run_script, start_script, wait_for
from tests.test_search import SMALL, folders, load

pytestmark = pytest.mark.slow  # subprocesses, services or many runs


def test_a_killed_search_resumes_to_n_trials_and_a_finished_one_is_reported(
        tmp_path: Path, raw_paths: dict) -> None:
    search = (*SMALL, "hydra.sweeper.n_trials=4", f"paths.output_root={tmp_path / 'run'}")
    sweep_dir = tmp_path / "run" / "searches" / "mlp"
    process = start_script("train.py", *search, log=tmp_path / "first.log")
    wait_for(lambda: (sweep_dir / "trial_1" / "metrics.json").is_file()
             and (sweep_dir / "trial_2" / ".hydra").is_dir(), "trial 2 to start", process)
    process.send_signal(signal.SIGKILL)  # the sweeper and its run, at once
    process.wait(timeout=60)
    before = load(sweep_dir).trials
    assert [t.state for t in before[:3]] == [TrialState.COMPLETE, TrialState.COMPLETE,
                                            TrialState.RUNNING]
    finished = {n: (sweep_dir / f"trial_{n}" / "metrics.json").stat().st_mtime_ns
                for n in (0, 1)}

    resumed = run_script("train.py", *search)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Trials 2 were left running by a sweeper that is gone" in resumed.stdout
    trials = load(sweep_dir).trials
    assert [(t.number, t.state) for t in counted(trials)] == [
        (0, TrialState.COMPLETE), (1, TrialState.COMPLETE), (3, TrialState.COMPLETE),
        (4, TrialState.COMPLETE)]
    assert trials[2].state == TrialState.FAIL and trials[3].user_attrs[RETRY_OF] == 2
    assert trials[3].params == trials[2].params  # the killed trial's parameters, re-tried
    assert {n: (sweep_dir / f"trial_{n}" / "metrics.json").stat().st_mtime_ns
            for n in (0, 1)} == finished  # not trained again
    assert sorted(folders(sweep_dir)) == [0, 1, 3, 4]
    assert "Study mlp: 4 of 4 trials; 4 completed" in resumed.stdout

    again = run_script("train.py", *search)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Study mlp already holds 4 of 4 trials; nothing to run." in again.stdout
    assert len(load(sweep_dir).trials) == 5 and sorted(folders(sweep_dir)) == [0, 1, 3, 4]

    # the same seed gives the same trials: trial N is sampled with seed + N
    reference = run_script("train.py", *SMALL, "hydra.sweeper.n_trials=3",
                           f"paths.output_root={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = load(tmp_path / "reference" / "searches" / "mlp").trials
    assert [t.params for t in expected] == [t.params for t in trials[:3]]


def test_ctrl_c_stops_a_search_and_its_trial_is_re_tried(tmp_path: Path,
                                                         raw_paths: dict) -> None:
    search = (*SMALL, "hydra.sweeper.n_trials=3", "trainer.max_epochs=20",
              f"paths.output_root={tmp_path}")
    sweep_dir = tmp_path / "searches" / "mlp"
    process = start_script("train.py", *search, log=tmp_path / "first.log")
    wait_for(lambda: (sweep_dir / "trial_0" / "checkpoints" / "last.ckpt").is_file(),
             "trial 0 to train", process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 3, (tmp_path / "first.log").read_text()[-3000:]
    assert json.loads((sweep_dir / "trial_0" / "metrics.json").read_text())[
        "status"] == "interrupted"
    (stopped, queued) = load(sweep_dir).trials
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["status"] == "interrupted"
    assert queued.state == TrialState.WAITING and queued.user_attrs[RETRY_OF] == 0
    assert "Study mlp: 0 of 3 trials" in (sweep_dir / "summary.md").read_text()

    resumed = run_script("train.py", *search)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = load(sweep_dir).trials
    assert [t.number for t in counted(trials)] == [1, 2, 3]
    assert trials[1].params == stopped.params and trials[1].user_attrs[RETRY_OF] == 0
