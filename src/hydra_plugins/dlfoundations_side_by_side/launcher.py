"""The Hydra side of the side-by-side launcher; kept light, since Hydra imports every plugin at
start-up (the work is in ``dlfoundations.side_by_side``, imported when a sweep launches)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.dlfoundations_side_by_side.composed import ComposedConfigs, composed_configs


class SideBySideLauncher(Launcher):
    """Runs a sweep's jobs side by side in worker processes on this machine.

    ``n_jobs`` workers (null: ``jobs_per_gpu`` per visible GPU, or cores / ``threads`` on a
    CPU machine); each job gets cores / ``n_jobs`` torch threads unless ``threads`` is set,
    and a worker on a GPU machine sees only its own GPU (round-robin over the visible ones).
    """

    def __init__(self, n_jobs: int | None = None, jobs_per_gpu: int = 1) -> None:
        self.n_jobs, self.jobs_per_gpu = n_jobs, jobs_per_gpu
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.composed: ComposedConfigs | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context
        self.composed = composed_configs(hydra_context.config_loader)
        from dlfoundations.progress import sweep_plan
        from dlfoundations.side_by_side import prepare_workers

        jobs = sweep_plan(config)[0]
        at_once = OmegaConf.select(config, "hydra.sweeper.n_jobs", default=None)  # a search's
        prepare_workers(self, min(jobs, at_once) if isinstance(at_once, int) else jobs)

    def uses_workers(self, jobs: int, slots: int) -> bool:
        """Whether a sweep of ``jobs`` jobs, given ``slots`` workers' slots, will run on
        worker processes (as the launcher is set up, before the jobs are composed)."""
        return True

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        from dlfoundations import side_by_side

        assert self.config is not None and self.task_function is not None
        assert self.hydra_context is not None
        return side_by_side.launch(self, job_overrides, initial_job_idx)
