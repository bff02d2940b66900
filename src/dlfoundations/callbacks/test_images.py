"""Images at the end of testing: the confusion matrix and misclassified test images."""

from __future__ import annotations

import functools
import io
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw, ImageFont

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
    """The two images of a test to each TensorBoard logger, after ``global_step`` optimizer
    steps: the confusion matrix (rows: true class) and the ``wrong`` images (image, true,
    predicted), captioned with the class ``names`` (the class numbers without)."""
    loggers = [logger for logger in loggers if isinstance(logger, TensorBoardLogger)]
    if not loggers:
        return
    names = list(names or map(str, range(len(confusion))))
    images = [image_summary(f"{FINAL_SECTION}/confusion_matrix",
                            confusion_image(confusion, names))]
    if wrong:
        images.append(image_summary(f"{FINAL_SECTION}/misclassified",
                                    misclassified_image(wrong, names)))
    for logger in loggers:
        for summary in images:
            logger.experiment.file_writer.add_summary(summary, step_of(logger, global_step))


def image_summary(tag: str, pixels: np.ndarray) -> Any:
    """RGB ``pixels`` (H, W, 3) or grey ones (H, W), uint8, as TensorBoard's image summary,
    what ``SummaryWriter.add_image`` writes, but encoded once for every logger and as PNG at
    zlib level 1: a run's two test images took 26 ms at level 6 (with ``add_image``'s float
    copies of the pixels), 13 ms so, and about 10% more bytes (on the 2-core CPU). Grey pixels
    stay one channel (``add_image`` makes three): a third of the bytes to encode, and fewer for
    TensorBoard's writer to checksum (in pure Python, about 0.1 ms a kilobyte)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    encoded = io.BytesIO()
    Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").save(encoded, format="PNG",
                                                                     compress_level=1)
    height, width, channels = (*pixels.shape, 1) if pixels.ndim == 2 else pixels.shape
    return Summary(value=[Summary.Value(tag=tag, image=Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=encoded.getvalue()))])


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at ``size`` pixels (its bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


#: the confusion matrix's layout in pixels: a cell's side, the margins left, top and bottom
CELL, LEFT, TOP, BOTTOM = 44, 120, 36, 110


def confusion_image(confusion: torch.Tensor, names: list[str]) -> np.ndarray:
    """Counts per (true, predicted) class pair in cells shaded by count (white to blue), each
    with its count, the class names along both axes. Drawn with Pillow (a few milliseconds;
    a Matplotlib figure of its 100 labels took about 0.2 s per run), on a copy of the frame of
    those names (``confusion_frame``)."""
    image = confusion_frame(tuple(names)).copy()
    draw = ImageDraw.Draw(image)
    small = font(12)
    peak = max(int(confusion.max()), 1)
    for row, counts in enumerate(confusion.tolist()):
        for col, count in enumerate(counts):
            shade = count / peak  # white (0) to the blue of Matplotlib's Blues (1)
            color = tuple(int(255 + (end - 255) * shade) for end in (8, 48, 107))
            box = (LEFT + col * CELL, TOP + row * CELL, LEFT + (col + 1) * CELL,
                   TOP + (row + 1) * CELL)
            draw.rectangle(box, fill=color, outline=(220, 220, 220))
            draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), str(count),
                      fill="white" if shade > 0.5 else "black", font=small, anchor="mm")
    return np.asarray(image)


@functools.cache
def confusion_frame(names: tuple[str, ...]) -> Image.Image:
    """The confusion matrix's image but its cells: the title, the class names along both axes
    and the axes' names, drawn once per process for a set of names (about 2.4 of a matrix's
    6 ms on the 2-core CPU); nothing of it lies where the cells go."""
    classes = len(names)
    width, height = LEFT + classes * CELL + 10, TOP + classes * CELL + BOTTOM
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    small, large = font(12), font(15)
    draw.text((LEFT + classes * CELL / 2, 6), "Test-set confusion matrix", fill="black",
              font=large, anchor="ma")
    for index, name in enumerate(names):
        middle = index * CELL + CELL / 2
        draw.text((LEFT - 6, TOP + middle), name, fill="black", font=small, anchor="rm")
        label = Image.new("RGBA", (BOTTOM - 30, 16), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((label.width, 8), name, fill="black", font=small,
                                   anchor="rm")
        label = label.rotate(60, expand=True)
        image.paste(label, (int(LEFT + middle - label.width + 6), TOP + classes * CELL + 4),
                    label)
    draw.text((LEFT + classes * CELL / 2, height - 4), "predicted", fill="black", font=large,
              anchor="md")
    vertical = Image.new("RGBA", (80, 20), (255, 255, 255, 0))
    ImageDraw.Draw(vertical).text((40, 10), "true", fill="black", font=large, anchor="mm")
    vertical = vertical.rotate(90, expand=True)
    image.paste(vertical, (4, TOP + classes * CELL // 2 - 40), vertical)
    return image


def misclassified_image(wrong: list[tuple[torch.Tensor, int, int]],
                        names: list[str]) -> np.ndarray:
    """A grid of the images, each scaled to 0-255 by its own darkest and brightest pixel,
    scaled up 4x and captioned "true -> predicted" under it, grey (H, W)."""
    columns, scale, caption = 6, 4, 18
    size = wrong[0][0].shape[0] * scale
    rows = (len(wrong) + columns - 1) // columns
    gap = 24
    image = Image.new("L", (columns * (size + gap) + gap, rows * (size + caption + gap) + gap),
                      "white")
    draw = ImageDraw.Draw(image)
    small = font(12)
    tiles = torch.stack([pixels.float() for pixels, _, _ in wrong])
    low, high = tiles.amin(dim=(1, 2), keepdim=True), tiles.amax(dim=(1, 2), keepdim=True)
    tiles = ((tiles - low) / (high - low + 1e-12)).mul(255).round().to(torch.uint8).numpy()
    for index, (tile, (_, true, predicted)) in enumerate(zip(tiles, wrong, strict=True)):
        row, column = divmod(index, columns)
        tile_image = Image.fromarray(tile, "L").resize((size, size), Image.NEAREST)
        left = gap + column * (size + gap)
        top = gap + row * (size + caption + gap)
        image.paste(tile_image, (left, top))
        draw.text((left + size / 2, top + size + 3), f"{names[true]} -> {names[predicted]}",
                  fill="black", font=small, anchor="ma")
    return np.asarray(image)
