"""One training run from a composed config: build, fit, test the best checkpoint, report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig, ListConfig, OmegaConf

from dlfoundations.callbacks import (
    DivergenceGuard,
    GracefulInterrupt,
    TrainingDiverged,
    TrainingInterrupted,
    ValidationHistory,
)
from dlfoundations.callbacks.step_hooks import skip_unused_step_hooks
from dlfoundations.checkpoints import check_matches, read_checkpoint
from dlfoundations.errors import UserError, require
from dlfoundations.optim import scaled_lr
from dlfoundations.profiler import NullProfiler
from dlfoundations.tensorboard_logger import RunTensorBoardLogger

#: Keys of the ``optim`` group that belong to the run, not to the torch optimizer.
RUN_OPTIM_KEYS = ("base_batch_size", "lr_scaling")


def check_model_fits_data(cfg: DictConfig) -> None:
    """A classifier needs image data and linear regression synthetic data."""
    model_cls, data_cls = get_class(cfg.model._target_), get_class(cfg.data._target_)
    if model_cls.task != data_cls.task:
        raise UserError(
            f"model {model_cls.__name__} learns {model_cls.task} but data "
            f"{data_cls.__name__} holds {data_cls.task} data: use data=synthetic_linear "
            "with model=linreg and data=fashion_mnist with the classifiers."
        )


def check_run_config(cfg: DictConfig) -> None:
    """The run-level keys a typo would break late: checked before anything is built."""
    trainer = cfg.trainer
    require(isinstance(trainer.max_epochs, int) and trainer.max_epochs >= 1,
            "trainer.max_epochs", trainer.max_epochs, "an integer of at least 1")
    devices = trainer.get("devices", 1)
    require(devices in ("auto", -1) or (isinstance(devices, int) and devices >= 1)
            or (isinstance(devices, list | ListConfig) and len(devices) >= 1),
            "trainer.devices", devices, "an integer of at least 1, -1 (all), auto or a list")
    for key in ("num_nodes", "accumulate_grad_batches"):
        value = trainer.get(key, 1)
        require(isinstance(value, int) and value >= 1, f"trainer.{key}", value,
                "an integer of at least 1")
    require(cfg.monitor.mode in ("max", "min"), "monitor.mode", cfg.monitor.mode, "max or min")
    threads = cfg.get("threads")
    require(threads is None or (isinstance(threads, int) and threads >= 1), "threads", threads,
            "null or an integer of at least 1")


def check_run_dir_is_new(run_dir: Path) -> None:
    """Refuse to train into a folder that already holds another run's results."""
    taken = [p.name for p in (run_dir / "metrics.json", run_dir / "checkpoints") if p.exists()]
    taken += [p.name for p in run_dir.glob("events.out.tfevents.*")][:1]
    if taken:
        raise UserError(
            f"paths.output_dir={str(run_dir)!r} is not allowed: it already holds another run "
            f"({', '.join(taken)}); give a new hydra.run.dir (or hydra.sweep.dir), or resume "
            "into a new folder with ckpt_path=<run>/checkpoints/last.ckpt."
        )


def in_multirun() -> bool:
    """Whether this process runs one job of a Hydra multirun (-m)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_processes_are_safe(trainer: L.Trainer) -> None:
    """Refuse DDP that Lightning would start by re-running this script inside a multirun.

    Lightning's subprocess launcher re-runs ``sys.argv`` for each extra rank; with ``-m`` that
    re-runs the whole sweep, in a second sweep folder, with ranks that can disagree.
    """
    launcher = getattr(trainer.strategy, "launcher", None)
    if (in_multirun() and isinstance(launcher, _SubprocessScriptLauncher)
            and not launcher.cluster_environment.creates_processes_externally):
        raise UserError(
            f"trainer.strategy={trainer.strategy.__class__.__name__} with "
            f"{trainer.world_size} processes is not allowed inside a multirun (-m): Lightning "
            "would re-run the whole sweep for each extra process; run each job on its own, use "
            "trainer.strategy=ddp_spawn, or launch the sweep with hydra/launcher=slurm."
        )


def build_trainer(cfg: DictConfig, *extra_callbacks: L.Callback) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the loggers and callbacks of their groups, the
    guards every run has, and ``NullProfiler`` unless ``trainer.profiler`` names one; each
    callback's unused per-step hooks are skipped."""
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    trainer = instantiate(cfg.trainer, logger=loggers or False,
                          profiler=cfg.trainer.get("profiler") or NullProfiler(),
                          callbacks=[*callbacks, *extra_callbacks, DivergenceGuard(),
                                     GracefulInterrupt()])
    skip_unused_step_hooks(trainer.callbacks)
    return trainer


def build_model(cfg: DictConfig, global_batch_size: int) -> tuple[L.LightningModule, float]:
    """The model of ``cfg.model`` with its initialiser, optimizer at the effective learning
    rate, and scheduler."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    scaling = {key: optim.pop(key) for key in RUN_OPTIM_KEYS}
    weight_decay = optim.get("weight_decay", 0.0)
    require(isinstance(weight_decay, int | float) and weight_decay >= 0,
            "optim.weight_decay", weight_decay, "a number of at least 0")
    lr = scaled_lr(optim["lr"], global_batch_size, **scaling)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = instantiate(cfg.model, init=OmegaConf.to_container(cfg.init), _convert_="all",
                        optimizer=instantiate(optim, lr=lr), scheduler=scheduler)
    return model, lr


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``.

    Returns the metrics with ``status``: ``completed``, or ``diverged`` / ``interrupted`` (with
    ``reason``) when the training loss stopped being finite or a signal stopped the run.
    """
    started = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    check_run_config(cfg)
    check_model_fits_data(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    history = ValidationHistory()
    trainer = build_trainer(cfg, history)
    check_processes_are_safe(trainer)
    if trainer.is_global_zero:
        check_run_dir_is_new(run_dir)
    global_batch_size = datamodule.batch_size * trainer.world_size * trainer.accumulate_grad_batches
    model, lr = build_model(cfg, global_batch_size)
    if cfg.get("ckpt_path"):
        check_matches(model, read_checkpoint(cfg.ckpt_path), cfg.ckpt_path)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    facts = {"lr": lr, "lr_base": float(cfg.optim.lr), "batch_size": datamodule.batch_size,
             "global_batch_size": global_batch_size}

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except (TrainingDiverged, TrainingInterrupted) as err:
        status = "diverged" if isinstance(err, TrainingDiverged) else "interrupted"
        metrics = {**history.last(), **facts, "status": status, "reason": str(err)}
    else:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        val = history.best(cfg.monitor.metric, cfg.monitor.mode)
        test = trainer.test(model, datamodule=datamodule, ckpt_path=best or None,
                            verbose=False)[0]
        metrics = {**val, **{key: float(value) for key, value in test.items()}, **model.report(),
                   **facts, "best_epoch": val.get("epoch"), "best_checkpoint": best,
                   "status": "completed"}
    metrics.pop("epoch", None)
    metrics.update(epochs=trainer.current_epoch, global_step=trainer.global_step,
                   wall_time_s=round(time.perf_counter() - started, 3))
    if trainer.is_global_zero:
        write_metrics(run_dir, metrics)
        log_final(trainer, hyperparameters(cfg, lr, global_batch_size), metrics)
    return metrics


def log_final(trainer: L.Trainer, params: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Hyperparameters with the final metrics, logged once as ``final/<metric>`` (one point
    each, apart from the curves) so that TensorBoard's HParams view compares runs."""
    final = {f"final/{key}": value for key, value in metrics.items() if "/" in key}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, final)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(final, step=trainer.global_step)
        logger.finalize("success")
        if isinstance(logger, RunTensorBoardLogger):
            logger.close()


def hyperparameters(cfg: DictConfig, lr: float, global_batch_size: int) -> dict[str, Any]:
    """The flat hyperparameters of a run, for the HParams view."""
    params = {
        f"{group}/{key}": value
        for group in ("model", "optim", "data", "init")
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items()
        if isinstance(value, int | float | str | bool) and key != "_partial_"
    }
    params.update({"lr_eff": lr, "global_batch_size": global_batch_size, "seed": cfg.seed})
    return params


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write the run's final numbers as one flat JSON object."""
    path = run_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path
