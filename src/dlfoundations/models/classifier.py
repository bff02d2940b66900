"""Classification of Fashion-MNIST's ten classes: cross-entropy loss and accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from dlfoundations.models.base import LabModule, SchedulerFactory
from dlfoundations.optim import OptimizerFactory
from dlfoundations.task import Task

Batch = tuple[torch.Tensor, torch.Tensor]


class Classifier(LabModule):
    """A network ``self.net`` from images to logits o, trained with the cross-entropy
    l = -log softmax(o)_y: softmax regression with the linear network, the MLP, LeNet.

    Logs ``train/loss`` every ``log_every_n_steps`` steps (a ``self.log`` call is a measurable
    share of a small model's step, docs/performance.md), ``train/loss_epoch`` and ``train/acc``
    per epoch from sums kept on the device (no per-step sync), and ``{val,test}/loss`` and
    ``/acc`` once per epoch through torchmetrics, synchronised across DDP ranks.
    """

    task = Task.CLASSIFICATION
    metrics = ("val/acc", "val/loss", "train/acc", "train/loss_epoch")

    def __init__(self, net: Mapping[str, Any], num_classes: int = 10,
                 init: dict[str, Any] | None = None, optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, gradients: str = "autograd"):
        super().__init__(net, {"num_outputs": num_classes}, init, optimizer, scheduler,
                         gradients)
        self.num_classes = num_classes
        # sum of losses and of correct predictions over the current training epoch
        self.register_buffer("train_sums", torch.zeros(2), persistent=False)
        self.train_count = 0
        self.val_acc, self.test_acc = self._accuracy(), self._accuracy()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        #: rows: true class, columns: predicted class; filled at the end of testing
        self.confusion_matrix: torch.Tensor | None = None

    def _accuracy(self) -> MulticlassAccuracy:
        return MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss_and_gradients(self, x: torch.Tensor, y: torch.Tensor):
        """O = X W^T + b, L = -(1/n) sum_i log softmax(O_i)_(y_i); with Y the one-hot labels,
        dL/dO = (softmax(O) - Y) / n, so dL/dW = (dL/dO)^T X and dL/db = sum_i (dL/dO)_i."""
        linear = self.net.linear
        x = x.flatten(1)
        logits = x @ linear.weight.T + linear.bias
        delta = (logits.softmax(dim=1) - F.one_hot(y, self.num_classes).to(logits.dtype)) / len(y)
        return logits, F.cross_entropy(logits, y), {linear.weight: delta.T @ x,
                                                     linear.bias: delta.sum(dim=0)}

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        log_loss = self.writes_logs_this_step()  # before a manual step counts this step
        if self.automatic_optimization:
            logits = self(x)
            loss = F.cross_entropy(logits, y)
        else:
            logits, loss = self.manual_step(x, y)
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == y).sum()
            self.train_sums.add_(torch.stack((loss * len(y), correct)))
        self.train_count += len(y)
        if log_loss:
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_sums.zero_()
        self.train_count = 0

    def on_train_epoch_end(self) -> None:
        if self.train_count:
            loss_sum, correct = self.train_sums / self.train_count
            self.log("train/loss_epoch", loss_sum, sync_dist=True)
            self.log("train/acc", correct, sync_dist=True)

    def train_epoch_metrics(self) -> dict[str, float]:
        if not self.train_count:
            return {}
        means = self.train_sums / self.train_count
        if self.attached:
            means = self.trainer.strategy.reduce(means, reduce_op="mean")
        return {"train/loss_epoch": means[0].item(), "train/acc": means[1].item()}

    def _evaluate(self, batch: Batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        mean_loss, accuracy = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        mean_loss.update(F.cross_entropy(logits, y), weight=len(y))
        accuracy.update(logits, y)
        return logits

    def _log_epoch(self, stage: str) -> None:
        """Log the stage's metric objects once per epoch: Lightning computes, syncs, resets."""
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), prog_bar=True)
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        logits = self._evaluate(batch, "test")
        self.test_confusion.update(logits, batch[1])
        return logits

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self.confusion_matrix = self.test_confusion.compute().cpu()

    def report(self) -> dict[str, float]:
        """``hidden_unit_spread`` (networks with hidden fully connected layers): the largest
        difference between two hidden units' incoming weights in any such layer; 0 when every
        unit is alike (e.g. after zero init)."""
        hidden = [m for m in self.net.modules() if isinstance(m, nn.Linear)][:-1]
        if not hidden:
            return {}
        spread = max((layer.weight - layer.weight[:1]).abs().max().item() for layer in hidden)
        return {"hidden_unit_spread": spread}
