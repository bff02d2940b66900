"""Images at the end of testing: the confusion matrix and misclassified test images."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from dlfoundations.tensorboard_logger import FINAL_SECTION, step_of


class TestImages(L.Callback):
    """Adds ``~final/confusion_matrix`` and ``~final/misclassified`` (the test set's) to
    TensorBoard, in the section of what the run ended with, for a model that computes a
    ``confusion_matrix`` in testing and returns its logits from ``test_step``.

    The grid shows the first ``num_images`` misclassified test images of rank 0, captioned
    "true -> predicted" with the DataModule's ``class_names`` (the class numbers without).
    """

    def __init__(self, num_images: int = 24):
        self.num_images = num_images
        self.wrong: list[tuple[torch.Tensor, int, int]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.wrong = []

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                          outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2 \
                or len(self.wrong) >= self.num_images:
            return
        x, y = batch
        predicted = outputs.argmax(dim=1)
        for i in torch.nonzero(predicted != y).flatten()[: self.num_images - len(self.wrong)]:
            self.wrong.append((x[i, 0].cpu(), int(y[i]), int(predicted[i])))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the model's ``on_test_epoch_end``, which computed its ``confusion_matrix``."""
        confusion = getattr(pl_module, "confusion_matrix", None)
        if confusion is None or not trainer.is_global_zero:
            return
        names = getattr(trainer.datamodule, "class_names", None)
        add_test_figures(trainer.loggers, confusion, self.wrong, names, trainer.global_step)


def add_test_figures(loggers: list[Any], confusion: torch.Tensor,
                     wrong: list[tuple[torch.Tensor, int, int]], names: Any,
                     global_step: int) -> None:
    """The two figures of a test to each TensorBoard logger, after ``global_step`` optimizer
    steps: the confusion matrix (rows: true class) and the ``wrong`` images (image, true,
    predicted), captioned with the class ``names`` (the class numbers without)."""
    loggers = [logger for logger in loggers if isinstance(logger, TensorBoardLogger)]
    if not loggers:
        return
    names = list(names or map(str, range(len(confusion))))
    figures = {f"{FINAL_SECTION}/confusion_matrix": confusion_figure(confusion, names)}
    if wrong:
        figures[f"{FINAL_SECTION}/misclassified"] = misclassified_figure(wrong, names)
    for logger in loggers:
        for tag, figure in figures.items():
            logger.experiment.add_figure(tag, figure, close=False,
                                         global_step=step_of(logger, global_step))
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)  # pyplot keeps every figure it made until closed


def confusion_figure(confusion: torch.Tensor, names: list[str]) -> Any:
    """Counts per (true, predicted) class pair, with the class names. Fixed margins instead of
    ``tight_layout``, which measures every label (half of the figure's cost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 7))
    fig.subplots_adjust(left=0.17, bottom=0.17, right=0.98, top=0.94)
    ax.imshow(confusion, cmap="Blues")
    ticks = range(len(names))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true",
           title="Test-set confusion matrix")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    peak = confusion.max().item()
    cells = torch.cartesian_prod(torch.arange(len(names)), torch.arange(len(names))).tolist()
    for (row, col), count in zip(cells, confusion.flatten().tolist(), strict=True):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > peak / 2 else "black")
    return fig


def mosaic(images: list[torch.Tensor], columns: int, gap: int) -> torch.Tensor:
    """Images of one size tiled row by row, ``gap`` pixels apart (white, 1.0, between them)."""
    height, width = images[0].shape
    rows = (len(images) + columns - 1) // columns
    tiled = torch.ones(rows * (height + gap), columns * (width + gap))
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        low, high = image.min(), image.max()
        tiled[top:top + height, left:left + width] = (image - low) / (high - low + 1e-12)
    return tiled


def misclassified_figure(wrong: list[tuple[torch.Tensor, int, int]], names: list[str]) -> Any:
    """A grid of images captioned "true -> predicted": one image (``mosaic``) with the
    captions under each tile, which draws about five times faster than a subplot per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns, gap = 6, 16
    size = wrong[0][0].shape[0]
    tiled = mosaic([image for image, _, _ in wrong], columns, gap)
    fig = plt.figure(figsize=(2 * columns, 2 * columns * tiled.shape[0] / tiled.shape[1]))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    ax.imshow(tiled, cmap="gray", vmin=0, vmax=1)
    # the view moved by half a gap, so that the gaps frame the tiles on all sides
    ax.set_xlim(-gap / 2 - 0.5, tiled.shape[1] - gap / 2 - 0.5)
    ax.set_ylim(tiled.shape[0] - gap / 2 - 0.5, -gap / 2 - 0.5)
    for index, (_, true, predicted) in enumerate(wrong):
        row, column = divmod(index, columns)
        ax.text(column * (size + gap) + size / 2, row * (size + gap) + size + 1,
                f"{names[true]} -> {names[predicted]}", ha="center", va="top",
                fontsize=8)
    return fig
