"""The Hydra side of the fused launcher; kept light, since Hydra imports every plugin at
start-up (the work is in ``dlfoundations.fused``, imported when a sweep launches)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn

from dlfoundations.environment import imports_frozen
from hydra_plugins.dlfoundations_side_by_side.launcher import SideBySideLauncher


class FusedLauncher(SideBySideLauncher):
    """Trains the jobs of a sweep that share the shape of their work as one stacked model
    (``dlfoundations.fused``), each job still a whole run: ``n_jobs`` groups at a time (1: one
    after another in this process; null: ``jobs_per_gpu`` per visible GPU, or cores /
    ``threads`` without a GPU, on the side-by-side launcher's workers). A job it cannot
    compute exactly as its run alone would refuses the sweep before anything trains."""

    #: whether jobs that cannot be fused run alone (else they refuse the sweep)
    runs_the_rest_alone = False

    def __init__(self, n_jobs: int | None = 1, jobs_per_gpu: int = 1) -> None:
        super().__init__(n_jobs, jobs_per_gpu)

    def uses_workers(self, jobs: int, slots: int) -> bool:
        return self.n_jobs != 1 and jobs > 1 and slots > 1

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        with imports_frozen("dlfoundations.fused.launch"):  # torch, in the sweep's process
            from dlfoundations.fused import launch
        assert self.config is not None and self.task_function is not None
        assert self.hydra_context is not None
        return launch.launch(self, job_overrides, initial_job_idx)


class AutoLauncher(FusedLauncher):
    """The default launcher of a multirun: the jobs the fused launcher computes exactly as
    their runs alone would, and that share the shape of their work with another job, train
    fused; every other job runs alone, as Hydra's own launcher runs it. It prints its plan
    (which jobs are fused, and why the others are not)."""

    runs_the_rest_alone = True
