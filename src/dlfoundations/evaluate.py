"""Evaluate a checkpoint on the test set, rebuilding model and data from the checkpoint."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from dlfoundations.checkpoints import check_matches, read_checkpoint
from dlfoundations.errors import UserError
from dlfoundations.train import write_metrics


def rebuild(checkpoint: dict[str, Any], path: str, data_location: dict[str, Any]
            ) -> tuple[L.LightningModule, L.LightningDataModule]:
    """Model and DataModule from the classes and hyperparameters saved in ``checkpoint``.

    ``data_location`` (e.g. ``data_dir``) replaces the saved values the DataModule accepts, so
    a checkpoint evaluates on another machine.
    """
    if "model_class" not in checkpoint or "datamodule_class" not in checkpoint:
        raise UserError(f"ckpt_path={path!r} was not written by this project's training (it "
                        "does not name its model and data classes).")
    model_cls = get_class(checkpoint["model_class"])
    model = model_cls(**checkpoint.get("hyper_parameters", {}))
    check_matches(model, checkpoint, path)
    model.load_state_dict(checkpoint["state_dict"])
    data_cls = get_class(checkpoint["datamodule_class"])
    accepted = inspect.signature(data_cls).parameters
    params = {**checkpoint.get("datamodule_hyper_parameters", {}),
              **{k: v for k, v in data_location.items() if k in accepted}}
    return model, data_cls(**params)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test ``cfg.ckpt_path``; write metrics.json (and confusion_matrix.csv) to the run folder."""
    path = str(cfg.ckpt_path)
    checkpoint = read_checkpoint(path)
    model, datamodule = rebuild(checkpoint, path, OmegaConf.to_container(cfg.data, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    metrics: dict[str, Any] = {key: float(value) for key, value in results.items()}
    metrics.update(model.report(), ckpt_path=path, model_class=checkpoint["model_class"],
                   epoch=checkpoint.get("epoch"), global_step=checkpoint.get("global_step"))
    run_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_metrics(run_dir, metrics)
        confusion = getattr(model, "confusion_matrix", None)
        if confusion is not None:
            rows = [",".join(str(int(v)) for v in row) for row in confusion.tolist()]
            (run_dir / "confusion_matrix.csv").write_text("\n".join(rows) + "\n")
            metrics["confusion_matrix"] = confusion.tolist()
    return metrics
