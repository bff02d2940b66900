"""A test-only callback: each rank writes the training-sample indices it draws per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class ShardRecorder(L.Callback):
    """Writes ``<out_dir>/rank<r>_epoch<e>.json``: the indices the rank's training batches are
    drawn from (the sampler inside the loader's batch sampler)."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = trainer.train_dataloader.batch_sampler.sampler
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps(list(sampler)))
