"""What a user finds in TensorBoard, checked through a real TensorBoard server's HTTP API."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure_python
from tensorboard.summary.writer import record_writer
from torch.utils.tensorboard.summary import image as add_image_summary

from dlfoundations.callbacks.test_images import (
    CELL,
    LEFT,
    TOP,
    confusion_frame,
    confusion_image,
    image_summary,
    misclassified_image,
)
from dlfoundations.event_checksums import masked_crc32c
from dlfoundations.tensorboard_logger import RunTensorBoardLogger
from tests.conftest import get, run_script, tensorboard_server

pytestmark = pytest.mark.slow  # subprocesses, services or many runs

EPOCHS, BATCHES, LOG_EVERY = 2, 60, 10
SCALARS = {  # tag: points expected for EPOCHS epochs of BATCHES steps
    "train/loss": EPOCHS * BATCHES // LOG_EVERY,
    "train/lr": EPOCHS * BATCHES // LOG_EVERY,
    "train/loss_epoch": EPOCHS, "train/acc": EPOCHS, "val/loss": EPOCHS, "val/acc": EPOCHS,
    "train/epoch_s": EPOCHS, "train/samples_per_s": EPOCHS,
}
BATCH = 256  # the default batch size: a curve's step is the number of samples seen


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> Path:
    run_dir = tmp_path_factory.mktemp("tb_run")
    result = run_script("train.py", "model=mlp", f"trainer.max_epochs={EPOCHS}",
                        f"trainer.limit_train_batches={BATCHES}",
                        f"trainer.log_every_n_steps={LOG_EVERY}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def tensorboard(run_dir: Path) -> Iterator[str]:
    """A real TensorBoard server over the run folder; its base URL. Stopped at the end."""
    with tensorboard_server(run_dir) as url:
        yield url


def test_the_run_and_its_scalars_are_served(tensorboard: str) -> None:
    assert get(tensorboard, "/data/runs") == ["."]
    tags = get(tensorboard, "/data/plugin/scalars/tags")["."]
    assert set(SCALARS) <= set(tags)
    assert "hp_metric" not in tags and "epoch" not in tags
    assert not [tag for tag in tags if tag.startswith("test/")]  # single points: in ~final
    for tag, points in SCALARS.items():
        query = urllib.parse.urlencode({"run": ".", "tag": tag})
        assert len(get(tensorboard, f"/data/plugin/scalars/scalars?{query}")) == points, tag


def test_hparams_lists_hyperparameters_and_final_metrics(tensorboard: str) -> None:
    experiment = get(tensorboard, "/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"model", "model/net/name", "model/net/dropout", "model/net/hidden", "optim",
            "optim/lr", "lr_eff", "global_batch_size",
            "init", "init/name", "data/batch_size", "seed"} <= hparams
    assert not [name for name in hparams if name.endswith("_target_")]
    metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert {"~final/val/acc", "~final/val/loss", "~final/test/acc", "~final/test/loss"} <= metrics


def test_confusion_matrix_and_misclassified_images_are_served(tensorboard: str) -> None:
    tags = get(tensorboard, "/data/plugin/images/tags")["."]
    assert {"~final/confusion_matrix", "~final/misclassified"} <= set(tags)
    for tag in ("~final/confusion_matrix", "~final/misclassified"):
        query = urllib.parse.urlencode({"run": ".", "tag": tag})
        (image,) = get(tensorboard, f"/data/plugin/images/images?{query}")
        png = get(tensorboard, f"/data/plugin/images/individualImage?{image['query']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_a_test_image_holds_what_add_image_writes() -> None:
    """A test image's summary (``image_summary``: encoded once for every logger, PNG at zlib
    level 1) has the tag, size, colour space and decoded pixels of what
    ``SummaryWriter.add_image`` writes (at level 6)."""
    pixels = confusion_image(torch.tensor([[50, 1, 0], [3, 41, 7], [0, 9, 30]]),
                             ["T-shirt", "Trouser", "Bag"])
    ours = image_summary("~final/confusion_matrix", pixels).value[0]
    theirs = add_image_summary("~final/confusion_matrix", pixels, dataformats="HWC").value[0]

    def fields(value: object) -> tuple:
        return (value.tag, value.image.height, value.image.width, value.image.colorspace)

    def decoded(value: object) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))

    assert fields(ours) == fields(theirs) == ("~final/confusion_matrix", *pixels.shape)
    assert np.array_equal(decoded(ours), pixels) and np.array_equal(decoded(theirs), pixels)


def test_the_confusion_matrix_is_drawn_on_a_copy_of_its_frame() -> None:
    """The frame (names, titles) is drawn once per set of names and stays as it was: a matrix
    drawn after another one of other counts is the same as drawn first, its cells shaded and
    numbered over the white cells of the frame."""
    names = ["T-shirt", "Trouser", "Bag"]
    frame = np.asarray(confusion_frame(tuple(names))).copy()
    first = confusion_image(torch.tensor([[50, 1, 0], [3, 41, 7], [0, 9, 30]]), names)
    confusion_image(torch.tensor([[9, 9, 9], [0, 90, 0], [1, 2, 3]]), names)
    assert np.array_equal(np.asarray(confusion_frame(tuple(names))), frame)
    assert np.array_equal(confusion_image(torch.tensor([[50, 1, 0], [3, 41, 7], [0, 9, 30]]),
                                          names), first)
    cells = (slice(TOP, TOP + 3 * CELL + 1), slice(LEFT, LEFT + 3 * CELL + 1))  # outlines too
    assert (frame[cells] == 255).all() and not (first[cells] == 255).all()
    outside = np.ones(frame.shape[:2], dtype=bool)
    outside[cells] = False
    assert np.array_equal(first[outside], frame[outside])


def test_the_misclassified_images_are_written_grey_as_add_image_shows_them() -> None:
    """The misclassified grid is grey: written as one channel, it decodes to the pixels
    ``SummaryWriter.add_image`` writes as three equal channels, in fewer bytes than the same
    pixels as RGB."""
    wrong = [(torch.linspace(0, 1, 28 * 28).view(28, 28) ** (1 + index), index % 3, 2 - index % 3)
             for index in range(8)]
    pixels = misclassified_image(wrong, ["T-shirt", "Trouser", "Bag"])
    ours = image_summary("~final/misclassified", pixels).value[0].image
    theirs = add_image_summary("~final/misclassified", pixels, dataformats="HW").value[0].image
    assert pixels.ndim == 2 and (ours.height, ours.width, ours.colorspace) == (*pixels.shape, 1)
    assert theirs.colorspace == 3
    grey = np.asarray(Image.open(io.BytesIO(ours.encoded_image_string)))
    rgb = np.asarray(Image.open(io.BytesIO(theirs.encoded_image_string)))
    assert np.array_equal(grey, pixels) and np.array_equal(rgb, np.stack([pixels] * 3, axis=2))
    as_rgb = image_summary("~final/misclassified", np.stack([pixels] * 3, axis=2)).value[0]
    assert len(ours.encoded_image_string) < len(as_rgb.image.encoded_image_string)


def test_event_records_are_checksummed_in_c_as_tensorboard_reads_them(tmp_path: Path) -> None:
    """A run's logger puts ``event_checksums.masked_crc32c`` in TensorBoard's record writer
    (this fails where a TensorBoard or google-crc32c release takes that away); it gives
    TensorBoard's own pure-Python checksum at every length, and TensorBoard's reader, which
    checks each record's, reads back everything written."""
    logger = RunTensorBoardLogger(save_dir=str(tmp_path), name="", version="")
    assert record_writer.masked_crc32c is masked_crc32c
    generator = random.Random(0)
    for length in [*range(70), 1_000, 100_003]:
        data = generator.randbytes(length)
        assert masked_crc32c(data) == pure_python(data), length
    pixels = np.asarray(Image.new("RGB", (300, 200), "navy"))
    logger.experiment.file_writer.add_summary(image_summary("~final/picture", pixels), 7)
    logger.log_metrics({"val/acc": 0.25}, 0)
    logger.log_metrics({"val/acc": 0.5}, 1)
    logger.experiment.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/acc")] == [(1, 0.25), (2, 0.5)]
    [image] = events.Images("~final/picture")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))), pixels)


WRITER_WITHOUT_S3 = """
import importlib.util, sys
installed = importlib.util.find_spec("boto3") is not None
from dlfoundations.event_checksums import record_writer_module
record_writer_module().RecordWriter
from tensorboard.compat.tensorflow_stub.io import gfile
assert not gfile.S3_ENABLED and "boto3" not in sys.modules and "botocore" not in sys.modules
try:
    import boto3
    imported = True
except ImportError:
    imported = False
assert imported == installed, (imported, installed)
print("ok")
"""


def test_the_record_writer_is_imported_without_the_s3_client_which_still_imports_later(
        ) -> None:
    """In a fresh process: TensorBoard's writer comes without its own ``s3://`` support and
    boto3 stays out of the process, yet a later ``import boto3`` works where it is
    installed."""
    done = subprocess.run([sys.executable, "-c", WRITER_WITHOUT_S3], capture_output=True,
                          text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_event_file_holds_a_loss_point_per_interval_at_the_samples_seen(run_dir: Path
                                                                        ) -> None:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [steps * BATCH for steps in
                                        range(LOG_EVERY, EPOCHS * BATCHES + 1, LOG_EVERY)]
    assert [e.step for e in events.Scalars("val/acc")] == [BATCHES * BATCH * epoch
                                                          for epoch in (1, 2)]
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
