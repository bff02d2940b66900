"""Regression on synthetic data: linear regression, with the error of the learned
parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from dlfoundations.errors import require
from dlfoundations.models.base import LabModule, SchedulerFactory
from dlfoundations.optim import OptimizerFactory
from dlfoundations.task import Task


class Regressor(LabModule):
    """y_hat = X w + b (the linear network), trained with the squared loss
    l = (y_hat - y)^2 averaged over a batch.

    Logs ``{train,val,test}/mse`` and the parameter errors ``w_error`` = ||w - true_w||_2 and
    ``b_error`` = |b - true_b| against the generating parameters.
    """

    task = Task.REGRESSION
    metrics = ("val/mse", "train/mse", "w_error", "b_error")

    def __init__(self, net: Mapping[str, Any], true_w: Sequence[float] = (2.0, -3.4),
                 true_b: float = 4.2, init: dict[str, Any] | None = None,
                 optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, gradients: str = "autograd"):
        require(net.get("name") == "linear", "model.net.name", net.get("name"),
                "linear: the regression compares its learned w and b with the true ones")
        super().__init__(net, {"num_inputs": len(true_w), "num_outputs": 1}, init, optimizer,
                         scheduler, gradients)
        self.register_buffer("true_w", torch.tensor(list(true_w), dtype=torch.float32))
        self.register_buffer("true_b", torch.tensor(float(true_b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def learned(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned weights w (a vector) and bias b (a scalar), detached."""
        linear = self.net.linear
        return linear.weight.detach()[0], linear.bias.detach()[0]

    def parameter_errors(self) -> dict[str, torch.Tensor]:
        w, b = self.learned()
        return {"w_error": torch.linalg.vector_norm(w - self.true_w),
                "b_error": (b - self.true_b).abs()}

    def loss_and_gradients(self, x: torch.Tensor, y: torch.Tensor):
        """y_hat = X w + b, L = (1/n) ||y_hat - y||^2 (no 1/2 in front, so a factor 2 below):
        dL/dw = (2/n) X^T (y_hat - y), dL/db = (2/n) sum_i (y_hat_i - y_i)."""
        linear = self.net.linear
        y_hat = x @ linear.weight[0] + linear.bias
        residual = y_hat - y
        return y_hat, residual.square().mean(), {
            linear.weight: (2 / len(y) * residual @ x).unsqueeze(0),
            linear.bias: (2 / len(y) * residual.sum()).unsqueeze(0)}

    def _log_loss(self, loss: torch.Tensor, stage: str) -> torch.Tensor:
        self.log(f"{stage}/mse", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        return self._log_loss(F.mse_loss(self(x), y), stage)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        if self.automatic_optimization:
            return self._step(batch, "train")
        return self._log_loss(self.manual_step(*batch)[1], "train")

    def on_train_epoch_end(self) -> None:
        w, b = self.learned()
        self.log_dict({**self.parameter_errors(), "param/b": b,
                       **{f"param/w{i}": value for i, value in enumerate(w)}})

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def report(self) -> dict[str, Any]:
        w, b = self.learned()
        return {"w": w.tolist(), "b": b.item(),
                **{name: value.item() for name, value in self.parameter_errors().items()}}
