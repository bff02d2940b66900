"""Per-layer weight and gradient histograms and gradient norms (off by default)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from dlfoundations.tensorboard_logger import step_of


class WeightHistograms(L.Callback):
    """Every ``every_n_steps`` steps: ``grad_norm/<param>`` (the L2 norm of each parameter's
    gradient) as scalars, and histograms ``weights/<param>`` and ``grads/<param>``.

    Useful to watch vanishing gradients in the sigmoid LeNet or the symmetry of zero
    initialisation. Switched on by ``callbacks=histograms``.
    """

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        grads = {name: p.grad for name, p in pl_module.named_parameters() if p.grad is not None}
        norms = {f"grad_norm/{name}": torch.linalg.vector_norm(g).item()
                 for name, g in grads.items()}
        for logger in trainer.loggers:
            logger.log_metrics(norms, step=trainer.global_step)
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                step = step_of(logger, trainer.global_step + 1)  # after this step
                for name, param in pl_module.named_parameters():
                    logger.experiment.add_histogram(f"weights/{name}", param.detach().cpu(),
                                                    step)
                for name, grad in grads.items():
                    logger.experiment.add_histogram(f"grads/{name}", grad.cpu(), step)
