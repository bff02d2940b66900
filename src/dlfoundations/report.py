"""Sweep summary: one table and one figure from the job folders of a multirun.

Each job folder holds Hydra's ``.hydra/overrides.yaml``, ``metrics.json`` and its TensorBoard
events; the curves are read from those events, not from a second store. Written into the
sweep folder: ``summary.csv``, ``summary.md`` and ``curves.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: columns of summary.csv / summary.md besides the job's metric and its test counterpart
COLUMNS = ("status", "best_epoch", "lr", "global_batch_size", "wall_time_s", "reason")


@dataclass
class Job:
    """One job of a sweep: its folder, the overrides that made it, its final numbers."""

    path: Path
    overrides: list[str]
    metrics: dict[str, Any]
    monitor: str = "val/acc"
    mode: str = "max"
    curves: dict[str, list[float]] = field(default_factory=dict)

    name: str = ""

    @property
    def score(self) -> float:
        value = self.metrics.get(self.monitor)
        return float(value) if isinstance(value, int | float) else math.nan


def read_job(path: Path) -> Job:
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    metrics_file = path / "metrics.json"
    metrics = (json.loads(metrics_file.read_text()) if metrics_file.is_file()
               else {"status": "failed", "reason": "no metrics.json (the job did not finish)"})
    job = Job(path, [o for o in overrides if not o.startswith("hydra.")], metrics)
    config_file = path / ".hydra" / "config.yaml"
    if config_file.is_file():
        monitor = (yaml.safe_load(config_file.read_text()) or {}).get("monitor") or {}
        job.monitor, job.mode = monitor.get("metric", job.monitor), monitor.get("mode", job.mode)
    job.curves = read_curves(path)
    return job


def read_curves(run_dir: Path) -> dict[str, list[float]]:
    """Per-epoch validation scalars of a run, from its TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not any(run_dir.glob("events.out.tfevents.*")):
        return {}
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: [event.value for event in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if tag.startswith("val/")}


def find_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder under ``sweep_dir``, best first by its monitored metric."""
    jobs = [read_job(overrides.parent.parent)
            for overrides in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"))]

    def rank(job: Job) -> tuple[int, float]:
        if job.metrics.get("status") != "completed" or math.isnan(job.score):
            return (1, 0.0)
        return (0, -job.score if job.mode == "max" else job.score)

    name_by_swept_overrides(jobs)
    return sorted(jobs, key=rank)


def name_by_swept_overrides(jobs: list[Job]) -> None:
    """Name each job by the overrides that differ between jobs (all of them for one job)."""
    common = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    for job in jobs:
        job.name = ",".join(o for o in job.overrides if o not in common) or job.path.name


def cross_validation(jobs: list[Job]) -> list[dict[str, Any]]:
    """Mean and standard deviation of the monitored metric over the folds of each setting."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if any(o.startswith("data.fold=") for o in job.overrides):
            key = ",".join(o for o in job.overrides if not o.startswith("data.fold=")) or "-"
            groups.setdefault(key, []).append(job)
    rows = []
    for key, members in groups.items():
        scores = [job.score for job in members if not math.isnan(job.score)]
        if len(scores) >= 2:
            rows.append({"setting": key, "metric": members[0].monitor, "folds": len(scores),
                         "mean": statistics.mean(scores), "std": statistics.stdev(scores)})
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def table_rows(jobs: list[Job]) -> tuple[list[str], list[list[str]]]:
    metrics = list(dict.fromkeys(
        key for job in jobs for key in (job.monitor, job.monitor.replace("val/", "test/"))))
    header = ["job", *metrics, *COLUMNS]
    rows = [[job.name, *(_cell(job.metrics.get(m)) for m in metrics),
             *(_cell(job.metrics.get(c)) for c in COLUMNS)] for job in jobs]
    return header, rows


def markdown(jobs: list[Job], folds: list[dict[str, Any]]) -> str:
    header, rows = table_rows(jobs)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    if folds:
        lines += ["", "Cross-validation:", "", "| setting | metric | folds | mean ± std |",
                  "|---|---|---|---|"]
        lines += [f"| {f['setting']} | {f['metric']} | {f['folds']} | "
                  f"{f['mean']:.4f} ± {f['std']:.4f} |" for f in folds]
    return "\n".join(lines) + "\n"


def plot_curves(jobs: list[Job], path: Path) -> None:
    """Validation curves per epoch, one panel per metric, one line per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = sorted({tag for job in jobs for tag in job.curves}, key=lambda t: t != "val/loss")
    fig, axes = plt.subplots(1, max(len(tags), 1), figsize=(6 * max(len(tags), 1), 4.5),
                             squeeze=False)
    for ax, tag in zip(axes[0], tags, strict=False):
        for job in jobs:
            values = job.curves.get(tag, [])
            if values:
                ax.plot(range(1, len(values) + 1), values, marker=".", label=job.name)
        ax.set(title=tag, xlabel="epoch", ylabel=tag)
        ax.grid(alpha=0.3)
    if tags:
        axes[0][-1].legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_summary(sweep_dir: str | Path) -> str:
    """Write summary.csv, summary.md and curves.png into ``sweep_dir``; return the Markdown."""
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    folds = cross_validation(jobs)
    header, rows = table_rows(jobs)
    with (sweep_dir / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    text = markdown(jobs, folds)
    (sweep_dir / "summary.md").write_text(text)
    plot_curves(jobs, sweep_dir / "curves.png")
    return text
