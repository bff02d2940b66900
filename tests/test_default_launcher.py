"""The multirun's default launcher (``hydra/launcher=auto``): the jobs a fused group computes
exactly train fused, the rest alone as Hydra's own launcher runs them; a resumed job goes back
to the launcher that wrote its ``last.ckpt``. Real data, real steps, the scripts run in this
process (``tests.in_process``) as on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dlfoundations import folder
from dlfoundations.errors import UserError
from dlfoundations.fused import rules
from dlfoundations.fused.grouping import plan_line, split_groups
from dlfoundations.fused.launch import Task, expected_steps, longest_first
from dlfoundations.fused.plan import reason, resumed_from, why_not_fused
from dlfoundations.reporting.jobs import READ_BEFORE
from tests.conftest import ROOT, compose_train, start_script
from tests.fused_runs import largest_difference, log_lines, metrics_of, weights
from tests.in_process import SMALL, run_in_process


def holds_fused_state(run_dir: Path) -> bool:
    return "fused" in torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def test_the_plan_line_names_why_jobs_run_alone() -> None:
    assert plan_line([[0, 2]], 2, ["trainer.limit_val_batches=0"]) == \
        "4 jobs: 2 in 1 fused group of 2, 2 alone (not fused: trainer.limit_val_batches=0)"
    assert plan_line([], 1, ["no other job of its shape"]) == \
        "1 job alone (not fused: no other job of its shape)"
    assert plan_line([[0, 1]], 5, list("abcde")) == \
        "7 jobs: 2 in 1 fused group of 2, 5 alone (not fused: a; b; c; and 2 more)"
    assert split_groups([], 2) == []


def test_a_reason_names_the_key_not_the_advice() -> None:
    assert reason(UserError("trainer.limit_val_batches=0 is not allowed with hydra/launcher="
                            "fused: trainer.limit_val_batches must be ...; leave ...")) == \
        "trainer.limit_val_batches=0"
    assert reason(UserError("callbacks.model_checkpoint is required with hydra/launcher=fused "
                            "(its checkpoints ...); leave hydra/launcher out ...")) == \
        "no callbacks.model_checkpoint"


OPTIMIZERS = sorted(str(path.relative_to(ROOT / "conf" / "optim").with_suffix(""))
                    for path in (ROOT / "conf" / "optim").rglob("*.yaml"))


@pytest.mark.parametrize("optim", OPTIMIZERS)
@pytest.mark.parametrize("options", [(), ("optim.weight_decay=0.01", "optim.lr=0.2"),
                                     ("+optim.maximize=true",), ("+optim.amsgrad=true",),
                                     ("+optim.nesterov=true",), ("+optim.centered=true",)])
def test_the_plan_reads_each_optimizer_as_the_optimizer_built_holds_it(
        optim: str, options: tuple[str, ...]) -> None:
    """The plan reads an optimizer's options from its config and the class's defaults
    (``rules.options``, without building one): the same hyperparameters, or the same
    refusal, as the optimizer the job's run builds; an option the class does not take, or a
    value it refuses (nesterov without momentum), is refused by the plan too (the job runs
    alone, where its run says why)."""
    from hydra.utils import instantiate

    cfg = compose_train(f"optim={optim}", *options)
    factory = instantiate(cfg.optim)
    try:
        built = factory([{"params": [torch.zeros(1, requires_grad=True)]}])
    except (TypeError, ValueError):
        with pytest.raises(UserError, match="is not allowed with hydra/launcher=fused"):
            rules.hyperparameters_of(factory.func, rules.options(factory))
        assert why_not_fused(cfg, None) is not None
        return
    try:
        expected = rules.hyperparameters(built)
    except UserError as err:
        with pytest.raises(UserError) as refused_too:
            rules.hyperparameters_of(factory.func, rules.options(factory))
        assert str(refused_too.value) == str(err)
        assert why_not_fused(cfg, None) == reason(err)
        return
    assert rules.hyperparameters_of(factory.func, rules.options(factory)) == expected
    assert why_not_fused(cfg, None) is None


def test_the_longest_tasks_go_to_the_workers_first() -> None:
    """By epochs x batches an epoch, then members; equals keep their order, and a job whose
    config gives no count (its own run refuses it) goes last."""
    def task(batch_size: object, members: int = 1, epochs: int = 10, **data: object) -> Task:
        config = OmegaConf.create({"data": {"batch_size": batch_size, **data},
                                   "trainer": {"max_epochs": epochs,
                                               "limit_train_batches": None}})
        return Task([(position, config) for position in range(members)], members > 1)

    batch_1024, batch_256, batch_64 = task(1024, 6), task(256, 6), task(64, 6)
    alone_64, abc, zero = task(64), task("abc"), task(0)
    few_images = task(64, 6, train_subset=640)  # 10 batches an epoch
    assert expected_steps(batch_64) == 10 * 860 and expected_steps(few_images) == 100
    assert longest_first([batch_1024, abc, batch_256, few_images, zero, alone_64, batch_64]
                         ) == [batch_64, alone_64, batch_256, batch_1024, few_images, abc, zero]


def test_a_resumed_job_goes_where_its_last_checkpoint_says(tmp_path: Path) -> None:
    resumed = OmegaConf.create({"resume": True})
    assert resumed_from(OmegaConf.create({"resume": False}), tmp_path) is None
    assert resumed_from(resumed, tmp_path) is None  # nothing to resume
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"\x80not a checkpoint" * 100)
    assert resumed_from(resumed, tmp_path) == "unreadable"
    torch.save({"state_dict": {}, "fused": {}}, tmp_path / "checkpoints" / "last.ckpt")
    assert resumed_from(resumed, tmp_path) == "fused"
    torch.save({"state_dict": {}}, tmp_path / "checkpoints" / "last.ckpt")
    assert resumed_from(resumed, tmp_path) == "alone"


def test_jobs_alone_on_workers_without_a_group(tmp_path: Path, raw_paths: dict) -> None:
    """``hydra.launcher.n_jobs=null`` with one job and no group: it runs alone."""
    outcome = run_in_process("train.py", "-m", "model=softmax", *SMALL, "seed=3",
                             "hydra.launcher.n_jobs=null", f"hydra.sweep.dir={tmp_path}")
    assert outcome.status == 0, outcome.output[-3000:]
    assert "Sweep of 1 job into" in outcome.output
    assert "1 job alone (not fused: no other job of its shape)" in outcome.output
    assert [metrics_of(job)["status"] for job in tmp_path.glob("*/")] == ["completed"]


def test_the_launcher_reads_ahead_only_its_jobs_own_folders(tmp_path: Path,
                                                            raw_paths: dict) -> None:
    """While the longest job trains on one worker, the launcher reads the others' folders
    ahead for the summary, jobs alone included (whose Hydra working folder is the launcher's
    own): it keeps the four job folders and never its own folder."""
    outcome = run_in_process("train.py", "-m", "model=softmax", "trainer.max_epochs=12,1",
                             "trainer.limit_train_batches=400,2",
                             "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                             "hydra.sweep.subdir=${hydra.job.num}",
                             f"hydra.sweep.dir={tmp_path}")
    assert outcome.status == 0, outcome.output[-3000:]
    assert "4 jobs alone" in outcome.output
    assert {tmp_path / str(job) for job in range(4)} <= set(READ_BEFORE)
    assert Path.cwd() not in READ_BEFORE


@pytest.mark.parametrize("launcher", ["fused", "auto"])
def test_a_member_refused_for_bad_input_is_recorded_as_its_run_alone(launcher: str,
                                                                     tmp_path: Path,
                                                                     raw_paths: dict) -> None:
    """A member refused before it trained (``optim.lr=-1``: the plan lets it through, the
    run's own checks refuse it) records ``"refused": true`` as its run alone does, the mark
    by which the corrected command takes its folder over; its group trains on."""
    records = {}
    for name in (launcher, "basic"):
        outcome = run_in_process("train.py", "-m", f"hydra/launcher={name}", "model=softmax",
                                 *SMALL, "optim=sgd", "optim.lr=0.1,-1",
                                 "hydra.sweep.subdir=${hydra.job.num}",
                                 f"hydra.sweep.dir={tmp_path / name}")
        assert outcome.status == 0, outcome.output[-3000:]
        assert metrics_of(tmp_path / name / "0")["status"] == "completed"
        records[name] = metrics_of(tmp_path / name / "1")
        assert folder.holds_only_refused_run(tmp_path / name / "1"), name
    assert records[launcher] == records["basic"]
    assert records["basic"]["refused"] is True


#: two jobs the fused launcher computes (limit_val_batches=2) and two it does not (0), in
#: float64, where a member's weights are its solo run's within 1e-9
MIXED = ("model=softmax", "optim=sgd,adam", "trainer.precision=64-true", "threads=1",
         "trainer.max_epochs=2", "trainer.limit_train_batches=5",
         "trainer.limit_test_batches=2", "trainer.limit_val_batches=0,2",
         "hydra.sweep.subdir=${hydra.job.num}")


@pytest.mark.parametrize("n_jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_the_default_fuses_what_it_computes_exactly_and_runs_the_rest_alone(
        n_jobs: int, tmp_path: Path, raw_paths: dict) -> None:
    """The plan line first; the fused jobs' weights within 1e-9 of Hydra's own launcher's, the
    jobs alone its to the last bit, every job's metrics and log lines its own (job 0 runs
    alone before the group, in the same process)."""
    auto = run_in_process("train.py", "-m", *MIXED, f"hydra.launcher.n_jobs={n_jobs}",
                          f"hydra.sweep.dir={tmp_path / 'auto'}")
    assert auto.status == 0, auto.output[-3000:]
    plan = "4 jobs: 2 in 1 fused group of 2, 2 alone (not fused: trainer.limit_val_batches=0)"
    assert plan + (", 2 at a time" if n_jobs == 2 else "\n") in auto.output
    basic = run_in_process("train.py", "-m", "hydra/launcher=basic", *MIXED,
                           f"hydra.sweep.dir={tmp_path / 'basic'}")
    assert basic.status == 0, basic.output[-3000:]
    for job, fused in (("0", False), ("1", True), ("2", False), ("3", True)):
        ours, theirs = tmp_path / "auto" / job, tmp_path / "basic" / job
        assert holds_fused_state(ours) is fused and not holds_fused_state(theirs)
        difference = largest_difference(weights(ours), weights(theirs))
        assert difference < 1e-9 if fused else difference == 0, (job, difference)
        assert metrics_of(ours)["status"] == "completed"
        for key in ("test/acc", "global_step", "epochs", "lr"):
            assert metrics_of(ours)[key] == metrics_of(theirs)[key], (job, key)
        assert log_lines(ours) == log_lines(theirs), job


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
    outcome = run_in_process("train.py", "-m", *sweep, "resume=true",  # in this process, which
                             "hydra.launcher.n_jobs=1")  # holds the folders' claims
    assert outcome.status == 0, outcome.output[-3000:]
    assert "not allowed" not in outcome.output
    assert ("2 jobs in 1 fused group of 2" if launcher == "fused" else
            "2 jobs alone (not fused: its last.ckpt was written by a run alone)") in outcome.output
    for job in ("0", "1"):
        after = metrics_of(tmp_path / job)
        assert after["status"] == "completed"
        assert holds_fused_state(tmp_path / job) is (launcher == "fused")
        for key in ("test/acc", "val/acc", "global_step"):
            assert after[key] == before[job][key], (job, key)


def claimed_by(run_dir: Path) -> int:
    """The process that claimed the job's folder (the one its run ran in)."""
    return json.loads((run_dir / ".claim").read_text())["pid"]


@pytest.mark.slow
def test_a_ddp_job_runs_in_the_launchers_own_process_after_the_workers(tmp_path: Path,
                                                                        raw_paths: dict) -> None:
    """With workers (``n_jobs: null``, the default), a job of two processes cannot run on a
    worker: it runs in the launcher's own process (where, with ``ddp``, its own run refuses
    it), the one-process jobs on the two workers."""
    sweep = start_script("train.py", "-m", "model=softmax", *SMALL, "trainer=ddp_cpu",
                         "trainer.devices=1,2", "optim=sgd,adam",
                         f"hydra.sweep.dir={tmp_path / 'sweep'}",
                         "hydra.sweep.subdir=${hydra.job.num}", log=tmp_path / "sweep.log")
    assert sweep.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    assert ", 2 at a time" in (tmp_path / "sweep.log").read_text()
    jobs = [tmp_path / "sweep" / str(job) for job in range(4)]  # devices 1, 1, 2, 2
    assert [metrics_of(job)["status"] for job in jobs] == ["completed"] * 2 + ["failed"] * 2
    assert all("not allowed inside a multirun" in metrics_of(job)["reason"] for job in jobs[2:])
    assert claimed_by(jobs[2]) == claimed_by(jobs[3]) == sweep.pid
    assert len({claimed_by(jobs[0]), claimed_by(jobs[1]), sweep.pid}) == 3


def test_workers_take_the_launchers_environment_and_folder_as_they_are_at_launch(
        tmp_path: Path, raw_paths: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU workers are forked from a server that started with an earlier sweep in this
    process: two sweeps from two folders, with a relative sweep folder and a job folder named
    from an environment variable, each write where their own command says."""
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        monkeypatch.setenv("DLF_TEST_SUBDIR", name)
        outcome = run_in_process("train.py", "-m", "model=softmax", *SMALL, "optim=sgd,adam",
                                 "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep",
                                 "hydra.sweep.subdir=${oc.env:DLF_TEST_SUBDIR}${hydra.job.num}")
        assert outcome.status == 0, outcome.output[-3000:]
        assert "2 jobs in 2 fused groups of 1, 2 at a time" in outcome.output
        assert sorted(path.parent.name for path in (tmp_path / name / "sweep").glob(
            "*/metrics.json")) == [f"{name}0", f"{name}1"]
