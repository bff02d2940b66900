"""Linear regression on synthetic data, with the error of the learned parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlfoundations.init import initialise
from dlfoundations.models.base import LabModule, SchedulerFactory
from dlfoundations.optim import OptimizerFactory


class LinearRegression(LabModule):
    """y_hat = X w + b, trained with the squared loss l = (y_hat - y)^2 averaged over a batch.

    Logs ``{train,val,test}/mse`` and the parameter errors ``w_error`` = ||w - true_w||_2 and
    ``b_error`` = |b - true_b| against the generating parameters.
    """

    task = "regression"

    def __init__(self, true_w: Sequence[float] = (2.0, -3.4), true_b: float = 4.2,
                 init: dict[str, Any] | None = None,
                 optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None):
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.net = nn.Linear(len(true_w), 1)
        initialise(self.net, **(init or {}))
        self.register_buffer("true_w", torch.tensor(list(true_w), dtype=torch.float32))
        self.register_buffer("true_b", torch.tensor(float(true_b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def learned(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned weights w (a vector) and bias b (a scalar), detached."""
        return self.net.weight.detach()[0], self.net.bias.detach()[0]

    def parameter_errors(self) -> dict[str, torch.Tensor]:
        w, b = self.learned()
        return {"w_error": torch.linalg.vector_norm(w - self.true_w),
                "b_error": (b - self.true_b).abs()}

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log(f"{stage}/mse", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        return self._step(batch, "train")

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
