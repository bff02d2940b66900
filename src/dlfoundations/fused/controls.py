"""What a fused group computes, as an allow-list: every key of a job's config the group's loop
honours, with the values it computes exactly as the job's run alone would.

The group trains without Lightning's ``Trainer.fit``, so a control it does not compute (a
trainer key, a callback or one of its options, a logger, a search's pruning) would be silently
ignored, giving other numbers than the job's solo run. Each key is therefore checked against
this list, and whatever is not on it, a key added later included, is refused before anything
trains, in one sentence naming the key and the launcher to use instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dlfoundations.errors import UserError

#: a test of a value (with the job's config, for values that must agree with another key)
Accepts = Callable[[Any, DictConfig], bool]
#: what a key may be: its test and, in words, what it allows
Allowed = tuple[Accepts, str]

ELSEWHERE = ("leave hydra/launcher out (the default launcher runs such a job alone) or run this "
             "sweep with another launcher, e.g. hydra/launcher=side_by_side")


def one_of(*values: Any) -> Allowed:
    """Exactly one of ``values`` (booleans apart from numbers)."""
    def test(value: Any, cfg: DictConfig) -> bool:
        return any(type(value) is type(allowed) and value == allowed for allowed in values)
    return test, " or ".join("null" if v is None else str(v).lower() if isinstance(v, bool)
                             else str(v) for v in values)


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def whole_number(low: int) -> Allowed:
    return (lambda value, cfg: _whole(value, low)), f"a whole number of at least {low}"


#: ``limit_*_batches``: all of them, or a count of at least one (a fraction other than 1.0,
#: or 0, changes which batches Lightning takes in ways the group does not compute)
BATCH_LIMIT: Allowed = ((lambda value, cfg: value is None or _whole(value, 1)
                         or (isinstance(value, float) and value == 1.0)),
                        "null, 1.0 (all batches) or a whole number of batches of at least 1")
ANYTHING: Allowed = ((lambda value, cfg: True), "anything")

#: the Trainer's keys a group honours; any other key of ``trainer`` is refused
TRAINER: dict[str, Allowed] = {
    "_target_": one_of("lightning.pytorch.Trainer"),
    "accelerator": one_of("auto", "cpu", "gpu", "cuda"),
    "devices": one_of(1),
    "num_nodes": one_of(1),
    "strategy": one_of("auto"),
    "precision": one_of("32-true", "64-true", "32", "64", 32, 64),
    "max_epochs": whole_number(1),
    "max_steps": one_of(-1),
    "accumulate_grad_batches": one_of(1),
    "gradient_clip_val": one_of(None),
    "check_val_every_n_epoch": one_of(1),
    "val_check_interval": one_of(None, 1.0),
    "log_every_n_steps": whole_number(1),
    "limit_train_batches": BATCH_LIMIT,
    "limit_val_batches": BATCH_LIMIT,
    "limit_test_batches": BATCH_LIMIT,
    # the sanity check's batches change no number, and the Trainer of each member sets the
    # deterministic flags of the process as the job's does
    "num_sanity_val_steps": whole_number(-1),
    "deterministic": one_of(False, True, None, "warn"),
    "profiler": one_of(None),
    "default_root_dir": ANYTHING,
}


def precision_dtype(cfg: DictConfig) -> torch.dtype:
    """The dtype a group computes in: float64 for ``trainer.precision=64-true``, else
    float32."""
    return torch.float64 if str(cfg.trainer.precision).startswith("64") else torch.float32


def same_as(key: str) -> Allowed:
    """Equal to the config's ``key`` (e.g. the checkpoints' monitor is ``monitor.metric``)."""
    return (lambda value, cfg: value == OmegaConf.select(cfg, key)), f"${{{key}}}"


#: each callback a group honours, by its name in ``callbacks``, with the options it computes:
#: checkpoints as ``ModelCheckpoint(save_top_k=1, save_last=True)`` writes them into the run's
#: folder, ``train/lr`` and the epoch's time as the project's callbacks log them, the test's
#: figures; the progress bar changes no number
CALLBACKS: dict[str, dict[str, Allowed]] = {
    "model_checkpoint": {
        "_target_": one_of("lightning.pytorch.callbacks.ModelCheckpoint"),
        "dirpath": one_of("${paths.output_dir}/checkpoints"),
        "filename": one_of("epoch{epoch:02d}"),
        "auto_insert_metric_name": one_of(False),
        "monitor": same_as("monitor.metric"),
        "mode": same_as("monitor.mode"),
        "save_last": one_of(True),
        "save_top_k": one_of(1),
    },
    "progress_bar": {"_target_": one_of("lightning.pytorch.callbacks.TQDMProgressBar"),
                     "refresh_rate": whole_number(0)},
    "learning_rate": {"_target_": one_of("dlfoundations.callbacks.LearningRateLogger")},
    "epoch_timer": {"_target_": one_of("dlfoundations.callbacks.EpochTimer")},
    "test_images": {"_target_": one_of("dlfoundations.callbacks.TestImages"),
                    "num_images": whole_number(0)},
}
#: the callbacks and loggers a group needs, with the reason
REQUIRED = {"model_checkpoint": "its checkpoints pick the epoch it tests and hold what it "
            "resumes from", "tensorboard": "it logs its curves there only"}

#: the loggers a group writes to, with their options
LOGGERS: dict[str, dict[str, Allowed]] = {
    "tensorboard": {
        "_target_": one_of("dlfoundations.tensorboard_logger.RunTensorBoardLogger"),
        "save_dir": one_of("${paths.output_dir}"),
        "name": one_of(""),
        "version": one_of(""),
        "default_hp_metric": one_of(False),
    },
}

#: the model a group trains: a classifier whose network is stacked layer by layer
#: (``StackedNetwork`` refuses a layer it cannot stack)
MODEL: dict[str, Allowed] = {
    "_target_": one_of("dlfoundations.models.Classifier",
                       "dlfoundations.models.classifier.Classifier"),
    "net": ANYTHING,  # its layers: ``StackedNetwork`` refuses one it cannot stack
    "num_classes": whole_number(2),
}

#: the data a group reads through each member's own data module (its splits, seed, folds)
DATA: dict[str, Allowed] = {
    "_target_": one_of("dlfoundations.data.FashionMNISTDataModule",
                       "dlfoundations.data.fashion_mnist.FashionMNISTDataModule"),
    **{key: ANYTHING for key in ("data_dir", "batch_size", "val_size", "seed", "num_folds",
                                 "fold", "train_subset", "classes", "num_workers",
                                 "pin_memory", "on_device", "download", "system_dirs")},
}

#: the schedules a member's rate follows, stepped once per epoch as the job's are
SCHEDULERS = ("torch.optim.lr_scheduler.CosineAnnealingLR",
              "torch.optim.lr_scheduler.ExponentialLR", "torch.optim.lr_scheduler.StepLR")

#: the validation metrics a group computes, one of which picks the best epoch
MONITORED = ("val/acc", "val/loss")

#: the root keys of a job's config a group reads (the groups above are checked key by key;
#: ``optim``'s keys by ``rules.hyperparameters``)
ROOT = ("seed", "verbose", "gradients", "lr_scaling", "threads", "monitor", "report",
        "ckpt_path", "resume", "data", "optim", "scheduler", "init", "model", "trainer",
        "logger", "callbacks", "paths", "search", "hydra")


def refuse(key: str, value: Any, allowed: str) -> UserError:
    return UserError(f"{key}={value!r} is not allowed with hydra/launcher=fused: {key} must be "
                     f"{allowed} there, the only values a fused group computes as the job "
                     f"alone would; {ELSEWHERE}.")


def not_computed(key: str, value: Any) -> UserError:
    return UserError(f"{key}={value!r} is not allowed with hydra/launcher=fused: a fused group "
                     f"does not compute {key}; {ELSEWHERE}.")


def check_node(group: str, node: Any, allowed: dict[str, Allowed], cfg: DictConfig) -> None:
    """Each key of ``node`` (config ``group``) is on ``allowed`` with a value it accepts, as
    the config gives it (``${paths.output_dir}/checkpoints``) or resolved."""
    if not isinstance(node, DictConfig):
        raise refuse(group, node if not OmegaConf.is_config(node) else
                     OmegaConf.to_container(node), "a node of keys")
    given = OmegaConf.to_container(node, resolve=False)
    for key, text in given.items():
        value = resolved(node, key, text)
        if key not in allowed:
            raise not_computed(f"{group}.{key}", value)
        test, words = allowed[key]
        if not (test(text, cfg) or test(value, cfg)):
            raise refuse(f"{group}.{key}", value, words)


def resolved(node: DictConfig, key: str, text: Any) -> Any:
    """``node[key]`` resolved as plain values (its text where it cannot be resolved here)."""
    try:
        value = node[key]
    except Exception:  # e.g. ${hydra:...} outside the job: the text is what is checked
        return text
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def check_fusable(cfg: DictConfig) -> None:
    """Every key of the job's config is one the group computes, with a value it computes
    exactly as the job's run alone would (``UserError`` naming the first that is not)."""
    for key in cfg:
        if key not in ROOT:
            raise not_computed(key, resolved(cfg, key, None))
    if cfg.get("search") is not None:
        raise UserError("hparams_search is not allowed with hydra/launcher=fused: a search "
                        "reports each trial's epochs to its study and prunes trials one by one, "
                        "which a fused group does not; run the search with its own launcher "
                        "(leave hydra/launcher out).")
    check_node("model", cfg.get("model"), MODEL, cfg)
    check_node("data", cfg.get("data"), DATA, cfg)
    check_node("trainer", cfg.get("trainer"), TRAINER, cfg)
    for key, (test, text) in (("gradients", one_of("autograd")), ("ckpt_path", one_of(None)),
                              ("monitor.metric", one_of(*MONITORED)),
                              ("model.net.batch_norm", one_of(None, False))):
        value = OmegaConf.select(cfg, key)
        if not test(value, cfg):
            raise refuse(key, value, text)
    scheduler = cfg.get("scheduler")
    if scheduler and scheduler.get("_target_") not in SCHEDULERS:
        raise refuse("scheduler._target_", scheduler.get("_target_"), " or ".join(SCHEDULERS))
    check_named_nodes("callbacks", cfg.get("callbacks"), CALLBACKS, cfg)
    check_named_nodes("logger", cfg.get("logger"), LOGGERS, cfg)


def check_named_nodes(group: str, nodes: Any, allowed: dict[str, dict[str, Allowed]],
                      cfg: DictConfig) -> None:
    """The callbacks (or loggers) of a job: each one on ``allowed`` with its options, and the
    ``REQUIRED`` ones there."""
    present = {name: node for name, node in (nodes or {}).items() if node is not None}
    for name in allowed:
        if name in REQUIRED and name not in present:
            raise UserError(f"{group}.{name} is required with hydra/launcher=fused ("
                            f"{REQUIRED[name]}); {ELSEWHERE}.")
    for name, node in present.items():
        if name not in allowed:
            target = node.get("_target_") if isinstance(node, DictConfig) else node
            raise UserError(f"{group}.{name} ({target}) is not allowed with "
                            f"hydra/launcher=fused: a fused group computes only "
                            f"{', '.join(allowed)}; {ELSEWHERE}.")
        check_node(f"{group}.{name}", node, allowed[name], cfg)


def check_folder_name(run_dir: Path) -> None:
    """The job's folder name fits the file system (``NAME_MAX``), checked before any job
    starts, as creating it would fail after others had trained."""
    parent = next((p for p in run_dir.parents if p.is_dir()), Path("."))
    limit = os.pathconf(parent, "PC_NAME_MAX")
    for part in run_dir.parts:
        if len(part.encode()) > limit:
            raise UserError(f"hydra.sweep.subdir={part[:40]!r}... is not allowed: that job "
                            f"folder's name is {len(part.encode())} bytes, more than the file "
                            f"system's {limit}; give a shorter one, e.g. "
                            "hydra.sweep.subdir=${hydra.job.num}.")
