"""A sweep's tables in Markdown: every job ranked; each setting's mean ± std over its seeds
or folds, and which settings the spread cannot tell from the best; the monitored metric
pivoted by two swept axes, the best of each row in bold."""

from __future__ import annotations

from itertools import product
from typing import Any

from dlfoundations.reporting.jobs import (
    Job,
    Setting,
    natural,
    ranked,
    replicate_axes,
    setting_axes,
)

#: metrics.json keys in the ranking table besides the monitored metric, its test counterpart
#: and extras, with the names the README gives them
COLUMNS = {"status": "status", "epochs": "epochs", "best_epoch": "best_epoch", "lr": "lr_eff",
           "global_batch_size": "global_batch_size", "wall_time_s": "wall_time_s",
           "reason": "reason"}


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None empty."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_table(header: list[Any], rows: list[list[Any]]) -> list[str]:
    """A Markdown table of ``cell`` texts (a value missing in some jobs, None, as empty)."""
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(text).replace("|", "/") for text in row) + " |"
                    for row in rows]


def ranking(jobs: list[Job], extra: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ranking table: one row per job, in the order of ``jobs``."""
    metrics = list(dict.fromkeys(
        key for job in jobs for key in (job.monitor, job.monitor.replace("val/", "test/"))))
    header = ["job", *metrics, *extra, *COLUMNS.values()]
    rows = [[job.name, *(cell(job.metrics.get(key)) for key in [*metrics, *extra]),
             *(cell(job.metrics.get(key)) for key in COLUMNS)] for job in jobs]
    return header, rows


def mean_std(setting: Setting) -> str:
    """``mean ± std (n)``, or the single value."""
    if len(setting.scores) < 2:
        return cell(setting.mean) if setting.scores else ""
    return f"{setting.mean:.4f} ± {setting.std:.4f} (n={len(setting.scores)})"


def best_setting(settings: list[Setting], mode: str) -> Setting | None:
    best = ranked(settings, mode)
    return best[0] if best else None


def within_noise(settings: list[Setting], best: Setting) -> list[Setting]:
    """The settings whose mean differs from the best's by less than the larger of the two
    standard deviations: the replicates cannot tell them apart."""
    return [s for s in settings if s is not best and s.scores
            and abs(s.mean - best.mean) < max(s.std, best.std)]


def replicates(settings: list[Setting], axes: list[str], mode: str) -> list[str]:
    """Each setting's mean ± std over its replicates, best first, and the sentence that says
    which differences from the best are smaller than the spread; nothing without replicates."""
    if not any(len(s.scores) > 1 for s in settings):
        return []
    over = replicate_axes(axes)
    title = "Cross-validation" if over == ["data.fold"] else f"Over {', '.join(over)}"
    metric = settings[0].jobs[0].monitor
    best_first = ranked(settings, mode)
    lines = [f"{title} ({metric}, mean ± sample std over n jobs):", ""]
    lines += markdown_table(["setting", "metric", "n", "mean ± std"], [
        [s.name, metric, str(len(s.scores)), f"{s.mean:.4f} ± {s.std:.4f}"]
        for s in best_first])
    best = best_first[0]
    close = within_noise(best_first, best)
    lines += ["", f"Best: {best.name}. " + (
        f"Within its spread (difference from the best smaller than the larger std): "
        f"{', '.join(s.name for s in close)}." if close else
        "Every other setting differs from it by more than the larger std.")]
    return lines


def pivots(settings: list[Setting], axes: list[str], mode: str) -> list[str]:
    """The monitored metric with rows by the first setting axis and columns by the second
    (mean ± std where there are replicates), the best of each row in bold; with more axes,
    one such table per combination of the others' values."""
    rows_key, *rest = setting_axes(axes) or [None]
    if rows_key is None or not rest:
        return []
    columns_key, others = rest[0], rest[1:]
    by_values = {tuple(s.jobs[0].values.get(k) for k in setting_axes(axes)): s
                 for s in settings}

    def distinct(key: str) -> list[str]:
        return sorted({s.jobs[0].values.get(key) for s in settings}, key=natural)

    metric = settings[0].jobs[0].monitor
    lines: list[str] = []
    for fixed in product(*(distinct(key) for key in others)):
        title = f"{metric} by {rows_key} (rows) and {columns_key} (columns)"
        if others:
            title += ", " + ", ".join(f"{k}={v}" for k, v in zip(others, fixed, strict=True))
        table = []
        for row_value in distinct(rows_key):
            row = [by_values.get((row_value, column, *fixed))
                   for column in distinct(columns_key)]
            best = best_setting([s for s in row if s], mode)
            table.append([row_value, *("" if s is None else
                                       f"**{mean_std(s)}**" if s is best else mean_std(s)
                                       for s in row)])
        lines += ["", f"{title}; best of each row in bold:", ""]
        lines += markdown_table([f"{rows_key} \\ {columns_key}", *distinct(columns_key)], table)
    return lines[1:]


def per_epoch(jobs: list[Job], tags: list[str]) -> list[str]:
    """Each tag's value per epoch, one row per job."""
    lines: list[str] = []
    for tag in tags:
        epochs = max((len(job.curves.get(tag, [])) for job in jobs), default=0)
        if epochs:
            lines += ["", f"{tag} per epoch:", ""]
            lines += markdown_table(["job", *(str(e) for e in range(1, epochs + 1))], [
                [job.name, *(cell(value) for _, value in job.curves.get(tag, []))]
                for job in jobs])
    return lines[1:]
