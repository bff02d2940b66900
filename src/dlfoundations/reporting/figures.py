"""A sweep's figures: small multiples of its curves with one colour per line for the whole
sweep, and a heatmap of the monitored metric over two swept axes.

A figure has one panel per tag and per value of ``panels_by`` (by default the second setting
axis of the sweep, e.g. the batch size in ``optim=... data.batch_size=...``), one line per
setting (the other axes; seeds and folds averaged, their standard deviation shaded), one legend
outside the panels. Beyond ``MAX_LINES`` settings it draws the best ones and says so.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlfoundations.reporting.jobs import (
    Job,
    Setting,
    natural,
    ranked,
    replicate_axes,
    setting_axes,
)
from dlfoundations.reporting.tables import best_setting

#: panels side by side (one per value of ``panels_by``) before a tag's row wraps
PANELS_PER_ROW = 4
#: settings drawn in one figure at most (the best ones)
MAX_LINES = 20


def smoothed(values: list[float], factor: float) -> list[float]:
    """Exponential moving average, like TensorBoard's smoothing: s_t = f s_(t-1) + (1-f) v_t."""
    out: list[float] = []
    for value in values:
        out.append(value if not out else factor * out[-1] + (1 - factor) * value)
    return out


def pyplot() -> Any:
    """matplotlib's pyplot, drawing into files only (the Agg backend: no window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> None:
    """Write ``fig``, laid out (``tight_layout``), to ``path`` as PNG at 100 dpi, in one drawing,
    widened to hold what lies outside it (``drawn_box``), at zlib level 1 (about 10% more bytes
    than the default 6). ``bbox_inches="tight"`` would draw the whole figure once more to find
    its box; the layout engine ``tight_layout`` leaves behind, dropped here, made ``savefig``
    draw it once more as well. On the 2-core CPU the README sweep's summary took 0.44-0.58 s
    so, 0.58-0.63 s with both extra drawings."""
    fig.set_layout_engine(None)
    box = drawn_box(fig, fig.canvas.get_renderer())
    fig.savefig(path, dpi=100, bbox_inches=box.transformed(fig.dpi_scale_trans.inverted()),
                pil_kwargs={"compress_level": 1})


def drawn_box(fig: Any, renderer: Any) -> Any:
    """The box, in pixels, of the figure and of what a laid-out figure may hold outside it:
    its legends (the curves' lies right of the axes) and texts (a note above the panels), each
    panel's title (long overridden values), axis labels and offset texts, with a margin of 0.1
    inch on a side where one of them lies outside. Tick labels are left out: finding theirs
    takes as long as drawing the figure, and the layout keeps them in."""
    from matplotlib.transforms import Bbox

    texts = [*fig.legends, *fig.texts]
    for ax in fig.axes:
        if ax.get_visible():
            texts += [ax.title, ax.xaxis.label, ax.yaxis.label, ax.xaxis.get_offset_text(),
                      ax.yaxis.get_offset_text()]
    (x0, y0), (x1, y1) = Bbox.union([fig.bbox, *(text.get_window_extent(renderer)
                                                 for text in texts if text.get_visible())
                                     ]).get_points()
    inside, margin = fig.bbox, 0.1 * fig.dpi
    return Bbox([[x0 - margin * (x0 < inside.x0), y0 - margin * (y0 < inside.y0)],
                 [x1 + margin * (x1 > inside.x1), y1 + margin * (y1 > inside.y1)]])


def colour(index: int) -> tuple[float, float, float]:
    """The index-th line colour: tab10's ten, then tab20's ten lighter shades, then again."""
    from matplotlib import colormaps

    colours = [*colormaps["tab10"].colors, *colormaps["tab20"].colors[1::2]]
    return colours[index % len(colours)]


def panel_key(figure: dict[str, Any], axes: list[str]) -> str | None:
    """The axis whose values get a panel each: ``panels_by``, else the second setting axis."""
    if figure.get("panels_by"):
        return figure["panels_by"]
    keys = setting_axes(axes)
    return keys[1] if len(keys) > 1 else None


def panel_value(job: Job, key: str, pattern: str | None) -> str | None:
    """``key=value`` of ``job`` (value mapped to the first group of ``pattern`` if given, e.g.
    ``(?:scratch/)?(.+)`` puts ``optim=adam`` and ``optim=scratch/adam`` in one panel)."""
    value = job.values.get(key)
    if value is None:
        return None
    match = re.fullmatch(pattern, value) if pattern else None
    return f"{key}={match[1] if match else value}"


def line_label(setting: Setting, key: str | None, pattern: str | None) -> str:
    """A setting's name without the panel's own ``key=value`` (kept when ``pattern`` maps
    several values into one panel, where it tells the lines apart)."""
    if not key or pattern:
        return setting.name
    return ",".join(part for part in setting.name.split(",")
                    if not part.startswith(f"{key}=")) or setting.name


def x_axis(figure: dict[str, Any], axes: list[str]) -> str:
    """epoch, step or samples; ``auto`` (the default) is samples when the batch size is swept,
    so that runs of different batch sizes line up, else epoch."""
    chosen = figure.get("x", "auto")
    if chosen == "auto":
        return "samples" if "data.batch_size" in axes else "epoch"
    return chosen


def xs(job: Job, points: list[tuple[int, float]], axis: str) -> list[float]:
    """The x of each point: its epoch (1, 2, ...), the samples seen (a curve's step) or the
    optimizer steps (samples / global batch size)."""
    if axis == "epoch":
        return list(range(1, len(points) + 1))
    per_step = job.metrics.get("global_batch_size", 1) if axis == "step" else 1
    return [step / per_step for step, _ in points]


def mean_curve(jobs: list[Job], tag: str, axis: str, smooth: float
               ) -> tuple[list[float], list[float], list[float]] | None:
    """x, mean and standard deviation over ``jobs`` of a tag's curve (cut to the shortest)."""
    curves = [job.curves[tag] for job in jobs if job.curves.get(tag)]
    if not curves:
        return None
    length = min(len(curve) for curve in curves)
    runs = [smoothed([value for _, value in curve[:length]], smooth) for curve in curves]
    x = xs(next(job for job in jobs if job.curves.get(tag)), curves[0][:length], axis)
    means = [statistics.mean(values) for values in zip(*runs, strict=True)]
    stds = [statistics.stdev(values) if len(values) > 1 else 0.0
            for values in zip(*runs, strict=True)]
    return x, means, stds


def shown(settings: list[Setting], mode: str, label: Callable[[Setting], str],
          panel: Callable[[Setting], str | None]) -> tuple[list[Setting], str]:
    """The settings a figure draws and a note if some are left out: where a panel would hold
    more than ``MAX_LINES`` lines, the lines (labels) of the best settings."""
    lines: dict[str | None, set[str]] = {}
    for setting in settings:
        lines.setdefault(panel(setting), set()).add(label(setting))
    labels = list(dict.fromkeys(label(s) for s in settings))
    if max((len(found) for found in lines.values()), default=0) <= MAX_LINES:
        return settings, ""
    best_first = [*ranked(settings, mode), *(s for s in settings if not s.scores)]
    kept = list(dict.fromkeys(label(s) for s in best_first))[:MAX_LINES]
    return ([s for s in settings if label(s) in kept],
            f" (the best {MAX_LINES} of {len(labels)} lines)")


def plot(settings: list[Setting], axes: list[str], figure: dict[str, Any], colours: dict,
         path: Path) -> dict[str, set]:
    """Draw ``figure`` (keys: ``tags``; ``x``: auto, epoch, step or samples; ``smooth``: EMA
    factor; ``log_y``; ``panels_by`` and ``panel_of``: ``panel_value``; ``dashes``: a line
    style per line of a panel, so that lines on top of each other stay visible). ``colours``
    maps line labels to colours for the whole sweep and grows with new labels. Returns the
    colours each label was drawn in."""
    from matplotlib.ticker import EngFormatter, MaxNLocator

    plt = pyplot()

    mode = settings[0].jobs[0].mode if settings else "max"
    key, pattern = panel_key(figure, axes), figure.get("panel_of")

    def panel(setting: Setting) -> str | None:
        return panel_value(setting.jobs[0], key, pattern) if key else None

    drawn, note = shown(settings, mode, lambda setting: line_label(setting, key, pattern),
                        panel)
    axis = x_axis(figure, axes)
    by_panel: dict[str | None, list[Setting]] = {}
    for setting in drawn:
        by_panel.setdefault(panel(setting), []).append(setting)
    panel_values = sorted(by_panel, key=lambda v: natural(v.split("=", 1)[1]) if v else
                          (0, 0.0, ""))
    tags = [tag for tag in figure["tags"]
            if any(tag in job.curves for setting in drawn for job in setting.jobs)]
    layout = [(tag, value) for tag in tags for value in panel_values]
    # a row of panels per tag; with one panel per tag, the tags side by side
    block = len(panel_values) if len(panel_values) > 1 else max(len(layout), 1)
    per_row = min(block, PANELS_PER_ROW)
    rows_per_block = math.ceil(block / per_row)
    for label in sorted({line_label(s, key, pattern) for s in drawn}, key=lambda text: [
            natural(part.split("=", 1)[-1]) for part in text.split(",")]):
        colours.setdefault(label, colour(len(colours)))
    rows = max(math.ceil(len(layout) / block), 1) * rows_per_block
    fig, grid = plt.subplots(rows, per_row, figsize=(5 * per_row, 3.8 * rows), squeeze=False,
                             sharex=axis != "step")  # epochs and samples mean the same
    slots = [ax for index, ax in enumerate(grid.flat) if index % (per_row * rows_per_block)
             < block]
    for ax in grid.flat:
        ax.set_visible(ax in slots[:len(layout)])
    styles = [("-", 3.0), ("--", 2.2), (":", 2.2), ("-.", 1.2)] if figure.get("dashes") \
        else [("-", 1.6)]
    used: dict[str, set] = {}
    handles: dict[str, Any] = {}
    for ax, (tag, value) in zip(slots, layout, strict=False):
        for index, setting in enumerate(by_panel[value]):
            curve = mean_curve(setting.jobs, tag, axis, figure.get("smooth", 0.0))
            if curve is None:
                continue
            x, means, stds = curve
            label = line_label(setting, key, pattern)
            style, width = styles[index % len(styles)]
            (line,) = ax.plot(x, means, color=colours[label], linestyle=style, linewidth=width,
                              marker="." if len(x) < 60 else None, label=label)
            if any(stds):
                ax.fill_between(x, [m - s for m, s in zip(means, stds, strict=True)],
                                [m + s for m, s in zip(means, stds, strict=True)],
                                color=colours[label], alpha=0.2, linewidth=0)
            used.setdefault(label, set()).add(line.get_color())
            handles.setdefault(label, line)
        ax.set(title=f"{tag}, {value}" if value else tag, xlabel=axis, ylabel=tag)
        if axis == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.xaxis.set_major_formatter(EngFormatter())  # 150 k, 1.2 M
        if figure.get("log_y"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in slots:
        if not ax.get_subplotspec().is_last_row() and axis != "step":
            ax.set_xlabel("")  # the x axis is shared: named under the bottom row
    if any(len(s.jobs) > 1 for s in drawn):
        note += f" (mean over {', '.join(replicate_axes(axes))}, ± std shaded)"
    if note:
        fig.suptitle(note.strip(" ()"))
    order = [label for label in colours if label in handles]  # the sweep's colour order
    fig.legend([handles[label] for label in order], order, loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return used


def heatmap(settings: list[Setting], axes: list[str], path: Path) -> bool:
    """The monitored metric (mean over replicates) over the first two setting axes, with the
    value in each cell; only for a sweep of exactly two setting axes. Whether it was drawn."""
    keys = setting_axes(axes)
    if len(keys) != 2 or not settings:
        return False
    plt = pyplot()
    rows, columns = (sorted({s.jobs[0].values.get(k) for s in settings}, key=natural)
                     for k in keys)
    value = {(s.jobs[0].values.get(keys[0]), s.jobs[0].values.get(keys[1])): s.mean
             for s in settings}
    grid = [[value.get((r, c), math.nan) for c in columns] for r in rows]
    metric, mode = settings[0].jobs[0].monitor, settings[0].jobs[0].mode
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 3, 0.6 * len(rows) + 2))
    image = ax.imshow(grid, cmap="viridis" if mode == "max" else "viridis_r", aspect="auto")
    best = best_setting(settings, mode)
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            if not math.isnan(grid[i][j]):
                bold = best is not None and value[(r, c)] == best.mean
                bright = image.norm(grid[i][j]) > 0.5
                bright = bright if mode == "max" else not bright
                ax.text(j, i, f"{grid[i][j]:.4f}", ha="center", va="center", fontsize="small",
                        color="black" if bright else "white",
                        fontweight="bold" if bold else "normal")
    ax.set(xticks=range(len(columns)), xticklabels=columns, yticks=range(len(rows)),
           yticklabels=rows, xlabel=keys[1], ylabel=keys[0],
           title=metric + (f" (mean over {', '.join(replicate_axes(axes))})"
                           if any(len(s.jobs) > 1 for s in settings) else ""))
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return True
