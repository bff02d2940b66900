"""The project's Optuna sweeper as a user runs it: real studies in SQLite and PostgreSQL, real
training on Fashion-MNIST, sweep processes killed and started again."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from hydra.utils import instantiate
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from dlfoundations.errors import UserError
from dlfoundations.search.space import search_space
from dlfoundations.search.study import RETRY_OF, SURPLUS, WORKER, counted
from tests.conftest import compose_train, run_script, service, start_script, wait_for

#: a small search: random sampler (its trials do not depend on the results), tiny budgets
SMALL = ("-m", "hparams_search=mlp", "hydra/sweeper/sampler=random", "trainer.max_epochs=2",
         "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2")


def load(sweep_dir: Path, storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name="mlp",
                             storage=storage or f"sqlite:///{sweep_dir / 'study.db'}")


def folders(sweep_dir: Path) -> dict[int, dict]:
    """Each trial folder's metrics.json, by trial number."""
    return {int(path.parent.name.removeprefix("trial_")): json.loads(path.read_text())
            for path in sweep_dir.glob("trial_*/metrics.json")}


def test_the_presets_declare_their_search_spaces() -> None:
    for preset, expected in (("mlp", {"optim": CategoricalDistribution,
                                      "optim.lr": FloatDistribution,
                                      "model.hidden.0": IntDistribution}),
                             ("lenet", {"model.batch_norm": CategoricalDistribution})):
        cfg = compose_train(f"hparams_search={preset}", hydra=True)
        space, fixed = search_space(dict(cfg.hydra.sweeper.params), ["optim=sgd,adam", "seed=3"])
        assert {key: type(space[key]) for key in expected} == expected
        assert space["optim"].choices == ("sgd", "adam") and fixed == ["seed=3"]
        assert "optim" not in search_space(dict(cfg.hydra.sweeper.params), ["optim=sgd"])[0]
    assert compose_train("hparams_search=mlp", hydra=True).hydra.sweeper.params[
        "optim.lr"] == "tag(log, interval(0.0001, 0.1))"
    lr = search_space({"optim.lr": "tag(log, interval(0.0001, 0.1))"}, [])[0]["optim.lr"]
    assert lr.log and (lr.low, lr.high) == (0.0001, 0.1)
    with pytest.raises(UserError, match=r"hydra.sweeper.params.optim.lr=0.1 is not a search "
                                        r"dimension; allowed are choice"):
        search_space({"optim.lr": 0.1}, [])


@pytest.mark.parametrize(("pruner", "kind"), [
    ("median", optuna.pruners.MedianPruner),
    ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    ("hyperband", optuna.pruners.HyperbandPruner), ("none", optuna.pruners.NopPruner)])
def test_each_pruner_and_sampler_config_builds_its_optuna_class(pruner: str, kind: type) -> None:
    cfg = compose_train("hparams_search=mlp", f"hydra/sweeper/pruner={pruner}", hydra=True)
    assert isinstance(instantiate(cfg.hydra.sweeper.pruner), kind)
    for sampler, kind in (("tpe", optuna.samplers.TPESampler),
                          ("random", optuna.samplers.RandomSampler)):
        cfg = compose_train("hparams_search=lenet", f"hydra/sweeper/sampler={sampler}",
                            hydra=True)
        assert isinstance(instantiate(cfg.hydra.sweeper.sampler, seed=1), kind)


@pytest.mark.parametrize(("override", "sentence"), [
    ("hydra.sweeper.storage=nosuchdb://host/db",
     "error: hydra.sweeper.storage='nosuchdb://host/db' cannot hold the study ("),
    ("hydra.sweeper.n_trials=0",
     "error: hydra.sweeper.n_trials=0 is not allowed: hydra.sweeper.n_trials must be a whole "
     "number of at least 1."),
    ("+hydra.sweeper.params.seed=5",
     "error: hydra.sweeper.params.seed=5 is not a search dimension; allowed are choice("),
])
def test_a_bad_search_setting_is_refused_in_one_sentence(tmp_path: Path, override: str,
                                                        sentence: str) -> None:
    result = run_script("train.py", *SMALL, override, f"paths.output_root={tmp_path}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert sentence in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("searches/*/trial_*"))


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


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of ``scripts/postgres_server.sh``: its storage URL."""
    with service("postgres_server.sh", "a PostgreSQL server") as url:
        yield url


def test_two_sweepers_share_one_postgresql_study(tmp_path: Path, raw_paths: dict,
                                                 postgres: str) -> None:
    search = (*SMALL, "hydra.sweeper.n_trials=6", f"hydra.sweeper.storage='{postgres}'",
              f"paths.output_root={tmp_path}")
    side_by_side = ("hydra/launcher=side_by_side", "hydra.launcher.n_jobs=2",
                    "hydra.sweeper.n_jobs=2")  # the second sweeper runs 2 trials at a time
    sweepers = [start_script("train.py", *search, *extra, log=tmp_path / f"sweeper{i}.log")
                for i, extra in enumerate([(), side_by_side])]
    for index, process in enumerate(sweepers):
        assert process.wait(timeout=600) == 0, (tmp_path / f"sweeper{index}.log").read_text()[
            -3000:]
    trials = load(tmp_path / "searches" / "mlp", postgres).trials
    ran = counted(trials)
    assert len(ran) == 6 and all(t.state == TrialState.COMPLETE for t in ran)
    assert len({t.user_attrs[WORKER] for t in ran}) == 2  # both sweepers ran trials
    # each trial number ran once, in its own folder; a surplus trial (asked for when the
    # other sweeper had taken the last place) never ran
    assert sorted(folders(tmp_path / "searches" / "mlp")) == sorted(t.number for t in ran)
    assert all(t.user_attrs.get(SURPLUS) for t in trials if t not in ran)


def test_pruning_stops_trials_in_their_own_processes(tmp_path: Path, raw_paths: dict) -> None:
    """The runs report to the study through its storage from the side-by-side launcher's
    worker process; trials far behind the median stop after their first epoch."""
    result = run_script(
        "train.py", *SMALL, "trainer.max_epochs=3", "trainer.limit_train_batches=10",
        "hydra.sweeper.n_trials=5", "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0", "optim=adam", "optim.lr=0.00001,0.003",
        "hydra/launcher=side_by_side", "hydra.launcher.n_jobs=1",
        f"paths.output_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "searches" / "mlp"
    trials = load(sweep_dir).trials
    runs = folders(sweep_dir)
    pruned = [t.number for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(runs[n]["status"] == "pruned" and runs[n]["epochs"] < 3
                          and "pruned by the study after epoch" in runs[n]["reason"]
                          for n in pruned)
    assert all((sweep_dir / f"trial_{n}" / "checkpoints" / "last.ckpt").is_file()
               for n in pruned)
    assert all(trials[n].params["optim.lr"] == 0.00001 for n in pruned)
    summary = (sweep_dir / "summary.md").read_text()
    assert summary == result.stdout[result.stdout.index("Study mlp:"):]
    assert "pruned" in summary.splitlines()[0] and "Pruned trials:" in summary
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"Best: trial {best.number}, val/acc {best.value:.4g}." in summary
    assert "python scripts/train.py -m hparams_search=mlp" not in summary
    assert "optim.lr=0.003" in summary.split("Best:")[1].splitlines()[2]
    for figure in ("optimization_history.png", "param_importances.png"):
        assert (sweep_dir / figure).stat().st_size > 10_000
