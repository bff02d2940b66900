"""Pruning inside a run: the run reports its validation metric to its trial after every epoch
and stops when the study's pruner says the trial will not beat the others.

The run reaches its trial through the study's storage, not through the sweeper's memory, so
this works for jobs in processes of their own (side by side, SLURM)."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig

from dlfoundations.search.study import open_storage, storage_url


class TrialPruning(L.Callback):
    """Reports ``monitor`` at each epoch's end to trial ``search.trial`` of study
    ``search.study_name`` (stored at ``search.storage``, or in ``sweep_dir``) and sets
    ``trainer.should_stop`` once ``search.pruner`` prunes it (rank 0 asks; all ranks stop). A
    trial that reached its last epoch completes: pruning it then would save nothing.

    ``pruned_at``: the epochs trained when pruned (None: not pruned)."""

    def __init__(self, search: DictConfig, sweep_dir: str | Path, monitor: str) -> None:
        self.storage = storage_url(search.get("storage"), sweep_dir)
        self.study_name, self.number = str(search.study_name), int(search.trial)
        self.pruner, self.monitor = search.get("pruner"), monitor
        self.trial: optuna.trial.Trial | None = None
        self.pruned_at: int | None = None
        self.value = math.nan

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
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

    def reason(self) -> str:
        return (f"pruned by the study after epoch {self.pruned_at} "
                f"({self.monitor} {self.value:.4g} then)")
