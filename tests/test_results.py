"""Results a person reads, from a real two-axis sweep over two seeds on Fashion-MNIST: the
console, each job's train.log, the pivot and the seed groups (checked against the jobs' own
metrics.json), the figures' colours, and TensorBoard's HParams through a real server."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from dlfoundations.reporting import figures
from dlfoundations.reporting.jobs import (
    Job,
    Setting,
    find_jobs,
    read_job_files,
    settings,
    swept_axes,
)
from dlfoundations.reporting.summary import read_ahead
from tests.conftest import get, run_script, tensorboard_server

pytestmark = pytest.mark.slow  # subprocesses, services or many runs

TINY = {"trainer.max_epochs": 2, "trainer.limit_train_batches": 5,
        "trainer.limit_val_batches": 2, "trainer.limit_test_batches": 2, "threads": 1}
#: lines a user does not need, seen in a run's output before the console was quieted
NOISE = ("Tip:", "litlogger", "GPU available", "TPU available", "Total params", "FLOPs",
         "deprecated", "Restoring states", "Loaded model weights", "srun", "Seed set",
         "log_every_n_steps", "Warning", "it/s]")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> tuple[Path, str, str]:
    """optim=sgd,adam x data.batch_size=64,256 x seed=0,1 (8 jobs); the tiny budget is left
    out of the folder names, so that every override in a name is a swept one."""
    root = tmp_path_factory.mktemp("results")
    result = run_script(
        "train.py", "-m", "optim=sgd,adam", "data.batch_size=64,256", "seed=0,1",
        *(f"{key}={value}" for key, value in TINY.items()), f"paths.output_root={root}",
        f"hydra.job.config.override_dirname.exclude_keys=[paths.output_root,{','.join(TINY)}]")
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (root / "multiruns").iterdir()
    return sweep_dir, result.stdout, result.stderr


def job_metrics(sweep_dir: Path) -> dict[tuple[str, str, str], dict]:
    """Each job's metrics.json by (optim, batch size, seed), from its folder name."""
    out = {}
    for path in sweep_dir.glob("*/metrics.json"):
        values = dict(part.split("=") for part in path.parent.name.split(","))
        out[values["optim"], values["data.batch_size"], values["seed"]] = json.loads(
            path.read_text())
    return out


def seed_groups(sweep_dir: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(optim, batch size) -> mean and sample std of val/acc over the seeds."""
    groups: dict[tuple[str, str], list[float]] = {}
    for (optim, batch, _), metrics in job_metrics(sweep_dir).items():
        groups.setdefault((optim, batch), []).append(metrics["val/acc"])
    return {key: (statistics.mean(v), statistics.stdev(v)) for key, v in groups.items()}


def test_the_sweep_prints_one_line_per_job_and_none_of_the_noise(sweep: tuple) -> None:
    sweep_dir, stdout, stderr = sweep
    assert stdout.startswith(f"Sweep of 8 jobs into {sweep_dir}\n")
    job_lines = [line for line in stdout.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in job_lines] == [f"[{n}/8" for n in range(1, 9)]
    assert all(re.search(r": completed, val/acc 0\.\d+ in \d+\.\d s; \d+:\d\d elapsed, about "
                         r"\d+:\d\d left$", line) for line in job_lines), job_lines
    # lines come in the order jobs end, which workers make depend on timing; each job has one
    names = sorted(line.split("] ")[1].split(":")[0] for line in job_lines)
    assert names == sorted(f"data.batch_size={batch},optim={optim},seed={seed}"
                           for batch in (64, 256) for optim in ("sgd", "adam")
                           for seed in (0, 1))
    assert not [word for word in NOISE if word in stdout + stderr], stdout + stderr


def test_each_job_keeps_its_lines_in_train_log(sweep: tuple) -> None:
    sweep_dir, _, _ = sweep
    for folder in (path.parent for path in sweep_dir.glob("*/metrics.json")):
        log = (folder / "train.log").read_text()
        assert "model=softmax optim=" in log and f"-> {folder}" in log
        assert "completed: test/acc 0." in log and f"run folder {folder}" in log
        assert not (folder / "hparams.yaml").exists()


def test_the_pivot_marks_each_rows_best_from_the_jobs_own_metrics(sweep: tuple) -> None:
    sweep_dir, stdout, _ = sweep
    summary = (sweep_dir / "summary.md").read_text()
    assert summary in stdout
    groups = seed_groups(sweep_dir)
    lines = summary.split("val/acc by optim (rows) and data.batch_size (columns)")[1]
    header, _, *rows = [line for line in lines.splitlines() if line.startswith("|")]
    assert header == "| optim \\ data.batch_size | 64 | 256 |"
    for row, optim in zip(rows, ("adam", "sgd"), strict=True):
        best = max(("64", "256"), key=lambda batch: groups[optim, batch][0])
        cells = [f"{groups[optim, batch][0]:.4f} ± {groups[optim, batch][1]:.4f} (n=2)"
                 for batch in ("64", "256")]
        cells = [f"**{cell}**" if batch == best else cell
                 for cell, batch in zip(cells, ("64", "256"), strict=True)]
        assert row == f"| {optim} | {' | '.join(cells)} |"


def test_seeds_give_mean_and_std_and_the_settings_within_the_spread(sweep: tuple) -> None:
    sweep_dir, _, _ = sweep
    summary = (sweep_dir / "summary.md").read_text()
    groups = seed_groups(sweep_dir)
    ranked = sorted(groups, key=lambda key: -groups[key][0])
    table = summary.split("Over seed (val/acc, mean ± sample std over n jobs):")[1]
    rows = [line for line in table.split("\n\n")[1].splitlines()][2:]
    assert rows == [f"| data.batch_size={batch},optim={optim} | val/acc | 2 | "
                    f"{groups[optim, batch][0]:.4f} ± {groups[optim, batch][1]:.4f} |"
                    for optim, batch in ranked]
    best = groups[ranked[0]]
    close = [f"data.batch_size={b},optim={o}" for o, b in ranked[1:]
             if abs(groups[o, b][0] - best[0]) < max(groups[o, b][1], best[1])]
    sentence = table.split("Best: ")[1].splitlines()[0]
    assert sentence.startswith(f"data.batch_size={ranked[0][1]},optim={ranked[0][0]}. ")
    if close:
        assert sentence.endswith(f"larger std): {', '.join(close)}.")
    else:
        assert sentence.endswith("differs from it by more than the larger std.")


def test_a_setting_keeps_one_colour_in_every_panel_and_figure(sweep: tuple,
                                                              tmp_path: Path) -> None:
    sweep_dir, _, _ = sweep
    jobs = find_jobs(sweep_dir)
    axes = swept_axes(jobs)
    assert axes == ["optim", "data.batch_size", "seed"]
    groups = settings(jobs, axes)
    assert sorted(len(group.jobs) for group in groups) == [2, 2, 2, 2]
    colours: dict = {}
    loss = figures.plot(groups, axes, {"tags": ["val/loss"]}, colours, tmp_path / "a.png")
    acc = figures.plot(groups, axes, {"tags": ["val/acc"]}, colours, tmp_path / "b.png")
    assert set(loss) == set(acc) == {"optim=adam", "optim=sgd"}  # panels by batch size
    for label in loss:
        assert len(loss[label] | acc[label]) == 1  # one colour across panels and figures
    assert len({next(iter(colour)) for colour in loss.values()}) == 2
    assert figures.x_axis({}, axes) == "samples"  # the batch size is swept
    for name in ("curves.png", "heatmap.png", "a.png"):
        assert (sweep_dir / name if name != "a.png" else tmp_path / name).stat().st_size > 10_000


def test_a_figure_holds_its_legend_whole_and_nothing_touches_its_edges(sweep: tuple) -> None:
    """curves.png is widened by its legend (right of the axes; ``figures.save_png`` sizes it
    by the figure's and the legend's boxes): ink everywhere but at its edges, and past the
    figure's own width of 100 dpi x 5 inches a panel (two panels: the batch sizes)."""
    from PIL import Image

    sweep_dir, _, _ = sweep
    for name, least_width in (("curves.png", 2 * 500 + 1), ("heatmap.png", 1)):
        grey = Image.open(sweep_dir / name).convert("L")
        ink = grey.point(lambda value: 255 if value < 250 else 0).getbbox()
        assert ink is not None and grey.width >= least_width
        left, top, right, bottom = ink
        assert left > 2 and top > 2 and right < grey.width - 2 and bottom < grey.height - 2
        assert right > 0.9 * grey.width  # the legend's text reaches into the widened part


def test_a_figure_keeps_a_title_longer_than_its_panel_whole(tmp_path: Path) -> None:
    """A panel's title wider than the room the layout has for it (a long overridden value)
    lies partly outside the figure: the saved image is widened to hold it, a margin beyond."""
    from PIL import Image

    plt = figures.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(6, 3))
    left.set_title("val/loss, model.net.hidden=[" + ",".join(["8"] * 60) + "]")
    right.set_title("val/loss, model.net.hidden=[8]")
    fig.tight_layout()
    figures.save_png(fig, tmp_path / "long.png")
    plt.close(fig)
    grey = Image.open(tmp_path / "long.png").convert("L")
    left_edge, top, right_edge, bottom = grey.point(
        lambda value: 255 if value < 250 else 0).getbbox()
    assert grey.width > 600 + 100
    assert left_edge >= 8 and top >= 8 and right_edge <= grey.width - 8


def test_a_figure_is_drawn_once(sweep: tuple, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Saving a laid-out figure draws it once (``figures.save_png``): not again to find its
    tight box, nor again for the layout engine ``tight_layout`` leaves behind."""
    from matplotlib.figure import Figure

    drawn: list[Figure] = []
    draw = Figure.draw

    def counted(figure: Figure, renderer: object) -> None:
        drawn.append(figure)
        draw(figure, renderer)

    monkeypatch.setattr(Figure, "draw", counted)
    sweep_dir, _, _ = sweep
    jobs = find_jobs(sweep_dir)
    groups, axes = settings(jobs, swept_axes(jobs)), swept_axes(jobs)
    figures.plot(groups, axes, {"tags": ["val/loss", "val/acc"]}, {}, tmp_path / "a.png")
    assert figures.heatmap(groups, ["optim", "data.batch_size"], tmp_path / "h.png")
    assert len(drawn) == 2 and drawn[0] is not drawn[1]


def test_beyond_the_line_limit_a_figure_draws_the_best_and_says_so(sweep: tuple,
                                                                  tmp_path: Path) -> None:
    sweep_dir, _, _ = sweep
    job = find_jobs(sweep_dir)[0]
    many = [Setting(f"model.hidden={n}", [Job(job.path, [f"model.hidden={n}"],
                                              {**job.metrics, "val/acc": n / 100},
                                              job.config, job.curves)])
            for n in range(figures.MAX_LINES + 5)]
    drawn, note = figures.shown(many, "max", lambda setting: setting.name, lambda _: None)
    assert sorted(s.name for s in drawn) == sorted(f"model.hidden={n}" for n in range(5, 25))
    assert note == f" (the best {figures.MAX_LINES} of {figures.MAX_LINES + 5} lines)"
    used = figures.plot(many, ["model.hidden"], {"tags": ["val/acc"]}, {}, tmp_path / "m.png")
    assert len(used) == figures.MAX_LINES


def test_tensorboard_shows_the_union_of_hyperparameters_the_varying_ones_first(
        sweep: tuple) -> None:
    sweep_dir, _, _ = sweep
    with tensorboard_server(sweep_dir) as url:
        runs = get(url, "/data/runs")
        experiment = get(url, "/data/plugin/hparams/experiment", {"experimentName": ""})
    with (sweep_dir / "summary.csv").open() as handle:
        names = {row["job"] for row in csv.DictReader(handle)}
    assert set(runs) == names  # a run's name is its name in the tables
    infos = experiment["hparamInfos"]
    differs = [info["name"] for info in infos if info.get("differs")]
    assert [info["name"] for info in infos[:len(differs)]] == differs  # varying ones first
    assert {"optim", "optim/lr", "lr_eff", "data/batch_size", "seed"} <= set(differs)
    assert {"optim/momentum", "optim/eps"} <= {info["name"] for info in infos}  # sgd's, adam's
    assert "model" in {info["name"] for info in infos[len(differs):]}  # constant: after


def test_a_run_prints_its_plan_and_result_and_keeps_them_in_train_log(tmp_path: Path,
                                                                      raw_paths: dict) -> None:
    quiet = run_script("train.py", *(f"{k}={v}" for k, v in TINY.items()),
                       f"hydra.run.dir={tmp_path / 'quiet'}")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    lines = (re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip()
             for line in quiet.stdout.replace("\r", "\n").splitlines())
    printed = [line for line in lines if line and "it/s" not in line]  # the bar aside
    assert len(printed) == 2, printed
    plan, result = printed
    assert plan.startswith("model=softmax optim=adam scheduler=cosine init=default "
                           "data=fashion_mnist trainer=default: lr_eff 0.003 at global batch 256")
    assert result.startswith("completed: test/acc 0.")
    assert not [word for word in NOISE if word in quiet.stdout.replace("it/s]", "") +
                quiet.stderr], quiet.stderr
    log = (tmp_path / "quiet" / "train.log").read_text()
    assert plan in log and result in log
    assert not (tmp_path / "quiet" / "hparams.yaml").exists()
    verbose = run_script("train.py", "verbose=true", *(f"{k}={v}" for k, v in TINY.items()),
                         f"hydra.run.dir={tmp_path / 'verbose'}")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Total params" in verbose.stdout and "Restoring states" in verbose.stdout
    assert "Restoring states" in (tmp_path / "verbose" / "train.log").read_text()


def test_help_names_the_groups_and_example_commands() -> None:
    result = run_script("train.py", "--help")
    assert result.returncode == 0, result.stderr
    groups = {line.split()[0] for line in
              result.stdout.split("== Groups ==")[1].split("==")[0].splitlines() if line.strip()}
    conf = Path(__file__).resolve().parents[1] / "conf"
    assert {p.name for p in conf.iterdir() if p.is_dir() and p.name not in
            ("hydra", "search", "callbacks")} <= groups  # every group the user chooses from
    examples = result.stdout.split("== Examples ==")[1].splitlines()
    assert len([line for line in examples if "python scripts/train.py" in line]) == 5


def test_report_refuses_what_is_not_a_sweep_in_one_sentence(sweep: tuple, tmp_path: Path,
                                                            mount) -> None:
    sweep_dir = sweep[0]
    one_run = next(p for p in sweep_dir.iterdir() if (p / "metrics.json").is_file())
    read_only = tmp_path / "read_only"
    shutil.copytree(sweep_dir, tmp_path / "source")
    mount("--bind", str(tmp_path / "source"), target=read_only)
    mount("-o", "remount,bind,ro", target=read_only)
    cases = {tmp_path / "nothing": "does not exist",
             sweep_dir / "summary.md": "is a file, not a folder",
             one_run: "is a single run's folder, not a sweep's",
             read_only: "its summary cannot be written there (Read-only file system"}
    (tmp_path / "empty").mkdir()
    cases[tmp_path / "empty"] = "holds no job of a sweep"
    for folder, sentence in cases.items():
        result = run_script("report.py", str(folder))
        assert result.returncode == 2, (folder, result.stderr[-2000:])
        assert result.stderr.startswith("error: ") and sentence in result.stderr
        assert "Traceback" not in result.stderr and not list(one_run.glob("summary.*"))


def test_a_sweep_whose_summary_cannot_be_written_says_so_and_ends_with_status_2(
        tmp_path: Path, raw_paths: dict) -> None:
    """Every job runs and is recorded; then the summary, whose ``summary.csv`` is a folder by
    now, fails: one sentence naming that file, exit status 2, not a warning after exit 0."""
    sweep_dir = tmp_path / "sweep"
    result = run_script("train.py", "-m", "optim=sgd,adam", *(f"{k}={v}" for k, v in
                                                                TINY.items()),
                        "+hydra.callbacks.blocker._target_=tests.summary_blocker."
                        "SummaryCsvAFolder", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {sweep_dir} is not allowed: its summary cannot be written there (Is a "
        f"directory: {sweep_dir / 'summary.csv'}).")
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    statuses = [json.loads(path.read_text())["status"]
                for path in sweep_dir.glob("*/metrics.json")]
    assert statuses == ["completed", "completed"]


def test_a_summary_module_that_cannot_be_imported_is_left_to_the_summary(sweep: tuple,
                                                                         tmp_path: Path) -> None:
    """The launcher imports the summary's modules early (``import_its_modules``, while a
    core idles); one that fails there (a backend matplotlib refuses) stops nothing: the
    summary, after the jobs, meets the same error in its own place."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep[0], copy)
    for figure in copy.glob("*.png"):
        figure.unlink()
    code = ("from dlfoundations.reporting.summary import import_its_modules, write_summary\n"
            "import_its_modules()\nprint('imported')\n"
            f"write_summary({str(copy)!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "nonsense"}, timeout=300)
    assert result.stdout == "imported\n", result.stderr[-2000:]
    assert result.returncode == 1 and "'nonsense' is not a valid value for backend" in \
        result.stderr
    assert not list(copy.glob("*.png"))


def test_a_job_read_ahead_is_read_again_once_one_of_its_files_changes(sweep: tuple,
                                                                      tmp_path: Path) -> None:
    """A launcher reads its finished jobs while a core idles (``read_ahead``); the summary
    then reads again only the folders whose files changed since: a new number in
    ``metrics.json`` or a curve's event file appended to, never the old numbers."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep[0], copy)
    first, second = sorted(p for p in copy.iterdir() if (p / "metrics.json").is_file())[:2]
    read_ahead(first)
    read_ahead(second)
    metrics = json.loads((first / "metrics.json").read_text())
    (first / "metrics.json").write_text(json.dumps({**metrics, "val/acc": 0.125}))
    shutil.copy(next(second.glob("events.out.tfevents.*")),
                second / "events.out.tfevents.9999999999.later.1.0")  # every point again
    jobs = {job.path.name: job for job in find_jobs(copy)}
    assert jobs[first.name].metrics["val/acc"] == 0.125
    again = jobs[second.name].curves["val/acc"]
    assert again == read_job_files(second).curves["val/acc"]
    assert len(again) == 2 * len(read_job_files(first).curves["val/acc"])


def test_a_signal_stops_a_long_reading_ahead_at_once(sweep: tuple, tmp_path: Path) -> None:
    """Reading a folder with a large event file takes seconds (TensorBoard checks each record
    with a CRC computed in Python); a signal meanwhile stops ``read_ahead`` at once, so that
    the launcher forwards it to its workers next, and nothing half-read is kept."""
    job = tmp_path / "job"
    shutil.copytree(next(p for p in sweep[0].iterdir() if (p / "metrics.json").is_file()), job)
    events = next(job.glob("events.out.tfevents.*"))
    events.write_bytes(events.read_bytes() * 400)  # valid records, tens of megabytes
    code = ("import os, signal, threading\n"
            "from pathlib import Path\n"
            "import tensorboard.backend.event_processing.event_accumulator\n"
            "from dlfoundations.interrupts import INTERRUPTS\n"
            "from dlfoundations.reporting import jobs\n"
            "from dlfoundations.reporting.summary import read_ahead\n"
            "INTERRUPTS.install()\n"
            "threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
            f"read_ahead(Path({str(job)!r}))\n"
            "print(INTERRUPTS.signal_name(), len(jobs.READ_BEFORE))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.stdout == "SIGINT 0\n", result.stderr[-2000:]


def test_report_names_a_damaged_or_missing_job_and_summarises_the_rest(sweep: tuple,
                                                                       tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep[0], copy)
    jobs = sorted(p for p in copy.iterdir() if (p / "metrics.json").is_file())
    (jobs[0] / "metrics.json").write_text("{not json")
    shutil.rmtree(jobs[1])
    result = run_script("report.py", str(copy))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = (copy / "summary.md").read_text()
    names = {row["job"] for row in csv.DictReader((copy / "summary.csv").open())}
    assert len(names) == len(jobs) - 2
    assert "Jobs not in these tables:" in summary
    assert "left out, its metrics.json is not valid JSON" in summary
    assert "no folder (not run, or its folder was removed)" in summary


def test_report_leaves_out_a_job_whose_config_nests_too_deep(sweep: tuple,
                                                               tmp_path: Path) -> None:
    """A config.yaml of 100,000 nested lists (libyaml's loader crashes the process on it, a
    segmentation fault): the job is left out, named, and the report ends normally."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep[0], copy)
    (job,) = [p for p in copy.iterdir() if p.name == "data.batch_size=64,optim=sgd,seed=0"]
    (job / ".hydra" / "config.yaml").write_text("[" * 100_000 + "]" * 100_000)
    result = run_script("report.py", str(copy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == (f"warning: job folder {job} is left out of the tables: config.yaml "
                             "cannot be read (its lists or mappings nest deeper than 200 "
                             "levels).\n")
    names = {row["job"] for row in csv.DictReader((copy / "summary.csv").open())}
    assert len(names) == 7 and "data.batch_size=64,optim=sgd,seed=0" not in names


def test_report_names_a_job_whose_metric_is_not_a_number_and_keeps_the_others(
        sweep: tuple, tmp_path: Path) -> None:
    """val/acc written as a string ("0.8"): the job is left out of the tables with a warning
    naming its folder, its metrics.json and the key; the other jobs keep their seed table."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep[0], copy)
    (job,) = [p for p in copy.iterdir() if p.name == "data.batch_size=64,optim=sgd,seed=0"]
    metrics = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").write_text(json.dumps({**metrics, "val/acc": "0.8"}))
    result = run_script("report.py", str(copy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == (f"warning: job folder {job} is left out of the tables: its "
                             "metrics.json gives val/acc='0.8', which is not a number.\n")
    summary = (copy / "summary.md").read_text()
    assert ("- `data.batch_size=64,optim=sgd,seed=0`: left out, its metrics.json gives "
            "val/acc='0.8', which is not a number") in summary
    names = {row["job"] for row in csv.DictReader((copy / "summary.csv").open())}
    assert len(names) == 7 and "data.batch_size=64,optim=sgd,seed=0" not in names
    table = summary.split("Over seed (val/acc, mean ± sample std over n jobs):")[1]
    rows = table.split("\n\n")[1].splitlines()[2:]
    other_seed = json.loads((copy / "data.batch_size=64,optim=sgd,seed=1" / "metrics.json"
                             ).read_text())["val/acc"]
    assert f"| data.batch_size=64,optim=sgd | val/acc | 1 | {other_seed:.4f} ± 0.0000 |" in rows
    assert len(rows) == 4
