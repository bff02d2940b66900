"""Sweep summary: a table and figures from the job folders of a multirun.

Each job folder holds Hydra's ``.hydra/`` (overrides and config), ``metrics.json`` and its
TensorBoard events; the curves are read from those events, not from a second store. Written
into the sweep folder: ``summary.csv``, ``summary.md`` and one PNG per figure of the jobs'
``report`` config (by default ``curves.png``: validation loss and accuracy per epoch).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: columns of the summary besides the monitored metric, its test counterpart and extras
COLUMNS = ("status", "epochs", "best_epoch", "lr", "global_batch_size", "wall_time_s", "reason")
DEFAULT_REPORT: dict[str, Any] = {
    "figures": [{"name": "curves", "tags": ["val/loss", "val/acc"], "x": "epoch"}],
    "columns": [], "epoch_table": [],
}
#: panels of a figure side by side before it wraps into another row
PANELS_PER_ROW = 3
#: a scalar curve: (step, value) points
Curve = list[tuple[int, float]]


@dataclass
class Job:
    """One job of a sweep: its folder, the overrides that made it, its numbers and curves."""

    path: Path
    overrides: list[str]
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    name: str = ""

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


def read_job(path: Path) -> Job:
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    metrics_file = path / "metrics.json"
    metrics = (json.loads(metrics_file.read_text()) if metrics_file.is_file()
               else {"status": "failed", "reason": "no metrics.json (the job did not finish)"})
    config_file = path / ".hydra" / "config.yaml"
    config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    return Job(path, [o for o in overrides if not o.startswith("hydra.")], metrics, config,
               read_curves(path))


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
    """Every job folder under ``sweep_dir``, best first by its monitored metric."""
    jobs = [read_job(overrides.parent.parent)
            for overrides in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"))]
    name_by_swept_overrides(jobs)

    def rank(job: Job) -> tuple[int, float]:
        if job.metrics.get("status") != "completed" or math.isnan(job.score):
            return (1, 0.0)
        return (0, -job.score if job.mode == "max" else job.score)

    return sorted(jobs, key=rank)


def name_by_swept_overrides(jobs: list[Job]) -> None:
    """Name each job by the overrides that differ between jobs (all of them for one job)."""
    common = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    for job in jobs:
        job.name = ",".join(o for o in job.overrides if o not in common) or job.path.name


def report_config(jobs: list[Job]) -> dict[str, Any]:
    """The ``report`` node of the jobs' config (the first job that has one)."""
    for job in jobs:
        if job.config.get("report"):
            return {**DEFAULT_REPORT, **job.config["report"]}
    return DEFAULT_REPORT


def cross_validation(jobs: list[Job]) -> list[dict[str, Any]]:
    """Mean and standard deviation of the monitored metric over the folds of each setting."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if any(o.startswith("data.fold=") for o in job.overrides):
            key = ",".join(o for o in job.name.split(",") if not o.startswith("data.fold="))
            groups.setdefault(key or "-", []).append(job)
    rows = []
    for key, members in groups.items():
        scores = [job.score for job in members if not math.isnan(job.score)]
        if len(scores) >= 2:
            rows.append({"setting": key, "metric": members[0].monitor, "folds": len(scores),
                         "mean": statistics.mean(scores), "std": statistics.stdev(scores)})
    return rows


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None empty."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def table_rows(jobs: list[Job], extra: list[str]) -> tuple[list[str], list[list[str]]]:
    metrics = list(dict.fromkeys(
        key for job in jobs for key in (job.monitor, job.monitor.replace("val/", "test/"))))
    header = ["job", *metrics, *extra, *COLUMNS]
    rows = [[job.name, *(cell(job.metrics.get(key)) for key in [*metrics, *extra]),
             *(cell(job.metrics.get(c)) for c in COLUMNS)] for job in jobs]
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |"
                    for row in rows]


def markdown(jobs: list[Job], config: dict[str, Any], folds: list[dict[str, Any]]) -> str:
    lines = markdown_table(*table_rows(jobs, list(config["columns"])))
    if folds:
        lines += ["", "Cross-validation:", ""]
        lines += markdown_table(["setting", "metric", "folds", "mean ± std"], [
            [f["setting"], f["metric"], str(f["folds"]), f"{f['mean']:.4f} ± {f['std']:.4f}"]
            for f in folds])
    for tag in config["epoch_table"]:
        epochs = max((len(job.curves.get(tag, [])) for job in jobs), default=0)
        if epochs:
            lines += ["", f"{tag} per epoch:", ""]
            lines += markdown_table(["job", *(str(e) for e in range(1, epochs + 1))], [
                [job.name, *(cell(value) for _, value in job.curves.get(tag, []))]
                for job in jobs])
    return "\n".join(lines) + "\n"


def smoothed(values: list[float], factor: float) -> list[float]:
    """Exponential moving average, like TensorBoard's smoothing: s_t = f s_(t-1) + (1-f) v_t."""
    out: list[float] = []
    for value in values:
        out.append(value if not out else factor * out[-1] + (1 - factor) * value)
    return out


def panel_value(job: Job, key: str, pattern: str | None) -> str | None:
    """The value of override ``key`` in ``job`` (the first group of ``pattern`` if given)."""
    for override in job.overrides:
        if override.startswith(f"{key}="):
            value = override.split("=", 1)[1]
            match = re.fullmatch(pattern, value) if pattern else None
            return f"{key}={match[1] if match else value}"
    return None


def panels(jobs: list[Job], figure: dict[str, Any]) -> list[tuple[str, str, list[Job]]]:
    """(tag, title, jobs) per panel: one per tag, or per tag and value of ``panels_by``
    (values mapped through the regular expression ``panel_of`` when given, e.g.
    ``(?:scratch/)?(.+)`` puts ``optim=adam`` and ``optim=scratch/adam`` in one panel)."""
    tags = [tag for tag in figure["tags"] if any(tag in job.curves for job in jobs)]
    key = figure.get("panels_by")
    if not key:
        return [(tag, tag, jobs) for tag in tags]
    by_job = {id(job): panel_value(job, key, figure.get("panel_of")) for job in jobs}
    values = [value for value in dict.fromkeys(by_job.values()) if value]
    return [(tag, f"{tag}, {value}", [job for job in jobs if by_job[id(job)] == value])
            for tag in tags for value in values]


def plot(jobs: list[Job], figure: dict[str, Any], path: Path) -> None:
    """One panel per tag (and ``panels_by`` value), one line per job.

    Figure keys: ``tags``; ``x``: epoch, step or samples (step x global batch size);
    ``smooth``: EMA factor; ``log_y``; ``panels_by``: an override key, ``panel_of``: a
    regular expression for its values (``panels``); ``dashes``: a different line style for
    each line of a panel, so that lines drawn on top of each other stay visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    layout = panels(jobs, figure)
    x_axis, key = figure.get("x", "epoch"), figure.get("panels_by")
    count = max(len(layout), 1)
    columns = min(count, PANELS_PER_ROW)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.8 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    styles = [("-", 3.0), ("--", 2.2), (":", 2.2), ("-.", 1.2)] if figure.get("dashes") \
        else [("-", None)]
    for ax, (tag, title, members) in zip(axes.flat, layout, strict=False):
        for index, job in enumerate(members):
            points = job.curves.get(tag, [])
            if not points:
                continue
            if x_axis == "epoch":
                xs = list(range(1, len(points) + 1))
            else:
                scale = job.metrics.get("global_batch_size", 1) if x_axis == "samples" else 1
                xs = [step * scale for step, _ in points]
            ys = smoothed([value for _, value in points], figure.get("smooth", 0.0))
            label = ",".join(o for o in job.name.split(",")
                             if not (key and not figure.get("panel_of") and o.startswith(key)))
            style, width = styles[index % len(styles)]
            ax.plot(xs, ys, marker="." if len(xs) < 60 else None, label=label or job.name,
                    linestyle=style, linewidth=width)
        ax.set(title=title, xlabel=x_axis, ylabel=tag)
        if x_axis == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if figure.get("log_y"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_summary(sweep_dir: str | Path) -> str:
    """Write summary.csv, summary.md and the figures into ``sweep_dir``; return the Markdown."""
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    config = report_config(jobs)
    header, rows = table_rows(jobs, list(config["columns"]))
    with (sweep_dir / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    text = markdown(jobs, config, cross_validation(jobs))
    (sweep_dir / "summary.md").write_text(text)
    for figure in config["figures"]:
        plot(jobs, figure, sweep_dir / f"{figure['name']}.png")
    return text
