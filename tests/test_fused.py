"""The fused launcher (``hydra/launcher=fused``): jobs of one shape trained as one stacked
model, each member a whole run. Real data, real training steps, the scripts run in this
process (``tests.in_process``) as on the command line."""

from __future__ import annotations

import importlib
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlfoundations.fused.grouping import fused_groups, plan_line, split_groups
from dlfoundations.fused.split import StackedSplit
from tests.conftest import ROOT, snapshot, start_script, wait_for
from tests.fused_runs import (
    fused_sweep,
    jobs,
    largest_difference,
    log_lines,
    metrics_of,
    solo_run,
    weights,
)
from tests.in_process import SMALL, run_in_process


def files_of(run_dir: Path) -> set[str]:
    """The files of a run folder by relative name (an events file's host and time aside)."""
    return {str(path.relative_to(run_dir)).split(".out.tfevents")[0]
            for path in run_dir.rglob("*") if path.is_file()}


def scalar_steps(run_dir: Path) -> dict[str, list[int]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: [event.step for event in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_a_fused_sweep_leaves_what_hydras_own_launcher_leaves(tmp_path: Path,
                                                              raw_paths: dict) -> None:
    """The same sweep fused and one job after another (``hydra/launcher=basic``): the same job
    folders and files, the same
    metrics.json keys and statuses, the same TensorBoard tags at the same steps (with the
    HParams session and test images), the same summary table's rows; scripts/eval.py reads a
    member's best checkpoint."""
    sweep = ("model=mlp", *SMALL, "optim=sgd,adam", "trainer.log_every_n_steps=2")
    fused = fused_sweep(tmp_path / "fused", *sweep)
    outcome = run_in_process("train.py", "-m", "hydra/launcher=basic", *sweep,
                             f"hydra.sweep.dir={tmp_path / 'basic'}",
                             "hydra.sweep.subdir=${hydra.job.num}")
    assert outcome.status == 0, outcome.output[-3000:]
    basic = jobs(tmp_path / "basic")
    assert fused.keys() == basic.keys() == {"0", "1"}
    for name in basic:
        assert files_of(fused[name]) == files_of(basic[name])
        member, single = metrics_of(fused[name]), metrics_of(basic[name])
        assert member.keys() == single.keys() and member["status"] == "completed"
        assert scalar_steps(fused[name]) == scalar_steps(basic[name])
        assert log_lines(fused[name]) == log_lines(basic[name])
        events = EventAccumulator(str(fused[name])).Reload()
        assert events.Tags()["images"] == ["~final/confusion_matrix", "~final/misclassified"]
        assert "hparams" in str(events.PluginTagToContent("hparams"))
    rows = [line.split("|")[1] for line in (tmp_path / "fused" / "summary.md").read_text()
            .splitlines() if line.startswith("| optim=")]
    assert sorted(rows) == sorted(line.split("|")[1] for line in
                                  (tmp_path / "basic" / "summary.md").read_text().splitlines()
                                  if line.startswith("| optim="))
    best = metrics_of(fused["1"])["best_checkpoint"]
    evaluated = run_in_process("eval.py", f"ckpt_path={best}",
                               f"hydra.run.dir={tmp_path / 'eval'}", "trainer.limit_test_batches=2")
    assert evaluated.status == 0, evaluated.output[-3000:]
    assert metrics_of(tmp_path / "eval")["test/acc"] == metrics_of(fused["1"])["test/acc"]


def test_a_diverging_member_stops_alone(tmp_path: Path, raw_paths: dict) -> None:
    """A member whose loss becomes infinite ends ``diverged`` with the step, the sentence and
    the counts of its run alone; the other member of its group completes with the numbers of
    its run alone."""
    short = ("model=mlp", *SMALL, "optim=sgd", "trainer.precision=64-true", "threads=1")
    members = fused_sweep(tmp_path / "fused", *short, "optim.lr=0.1,1e20")
    diverged, completed = metrics_of(members["1"]), metrics_of(members["0"])
    assert diverged["status"] == "diverged", diverged
    assert "the training loss became nan at step" in diverged["reason"]
    outcome = run_in_process("train.py", *short, "optim.lr=1e20",
                             f"hydra.run.dir={tmp_path / 'solo_diverged'}")
    assert outcome.status == 3, outcome.output[-3000:]
    alone = metrics_of(tmp_path / "solo_diverged")
    for key in ("status", "reason", "global_step", "epochs"):
        assert diverged[key] == alone[key], key
    assert completed["status"] == "completed"
    solo = solo_run(tmp_path / "solo", *short, "optim.lr=0.1")
    assert largest_difference(weights(members["0"]), weights(solo)) < 1e-9


def test_a_member_whose_numbers_overflow_ends_as_its_run_alone(tmp_path: Path,
                                                              raw_paths: dict) -> None:
    """Float64 softmax regressions at a rate of 1e300: with Adam an update overflows and the
    training loss becomes NaN at step 3; with SGD training goes on while the validation loss
    is infinite, and the test ends the run ``diverged``. Each member ends with the status,
    step and sentence of its run alone (the sentence's last finite loss may differ in its
    16th digit). Before, Adam's member kept finite weights (its update's operations in
    another order than torch's), and the SGD run alone failed with a traceback reloading its
    own best checkpoint, whose history holds the infinite loss."""
    short = ("model=softmax", "trainer.precision=64-true", "data.batch_size=64",
             "data.train_subset=1000", "trainer.max_epochs=2", "threads=1", "optim.lr=1e300")
    members = fused_sweep(tmp_path / "fused", *short, "optim=sgd,adam")
    for name, optim in (("0", "sgd"), ("1", "adam")):
        outcome = run_in_process("train.py", *short, f"optim={optim}",
                                 f"hydra.run.dir={tmp_path / optim}")
        assert outcome.status == 3, outcome.output[-3000:]
        alone, member = metrics_of(tmp_path / optim), metrics_of(members[name])
        assert alone["status"] == member["status"] == "diverged", (alone, member)
        assert (member["global_step"], member["epochs"]) == (alone["global_step"],
                                                             alone["epochs"])
        assert member["reason"].split(";")[0] == alone["reason"].split(";")[0]
    assert "became nan at step 3" in metrics_of(members["1"])["reason"]


def test_the_plan_groups_jobs_by_the_shape_of_their_work(tmp_path: Path,
                                                         raw_paths: dict) -> None:
    """Models apart, optimizers and seeds together: the plan line says so first."""
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", "model=softmax,mlp",
                             "optim=sgd,adam", "trainer.max_epochs=1",
                             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                             "trainer.limit_test_batches=1", f"hydra.sweep.dir={tmp_path}")
    assert outcome.status == 0, outcome.output[-3000:]
    assert "4 jobs in 2 fused groups of 2" in outcome.output
    assert len(jobs(tmp_path)) == 4


@pytest.mark.slow
def test_groups_run_side_by_side_on_workers(tmp_path: Path, raw_paths: dict) -> None:
    """``hydra.launcher.n_jobs=2``: one group of four, split in two on the CPU so that each
    worker has one, trains in the side-by-side launcher's workers at once, each job a whole
    run with its progress line."""
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", "hydra.launcher.n_jobs=2",
                             "model=softmax", "optim=sgd,adam,momentum,adagrad", *SMALL,
                             f"hydra.sweep.dir={tmp_path}")
    assert outcome.status == 0, outcome.output[-3000:]
    assert "4 jobs in 2 fused groups of 2, 2 at a time" in outcome.output
    assert outcome.output.count(": completed, val/acc") == 4
    assert [metrics_of(job)["status"] for job in jobs(tmp_path).values()] == ["completed"] * 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_epoch_gathered_in_order_gives_the_batches_of_its_order(dtype: torch.dtype) -> None:
    """``ordered`` then ``rows``, as a group with one batch order reads its epoch: the same
    pixels, normalisation and labels as each batch gathered from the order, partial last
    batch and a limited epoch included."""
    split = StackedSplit(torch.randint(256, (1, 1000, 784), dtype=torch.uint8),
                         torch.randint(10, (1, 1000)), torch.tensor([0.0123]).view(1, 1, 1),
                         torch.tensor([0.4567]).view(1, 1, 1), (28, 28))
    order = torch.randperm(1000).unsqueeze(0)
    for size, steps in ((64, 16), (96, 6)):  # 1000 = 15 x 64 + 40; 6 of 11 batches
        epoch = split.ordered(order[0, :steps * size])
        for index in range(steps):
            start, stop = index * size, (index + 1) * size
            for got, expected in zip(epoch.rows(start, stop, dtype),
                                     split.batch(order[:, start:stop], dtype), strict=True):
                assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_a_group_shares_the_splits_its_process_set_up_last_where_they_are_the_same(
        raw_paths: dict) -> None:
    """A worker's next group whose members' splits are the same (equal ``split_settings``)
    shares the data set up for its previous group instead of indexing and normalising it
    again; other splits (another seed) are set up afresh, equal to a data module's own."""
    from dlfoundations.data.fashion_mnist import FashionMNISTDataModule
    from dlfoundations.fused.member import set_up_data

    def data(**values: int) -> FashionMNISTDataModule:
        return FashionMNISTDataModule(data_dir=str(ROOT / "data"), **values)

    first, later, other = data(batch_size=256), data(batch_size=1024), data(seed=1)
    for module in (first, later, other):
        set_up_data(module, [])
    assert later.splits["train"] is first.splits["train"] and later.mean == first.mean
    assert other.splits["train"] is not first.splits["train"]
    alone = data(seed=1)
    alone.setup("fit")
    assert torch.equal(other.val_indices, alone.val_indices) and other.std == alone.std
    assert torch.equal(other.splits["train"].images, alone.splits["train"].images)


def test_groups_follow_the_keys_that_fix_the_shape() -> None:
    def cfg(**values: object) -> object:
        base = {"model": {"net": {"name": "mlp", "hidden": [256], "dropout": 0.2}},
                "data": {"batch_size": 256, "seed": 0}, "optim": {"lr": 0.1}, "seed": 0}
        for key, value in values.items():
            OmegaConf.update(base := OmegaConf.create(base), key.replace("__", "."), value)
        return OmegaConf.create(base)
    configs = [cfg(), cfg(seed=1, data__seed=1), cfg(optim__lr=0.5),
               cfg(model__net__dropout=0.5), cfg(data__batch_size=64),
               cfg(model__net__hidden=[128])]
    groups = fused_groups(configs)
    assert groups == [[0, 1, 2, 3], [4], [5]]
    assert plan_line(groups) == "6 jobs in 3 fused groups of 4, 1 and 1"
    assert plan_line([[0, 1], [2, 3]]) == "4 jobs in 2 fused groups of 2"


def test_groups_are_split_until_every_worker_has_one() -> None:
    assert split_groups([[0, 1, 2, 3, 4]], 2) == [[0, 1, 2], [3, 4]]
    assert split_groups([[0, 1, 2, 3], [4]], 3) == [[0, 1], [2, 3], [4]]
    assert split_groups([[0, 1], [2, 3]], 2) == [[0, 1], [2, 3]]
    assert split_groups([[0], [1]], 4) == [[0], [1]]


@pytest.mark.parametrize(("override", "sentence"), [
    ("model=linreg", "model._target_="),
    ("trainer.devices=2", "trainer.devices=2 is not allowed"),
    ("trainer.precision=bf16-mixed", "trainer.precision="),
    ("trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches=2"),
    ("model=lenet_modern", "model.net.batch_norm=True"),
    ("callbacks=none", "callbacks.model_checkpoint is required"),
    ("hparams_search=mlp", "hparams_search is not allowed"),
])
def test_what_a_group_cannot_compute_is_refused_before_anything_trains(
        override: str, sentence: str, tmp_path: Path, raw_paths: dict) -> None:
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", override,
                             "optim=sgd,adam", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert outcome.status == 2, outcome.output[-3000:]
    assert sentence in outcome.output and "hydra/launcher=fused" in outcome.output
    assert "Traceback" not in outcome.output
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))


def test_a_member_with_a_bad_value_fails_alone(tmp_path: Path, raw_paths: dict) -> None:
    """``optim.lr=-1`` fails its own job in one sentence; the other job trains."""
    members = fused_sweep(tmp_path / "sweep", "model=softmax", *SMALL, "optim=sgd",
                          "optim.lr=0.1,-1")
    failed, completed = metrics_of(members["1"]), metrics_of(members["0"])
    assert failed["status"] == "failed" and "optim.lr=-1" in failed["reason"], failed
    assert completed["status"] == "completed"


#: a sweep long enough to be interrupted in its steps
LONG = ("model=mlp", "optim=sgd,adam", "threads=1", "trainer.max_epochs=8",
        "trainer.limit_train_batches=60", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "hydra.sweep.subdir=${hydra.job.num}")
COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "epochs", "global_step", "lr",
            "best_epoch")


def resumed_and_never_interrupted(sweep_dir: Path, tmp_path: Path, sweep: tuple[str, ...]
                                  ) -> dict[str, tuple[dict, dict]]:
    """The fused sweep in ``sweep_dir`` resumed, and run afresh never interrupted: each job's
    metrics, resumed and fresh."""
    resumed = run_in_process("train.py", "-m", "hydra/launcher=fused", *sweep, "resume=true",
                             f"hydra.sweep.dir={sweep_dir}")
    assert resumed.status == 0, resumed.output[-3000:]
    never = run_in_process("train.py", "-m", "hydra/launcher=fused", *sweep,
                           f"hydra.sweep.dir={tmp_path / 'never'}")
    assert never.status == 0, never.output[-3000:]
    return {job: (metrics_of(sweep_dir / job), metrics_of(tmp_path / "never" / job))
            for job in ("0", "1")}


@pytest.mark.slow
def test_ctrl_c_then_resume_ends_as_an_uninterrupted_fused_sweep(tmp_path: Path,
                                                                 raw_paths: dict) -> None:
    """SIGINT in the steps: every member saves last.ckpt and ends ``interrupted`` (exit
    status 3, the summary written); the same command with resume=true continues the group to
    the numbers of a fused sweep never interrupted."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_script("train.py", "-m", "hydra/launcher=fused", *LONG,
                         f"hydra.sweep.dir={sweep_dir}", log=tmp_path / "sweep.log")
    wait_for(lambda: all((sweep_dir / job / "checkpoints" / "last.ckpt").exists()
                         for job in ("0", "1")), "the first epoch", sweep)
    sweep.send_signal(signal.SIGINT)
    assert sweep.wait(timeout=120) == 3, (tmp_path / "sweep.log").read_text()[-3000:]
    for job in ("0", "1"):
        metrics = metrics_of(sweep_dir / job)
        assert metrics["status"] == "interrupted" and "SIGINT" in metrics["reason"], metrics
    assert (sweep_dir / "summary.md").exists()

    for job, (metrics, expected) in resumed_and_never_interrupted(sweep_dir, tmp_path,
                                                                  LONG).items():
        assert metrics["status"] == "completed"
        assert {k: metrics[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
        assert scalar_steps(sweep_dir / job)["val/acc"] == \
            scalar_steps(tmp_path / "never" / job)["val/acc"]


@pytest.mark.slow
def test_members_saved_at_different_points_resume_each_from_its_own(tmp_path: Path,
                                                                    raw_paths: dict) -> None:
    """Interrupted with ``hydra.launcher.n_jobs=2`` (the group split across two workers, each
    stopping at its own step), resumed with ``n_jobs=1`` (one group): each member trains on
    from where it stood and ends with the numbers of a fused sweep never interrupted (float64:
    the workers' one thread and the groups' sizes change float32 sums)."""
    long = (*LONG, "trainer.precision=64-true")
    sweep_dir = tmp_path / "sweep"
    sweep = start_script("train.py", "-m", "hydra/launcher=fused", "hydra.launcher.n_jobs=2",
                         *long, f"hydra.sweep.dir={sweep_dir}", log=tmp_path / "sweep.log")
    wait_for(lambda: all((sweep_dir / job / "checkpoints" / "last.ckpt").exists()
                         for job in ("0", "1")), "the first epoch", sweep)
    sweep.send_signal(signal.SIGINT)
    assert sweep.wait(timeout=120) == 3, (tmp_path / "sweep.log").read_text()[-3000:]
    assert "2 jobs in 2 fused groups of 1" in (tmp_path / "sweep.log").read_text()
    for job, (metrics, expected) in resumed_and_never_interrupted(sweep_dir, tmp_path,
                                                                  long).items():
        for key in COMPARED:
            assert metrics[key] == pytest.approx(expected[key], rel=0, abs=1e-9), (job, key)


def damage(fused: dict, piece: str) -> str:
    """Replace one piece of a member's fused state; the word its refusal names."""
    if piece == "generator":
        fused["generator"] = "not a generator state"
    elif piece == "generator dtype":
        fused["generator"] = fused["generator"].to(torch.int64)
    elif piece == "rate and schedule":  # consistent with each other, not with the schedule
        fused["lr"], fused["scheduler"]["_last_lr"] = 5.0, [5.0]
        return "scheduler"
    elif piece == "history":
        fused["history"]["epochs"][0]["val/acc"] = 7.0
    elif piece == "optimizer state":
        fused["optimizer"]["state"] = [{} for _ in fused["optimizer"]["state"]]
    elif piece == "optimizer without state":
        del fused["optimizer"]["state"]
    elif piece == "seen":
        fused["seen"] += 1
    elif piece == "batches_done":
        fused["batches_done"] = 10**6
    elif piece == "optimizer tensor shape":
        fused["optimizer"]["state"][0] = {key: value.flatten()[:3] for key, value in
                                          fused["optimizer"]["state"][0].items()}
    return piece.split()[0]


@pytest.mark.parametrize("piece", ["generator", "generator dtype", "rate and schedule",
                                   "history", "optimizer state", "optimizer without state",
                                   "seen", "batches_done", "optimizer tensor shape"])
def test_a_resume_with_a_damaged_state_is_refused_and_touches_nothing(
        piece: str, tmp_path: Path, raw_paths: dict) -> None:
    """One piece of a member's fused state damaged (of another type, dtype, shape, range, or
    disagreeing with the rest): resume=true refuses that member in one sentence naming its
    file and the piece, and leaves its folder as it was; the other member is not refused."""
    sweep = ("model=softmax", *SMALL, "optim=sgd,adam", "hydra.sweep.subdir=${hydra.job.num}",
             f"hydra.sweep.dir={tmp_path}")
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", *sweep)
    assert outcome.status == 0, outcome.output[-3000:]
    last = tmp_path / "1" / "checkpoints" / "last.ckpt"  # adam: it keeps optimizer state
    checkpoint = torch.load(last, weights_only=False)
    named = damage(checkpoint["fused"], piece)
    torch.save(checkpoint, last)
    for job in ("0", "1"):
        (tmp_path / job / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    before = snapshot(tmp_path / "1")
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", *sweep, "resume=true")
    refusal = [line for line in outcome.output.splitlines() if "cannot be resumed" in line]
    assert len(refusal) == 1 and str(last) in refusal[0] and named in refusal[0], \
        outcome.output[-3000:]
    assert "Traceback" not in outcome.output
    assert {k: v for k, v in snapshot(tmp_path / "1").items() if k != ".claim"} == \
        {k: v for k, v in before.items() if k != ".claim"}
    assert metrics_of(tmp_path / "0")["status"] == "completed"


def test_an_optimizer_option_no_rule_computes_fails_its_member(tmp_path: Path,
                                                               raw_paths: dict) -> None:
    """``optim.decoupled_weight_decay=true`` (torch's Adam option): each member refused in
    one sentence naming it, not trained as plain Adam."""
    members = fused_sweep(tmp_path, "model=softmax", *SMALL, "optim=adam",
                          "++optim.decoupled_weight_decay=true", "optim.lr=0.001,0.002")
    for job in members.values():
        metrics = metrics_of(job)
        assert metrics["status"] == "failed" and "optim.decoupled_weight_decay" in \
            metrics["reason"], metrics


@pytest.mark.parametrize(("subdir", "sentence"), [
    ("x" * 300, "more than the file system's"), ("same", "one folder")])
def test_job_folders_that_cannot_be_made_are_refused_before_anything_trains(
        subdir: str, sentence: str, tmp_path: Path, raw_paths: dict) -> None:
    """A job folder name too long for the file system, or two jobs given one folder."""
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", "optim=sgd,adam",
                             f"hydra.sweep.subdir={subdir}", *SMALL,
                             f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert outcome.status == 2, outcome.output[-3000:]
    assert sentence in outcome.output and "Traceback" not in outcome.output
    assert not (tmp_path / "sweep").exists() or not list((tmp_path / "sweep").iterdir())


@pytest.mark.parametrize(("module", "function", "call", "completed"), [
    ("dlfoundations.fused.group", "test_together", 1, 0),   # in the members' test
    ("dlfoundations.fused.member", "finish_run", 2, 1)])    # once the first is written
def test_ctrl_c_during_the_final_tests_stops_as_a_single_run_does(
        module: str, function: str, call: int, completed: int, tmp_path: Path, raw_paths: dict,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT during the members' test, or as the second member's results are written (the
    process signals itself there): the members not yet written end ``interrupted`` at once,
    exit status 3, as a single run's test does."""
    target = importlib.import_module(module)
    real, calls = getattr(target, function), []

    def signal_then_call(*args: object, **kwargs: object) -> object:
        calls.append(args)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, function, signal_then_call)
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", "model=softmax",
                             "optim=sgd,adam,adagrad", *SMALL,
                             f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${hydra.job.num}")
    assert outcome.status == 3, outcome.output[-3000:]
    statuses = [metrics_of(tmp_path / job)["status"] for job in ("0", "1", "2")]
    assert statuses.count("completed") == completed, statuses
    assert statuses.count("interrupted") == 3 - completed, statuses
    assert "Traceback" not in outcome.output


def test_a_bug_inside_a_fused_sweep_is_exit_1_with_its_traceback(
        tmp_path: Path, raw_paths: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault that is not bad input (injected into the validation) is a bug: each member
    ends ``failed`` naming it, and the command ends with its traceback (status 1), never as
    a command line that does not compose."""
    from dlfoundations.fused.group import FusedGroup

    def injected(self: FusedGroup) -> None:
        raise ZeroDivisionError("an injected bug")

    monkeypatch.setattr(FusedGroup, "validate_and_save", injected)
    outcome = run_in_process("train.py", "-m", "hydra/launcher=fused", "model=softmax",
                             "optim=sgd,adam", *SMALL, f"hydra.sweep.dir={tmp_path}",
                             "hydra.sweep.subdir=${hydra.job.num}")
    assert outcome.status == 1, outcome.output[-3000:]
    assert "Traceback" in outcome.output and "does not compose" not in outcome.output
    for job in ("0", "1"):
        metrics = metrics_of(tmp_path / job)
        assert metrics["status"] == "failed" and "an injected bug" in metrics["reason"]


def test_a_fused_sweep_resumed_by_another_launcher_is_refused_touching_nothing(
        tmp_path: Path, raw_paths: dict) -> None:
    """resume=true with Hydra's own launcher on a fused sweep's folders: each job refused in
    one sentence naming hydra/launcher=fused, every member's files as they were."""
    sweep = ("model=softmax", *SMALL, "optim=sgd,adam", "hydra.sweep.subdir=${hydra.job.num}",
             f"hydra.sweep.dir={tmp_path}")
    assert run_in_process("train.py", "-m", "hydra/launcher=fused", *sweep).status == 0
    for job in ("0", "1"):
        (tmp_path / job / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    before = {job: snapshot(tmp_path / job) for job in ("0", "1")}
    outcome = run_in_process("train.py", "-m", "hydra/launcher=basic", *sweep, "resume=true")
    assert outcome.output.count("or hydra/launcher=fused.") == 2, \
        outcome.output[-3000:]
    assert "Traceback" not in outcome.output
    for job in ("0", "1"):
        after = snapshot(tmp_path / job)
        assert {k: v for k, v in after.items() if k != ".claim"} == \
            {k: v for k, v in before[job].items() if k != ".claim"}


@pytest.mark.parametrize("launcher", ["fused", "side_by_side"])
def test_each_job_is_composed_once(launcher: str, tmp_path: Path, raw_paths: dict,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra's sweeper composes each job's config to check it; the project's launchers take
    that config rather than composing it again."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        loader_class = type(GlobalHydra.instance().config_loader())
    composed: list[tuple[str, ...]] = []
    compose = loader_class.load_sweep_config

    def counted(self: object, master_config: object, sweep_overrides: list[str]) -> object:
        composed.append(tuple(sweep_overrides))
        return compose(self, master_config, sweep_overrides)

    monkeypatch.setattr(loader_class, "load_sweep_config", counted)
    outcome = run_in_process("train.py", "-m", f"hydra/launcher={launcher}", "model=softmax",
                             *SMALL, "optim=sgd,adam", f"hydra.sweep.dir={tmp_path}")
    assert outcome.status == 0, outcome.output[-3000:]
    assert sorted(composed) == sorted(set(composed)) and len(composed) == 2, composed
    assert all(metrics_of(job)["status"] == "completed" for job in jobs(tmp_path).values())
