"""A sweep's summary in its folder: ``summary.csv`` (one row per job), ``summary.md`` (the
ranking, mean ± std over seeds or folds, pivots by the swept axes, per-epoch tables) and the
figures of the jobs' ``report`` config, plus ``heatmap.png`` for a sweep over two axes."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any

from dlfoundations.environment import imports_frozen
from dlfoundations.errors import UserError
from dlfoundations.folder import write_text
from dlfoundations.interrupts import INTERRUPTS
from dlfoundations.reporting import figures, tables
from dlfoundations.reporting.jobs import (
    Job,
    find_jobs,
    missing_jobs,
    read_job,
    settings,
    swept_axes,
)

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


def check_sweep_folder(sweep_dir: Path) -> None:
    """Refuse, in one sentence, a path that is not a sweep's folder: missing, a file, a
    single run's folder, or a folder with no job in it."""
    example = "give a sweep's folder, e.g. outputs/multiruns/<date_time>"
    if not sweep_dir.exists():
        raise UserError(f"{sweep_dir} does not exist: {example}.")
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is a file, not a folder: {example}.")
    if any(sweep_dir.glob("*/.hydra/overrides.yaml")):
        return
    if any((sweep_dir / name).exists() for name in ("metrics.json", ".hydra", "config.yaml")):
        raise UserError(f"{sweep_dir} is a single run's folder, not a sweep's: its results are "
                        f"in its metrics.json; {example}.")
    raise UserError(f"{sweep_dir} holds no job of a sweep (no <job>/.hydra/overrides.yaml): "
                    f"{example}.")


def warning_lines(jobs: list[Job]) -> list[str]:
    """One line for each job left out of the tables: its folder and what is wrong there."""
    return [f"warning: job folder {job.path} is left out of the tables: {job.problem}."
            for job in jobs if job.problem]


def left_out(jobs: list[Job], missing: list[str]) -> list[str]:
    """The summary's lines on the jobs it cannot show: damaged ones, and planned ones with no
    folder."""
    lines = [f"- `{job.name}`: left out, {job.problem}" for job in jobs if job.problem]
    lines += [f"- `{name}`: no folder (not run, or its folder was removed)" for name in missing]
    return ["Jobs not in these tables:", "", *lines] if lines else []


def import_its_modules() -> None:
    """Import what writing a summary imports besides this module: TensorBoard's event reader
    (``jobs.read_curves``) and matplotlib's pyplot (``figures``), about 0.7 s of a 2-core
    CPU, which a sweep's launcher spends in a thread while it waits for its workers
    (``side_by_side.on_workers``) rather than after the last job. One that cannot be imported
    (e.g. ``MPLBACKEND=nonsense``) is left to ``write_summary``, which says why after the
    jobs."""
    with contextlib.suppress(Exception), imports_frozen("matplotlib.pyplot"):
        import tensorboard.backend.event_processing.event_accumulator  # noqa: F401

        figures.pyplot()


def read_ahead(job_dir: Path) -> None:
    """Read a finished job's folder for the summary while a core idles (``read_job`` keeps
    it; the summary reads again only what changed). A signal stops the reading at once
    (``INTERRUPTS.run``: a launcher forwards it to its workers next; a large event file takes
    seconds); what cannot be read is left to the summary, which says why."""
    with contextlib.suppress(Exception), INTERRUPTS.run():
        read_job(job_dir)


def write_summary(sweep_dir: str | Path, found: list[Job] | None = None) -> str:
    """Write summary.csv, summary.md and the figures into ``sweep_dir``; return the Markdown.
    ``found``: the jobs in the folder, where the caller has read them (``find_jobs``).
    Damaged jobs and planned jobs without a folder are named below the tables; a summary
    that cannot be written is one sentence (``UserError``)."""
    sweep_dir = Path(sweep_dir)
    found = find_jobs(sweep_dir) if found is None else found
    jobs = [job for job in found if not job.problem]
    config = report_config(jobs)
    axes = swept_axes(jobs)
    groups = settings(jobs, axes)
    mode = jobs[0].mode if jobs else "max"
    header, rows = tables.ranking(jobs, list(config["columns"]))
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([header, *rows])
    lines = tables.markdown_table(header, rows)
    for part in (tables.replicates(groups, axes, mode), tables.pivots(groups, axes, mode),
                 tables.per_epoch(jobs, list(config["epoch_table"])),
                 left_out(found, missing_jobs(sweep_dir, found))):
        if part:
            lines += ["", *part]
    text = "\n".join(lines) + "\n"
    writing = sweep_dir  # the file being written, named if it cannot be
    try:
        for writing, content in ((sweep_dir / "summary.csv", table.getvalue()),
                                 (sweep_dir / "summary.md", text)):
            write_text(writing, content)
        colours: dict[str, Any] = {}
        for figure in config["figures"]:
            writing = sweep_dir / f"{figure['name']}.png"
            figures.plot(groups, axes, figure, colours, writing)
        writing = sweep_dir / "heatmap.png"
        figures.heatmap(groups, axes, writing)
    except OSError as err:
        raise UserError(f"{sweep_dir} is not allowed: its summary cannot be written there "
                        f"({err.strerror or type(err).__name__}: {writing})."
                        ) from err
    return text
