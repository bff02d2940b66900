"""The search loop behind ``hydra/sweeper=search``: ask the study for trials, run them through
the configured launcher, tell the study how each run ended, until it holds ``n_trials``.

A trial's outcome is its run folder's ``metrics.json`` (``<sweep folder>/trial_<number>``):
completed (its best ``monitor`` value), pruned, or failed (diverged, failed). A trial stopped by
a signal, or left running by a sweeper that is gone, is failed and its parameters are queued
again (``study.recover``). Each trial's sampler is seeded with ``seed + trial number``, so that
a fixed seed gives the same trials, and a resumed or second sweeper does not repeat them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import Trial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from dlfoundations.errors import UserError, first_line, refused, require
from dlfoundations.folder import read_metrics
from dlfoundations.run.console import write_out
from dlfoundations.search import study as studies
from dlfoundations.search.space import search_space, suggest
from dlfoundations.search.summary import write_study_summary
from dlfoundations.status import Status


class Heartbeat:
    """Records, every ``interval`` seconds, that this sweeper still runs its trials."""

    def __init__(self, storage: optuna.storages.RDBStorage, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self.stopped = threading.Event()

    def beat(self) -> None:
        for trial_id in list(self.trial_ids):
            self.storage.record_heartbeat(trial_id)

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            self.beat()

    @contextmanager
    def running(self) -> Iterator[Heartbeat]:
        thread = threading.Thread(target=self._loop, name="search-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            thread.join()


class Search:
    """One sweeper's part in a study (see the module)."""

    def __init__(self, sweeper: Any) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper says what happens
        settings, config = sweeper.settings, sweeper.config
        self.sweeper, self.config = sweeper, config
        for key in ("n_trials", "n_jobs", "heartbeat_interval", "grace_period"):
            value = settings[key]
            require(isinstance(value, int) and value >= 1, f"hydra.sweeper.{key}", value,
                    "a whole number of at least 1")
        require(settings["grace_period"] > settings["heartbeat_interval"],
                "hydra.sweeper.grace_period", settings["grace_period"],
                f"more than hydra.sweeper.heartbeat_interval ({settings['heartbeat_interval']})")
        mode = config.monitor.mode
        direction = settings["direction"] or ("maximize" if mode == "max" else "minimize")
        require(direction in ("maximize", "minimize"), "hydra.sweeper.direction", direction,
                "maximize, minimize or null (from monitor.mode)")
        self.n_trials, self.n_jobs = settings["n_trials"], settings["n_jobs"]
        self.sampler, self.seed = settings["sampler"], config.get("seed")
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.url = studies.storage_url(settings["storage"], self.sweep_dir)
        self.study_name = str(settings["study_name"])
        try:
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
            self.storage = studies.open_storage(self.url, settings["heartbeat_interval"],
                                                settings["grace_period"])
            self.study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                             direction=direction, load_if_exists=True)
        except (SQLAlchemyError, ImportError, ValueError, OSError) as err:
            raise UserError(f"hydra.sweeper.storage={self.url!r} cannot hold the study "
                            f"({first_line(err)}); give a database URL that this machine "
                            "reaches, e.g. sqlite:///path/study.db or "
                            "postgresql://user@host/db, or null for study.db in the sweep "
                            "folder.") from err
        require(self.study.direction.name.lower() == direction, "hydra.sweeper.direction",
                direction, f"{self.study.direction.name.lower()}, the direction of study "
                f"{self.study_name} in {self.url}")
        self.study_id = self.storage.get_study_id_from_name(self.study_name)
        self.params = OmegaConf.to_container(settings["params"], resolve=True)
        self.heartbeat = Heartbeat(self.storage, settings["heartbeat_interval"])
        self.launched = 0

    def run(self, arguments: list[str]) -> None:
        """Run trials until the study holds ``n_trials``; then write and print its summary."""
        try:
            space, fixed = search_space(self.params, arguments)
        except UserError as err:
            raise refused(err) from err
        gone = studies.recover(self.study)
        if gone:
            write_out(f"Trials {', '.join(map(str, gone))} were left running by a sweeper that "
                      "is gone: failed, and their parameters queued again.")
        done = len(studies.counted(self.study.get_trials(deepcopy=False)))
        if done >= self.n_trials:
            write_out(f"Study {self.study_name} already holds {done} of {self.n_trials} "
                      "trials; nothing to run.")
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.sweeper.hydra_context, task_function=self.sweeper.task_function,
            config=self.config)
        try:
            with self.heartbeat.running():
                while (batch := self.ask(space)):
                    self.launch(launcher, batch, fixed)
        finally:  # also when a signal stopped the sweep: the study as it stands
            summary = write_study_summary(self.study, self.sweep_dir,
                                          self.config.monitor.metric, self.n_trials, fixed)
        write_out(summary.removesuffix("\n"))

    def ask(self, space: dict[str, Any]) -> list[Trial]:
        """Up to ``n_jobs`` new trials within the budget, with their parameters."""
        batch: list[Trial] = []
        while len(batch) < self.n_jobs:
            trials = self.study.get_trials(deepcopy=False)
            if len(studies.counted(trials)) >= self.n_trials:
                break
            trial = self.study.ask()
            trial.set_user_attr(studies.WORKER, studies.worker_id())
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number)
            self.heartbeat.trial_ids.add(trial_id)
            self.heartbeat.beat()
            before = [t for t in studies.counted(self.study.get_trials(deepcopy=False))
                      if t.number < trial.number]
            if len(before) >= self.n_trials:  # another sweeper took the last place first
                self.give_back(trial, trial_id)
                break
            self.study.sampler = self.trial_sampler(trial.number)
            for name, dist in space.items():
                suggest(trial, name, dist)
            batch.append(trial)
        return batch

    def trial_sampler(self, number: int) -> optuna.samplers.BaseSampler:
        if self.seed is None or "seed" not in self.sampler:
            return instantiate(self.sampler)
        return instantiate(self.sampler, seed=int(self.seed) + number)

    def give_back(self, trial: Trial, trial_id: int) -> None:
        """A trial asked for beyond the budget: never run; its queued parameters (a re-try)
        are queued again."""
        trial.set_user_attr(studies.SURPLUS, True)
        frozen = self.storage.get_trial(trial_id)
        self.study.tell(trial, state=TrialState.FAIL)
        self.heartbeat.trial_ids.discard(trial_id)
        if studies.RETRY_OF in frozen.user_attrs:
            self.study.enqueue_trial(frozen.params,
                                     user_attrs={studies.RETRY_OF: frozen.user_attrs[
                                         studies.RETRY_OF]})

    def launch(self, launcher: Any, batch: list[Trial], fixed: list[str]) -> None:
        """Run ``batch`` and tell the study each outcome; after a signal or a fault that
        stops the sweep, the trials not finished are failed and queued again."""
        overrides = [[*fixed, *(f"{name}={value}" for name, value in trial.params.items()),
                      f"search.trial={trial.number}"] for trial in batch]
        self.sweeper.validate_batch_is_legal(overrides)
        told: set[int] = set()
        try:
            launcher.launch(overrides, initial_job_idx=self.launched)
            for trial in batch:
                self.tell(trial)
                told.add(trial.number)
        finally:
            self.launched += len(batch)
            for trial in batch:
                if trial.number not in told:
                    self.tell(trial, stopped=True)
            self.heartbeat.trial_ids.clear()

    def tell(self, trial: Trial, stopped: bool = False) -> None:
        """Tell the study how the run of ``trial`` ended (its ``metrics.json``)."""
        metrics = read_metrics(self.sweep_dir / f"trial_{trial.number}") or {
            "status": Status.FAILED, "reason": "no metrics.json (the run did not start)"}
        status = metrics.get("status")
        if stopped and status not in (Status.COMPLETED, Status.PRUNED, Status.DIVERGED):
            status = Status.INTERRUPTED
        value = metrics.get(self.config.monitor.metric)
        for key in ("status", "reason", "epochs", "best_epoch",
                    self.config.monitor.metric.replace("val/", "test/")):
            if metrics.get(key) is not None:
                trial.set_user_attr(key, metrics[key])
        trial.set_user_attr("status", status)
        if status == Status.INTERRUPTED:
            studies.retry(self.study, self.storage.get_trial(
                self.storage.get_trial_id_from_study_id_trial_number(self.study_id,
                                                                      trial.number)))
        elif status == Status.COMPLETED and isinstance(value, int | float) and math.isfinite(value):
            self.study.tell(trial, float(value))
        elif status == Status.PRUNED:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
        write_out(f"trial {trial.number}: {status}"
                  + (f", {self.config.monitor.metric} {value:.4g}" if isinstance(value, float)
                     else "")
                  + f" ({len(studies.counted(self.study.get_trials(deepcopy=False)))}"
                  f"/{self.n_trials} trials)")
