"""The Hydra callback that summarises a multirun when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dlfoundations.report import write_summary


class SweepSummary(Callback):
    """On multirun end: summary.csv, summary.md and curves.png in the sweep folder, printed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        print(f"\nSweep summary ({sweep_dir}):\n\n{write_summary(sweep_dir)}")
