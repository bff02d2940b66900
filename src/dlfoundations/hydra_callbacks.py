"""The project's Hydra callbacks: a writable output folder before a run, a summary after a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dlfoundations import folder
from dlfoundations.errors import UserError, refused
from dlfoundations.folder import make_writable_dir
from dlfoundations.progress import PROGRESS, sweep_plan
from dlfoundations.reporting.summary import write_summary
from dlfoundations.run.cli import COMMAND
from dlfoundations.run.console import write_out


def sweep_command(config: DictConfig) -> tuple[list[str], Any]:
    """What makes a sweep's jobs: its command-line overrides (``resume`` aside) and the
    sweeper's parameters (a preset's sweep)."""
    overrides = [o for o in config.hydra.overrides.task if not o.startswith(folder.RUN_CONTROL)]
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    return overrides, OmegaConf.to_container(params) if params is not None else None


def check_sweep_matches(config: DictConfig, sweep_dir: Path) -> None:
    """With ``resume=true``, the sweep folder must hold the sweep of this very command (the
    ``multirun.yaml`` Hydra wrote when it started); each job then checks its own folder."""
    record = sweep_dir / "multirun.yaml"
    if not record.is_file():
        return
    before = sweep_command(OmegaConf.load(record))
    if before != sweep_command(config):
        raise UserError(
            f"resume=true is not allowed here: {sweep_dir} holds the sweep of "
            f"`{' '.join(before[0]) or '(no overrides)'}`"
            f"{' with its preset' if before[1] else ''}, not of this command; resume it with "
            "the command that started it, adding resume=true."
        )


def claim_sweep_dir(config: DictConfig, sweep_dir: Path) -> bool:
    """A sweep folder belongs to one sweep: a new sweep claims a new or empty folder, a
    resumed one (``resume=true``) takes back the folder of this very command once the sweep
    that held it has ended. A search's folder is its study's, shared by its sweepers.
    Returns whether the folder was claimed anew (what a refused command gives back): a
    resumed sweep's too where no sweep held the folder before."""
    if config.get("search") is not None:
        return False
    if config.get("resume") is True:
        check_sweep_matches(config, sweep_dir)
        held = (sweep_dir / folder.CLAIM_FILE).exists()
        folder.retake(sweep_dir, "hydra.sweep.dir")
        return not held
    folder.claim(sweep_dir, "hydra.sweep.dir")
    return True


def _prepare_output_dir(config: DictConfig, key: str) -> None:
    """Create the folder at ``key`` (``hydra.run.dir`` or ``hydra.sweep.dir``) and claim a
    sweep's; else end the command in one sentence, exit status 2 (Hydra's own attempt at the
    folder would end in a traceback). What a sweep made is noted on the command
    (``COMMAND``), so that a sweep refused before any job ran leaves the folder as it was."""
    HydraConfig.instance().set_config(config)  # the ${hydra:...} parts of the folder's name
    path = Path(str(config.hydra[key.split(".")[1]].dir))
    command = COMMAND.get() if key == "hydra.sweep.dir" else None
    if command is not None:
        command.output_dir = path.absolute()
        command.made_dir = folder.first_missing(command.output_dir)
    try:
        make_writable_dir(key, path)
        if key == "hydra.sweep.dir" and claim_sweep_dir(config, path) and command is not None:
            command.claimed = True
    except UserError as err:
        raise refused(err) from err


class OutputFolderCheck(Callback):
    """Refuses, before Hydra touches it, an output folder that cannot be written (a file, a
    read-only place), and a resumed sweep whose folder holds another sweep."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _prepare_output_dir(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _prepare_output_dir(config, "hydra.sweep.dir")


class SweepProgressLines(Callback):
    """One line per finished job, with the count done, the time elapsed and the time left."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        total, swept = sweep_plan(config)
        PROGRESS.start(total, swept)
        write_out(f"Sweep of {total} {'job' if total == 1 else 'jobs'} into "
                  f"{config.hydra.sweep.dir}")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        PROGRESS.job_done(job_return)


class SweepSummary(Callback):
    """On multirun end: summary.csv, summary.md and curves.png in the sweep folder, printed
    (a search, ``hparams_search=...``, summarises its study itself). A summary that cannot be
    written is kept on the command (``Command.summary_refused``), which says it in one
    sentence and ends with exit status 2: Hydra would only warn of an error raised here."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("search") is not None:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            summary = write_summary(sweep_dir)
        except UserError as err:
            command = COMMAND.get()
            if command is None:
                raise
            command.summary_refused = str(err)
            return
        write_out(f"\nSweep summary ({sweep_dir}):\n\n{summary}")
