"""Pruning inside a run: the run reports its validation metric to its trial after every epoch
and stops when the study's pruner says the trial will not beat the others.

The run reaches its trial through the study's storage, not through the sweeper's memory, so
this works for jobs in processes of their own (side by side, SLURM)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import optuna
from hydra.utils import instantiate

from dlfoundations.search.study import open_storage, storage_url
from dlfoundations.status import Status


class TrialPruning(L.Callback):
    """Reports ``monitor`` at each epoch's end to trial ``trial`` of study ``study_name``
    (stored at ``storage``, or in ``sweep_dir``) and sets ``trainer.should_stop`` once
    ``pruner`` prunes it (rank 0 asks; all ranks stop). A trial that reached its last epoch
    completes: pruning it then would save nothing. A run that is no trial (``trial`` null:
    the sweeper sets it) reports nothing.

    A search preset adds it to the run's callbacks (``conf/search/study.yaml``), so the run
    knows nothing of searches: it asks ``stop_status()`` whether it was stopped on purpose.
    ``pruned_at``: the epochs trained when pruned (None: not pruned)."""

    def __init__(self, study_name: str, trial: int | None, monitor: str, sweep_dir: str,
                 storage: str | None = None, pruner: Mapping[str, Any] | None = None) -> None:
        self.storage = storage_url(storage, sweep_dir)
        self.study_name, self.number = study_name, trial
        self.pruner, self.monitor = pruner, monitor
        self.trial: optuna.trial.Trial | None = None
        self.pruned_at: int | None = None
        self.value = math.nan

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.number is None:
            return
        storage = open_storage(self.storage)
        pruner = instantiate(self.pruner) if self.pruner else optuna.pruners.NopPruner()
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=pruner)
        study_id = storage.get_study_id_from_name(self.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
        self.trial = optuna.trial.Trial(study, trial_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if self.trial is not None:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                self.value = float(value)
                self.trial.report(self.value, step=trainer.current_epoch)
                last = trainer.max_epochs is not None and \
                    trainer.current_epoch + 1 >= trainer.max_epochs
                prune = not last and self.trial.should_prune()  # at the end it saves nothing
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_at = trainer.current_epoch + 1
            trainer.should_stop = True

    def stop_status(self) -> tuple[Status, str] | None:
        """``pruned`` with the reason, once the study pruned this trial."""
        if self.pruned_at is None:
            return None
        return Status.PRUNED, (f"pruned by the study after epoch {self.pruned_at} "
                               f"({self.monitor} {self.value:.4g} then)")
