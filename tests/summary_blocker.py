"""Test-only Hydra callback: before the sweep's summary is written, its ``summary.csv`` becomes
a folder, so that the summary cannot be written (Hydra notifies the end of a sweep in the
reverse order of its callbacks: one added on the command line comes before the project's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SummaryCsvAFolder(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / "summary.csv").mkdir()
