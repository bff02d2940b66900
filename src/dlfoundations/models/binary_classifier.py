"""Classification of two classes with one output: logistic regression with the linear
network, the two-class case of softmax regression."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from dlfoundations.models.base import LabModule, SchedulerFactory
from dlfoundations.optim import OptimizerFactory
from dlfoundations.task import Task

Batch = tuple[torch.Tensor, torch.Tensor]


class BinaryClassifier(LabModule):
    """p(y = 1 | x) = sigmoid(o), o the network's one output (o = w^T x + b for the linear
    network: logistic regression), trained with the log loss
    l = -[y log p + (1 - y) log(1 - p)] on two classes (``data.classes=[a,b]``: a is 0, b is 1).

    Logs ``{train,val,test}/loss``, ``/acc`` (p > 1/2 predicts class b) and ``/auroc``.
    """

    task = Task.TWO_CLASS
    metrics = ("val/acc", "val/loss", "val/auroc", "train/loss")

    def __init__(self, net: Mapping[str, Any], init: dict[str, Any] | None = None,
                 optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, gradients: str = "autograd"):
        super().__init__(net, {"num_outputs": 1}, init, optimizer, scheduler, gradients)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_loss", MeanMetric())
            setattr(self, f"{stage}_acc", BinaryAccuracy(validate_args=False))
            setattr(self, f"{stage}_auroc", BinaryAUROC(validate_args=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logit o of each image."""
        return self.net(x).squeeze(-1)

    def loss_and_gradients(self, x: torch.Tensor, y: torch.Tensor):
        """o = X w + b, p = sigmoid(o); since dl/do = p - y for the log loss,
        dL/dw = (1/n) X^T (p - y) and dL/db = (1/n) sum_i (p_i - y_i)."""
        linear = self.net.linear
        x = x.flatten(1)
        logits = x @ linear.weight[0] + linear.bias
        delta = (torch.sigmoid(logits) - y.to(logits.dtype)) / len(y)
        loss = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
        return logits, loss, {linear.weight: (delta @ x).unsqueeze(0),
                              linear.bias: delta.sum().unsqueeze(0)}

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.automatic_optimization:
            loss = F.binary_cross_entropy_with_logits(self(x), y.to(torch.get_default_dtype()))
        else:
            loss = self.manual_step(x, y)[1]
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch: Batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        getattr(self, f"{stage}_loss").update(
            F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype)), weight=len(y))
        probability = torch.sigmoid(logits)
        getattr(self, f"{stage}_acc").update(probability, y)
        getattr(self, f"{stage}_auroc").update(probability, y)

    def _log_epoch(self, stage: str) -> None:
        for metric in ("loss", "acc", "auroc"):
            self.log(f"{stage}/{metric}", getattr(self, f"{stage}_{metric}"), prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
