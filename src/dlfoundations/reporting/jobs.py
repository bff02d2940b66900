"""The jobs of a sweep as read from their folders, and the axes the sweep varied.

Each job folder holds Hydra's ``.hydra/`` (overrides and config), ``metrics.json`` and its
TensorBoard events; the curves are read from those events, not from a second store. An axis is
an override key whose value differs between jobs, in the order of the command line. Seeds and
folds are replicate axes: jobs that differ only by them are one setting, measured n times.
"""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from dlfoundations.folder import RUN_CONTROL
from dlfoundations.status import Status

#: override keys whose values repeat a setting rather than change it
REPLICATE_KEYS = ("seed", "data.fold")
#: a scalar curve: (step, value) points; the step is the number of training samples seen
Curve = list[tuple[int, float]]
#: metrics.json keys that hold a number (or null, for one that was not finite), besides
#: every metric a model logs (``val/acc``, ``test/loss``, ...)
NUMBER_KEYS = ("epochs", "best_epoch", "global_step", "lr", "lr_base", "batch_size",
               "global_batch_size", "wall_time_s")


@dataclass
class Job:
    """One job of a sweep: its folder, the overrides that made it, its numbers and curves."""

    path: Path
    overrides: list[str]
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    name: str = ""
    #: why the job is left out of the tables (a damaged file); empty for a readable job
    problem: str = ""

    @property
    def values(self) -> dict[str, str]:
        """The overrides as key -> value (the key as written: ``+callbacks.probe.step``)."""
        return dict(override.split("=", 1) for override in self.overrides if "=" in override)

    @property
    def monitor(self) -> str:
        return (self.config.get("monitor") or {}).get("metric", "val/acc")

    @property
    def mode(self) -> str:
        return (self.config.get("monitor") or {}).get("mode", "max")

    @property
    def score(self) -> float:
        value = self.metrics.get(self.monitor)
        return float(value) if isinstance(value, int | float) else math.nan


@dataclass
class Setting:
    """Jobs that differ only by a replicate axis (seed, fold): one setting, n measurements."""

    name: str
    jobs: list[Job]

    @property
    def scores(self) -> list[float]:
        return [job.score for job in self.jobs if not math.isnan(job.score)]

    @property
    def mean(self) -> float:
        return statistics.mean(self.scores) if self.scores else math.nan

    @property
    def std(self) -> float:
        """The sample standard deviation over the replicates (0 for one)."""
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0


def natural(value: str | None) -> tuple[int, float, str]:
    """Sort key: numbers by value before words in alphabetical order, a job without the key
    (None) last."""
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


#: PyYAML's safe loader in C where libyaml is there (8x faster on a job's config.yaml)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: the deepest nesting of ``[`` and ``{`` a file may have: the C loader's recursion crashes
#: the process (a segmentation fault) at tens of thousands, the Python one raises at hundreds
MAX_NESTING = 200


def flow_nesting(text: str) -> int:
    """How deep ``text``'s ``[`` and ``{`` nest (those in strings counted too: a bound)."""
    depth = deepest = 0
    for bracket in re.sub(r"[^\[\]{}]", "", text):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def read_yaml(path: Path, default: Any) -> Any:
    """A YAML file's content (``default`` when the file is absent); ``ValueError`` naming
    the file when it cannot be read."""
    if not path.is_file():
        return default
    try:
        text = path.read_text()
        if flow_nesting(text) > MAX_NESTING:
            raise ValueError(f"{path.name} cannot be read (its lists or mappings nest deeper "
                             f"than {MAX_NESTING} levels)")
        return yaml.load(text, Loader=SAFE_LOADER) or default
    except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError) as err:
        raise ValueError(f"{path.name} cannot be read ({type(err).__name__})") from err


#: each job folder read in this process (by its absolute path), with the state of its files
#: then (``files_state``): a sweep's launcher reads its finished jobs while a core idles, and
#: the summary after the last job reads again only the folders whose files changed
READ_BEFORE: dict[Path, tuple[tuple, Job]] = {}


def files_state(path: Path) -> tuple:
    """Name, size and modification time of each file ``read_job`` reads (None for a missing
    one): any write to them changes it."""
    files = [path / ".hydra" / "overrides.yaml", path / ".hydra" / "config.yaml",
             path / "metrics.json", *sorted(path.glob("events.out.tfevents.*"))]
    state = []
    for file in files:
        try:
            stat = file.stat()
            state.append((file.name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            state.append((file.name, None))
    return tuple(state)


def read_job(path: Path) -> Job:
    """A job from its folder (``read_job_files``), or as read before in this process where
    none of its files changed since (a copy: ``name_jobs`` names it per sweep)."""
    key = path.absolute()
    state = files_state(path)
    before = READ_BEFORE.get(key)
    if before is None or before[0] != state:
        before = READ_BEFORE[key] = (state, read_job_files(path))
    return replace(before[1], path=path)


def read_job_files(path: Path) -> Job:
    """A job from its folder; a job whose files cannot be read keeps its overrides (where
    they can be read) and says why in ``problem``."""
    overrides: list[str] = []
    try:
        overrides = read_yaml(path / ".hydra" / "overrides.yaml", [])
        if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
            raise ValueError("its .hydra/overrides.yaml is not a list of overrides")
        overrides = [o for o in overrides if not o.startswith(("hydra.", *RUN_CONTROL))]
        config = read_yaml(path / ".hydra" / "config.yaml", {})
        metrics_file = path / "metrics.json"
        if not metrics_file.is_file():
            metrics = {"status": Status.FAILED,
                       "reason": "no metrics.json (the job did not finish)"}
        else:
            try:
                metrics = json.loads(metrics_file.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as err:
                raise ValueError(f"its metrics.json is not valid JSON ({err})") from err
        if not isinstance(metrics, dict) or not isinstance(config, dict):
            raise ValueError("its metrics.json or .hydra/config.yaml is not a mapping")
        check_numbers(metrics)
    except ValueError as err:
        return Job(path, overrides if isinstance(overrides, list) else [], {}, problem=str(err))
    return Job(path, overrides, metrics, config, read_curves(path))


def check_numbers(metrics: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first metric (``val/acc``) or count of ``metrics``
    that is not a number: a job whose score is a string would otherwise drop out of the
    mean ± std and the pivots without a word."""
    for key, value in sorted(metrics.items()):
        if ("/" in key or key in NUMBER_KEYS) and value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"its metrics.json gives {key}={value!r}, which is not a number")


def read_curves(run_dir: Path) -> dict[str, Curve]:
    """Every scalar of a run, from its TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not any(run_dir.glob("events.out.tfevents.*")):
        return {}
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def find_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder under ``sweep_dir``, best first by its monitored metric, each named
    by its swept axes (``name_jobs``); damaged jobs (``problem``) last."""
    jobs = [read_job(overrides.parent.parent)
            for overrides in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"))]
    name_jobs(jobs, swept_axes(jobs))
    return sorted(jobs, key=rank)


def planned_jobs(sweep_dir: Path) -> list[dict[str, str]] | None:
    """The overrides of every job the sweep in ``sweep_dir`` was to run, from the
    ``multirun.yaml`` Hydra wrote when it started (the preset's ``hydra.sweeper.params`` and
    the command line, its sweeps expanded); None for a search (its trials are drawn) or a
    folder without that record."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        record = read_yaml(sweep_dir / "multirun.yaml", {})
    except ValueError:
        return None
    hydra = record.get("hydra") if isinstance(record, dict) else None
    if not isinstance(hydra, dict) or (hydra.get("sweeper") or {}).get("n_trials") is not None:
        return None
    params = (hydra.get("sweeper") or {}).get("params") or {}
    texts = [f"{key}={value}" for key, value in params.items()] + [
        o for o in (hydra.get("overrides") or {}).get("task") or []
        if not o.startswith(RUN_CONTROL)]
    by_key = {o.get_key_element(): o for o in OverridesParser.create().parse_overrides(texts)}
    choices = [[f"{key}={value}" for value in o.sweep_string_iterator()]
               if o.is_sweep_override() else [f"{key}={o.get_value_element_as_str()}"]
               for key, o in by_key.items()]
    return [dict(text.split("=", 1) for text in combination) for combination in product(*choices)]


def missing_jobs(sweep_dir: Path, jobs: list[Job]) -> list[str]:
    """The names of the jobs the sweep planned that have no folder here (not run yet, or
    removed), named by the planned sweep's axes."""
    planned = planned_jobs(sweep_dir)
    if not planned:
        return []
    axes = [key for key in planned[0] if len({values.get(key) for values in planned}) > 1]
    found = {named(job.values, axes) for job in jobs}
    return [name for name in (named(values, axes) for values in planned) if name not in found]


def rank(job: Job) -> tuple[int, float]:
    """Completed jobs first, best monitored metric first, damaged jobs last."""
    if job.problem:
        return (2, 0.0)
    if job.metrics.get("status") != Status.COMPLETED or math.isnan(job.score):
        return (1, 0.0)
    return (0, -job.score if job.mode == "max" else job.score)


def swept_axes(jobs: list[Job]) -> list[str]:
    """The override keys whose values differ between jobs, in command-line order."""
    keys = list(dict.fromkeys(key for job in jobs for key in job.values))
    return [key for key in keys if len({job.values.get(key) for job in jobs}) > 1]


def setting_axes(axes: list[str]) -> list[str]:
    """The swept axes that change a setting (seed and fold aside)."""
    return [axis for axis in axes if axis not in REPLICATE_KEYS]


def replicate_axes(axes: list[str]) -> list[str]:
    """The swept axes that repeat a setting (seed, fold)."""
    return [key for key in REPLICATE_KEYS if key in axes]


def ranked(settings: list[Setting], mode: str) -> list[Setting]:
    """The settings that have a score, best mean first (``mode``: max or min)."""
    return sorted((s for s in settings if s.scores),
                  key=lambda s: -s.mean if mode == "max" else s.mean)


def named(values: dict[str, str], keys: list[str]) -> str:
    """``key=value`` of ``keys`` as Hydra names a job's folder: sorted, joined by commas, a
    ``/`` in a value as ``-``; so a job's name in the tables is its TensorBoard run's name."""
    return ",".join(sorted(f"{key}={values[key]}".replace("/", "-")
                           for key in keys if key in values))


def name_jobs(jobs: list[Job], axes: list[str]) -> None:
    """Name each job by its values of the swept axes (the folder name for a single job)."""
    for job in jobs:
        job.name = named(job.values, axes) or job.path.name


def settings(jobs: list[Job], axes: list[str]) -> list[Setting]:
    """The jobs grouped into settings (equal values of every non-replicate axis), in the order
    of ``jobs``."""
    keys = setting_axes(axes)
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(named(job.values, keys) or "all jobs", []).append(job)
    return [Setting(name, members) for name, members in groups.items()]
