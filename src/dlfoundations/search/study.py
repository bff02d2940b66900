"""The study in its storage: where it lives, which of its trials count, and which are re-tried.

A study is shared through its storage (a SQLite file by default, any SQLAlchemy URL such as
``postgresql://host/db`` for many machines); every sweep process and every job reaches it there.
A trial counts toward ``n_trials`` unless it failed for want of its sweeper (killed, or
interrupted by a signal) and was queued again, or it was asked for beyond the budget (two
sweepers racing for the last trial; ``surplus``): each trial number runs once.
"""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, ProgrammingError

#: user attributes the sweeper sets on a trial
WORKER, RETRY_OF, SURPLUS = "worker", "retry_of", "surplus"
FINAL_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's storage: ``storage`` as given, or the SQLite file ``study.db`` in the
    sweep folder (an absolute path, so that jobs anywhere on the machine find it)."""
    return storage or f"sqlite:///{Path(sweep_dir).resolve() / 'study.db'}"


def open_storage(url: str, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, attempts: int = 5) -> RDBStorage:
    """The RDB storage at ``url``; SQLite waits up to 60 s for a lock (jobs side by side write
    to it at every epoch). With a heartbeat, a trial whose sweeper stops beating for
    ``grace_period`` seconds is stale (``recover``).

    Sweepers started together on a new PostgreSQL database race to create Optuna's tables,
    and PostgreSQL's ``CREATE TABLE IF NOT EXISTS`` lets the losers fail with a unique
    violation; opening again finds the tables made, so a losing sweeper retries."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}

    def storage() -> RDBStorage:
        with warnings.catch_warnings():  # the heartbeat arguments are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat_interval,
                              grace_period=grace_period)

    for _ in range(attempts - 1):
        try:
            return storage()
        except (IntegrityError, ProgrammingError):
            time.sleep(0.2 + random.random())
    return storage()


def worker_id() -> str:
    """This process, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def alive_here(worker: str) -> bool | None:
    """Whether the process ``host:pid`` is alive; None when it runs on another host."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def retried(trials: Iterable[FrozenTrial]) -> set[int]:
    """The numbers of the trials whose parameters were queued again in another trial."""
    return {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}


def counted(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``n_trials``: asked for (not waiting in the queue), not
    re-tried in another trial, not surplus."""
    trials = list(trials)
    again = retried(trials)
    return [t for t in trials if t.state != TrialState.WAITING and t.number not in again
            and not t.user_attrs.get(SURPLUS)]


def retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Fail ``trial`` (if still running) and queue its parameters again."""
    if trial.state == TrialState.RUNNING:
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another sweeper finished it first
            return
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})


def recover(study: optuna.Study) -> list[int]:
    """Re-try the trials left running by sweepers that are gone: on this host, a process that
    no longer exists; elsewhere, a heartbeat older than the storage's grace period. Returns
    their numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # stale -> FAIL; re-queued below
    gone = []
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    for trial in trials:
        worker = trial.user_attrs.get(WORKER, "")
        if trial.number in again or trial.user_attrs.get(SURPLUS):
            continue
        stale = trial.state == TrialState.FAIL and "status" not in trial.user_attrs
        dead = trial.state == TrialState.RUNNING and alive_here(worker) is False
        if stale or dead:
            retry(study, trial)
            gone.append(trial.number)
    return gone
