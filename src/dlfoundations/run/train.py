"""One training run from a composed config: build, fit, test the best checkpoint, report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.plugins.environments import (
    LightningEnvironment,
    LSFEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from omegaconf import DictConfig, OmegaConf

from dlfoundations.callbacks import (
    DivergenceGuard,
    GracefulInterrupt,
    RestoredStateGuard,
    TrainingDiverged,
    ValidationHistory,
)
from dlfoundations.environment import cuda_visible_devices
from dlfoundations.errors import UserError, first_line, require
from dlfoundations.folder import first_non_finite, write_metrics, write_text
from dlfoundations.interrupts import INTERRUPTS, RunInterrupted, interruption
from dlfoundations.optim import scaled_lr
from dlfoundations.run import console
from dlfoundations.run.checkpoints import SafeCheckpointIO, check_matches, read_checkpoint
from dlfoundations.run.checks import check_batch_limits, check_run_config
from dlfoundations.run.cli import START_METHODS_IN_PROCESS
from dlfoundations.run.console import in_multirun
from dlfoundations.run.resume import resume_point
from dlfoundations.status import Status
from dlfoundations.tensorboard_logger import RunTensorBoardLogger

#: config groups whose choice and values are a run's hyperparameters
GROUPS = ("model", "optim", "scheduler", "data", "init", "lr_scaling")


def check_processes_are_safe(trainer: L.Trainer, strategy: Any) -> None:
    """Refuse DDP that Lightning would start by re-running this script inside a multirun.

    Lightning starts each extra rank of ``ddp`` (and of ``auto`` on several devices) by
    re-running ``sys.argv``; with ``-m`` that re-runs the whole sweep, in a second sweep folder,
    with ranks that can disagree. Allowed: one process, processes started outside (SLURM,
    torchrun), and the ``ddp_spawn`` family (``strategy``: the config's ``trainer.strategy``).
    """
    environment = getattr(trainer.strategy, "cluster_environment", None)
    external = environment is not None and environment.creates_processes_externally
    spawned = isinstance(strategy, str) and strategy.startswith(START_METHODS_IN_PROCESS)
    if in_multirun() and trainer.world_size > 1 and not external and not spawned:
        raise UserError(
            f"trainer.strategy={trainer.strategy.__class__.__name__} with "
            f"{trainer.world_size} processes is not allowed inside a multirun (-m): Lightning "
            "would re-run the whole sweep for each extra process; run each job on its own, use "
            "trainer.strategy=ddp_spawn, or launch the sweep with hydra/launcher=slurm."
        )


def stopped_early(trainer: L.Trainer) -> tuple[Status, str] | None:
    """The status and reason of a run that one of its callbacks stopped before its last epoch
    on purpose (e.g. a search's ``TrialPruning``: ``stop_status()``); None otherwise."""
    for callback in trainer.callbacks:
        outcome = callback.stop_status() if hasattr(callback, "stop_status") else None
        if outcome is not None:
            return outcome
    return None


def cluster_environment(trainer: L.Trainer) -> str:
    """The cluster environment a run ran under: its strategy's (DDP), or for one process the
    first whose ``detect()`` holds, in the order Lightning tries them."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is not None:
        return type(environment).__name__
    detected = (env for env in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment)
                if env.detect())  # Kubeflow's cannot be detected, only chosen
    return next(detected, LightningEnvironment).__name__


def physical_device(device: torch.device) -> str:
    """The device as the machine numbers it: ``cuda:3`` for a process that sees only GPU 3
    (``CUDA_VISIBLE_DEVICES=3``, as a side-by-side sweep's worker does), where torch says
    ``cuda:0``."""
    visible = cuda_visible_devices() or []
    if device.type == "cuda" and device.index is not None and device.index < len(visible):
        return f"cuda:{visible[device.index]}"
    return str(device)


def build_trainer(cfg: DictConfig, *extra_callbacks: L.Callback) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the loggers and callbacks of their groups (one set
    to null is left out), the guards every run has, and checkpoints read and written by
    ``SafeCheckpointIO``. The model summary shows with ``verbose``, the progress bar in a
    single run (a sweep prints a line per job)."""
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()
               if node is not None]  # logger.csv=null: that one off
    verbose = bool(cfg.get("verbose"))
    bar = verbose or not in_multirun()
    callbacks = [callback for callback in (instantiate(node) for node in
                                           (cfg.get("callbacks") or {}).values()
                                           if node is not None)
                 if bar or not isinstance(callback, ProgressBar)]
    return instantiate(cfg.trainer, logger=loggers or False, plugins=[SafeCheckpointIO()],
                       enable_model_summary=verbose, enable_progress_bar=bar,
                       callbacks=[*callbacks, *extra_callbacks, DivergenceGuard(),
                                  GracefulInterrupt()])


def build_model(cfg: DictConfig, global_batch_size: int) -> tuple[L.LightningModule, float]:
    """The model of ``cfg.model`` with its initialiser, optimizer at the effective learning
    rate, and scheduler."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    weight_decay = optim.get("weight_decay", 0.0)
    require(isinstance(weight_decay, int | float) and weight_decay >= 0,
            "optim.weight_decay", weight_decay, "a number of at least 0")
    lr = scaled_lr(optim["lr"], global_batch_size, **cfg.lr_scaling)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = instantiate(cfg.model, init=OmegaConf.to_container(cfg.init), _convert_="all",
                        gradients=cfg.gradients, optimizer=instantiate(optim, lr=lr),
                        scheduler=scheduler)
    return model, lr


@dataclass
class RunStart:
    """A run built from its config, before it trains: what the training and the writing of
    its outputs (``finish_run``) share. A fused group (``dlfoundations.fused``) starts each
    member this way and trains the members together."""

    cfg: DictConfig
    run_dir: Path
    started: float
    trainer: L.Trainer
    model: L.LightningModule
    datamodule: L.LightningDataModule
    history: ValidationHistory
    restoring: RestoredStateGuard
    lr: float
    global_batch_size: int
    facts: dict[str, Any]


def start_run(cfg: DictConfig) -> RunStart:
    """Seed, build data, trainer and model (its initial weights drawn after
    ``seed_everything(cfg.seed)``), write ``config.yaml`` and say the plan line; ``cfg`` is
    checked before (``check_run_config``)."""
    started = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    sizes = datamodule.split_sizes() if hasattr(datamodule, "split_sizes") else None
    if hasattr(datamodule, "check_sizes"):
        datamodule.check_sizes(sizes)  # before the trainer and its logger write anything
    history, restoring = ValidationHistory(), RestoredStateGuard()
    trainer = build_trainer(cfg, restoring, history)
    check_processes_are_safe(trainer, cfg.trainer.get("strategy"))
    check_batch_limits(trainer, sizes or dict.fromkeys(("train", "val", "test")),
                       datamodule.batch_size)
    global_batch_size = datamodule.batch_size * trainer.world_size * trainer.accumulate_grad_batches
    model, lr = build_model(cfg, global_batch_size)
    for logger in trainer.loggers:
        if isinstance(logger, RunTensorBoardLogger):
            logger.samples_per_step = global_batch_size
    if trainer.is_global_zero:
        if not (run_dir / "config.yaml").exists():  # a resumed run keeps the one it has
            write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        console.say(plan_line(cfg, lr, global_batch_size, run_dir), console=not in_multirun())
    facts = {"lr": lr, "lr_base": float(cfg.optim.lr), "batch_size": datamodule.batch_size,
             "global_batch_size": global_batch_size,
             "device": physical_device(trainer.strategy.root_device),
             "cluster_environment": cluster_environment(trainer)}
    return RunStart(cfg, run_dir, started, trainer, model, datamodule, history, restoring, lr,
                    global_batch_size, facts)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``.

    Returns the metrics with ``status``: ``completed``, or ``diverged`` / ``interrupted`` (with
    ``reason``) when the training loss stopped being finite or a signal stopped the run. With
    ``resume=true`` a run continues in its own folder from ``last.ckpt`` (``resume_point``).
    """
    check_run_config(cfg)
    finished, ckpt_path = resume_point(cfg, Path(cfg.paths.output_dir))
    if finished is not None:
        return finished
    run = start_run(cfg)
    trainer, model, datamodule = run.trainer, run.model, run.datamodule
    if ckpt_path:
        check_matches(model, read_checkpoint(ckpt_path), ckpt_path)
    try:
        fit(trainer, model, datamodule, ckpt_path, run.restoring)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        early = stopped_early(trainer)
        if early is not None:  # the best epoch's numbers, not tested
            metrics = {**best_epoch(run, best), "status": early[0], "reason": early[1]}
        else:
            metrics = {**best_epoch(run, best),
                       **test(trainer, model, datamodule, best), "status": Status.COMPLETED}
    except Exception as err:  # a signal's RunInterrupted, also where a library wrapped it
        stopped = err if isinstance(err, TrainingDiverged) else interruption(err)
        if stopped is None:
            raise
        status = Status.DIVERGED if isinstance(stopped, TrainingDiverged) else Status.INTERRUPTED
        metrics = {**run.history.last(), "status": status, "reason": str(stopped)}
    return finish_run(run, metrics, trainer.current_epoch, trainer.global_step)


def best_epoch(run: RunStart, best_checkpoint: str) -> dict[str, Any]:
    """The validation metrics of the run's best epoch, with its number and checkpoint."""
    val = run.history.best(run.cfg.monitor.metric, run.cfg.monitor.mode)
    return {**val, "best_epoch": val.get("epoch"), "best_checkpoint": best_checkpoint}


def test(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule,
         checkpoint: str) -> dict[str, Any]:
    """The test metrics of ``checkpoint`` (the model as it is where empty), with the model's
    own final values (``report``)."""
    tested = trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint or None,
                          verbose=False)[0]
    return {**{key: float(value) for key, value in tested.items()}, **model.report()}


def finish_run(run: RunStart, metrics: dict[str, Any], epochs: int, global_step: int
               ) -> dict[str, Any]:
    """Write the run's ``metrics.json`` (its facts, epochs, steps and time added; final
    metrics that are not finite make a completed run ``diverged``) and its hyperparameters
    with the final metrics to its loggers; returns the metrics."""
    metrics = {**metrics, **run.facts}
    not_finite = first_non_finite(metrics)
    if not_finite and metrics["status"] == Status.COMPLETED:
        metrics.update(status=Status.DIVERGED, reason=f"{not_finite}: the trained model's results "
                       "are not finite numbers")
    metrics.pop("epoch", None)
    metrics.update(epochs=epochs, global_step=global_step,
                   wall_time_s=round(time.perf_counter() - run.started, 3))
    if run.trainer.is_global_zero:
        with INTERRUPTS.shield():
            write_metrics(run.run_dir, metrics)
            log_final(run.trainer, global_step,
                      hyperparameters(run.cfg, run.lr, run.global_batch_size), metrics)
    return metrics


def fit(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule,
        ckpt_path: str | None, restoring: RestoredStateGuard) -> None:
    """``trainer.fit``, from ``ckpt_path`` where given. Whatever goes wrong while Lightning
    restores the checkpoint's state (before training starts) is the checkpoint's fault: one
    sentence naming it (``RestoredStateGuard`` checks what it can beforehand)."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except (UserError, TrainingDiverged, RunInterrupted, OSError):
        raise
    except Exception as err:
        if not ckpt_path or restoring.restored or interruption(err) is not None:
            raise
        raise UserError(f"ckpt_path={ckpt_path!r} cannot be restored: "
                        f"{first_line(err) or type(err).__name__}.") from err


def plan_line(cfg: DictConfig, lr: float, global_batch_size: int, run_dir: Path) -> str:
    """What a run trains, in one line: the config groups chosen, the effective learning rate
    and batch size, the epochs and the run folder."""
    choices = (HydraConfig.get().runtime.choices if HydraConfig.initialized() else {})
    chosen = " ".join(f"{group}={choices[group]}" for group in ("model", "optim", "scheduler",
                                                               "init", "data", "trainer")
                      if choices.get(group) is not None)
    return (f"{chosen or 'training'}: lr_eff {lr:.4g} at global batch {global_batch_size}, "
            f"{cfg.trainer.max_epochs} epochs, seed {cfg.seed} -> {run_dir}")


def log_final(trainer: L.Trainer, global_step: int, params: dict[str, Any],
              metrics: dict[str, Any]) -> None:
    """Hyperparameters with the final metrics (``val/acc`` ...), logged once, apart from the
    curves, so that TensorBoard's HParams view compares runs (CSV: ``final/<metric>``)."""
    final = {key: value for key, value in metrics.items() if "/" in key}
    for logger in trainer.loggers:
        if isinstance(logger, RunTensorBoardLogger):
            logger.log_run(params, final, logger.samples_seen(global_step))
            logger.close()
        else:
            logger.log_hyperparams(params)
            logger.log_metrics({f"final/{key}": value for key, value in final.items()},
                               step=global_step)
            logger.finalize("success")


def hyperparameters(cfg: DictConfig, lr: float, global_batch_size: int) -> dict[str, Any]:
    """The flat hyperparameters of a run, for the HParams view: the config groups chosen by
    name (``optim``: adam; their ``_target_`` classes left out), each group's values by path
    (``optim/lr``, ``model/net/dropout``; a list as its text, ``model/net/hidden``: ``[256]``),
    ``lr_eff``, ``global_batch_size`` and ``seed``."""
    params: dict[str, Any] = {}
    if HydraConfig.initialized():
        params.update({group: str(choice) for group, choice in HydraConfig.get()
                       .runtime.choices.items() if group in GROUPS and choice is not None})
    for group in GROUPS:
        if cfg.get(group):
            params.update(flat_values(OmegaConf.to_container(cfg[group], resolve=True), group))
    params.update({"lr_eff": lr, "global_batch_size": global_batch_size, "seed": cfg.seed})
    return params


def flat_values(node: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``{prefix/key: value}`` for each value in ``node`` and the nodes inside it; lists as
    their text, ``_target_`` and other ``_`` keys left out."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("_") or value is None:
            continue
        if isinstance(value, dict):
            flat.update(flat_values(value, f"{prefix}/{key}"))
        else:
            flat[f"{prefix}/{key}"] = str(value) if isinstance(value, list) else value
    return flat
