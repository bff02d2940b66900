"""What every training module of the lab shares: a network built by name, its initialiser,
an optimizer and scheduler that come from the run, and gradients from autograd or, for the
networks whose derivatives the notes derive, by hand."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch

from dlfoundations import networks
from dlfoundations.errors import require
from dlfoundations.init import initialise
from dlfoundations.optim import OptimizerFactory, weight_decay_groups
from dlfoundations.task import Task

SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
#: where the gradients come from: torch's autograd, or the derived formulas
GRADIENTS = ("autograd", "manual")


def require_derived_gradients(network: str | None, gradients: str) -> None:
    """Refuse ``gradients`` other than autograd and manual, and manual for a network whose
    derivatives the notes do not derive."""
    require(gradients in GRADIENTS, "gradients", gradients, "autograd or manual")
    require(gradients == "autograd" or network in networks.DERIVED_GRADIENTS, "gradients",
            gradients, f"autograd for the {network} network: gradients by hand are derived for "
            "the linear network (model=linreg, softmax and logreg)")


class LabModule(L.LightningModule):
    """The training module of one task around a network (``self.net``) from
    ``dlfoundations.networks``, named with its options by ``net`` (e.g. ``{"name": "mlp",
    "hidden": [256]}``) and given the task's sizes; ``init`` initialises its weights.

    The optimizer and scheduler are factories supplied by the run. They are not
    hyperparameters, so a checkpoint holds only plain Python values (the subclass's arguments,
    ``net`` included) and loads with ``torch.load(weights_only=True)``. The scheduler steps
    once per epoch.

    With ``gradients="manual"`` (the linear network only) each training step computes dL/dW
    and dL/db from the task's derived formulas (``loss_and_gradients``), with no autograd
    graph, under Lightning's manual optimization, and hands them to the optimizer
    (``manual_step``).
    """

    #: what kind of data the model learns from, checked against the DataModule's
    task: Task | None = None
    #: the metrics it logs by the end of each validation, which ``monitor.metric`` may name
    metrics: tuple[str, ...] = ()

    def __init__(self, net: Mapping[str, Any], sizes: dict[str, int],
                 init: dict[str, Any] | None = None, optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, gradients: str = "autograd"):
        super().__init__()
        require_derived_gradients(net.get("name"), gradients)
        self.save_hyperparameters(ignore=["sizes", "optimizer", "scheduler"], logger=False)
        self.net = networks.build(net, **sizes)
        initialise(self.net, **(init or {}))
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.automatic_optimization = gradients == "autograd"

    def loss_and_gradients(self, x: torch.Tensor, y: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, dict[torch.nn.Parameter,
                                                                       torch.Tensor]]:
        """The model's output, the loss and dL/dp for each parameter p, by the derived
        formulas (the linear network)."""
        raise NotImplementedError

    def manual_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on hand-derived gradients: no autograd graph is built; the
        optimizer steps on ``loss_and_gradients``; the scheduler steps after an epoch's last
        batch, as Lightning does for automatic optimization. Returns output and loss."""
        with torch.no_grad():
            output, loss, gradients = self.loss_and_gradients(x, y)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        for param, gradient in gradients.items():
            param.grad = gradient
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.trainer.is_last_batch:
            scheduler.step()
        return output, loss

    def configure_optimizers(self) -> Any:
        if self.optimizer is None:
            raise RuntimeError("this model was built without an optimizer; pass optimizer=...")
        optimizer = self.optimizer(weight_decay_groups(self))
        if self.scheduler is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler(optimizer), "interval": "epoch"}}

    def writes_logs_this_step(self) -> bool:
        """Whether Lightning writes step logs after this training step (every
        ``log_every_n_steps`` optimizer steps), so that a step-level value is handed to
        ``self.log`` only then: on every step, ``self.log`` costs a measurable share of a
        small model's epoch (docs/performance.md); outside a Trainer's loop, False."""
        every = self.trainer.log_every_n_steps if self.attached else 0  # 0: barebones
        return every > 0 and (self.trainer.global_step + 1) % every == 0

    @property
    def attached(self) -> bool:
        """Whether a Trainer runs this model (Lightning's ``trainer`` raises otherwise)."""
        try:
            return self.trainer is not None
        except RuntimeError:
            return False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the classes (so ``scripts/eval.py`` can rebuild model and data) and the torch
        RNG state (so a resumed run draws the same dropout masks as an uninterrupted one)."""
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        checkpoint["model_class"] = qualified_name(type(self))
        datamodule = getattr(self.trainer, "datamodule", None) if self.attached else None
        if datamodule is not None:
            checkpoint["datamodule_class"] = qualified_name(type(datamodule))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def train_epoch_metrics(self) -> dict[str, float]:
        """Training metrics of the epoch so far (all ranks), for the run's epoch history."""
        return {}

    def report(self) -> dict[str, Any]:
        """Extra final values for ``metrics.json`` (e.g. learned parameters)."""
        return {}


def qualified_name(cls: type) -> str:
    """``package.module.Class``, importable again with ``hydra.utils.get_class``."""
    return f"{cls.__module__}.{cls.__qualname__}"
