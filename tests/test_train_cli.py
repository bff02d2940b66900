"""`scripts/train.py` as a user runs it: a real subprocess on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_script

pytestmark = pytest.mark.slow  # subprocesses, services or many runs


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> Path:
    """One epoch of softmax regression, run folder in a temporary directory."""
    run_dir = tmp_path_factory.mktemp("softmax_run")
    result = run_script("train.py", "model=softmax", "trainer.max_epochs=1",
                        "trainer.log_every_n_steps=10", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc 0." in result.stdout
    return run_dir


def test_metrics_json_holds_the_final_numbers(softmax_run: Path) -> None:
    metrics = json.loads((softmax_run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["test/acc"] >= 0.78
    assert metrics["val/acc"] >= 0.78
    assert 0 < metrics["test/loss"] < 0.8 and 0 < metrics["val/loss"] < 0.8
    assert metrics["epochs"] == 1 and metrics["global_step"] == 215  # ceil(55,000 / 256)
    assert metrics["batch_size"] == 256 and metrics["lr"] == pytest.approx(3e-3)
    assert metrics["wall_time_s"] > 0


def test_run_folder_holds_config_checkpoints_and_events(softmax_run: Path) -> None:
    config = yaml.safe_load((softmax_run / "config.yaml").read_text())
    assert config["model"]["_target_"] == "dlfoundations.models.Classifier"
    assert config["model"]["net"] == {"name": "linear"}
    assert config["paths"]["output_dir"] == str(softmax_run)
    assert (softmax_run / "checkpoints" / "last.ckpt").is_file()
    events = list(softmax_run.glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(softmax_run)).Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/loss_epoch", "train/acc", "val/loss", "val/acc",
            "~final/test/loss", "~final/test/acc", "~final/val/acc"} <= tags
    losses = [event.value for event in accumulator.Scalars("train/loss")]
    assert len(losses) == 215 // 10
    assert losses[-1] < losses[0]


def test_bad_batch_size_fails_before_training_in_one_sentence(tmp_path: Path) -> None:
    result = run_script("train.py", "data.batch_size=0", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "error: data.batch_size=0 is not allowed: data.batch_size must be an integer" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_bad_learning_rate_names_the_key(tmp_path: Path) -> None:
    result = run_script("train.py", "optim.lr=-0.1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert ("error: optim.lr=-0.1 is not allowed: optim.lr must be a finite number above 0"
            in result.stderr)
    assert "Traceback" not in result.stderr


def test_unknown_model_lists_the_options(tmp_path: Path) -> None:
    result = run_script("train.py", "model=resnet", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "Could not find 'model/resnet'" in result.stderr
    assert "softmax" in result.stderr
