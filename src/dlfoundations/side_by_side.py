"""Worker processes that run a sweep's jobs side by side, each pinned to its slot: a share of
the cores (torch threads) and, on a GPU machine, one GPU (``CUDA_VISIBLE_DEVICES``).

Workers are started once per sweep, then take one task at a time (a job; for the fused
launcher, a fused group), so a job pays no start-up of its own. On a CPU machine they are
forked from a server process that imported torch, Lightning and the project once
(``forkserver``, started as the launcher is set up, while Hydra composes the jobs); with GPUs
each is a fresh interpreter (``spawn``) that sees only its own GPU. They run in their own
process group: Ctrl-C reaches the launcher only, which forwards every signal it receives to
the workers (the jobs save ``last.ckpt`` and end ``interrupted``), starts no further job, and
stops the sweep with its summary. A worker that dies leaves its job ``failed`` and is replaced.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from dlfoundations import folder
from dlfoundations.environment import cuda_visible_devices, imports_frozen
from dlfoundations.errors import UserError, refused, require
from dlfoundations.progress import PROGRESS
from dlfoundations.reporting.summary import import_its_modules, read_ahead
from dlfoundations.status import Status

#: how often the launcher looks at signals and at its workers while it waits, in seconds
POLL_S = 0.2
#: what the server that CPU workers are forked from imports (a spawned worker spent about 5 s
#: of a 2-core CPU importing torch and Lightning before its first job)
PRELOAD = ["dlfoundations.frozen_server"]


@dataclass(frozen=True)
class Slot:
    """One worker's share of the machine."""

    index: int
    threads: int
    gpu: str | None  # its CUDA_VISIBLE_DEVICES entry; None on a CPU machine


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` where set, else all of them."""
    visible = cuda_visible_devices()
    if visible is not None:
        return visible
    with imports_frozen("torch"):
        import torch
    return [str(index) for index in range(torch.cuda.device_count())]


def plan_slots(n_jobs: Any, jobs_per_gpu: Any, threads: Any, cores: int, gpus: list[str]
               ) -> list[Slot]:
    """The workers' slots. Without GPUs, n_jobs x threads = cores by default; with GPUs,
    ``jobs_per_gpu`` workers per GPU by default, placed round-robin (slot i on GPU i mod G).
    Each job gets cores / n_jobs threads unless ``threads`` is set."""
    for key, value in (("hydra.launcher.n_jobs", n_jobs), ("threads", threads)):
        require(value is None or (type(value) is int and value >= 1), key, value,
                "null or a whole number of at least 1")
    require(type(jobs_per_gpu) is int and jobs_per_gpu >= 1, "hydra.launcher.jobs_per_gpu",
            jobs_per_gpu, "a whole number of at least 1")
    if n_jobs is None:
        n_jobs = jobs_per_gpu * len(gpus) if gpus else max(1, cores // (threads or 1))
    per_job = threads or max(1, cores // n_jobs)
    return [Slot(i, per_job, gpus[i % len(gpus)] if gpus else None) for i in range(n_jobs)]


def multi_process(sweep_config: DictConfig) -> str | None:
    """What makes the job more than one process on one device (e.g. ``trainer.devices=2``, or
    ``trainer.strategy=ddp_spawn``, which starts processes even for one device); None for a
    job a worker can run."""
    from dlfoundations.run.cli import START_METHODS_IN_PROCESS

    trainer = sweep_config.get("trainer") or {}
    for key in ("devices", "num_nodes"):
        value = trainer.get(key, 1)
        if value != 1:
            return f"trainer.{key}={value}"
    strategy = trainer.get("strategy")
    if isinstance(strategy, str) and strategy.startswith(START_METHODS_IN_PROCESS):
        return f"trainer.strategy={strategy}"
    return None


def check_one_process(sweep_config: DictConfig, on: str = "hydra/launcher=side_by_side"
                      ) -> None:
    """A job on a worker is one process on one device: DDP jobs are refused before any job
    runs (``on``: what put the jobs on workers, as the sentence names it)."""
    what = multi_process(sweep_config)
    if what is not None:
        raise UserError(
            f"{what} is not allowed with {on}: each job runs in one process on one device; "
            "run multi-process jobs with the default launcher (which runs them in its own "
            "process, one after another) or with hydra/launcher=slurm."
        )


def prepare_workers(launcher: Any, jobs: int) -> None:
    """As the launcher is set up: start the server CPU workers are forked from, where the
    sweep of ``jobs`` jobs will have more than one worker (its imports then overlap the
    launcher's own work, e.g. Hydra composing the jobs)."""
    gpus = visible_gpus()
    try:
        slots = plan_slots(launcher.n_jobs, launcher.jobs_per_gpu,
                           launcher.config.get("threads"), len(os.sched_getaffinity(0)), gpus)
    except UserError:  # refused, in its own sentence, as the sweep launches
        return
    if launcher.uses_workers(jobs, len(slots)) and start_method(gpus) == "forkserver":
        start_server()


def start_method(gpus: list[str]) -> str:
    """How workers start: on a CPU machine forked from a server that imported ``PRELOAD``
    once (``forkserver``); with GPUs fresh (``spawn``), so that each worker's CUDA starts
    with its own ``CUDA_VISIBLE_DEVICES``. Never forked from the launcher's own process,
    which may have trained: GNU OpenMP's threads do not survive a fork, and a child that
    computes on more than one thread then waits forever."""
    return "spawn" if gpus else "forkserver"


def start_server() -> bool:
    """Start the server CPU workers are forked from, unless it runs; False where it cannot
    start (e.g. no writable folder for its socket: the workers are then spawned).

    It starts with SIGINT ignored (a disposition that survives its exec; Python then leaves
    it so), since it imports for seconds in the sweep's process group, where a Ctrl-C meant
    for the sweep would end it with a traceback; the launcher hands every signal on to the
    workers, which install their own handlers. Meanwhile SIGINT is blocked here, so that one
    reaching the launcher waits and is acted on once the server has started (the resource
    tracker is started first: starting it unblocks SIGINT); the server keeps it blocked, and
    its workers unblock it (``serve``)."""
    from multiprocessing import forkserver, resource_tracker

    multiprocessing.set_forkserver_preload(PRELOAD)
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    except OSError:
        return False
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return True


def stop_when_gone(launcher_pid: int) -> None:
    """In a worker: once the launcher's process is gone (e.g. killed by SIGKILL), stop the
    job as a signal would (its ``last.ckpt`` saved, ``interrupted``), so that no worker
    trains on unsupervised."""
    while folder.process_exists(launcher_pid):
        time.sleep(POLL_S * 5)
    os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the processes started inside the block."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pinned(slot: Slot) -> dict[str, str]:
    """The environment variables that pin a worker to its slot."""
    variables = {"OMP_NUM_THREADS": str(slot.threads)}
    if slot.gpu is not None:
        variables["CUDA_VISIBLE_DEVICES"] = slot.gpu
    return variables


#: what a worker does with one task: the returns of the jobs it ran, in the task's order
Work = Callable[[Any, Any, Any], list[JobReturn]]


def run_one(hydra_context: Any, task_function: Any, sweep_config: DictConfig) -> list[JobReturn]:
    """A side-by-side task: one job, run as Hydra's own launcher runs it."""
    HydraConfig.instance().set_config(sweep_config)
    return [run_job(hydra_context=hydra_context, config=sweep_config,
                    task_function=task_function, job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir")]


def serve(slot: Slot, payload: bytes, tasks: Any, results: Any, launcher_pid: int) -> None:
    """A worker's life: take tasks until told to stop (None) or the launcher is gone."""
    os.setpgrp()  # signals come from the launcher only, each once
    from dlfoundations.environment import set_up_process
    from dlfoundations.interrupts import INTERRUPTS

    environ, cwd, hydra_context, task_function, singleton_state, work = cloudpickle.loads(
        payload)
    os.environ.clear()  # the launcher's as it is now (a forked worker's server started
    os.environ.update({**environ, **pinned(slot)})  # earlier, maybe in another test)
    os.chdir(cwd)
    set_up_process()  # a forked worker's server did not run the script's
    INTERRUPTS.install()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked in its server
    with imports_frozen("torch"):  # a spawned worker's first import of it
        import torch
    torch.set_num_threads(slot.threads)
    setup_globals()
    Singleton.set_state(singleton_state)
    threading.Thread(target=stop_when_gone, args=(launcher_pid,), daemon=True).start()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if not folder.process_exists(launcher_pid):
                return
            continue
        if task is None:
            return
        position, item = task
        results.put((slot.index, position, work(hydra_context, task_function, item)))


class Workers:
    """The launcher's side: one process per slot, started on demand, each with its own task
    queue; one result queue."""

    def __init__(self, slots: list[Slot], payload: bytes) -> None:
        self.method = start_method([slot.gpu for slot in slots if slot.gpu is not None])
        self.context = multiprocessing.get_context(self.method)
        self.slots, self.payload = slots, payload
        self.results = self.context.Queue()
        self.processes: dict[int, Any] = {}
        self.tasks: dict[int, Any] = {}

    def start(self, slot: Slot) -> None:
        """Start the slot's worker. Where the server it is forked from ends before it forks
        one (killed, or one of its imports failed: its error is printed above), a new server
        is started once; then the sweep is refused in one sentence."""
        for attempt in range(2):
            if self.method == "forkserver" and not start_server():
                self.method, self.context = "spawn", multiprocessing.get_context("spawn")
            self.tasks[slot.index] = self.context.Queue()
            process = self.context.Process(
                target=serve, name=f"side-by-side-{slot.index}", daemon=True,
                args=(slot, self.payload, self.tasks[slot.index], self.results, os.getpid()))
            try:
                with environment(**pinned(slot)):  # from its start, where it is spawned
                    process.start()
            except (EOFError, ConnectionError) as err:  # the server ended meanwhile
                if attempt:
                    raise UserError(
                        "the sweep's workers cannot start: the server they are forked from, "
                        "which imports torch, Lightning and the project for them, ended "
                        "twice before forking one; its error, if it printed one, is above "
                        "(e.g. MPLBACKEND naming a backend matplotlib refuses, which the jobs' "
                        "own imports meet too)."
                    ) from err
                continue
            self.processes[slot.index] = process
            return

    def give(self, slot: Slot, task: tuple[int, Any]) -> None:
        if slot.index not in self.processes or self.ended(slot.index) is not None:
            self.start(slot)
        self.tasks[slot.index].put(task)

    def ended(self, index: int) -> int | None:
        """The exit status of the slot's worker once it has ended; None while it runs. A
        forked worker's status comes from the server it was forked from; where that server
        is gone (255 then), the worker may still run and is asked directly."""
        process = self.processes[index]
        exitcode = process.exitcode
        if exitcode is not None and self.method == "forkserver" and \
                folder.process_exists(process.pid):
            return None
        return exitcode

    def signal(self, signum: int) -> None:
        for index, process in self.processes.items():
            if self.ended(index) is None:
                os.kill(process.pid, signum)

    def stop(self) -> None:
        for index in self.processes:
            if self.ended(index) is None:
                self.tasks[index].put(None)
        for process in self.processes.values():
            process.join()


def sweep_configs(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
                  ) -> list[DictConfig]:
    """Each job's composed config (as the sweeper's check composed it), numbered as Hydra
    numbers jobs."""
    configs = []
    for offset, overrides in enumerate(job_overrides):
        sweep_config = launcher.composed.take(launcher.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{initial_job_idx + offset}"
            sweep_config.hydra.job.num = initial_job_idx + offset
        configs.append(sweep_config)
    return configs


def sweep_job_folder(sweep_config: DictConfig) -> Path:
    """The job's folder, as Hydra names it: ``hydra.sweep.dir`` / ``hydra.sweep.subdir``
    (resolved with the job's own Hydra config, ``${hydra.job.num}`` and the like)."""
    HydraConfig.instance().set_config(sweep_config)
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def job_folders(configs: Sequence[DictConfig]) -> list[Path]:
    """Each job's folder (absolute), in order."""
    return [sweep_job_folder(sweep_config).absolute() for sweep_config in configs]


def check_distinct_folders(configs: Sequence[DictConfig], folders: Sequence[Path]) -> None:
    """Two jobs given one folder are refused, naming both, before any job runs (one of them
    would find the other's claim and fail, which one by timing)."""
    first: dict[Path, int] = {}
    for position, (sweep_config, run_dir) in enumerate(zip(configs, folders, strict=True)):
        if run_dir in first:
            raise UserError(f"hydra.sweep.subdir={sweep_config.hydra.sweep.subdir!r} is not "
                            f"allowed: it gives jobs {first[run_dir]} and {position} one "
                            f"folder, {run_dir}; give each job its own, e.g. "
                            "hydra.sweep.subdir=${hydra.job.num}.")
        first[run_dir] = position


def lost_job(sweep_config: DictConfig, exitcode: int | None) -> tuple[JobReturn, str]:
    """The return of a job whose worker died, and why: ``failed`` in its ``metrics.json``
    (where the job had claimed its folder); the sweep goes on."""
    from dlfoundations.run.cli import record_failure

    run_dir = sweep_job_folder(sweep_config)
    how = (f"signal {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0
           else f"exit status {exitcode}")
    reason = f"its worker process ended with {how}"
    if (run_dir / folder.CLAIM_FILE).exists():
        record_failure(run_dir, {"status": Status.FAILED, "reason": reason})
    hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir)}}})
    return JobReturn(overrides=list(sweep_config.hydra.overrides.task), cfg=sweep_config,
                     hydra_cfg=hydra_cfg, working_dir=str(run_dir),
                     task_name=sweep_config.hydra.job.name, status=JobStatus.COMPLETED,
                     _return_value=math.nan), reason


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
           ) -> Sequence[JobReturn]:
    """Run the jobs on the slots' workers; after a signal, end the sweep (exit status 3)."""
    from dlfoundations.run.cli import COMMAND

    config = launcher.config
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    try:
        slots = plan_slots(launcher.n_jobs, launcher.jobs_per_gpu, config.get("threads"),
                           len(os.sched_getaffinity(0)), visible_gpus())
        configs = sweep_configs(launcher, job_overrides, initial_job_idx)
        for sweep_config in configs:
            check_one_process(sweep_config)
        check_distinct_folders(configs, job_folders(configs))
        HydraConfig.instance().set_config(config)  # the sweep's again, as the workers get it
    except UserError as err:
        raise refused(err) from err
    command = COMMAND.get()
    if command is not None:  # from here on a fault is a job's or a bug, not the command line's
        command.job_started = True
    returns = on_workers(launcher, slots, configs,
                         [([position], config) for position, config in enumerate(configs)],
                         run_one)
    return [returns[position] for position in sorted(returns)]


def on_workers(launcher: Any, slots: list[Slot], configs: list[DictConfig],
               tasks: list[tuple[list[int], Any]], work: Work) -> dict[int, JobReturn]:
    """Hand each task (the positions of its jobs among ``configs``, and what ``work`` takes)
    to a free worker; a job's line is printed as its task returns. Signals are forwarded to
    the workers and end the sweep (exit status 3); a worker that dies leaves its jobs
    ``failed``. The summary's modules are imported in a thread of their own from the start,
    while the launcher waits: on a CPU machine, first for the server workers are forked from,
    which imports torch and Lightning on another core for about a second longer. Once every
    task is handed out and a slot is free, the finished jobs' folders are read here, in the
    launcher's own thread, one at a time (a signal stops a folder's reading at once). Returns
    each job's return by its position among ``configs``."""
    from dlfoundations.interrupts import INTERRUPTS
    from dlfoundations.run.cli import sweep_stopped

    config = launcher.config
    payload = cloudpickle.dumps((dict(os.environ), os.getcwd(), launcher.hydra_context,
                                 launcher.task_function, Singleton.get_state(), work))
    workers = Workers(slots[:len(tasks)], payload)
    pending = deque(enumerate(item for _, item in tasks))
    returns: dict[int, JobReturn] = {}
    busy: dict[int, int] = {}  # slot index -> the task it runs
    forwarded = 0
    # while the first worker waits for its server, which imports torch and Lightning
    importing = threading.Thread(target=import_its_modules, name="summary-imports")
    importing.start()
    finished: deque[int] = deque()  # the positions of returned jobs, not yet read ahead
    try:
        while pending or busy:
            while forwarded < INTERRUPTS.count:  # each signal once, a second one too
                workers.signal(INTERRUPTS.received)
                forwarded += 1
                pending.clear()
            for slot in workers.slots:
                if pending and slot.index not in busy:
                    busy[slot.index] = pending[0][0]
                    workers.give(slot, pending.popleft())
            wait_s = POLL_S
            if (not pending and 0 < len(busy) < len(slots) and finished
                    and INTERRUPTS.received is None):  # a core idles
                read_ahead(sweep_job_folder(configs[finished.popleft()]))
                wait_s = 0  # the next one at once, unless a task has returned
            try:
                index, task, returned = workers.results.get(timeout=wait_s)
                for position, job in zip(tasks[task][0], returned, strict=True):
                    returns[position] = job
                    PROGRESS.job_done(job)
                    finished.append(position)
                del busy[index]
            except queue.Empty:
                for index, task in list(busy.items()):
                    exitcode = workers.ended(index)
                    if exitcode is not None:
                        for position in tasks[task][0]:
                            returns[position], reason = lost_job(configs[position], exitcode)
                            PROGRESS.job_done(returns[position], failure=reason)
                        del busy[index]
    finally:
        workers.stop()
        importing.join()
    if INTERRUPTS.received is not None:
        raise sweep_stopped(config.get("search") is not None, str(config.hydra.sweep.dir))
    return returns
