"""The Hydra side of the project's Optuna sweeper; kept light, since Hydra imports every plugin
at start-up (the work is in ``dlfoundations.search``, imported when a search starts)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SearchSweeper(Sweeper):
    """Searches ``params`` with an Optuna study of ``n_trials`` in total, ``n_jobs`` trials
    at a time through the configured launcher; the runs report each epoch to their trial and
    stop when ``pruner`` prunes it. The study lives in ``storage`` (null: ``study.db`` in the
    sweep folder), so the same command continues it and many sweepers can share it.
    ``sampler`` and ``pruner`` are Optuna classes with their arguments (``_target_``)."""

    def __init__(self, study_name: str, storage: str | None, n_trials: int, n_jobs: int,
                 direction: str | None, sampler: DictConfig, pruner: DictConfig | None,
                 params: DictConfig | None, heartbeat_interval: int, grace_period: int) -> None:
        self.settings: dict[str, Any] = {
            "study_name": study_name, "storage": storage, "n_trials": n_trials,
            "n_jobs": n_jobs, "direction": direction, "sampler": sampler, "pruner": pruner,
            "params": params or {}, "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period}
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def sweep(self, arguments: list[str]) -> None:
        from dlfoundations.errors import UserError, refused
        from dlfoundations.search.sweep import Search

        try:
            search = Search(self)
        except UserError as err:
            raise refused(err) from err
        search.run(arguments)
