"""The project's Hydra callbacks: a writable output folder before a run, a summary after a sweep."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dlfoundations.errors import UserError
from dlfoundations.report import write_summary
from dlfoundations.run_folder import make_writable_dir


def _make_output_dir(config: DictConfig, key: str) -> None:
    """Create the folder at ``key`` (``hydra.run.dir`` or ``hydra.sweep.dir``), or stop with
    one sentence and exit status 2: Hydra's own attempt would end in a traceback."""
    HydraConfig.instance().set_config(config)  # the ${hydra:...} parts of the folder's name
    try:
        make_writable_dir(key, Path(str(config.hydra[key.split(".")[1]].dir)))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


class OutputFolderCheck(Callback):
    """Refuses, before Hydra touches it, an output folder that cannot be written (a file, a
    read-only place)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make_output_dir(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make_output_dir(config, "hydra.sweep.dir")


class SweepSummary(Callback):
    """On multirun end: summary.csv, summary.md and curves.png in the sweep folder, printed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        print(f"\nSweep summary ({sweep_dir}):\n\n{write_summary(sweep_dir)}")
