"""A sweep's console: one line per finished job with the sweep's progress.

``[3/18] optim=adam,data.batch_size=64: completed, val/acc 0.8512 in 12.3 s; 0:40 elapsed,
about 3:20 left`` -- the job named by its swept overrides, its status and monitored metric
from its ``metrics.json``, the time left estimated from the jobs done so far. Jobs that run in
this process are reported by the Hydra callback, jobs of the side-by-side launcher's workers
by the launcher.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from dlfoundations.folder import read_metrics
from dlfoundations.reporting.jobs import named
from dlfoundations.run.console import write_out
from dlfoundations.status import Status


def sweep_plan(config: DictConfig) -> tuple[int, list[str]]:
    """The number of jobs a sweep runs and its swept keys: a search's ``n_trials`` and
    parameters, or the product of the sweeps in the preset's ``hydra.sweeper.params`` and on
    the command line (a command-line value replaces the preset's)."""
    params = OmegaConf.to_container(
        OmegaConf.select(config, "hydra.sweeper.params", default=None) or OmegaConf.create())
    n_trials = OmegaConf.select(config, "hydra.sweeper.n_trials", default=None)
    if n_trials is not None:
        return int(n_trials), list(params)
    texts = [f"{key}={value}" for key, value in params.items()] + list(
        config.hydra.overrides.task)
    by_key = {o.get_key_element(): o for o in OverridesParser.create().parse_overrides(texts)}
    swept = [key for key, o in by_key.items() if o.is_sweep_override()]
    return math.prod(len(list(by_key[key].sweep_string_iterator())) for key in swept), swept


def job_folder(job: JobReturn) -> Path | None:
    """The folder a job ran in, from its own Hydra config (``hydra.runtime.output_dir`` as
    the job saw it). Not ``paths.output_dir`` of ``job.cfg``: that interpolation resolves
    against the Hydra config of the process that reads it, the launcher's in a side-by-side
    sweep."""
    output_dir = OmegaConf.select(job.hydra_cfg, "hydra.runtime.output_dir", default=None) \
        if job.hydra_cfg is not None else None
    return Path(output_dir) if output_dir else None


def clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 \
        else f"{minutes}:{seconds:02d}"


class SweepProgress:
    """The sweep's count of finished jobs, started by ``start`` in the sweep's process."""

    def __init__(self) -> None:
        self.total = 0
        self.swept: list[str] = []
        self.started: float | None = None
        self.done = 0

    def start(self, total: int, swept: list[str]) -> None:
        self.total, self.swept, self.started, self.done = total, swept, time.monotonic(), 0

    def line(self, job: JobReturn, failure: str | None = None) -> str:
        """The job's line with the sweep's progress; ``failure``: why the job failed where
        its ``metrics.json`` cannot say (e.g. its worker process died)."""
        assert self.started is not None
        self.done += 1
        values = dict(o.split("=", 1) for o in job.overrides or [] if "=" in o)
        name = named(values, self.swept) or "job"
        folder = job_folder(job)
        metrics = (read_metrics(folder) or {}) if folder is not None else {}
        status = metrics.get("status") or (Status.FAILED if job.status == JobStatus.FAILED
                                           or failure else "unknown")
        monitor = OmegaConf.select(job.cfg, "monitor.metric", default="val/acc") \
            if job.cfg is not None else "val/acc"
        result = f", {monitor} {metrics[monitor]:.4g}" if isinstance(
            metrics.get(monitor), int | float) else ""
        why = metrics.get("reason") or failure
        reason = f" ({why})" if status != Status.COMPLETED and why else ""
        took = f" in {metrics['wall_time_s']:.1f} s" if "wall_time_s" in metrics else ""
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * max(self.total - self.done, 0)
        return (f"[{self.done}/{self.total}] {name}: {status}{result}{took}{reason}; "
                f"{clock(elapsed)} elapsed, about {clock(left)} left")

    def job_done(self, job: JobReturn, failure: str | None = None) -> None:
        """Print the job's line, where this process runs the sweep."""
        if self.started is not None:
            write_out(self.line(job, failure))


#: the progress of the sweep this process runs
PROGRESS = SweepProgress()
