"""The experiment presets: each composes into a sweep, and runs end to end on a tiny budget."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_train, run_script

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
TINY = ("trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1")


def test_the_nine_presets_exist() -> None:
    assert PRESETS == ["batch_size_scaling", "from_scratch", "initialisers", "kfold",
                       "lenet_activations",
                       "linreg_recovery", "lr_decay", "optimizers", "overfitting"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_into_a_sweep(preset: str) -> None:
    cfg = compose_train(f"experiment={preset}", hydra=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params
    assert cfg.report.figures


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_and_leaves_its_summary_and_figures(preset: str, tmp_path: Path,
                                                        raw_paths: dict) -> None:
    result = run_script("train.py", f"experiment={preset}", *TINY,
                        f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = compose_train(f"experiment={preset}")
    for figure in cfg.report.figures:
        assert (tmp_path / f"{figure.name}.png").stat().st_size > 10_000
    with (tmp_path / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["status"] in ("completed", "diverged") for row in rows)
    assert "Sweep summary" in result.stdout
    assert "More than 20 figures have been opened" not in result.stderr  # 24 jobs in from_scratch
    if preset == "initialisers":  # zero init: every hidden unit stays identical
        spread = {row["job"]: float(row["hidden_unit_spread"]) for row in rows}
        assert len(spread) == 8
        for job, value in spread.items():
            assert (value == 0) == job.startswith("init=zeros"), job
    if preset == "kfold":
        assert "| val/acc | 5 |" in (tmp_path / "summary.md").read_text()
