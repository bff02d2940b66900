"""The project's Optuna sweeper as a user runs it: its space and settings, pruning on real
Fashion-MNIST, two sweepers sharing a real PostgreSQL study (stopping and resuming:
test_search_resume.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from hydra.utils import instantiate
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from dlfoundations.errors import UserError
from dlfoundations.search.space import search_space
from dlfoundations.search.study import SURPLUS, WORKER, counted
from tests.conftest import compose_train, run_script, service, start_script

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
                                      "model.net.hidden.0": IntDistribution}),
                             ("lenet", {"model.net.batch_norm": CategoricalDistribution})):
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


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of ``scripts/postgres_server.sh``: its storage URL."""
    with service("postgres_server.sh", "a PostgreSQL server") as url:
        yield url


@pytest.mark.slow
def test_sweepers_opening_a_new_postgresql_database_together_all_get_the_study(
        postgres: str) -> None:
    """PostgreSQL fails all but one of concurrent ``CREATE TABLE IF NOT EXISTS`` with a unique
    violation (seen in CI: one of two sweepers refused); each sweeper opens it again."""
    engine = sqlalchemy.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("CREATE DATABASE opened_together"))
    engine.dispose()
    url = postgres.replace("/optuna?", "/opened_together?")
    code = ("import sys; from dlfoundations.search.study import open_storage; "
            "open_storage(sys.argv[1])")
    processes = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE,
                                  text=True) for _ in range(6)]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, errors


@pytest.mark.slow
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


@pytest.mark.slow
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
