"""A sweep's summary in its folder: ``summary.csv`` (one row per job), ``summary.md`` (the
ranking, mean ± std over seeds or folds, pivots by the swept axes, per-epoch tables) and the
figures of the jobs' ``report`` config, plus ``heatmap.png`` for a sweep over two axes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from dlfoundations.reporting import figures, tables
from dlfoundations.reporting.jobs import Job, find_jobs, settings, swept_axes

DEFAULT_REPORT: dict[str, Any] = {
    "figures": [{"name": "curves", "tags": ["val/loss", "val/acc"], "x": "auto"}],
    "columns": [], "epoch_table": [],
}


def report_config(jobs: list[Job]) -> dict[str, Any]:
    """The ``report`` node of the jobs' config (the first job that has one)."""
    for job in jobs:
        if job.config.get("report"):
            return {**DEFAULT_REPORT, **job.config["report"]}
    return DEFAULT_REPORT


def write_summary(sweep_dir: str | Path) -> str:
    """Write summary.csv, summary.md and the figures into ``sweep_dir``; return the Markdown."""
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    config = report_config(jobs)
    axes = swept_axes(jobs)
    groups = settings(jobs, axes)
    mode = jobs[0].mode if jobs else "max"
    header, rows = tables.ranking(jobs, list(config["columns"]))
    with (sweep_dir / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    lines = tables.markdown_table(header, rows)
    for part in (tables.replicates(groups, axes, mode), tables.pivots(groups, axes, mode),
                 tables.per_epoch(jobs, list(config["epoch_table"]))):
        if part:
            lines += ["", *part]
    text = "\n".join(lines) + "\n"
    (sweep_dir / "summary.md").write_text(text)
    colours: dict[str, Any] = {}
    for figure in config["figures"]:
        figures.plot(groups, axes, figure, colours, sweep_dir / f"{figure['name']}.png")
    figures.heatmap(groups, axes, sweep_dir / "heatmap.png")
    return text
