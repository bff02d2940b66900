"""Evaluate a checkpoint on the test set, rebuilding model and data from the checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dlfoundations.errors import UserError
from dlfoundations.folder import first_non_finite, write_metrics, write_text
from dlfoundations.run.argument_types import check_argument_types
from dlfoundations.run.checkpoints import read_checkpoint
from dlfoundations.run.checks import check_batch_limits
from dlfoundations.run.rebuild import rebuild
from dlfoundations.status import Status

#: the keys of ``conf/eval.yaml``: the model and the data's options come from the checkpoint
EVAL_KEYS = ("ckpt_path", "seed", "data", "trainer", "paths")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test ``cfg.ckpt_path``; write metrics.json (and confusion_matrix.csv) to the run folder.

    Returns the metrics with ``status``: ``completed``, or ``failed`` (with ``reason``) when a
    test metric is not a finite number."""
    unknown = [key for key in cfg if key not in EVAL_KEYS]
    if unknown:
        raise UserError(f"{unknown[0]} is not a key of scripts/eval.py: the model and its "
                        "options come from the checkpoint, and eval reads only "
                        f"{', '.join(EVAL_KEYS)} (data: where the data lives).")
    path = str(cfg.ckpt_path)
    checkpoint = read_checkpoint(path)
    model, datamodule = rebuild(checkpoint, path, OmegaConf.to_container(cfg.data, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    check_argument_types(cfg, ("trainer",))
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    sizes = datamodule.split_sizes() if hasattr(datamodule, "split_sizes") else None
    check_batch_limits(trainer, {"test": (sizes or {}).get("test")}, datamodule.batch_size)
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    metrics: dict[str, Any] = {key: float(value) for key, value in results.items()}
    metrics.update(model.report(), ckpt_path=path, model_class=checkpoint["model_class"],
                   epoch=checkpoint.get("epoch"), global_step=checkpoint.get("global_step"),
                   status=Status.COMPLETED)
    not_finite = first_non_finite(metrics)
    if not_finite:
        metrics.update(status=Status.FAILED, reason=not_finite)
    run_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_metrics(run_dir, metrics)
        confusion = getattr(model, "confusion_matrix", None)
        if confusion is not None:
            rows = [",".join(str(int(v)) for v in row) for row in confusion.tolist()]
            write_text(run_dir / "confusion_matrix.csv", "\n".join(rows) + "\n")
            metrics["confusion_matrix"] = confusion.tolist()
    return metrics
