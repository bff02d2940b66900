"""Every option of every axis through the real run path, in this process and with tiny limits:
each model, optimizer (torch's and the notes' own), scheduler and initialiser trains, is
tested, and leaves a run folder with finite numbers (the fast tier: ``-m "not slow"``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.in_process import run_in_process

TINY = ("trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1")
CHOICES = {group: sorted(p.relative_to(ROOT / "conf" / group).with_suffix("").as_posix()
                         for p in (ROOT / "conf" / group).rglob("*.yaml"))
           for group in ("model", "optim", "scheduler", "init")}


def cases() -> list[tuple[str, str]]:
    return [(group, choice) for group, choices in CHOICES.items() for choice in choices]


@pytest.mark.parametrize(("group", "choice"), cases(), ids=lambda value: str(value))
def test_each_option_trains_tests_and_writes_its_run(group: str, choice: str, tmp_path: Path,
                                                     raw_paths: dict) -> None:
    outcome = run_in_process("train.py", *TINY, f"{group}={choice}",
                             f"hydra.run.dir={tmp_path}")
    assert outcome.status == 0, outcome.output[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["global_step"] == 3
    finals = {key: value for key, value in metrics.items() if key.startswith("test/")}
    assert finals and all(math.isfinite(value) for value in finals.values())
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_every_option_of_the_four_axes_is_covered() -> None:
    assert len(CHOICES["model"]) == 6 and len(CHOICES["optim"]) == 13
    assert len(CHOICES["scheduler"]) == 4 and len(CHOICES["init"]) == 5


def test_the_best_checkpoint_of_an_earlier_epoch_is_tested(tmp_path: Path,
                                                          raw_paths: dict) -> None:
    """Testing restores the best checkpoint, whose epoch history is shorter than the run's:
    with the lowest accuracy as "best", that is the first epoch of three."""
    outcome = run_in_process("train.py", "trainer.max_epochs=3", "trainer.limit_train_batches=3",
                             "trainer.limit_val_batches=2", "trainer.limit_test_batches=1",
                             "monitor.mode=min", f"hydra.run.dir={tmp_path}")
    assert outcome.status == 0, outcome.output[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    assert metrics["best_epoch"] < 2 and f"epoch{metrics['best_epoch']:02d}" in \
        metrics["best_checkpoint"]
