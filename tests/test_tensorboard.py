"""What a user finds in TensorBoard, checked through a real TensorBoard server's HTTP API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_script

EPOCHS, BATCHES, LOG_EVERY = 2, 60, 10
SCALARS = {  # tag: points expected for EPOCHS epochs of BATCHES steps
    "train/loss": EPOCHS * BATCHES // LOG_EVERY,
    "train/lr": EPOCHS * BATCHES // LOG_EVERY,
    "train/loss_epoch": EPOCHS, "train/acc": EPOCHS, "val/loss": EPOCHS, "val/acc": EPOCHS,
    "time/epoch_s": EPOCHS, "time/samples_per_s": EPOCHS, "test/loss": 1, "test/acc": 1,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> Path:
    run_dir = tmp_path_factory.mktemp("tb_run")
    result = run_script("train.py", "model=mlp", f"trainer.max_epochs={EPOCHS}",
                        f"trainer.limit_train_batches={BATCHES}",
                        f"trainer.log_every_n_steps={LOG_EVERY}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(run_dir: Path) -> Iterator[str]:
    """A real TensorBoard server over the run folder; its base URL. Stopped at the end."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir), "--host",
         "127.0.0.1", "--port", str(port), "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read()
            try:
                if get(url, "/data/runs"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("TensorBoard did not list the run within 120 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def get(url: str, path: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
        return raw if response.headers.get_content_type() == "image/png" else json.loads(raw)


def test_the_run_and_its_scalars_are_served(tensorboard: str) -> None:
    assert get(tensorboard, "/data/runs") == ["."]
    tags = get(tensorboard, "/data/plugin/scalars/tags")["."]
    assert set(SCALARS) <= set(tags)
    assert "hp_metric" not in tags
    for tag, points in SCALARS.items():
        query = urllib.parse.urlencode({"run": ".", "tag": tag})
        assert len(get(tensorboard, f"/data/plugin/scalars/scalars?{query}")) == points, tag


def test_hparams_lists_hyperparameters_and_final_metrics(tensorboard: str) -> None:
    experiment = get(tensorboard, "/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"model/_target_", "model/dropout", "optim/_target_", "optim/lr", "lr_eff",
            "global_batch_size", "init/name", "data/batch_size", "seed"} <= hparams
    metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert {"final/val/acc", "final/val/loss", "final/test/acc", "final/test/loss"} <= metrics


def test_confusion_matrix_and_misclassified_images_are_served(tensorboard: str) -> None:
    tags = get(tensorboard, "/data/plugin/images/tags")["."]
    assert {"test/confusion_matrix", "test/misclassified"} <= set(tags)
    for tag in ("test/confusion_matrix", "test/misclassified"):
        query = urllib.parse.urlencode({"run": ".", "tag": tag})
        (image,) = get(tensorboard, f"/data/plugin/images/images?{query}")
        png = get(tensorboard, f"/data/plugin/images/individualImage?{image['query']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_event_file_holds_one_loss_point_per_interval_and_loss_falls(run_dir: Path) -> None:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(LOG_EVERY - 1, EPOCHS * BATCHES, LOG_EVERY))
    assert losses[-1].value < losses[0].value
    rates = [e.value for e in events.Scalars("train/lr")]
    assert rates[0] == pytest.approx(3e-3) and rates[-1] < rates[0]  # cosine decay


def test_csv_logger_writes_the_same_scalars(tmp_path: Path, raw_paths: dict) -> None:
    result = run_script("train.py", "logger=[tensorboard,csv]", "trainer.max_epochs=1",
                        "trainer.limit_train_batches=20", "trainer.log_every_n_steps=5",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/acc", "val/acc", "test/acc", "train/lr"} <= set(header)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
