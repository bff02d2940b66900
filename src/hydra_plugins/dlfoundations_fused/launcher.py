"""The Hydra side of the fused launcher; kept light, since Hydra imports every plugin at
start-up (the work is in ``dlfoundations.fused``, imported when a sweep launches)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class FusedLauncher(Launcher):
    """Trains the jobs of a sweep that share the shape of their work as one stacked model
    (``dlfoundations.fused``), one group after another, each job still a whole run."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        from dlfoundations.fused import launch

        assert self.config is not None and self.task_function is not None
        assert self.hydra_context is not None
        return launch.launch(self, job_overrides, initial_job_idx)
