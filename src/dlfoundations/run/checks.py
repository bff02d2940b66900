"""Checks of a run's config, made before data or weights are touched.

Each refusal is one sentence naming the key, the value and what is allowed (``require``).
The optimizer's and scheduler's own keys are checked by rule (``OPTIM_RULES``,
``SCHEDULER_RULES``) and then by building both once on a one-element parameter, so that
whatever torch itself refuses is refused here too, before the run starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from dlfoundations.errors import UserError, first_line, require
from dlfoundations.models.base import require_derived_gradients
from dlfoundations.optim import scaled_lr
from dlfoundations.run.argument_types import check_argument_types
from dlfoundations.task import Task

Rule = tuple[Callable[[Any], bool], str]
#: the largest seed every generator a run seeds accepts (numpy's: 2^32 - 1)
MAX_SEED = 2**32 - 1


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def in_range(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Rule:
    """A finite number between ``low`` and ``high`` (open ends as asked)."""
    def test(value: Any) -> bool:
        return (_number(value) and (value > low if low_open else value >= low)
                and (value < high if high_open else value <= high))
    brackets = ("(" if low_open else "[", ")" if high_open else "]")
    high_text = "inf" if math.isinf(high) else f"{high:g}"
    return test, f"a number in {brackets[0]}{low:g}, {high_text}{brackets[1]}"


def _betas(value: Any) -> bool:
    return (isinstance(value, list | tuple | ListConfig) and len(value) == 2
            and all(in_range(0, 1, high_open=True)[0](b) for b in value))


POSITIVE = in_range(0, math.inf, low_open=True, high_open=True)
NON_NEGATIVE = in_range(0, math.inf, high_open=True)
BOOLEAN: Rule = (lambda value: isinstance(value, bool), "true or false")
POSITIVE_INT: Rule = (lambda value: isinstance(value, int) and not isinstance(value, bool)
                      and value >= 1, "an integer of at least 1")

#: the torch optimizers' own keys and what each may be
OPTIM_RULES: dict[str, Rule] = {
    "eps": POSITIVE, "weight_decay": NON_NEGATIVE,
    "momentum": in_range(0, 1, high_open=True), "dampening": in_range(0, 1),
    "rho": in_range(0, 1), "alpha": in_range(0, 1, high_open=True), "lr_decay": NON_NEGATIVE,
    "initial_accumulator_value": NON_NEGATIVE,
    "betas": (_betas, "two numbers in [0, 1), e.g. [0.9, 0.999]"),
    "nesterov": BOOLEAN, "centered": BOOLEAN, "amsgrad": BOOLEAN, "maximize": BOOLEAN,
}
#: the schedulers' own keys: a factor above 1 or below 0 would make training diverge or ascend
SCHEDULER_RULES: dict[str, Rule] = {
    "gamma": in_range(0, 1, low_open=True), "step_size": POSITIVE_INT, "T_max": POSITIVE_INT,
    "eta_min": NON_NEGATIVE,
}


def check_keys(group: str, node: dict[str, Any], rules: dict[str, Rule]) -> None:
    for key, value in node.items():
        if key in rules:
            test, allowed = rules[key]
            require(test(value), f"{group}.{key}", value, allowed)


def _dry_build(group: str, node: dict[str, Any], build: Callable[[], Any]) -> Any:
    """``build()``, with torch's own refusal of a key turned into a ``UserError``."""
    try:
        return build()
    except TypeError as err:
        key = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if key:
            raise UserError(f"{group}.{key[1]} is not an option of {group} "
                            f"({node['_target_']}).") from err
        raise UserError(f"{group} holds a value of the wrong type: {err}.") from err
    except ValueError as err:
        raise UserError(f"{group} holds a value its class refuses: {err}.") from err


def check_optim_and_scheduler(cfg: DictConfig) -> None:
    """Every key of ``optim`` and ``scheduler`` by rule, then both built once for real."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    check_keys("optim", optim, OPTIM_RULES)
    scaling = OmegaConf.to_container(cfg.lr_scaling, resolve=True)
    scaled_lr(optim["lr"], scaling["base_batch_size"], **scaling)
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = _dry_build("optim", optim, lambda: instantiate(optim)([{"params": [weight]}]))
    if cfg.get("scheduler"):
        scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True)
        check_keys("scheduler", scheduler, SCHEDULER_RULES)
        _dry_build("scheduler", scheduler, lambda: instantiate(scheduler)(optimizer))


def target_class(cfg: DictConfig, group: str, base: type, example: str) -> type:
    """The class ``{group}._target_`` names, if it is a ``base`` with a ``task``; the command
    line may name a user's own class, so anything else is one sentence, not a traceback."""
    target = cfg[group].get("_target_")
    try:
        cls = get_class(target)
    except Exception as err:  # Hydra's own error, whatever the name
        raise UserError(f"{group}._target_={target!r} is not allowed: it must name a class "
                        f"that can be imported ({first_line(err)}).") from err
    require(isinstance(cls, type) and issubclass(cls, base) and isinstance(
        getattr(cls, "task", None), str), f"{group}._target_", target,
        f"a {base.__name__} class with a task, e.g. {example}")
    return cls


def check_model_fits_data(cfg: DictConfig) -> None:
    """A classifier needs image data and an output for each of its classes, logistic
    regression two of its classes, linear regression synthetic data; hand-derived gradients
    exist for some models only; the monitored metric is one the model logs."""
    model_cls = target_class(cfg, "model", L.LightningModule, "dlfoundations.models.Classifier")
    data_cls = target_class(cfg, "data", L.LightningDataModule,
                            "dlfoundations.data.FashionMNISTDataModule")
    metrics = getattr(model_cls, "metrics", ())
    require(not metrics or cfg.monitor.metric in metrics, "monitor.metric", cfg.monitor.metric,
            f"a metric that {model_cls.__name__} logs: {', '.join(metrics)}")
    if data_cls.task == Task.CLASSIFICATION and cfg.data.get("classes") is not None:
        if model_cls.task != Task.TWO_CLASS:
            raise UserError(
                f"data.classes={OmegaConf.to_container(cfg.data.classes)} is not allowed with "
                f"model {model_cls.__name__}: data.classes must be null for the ten-class "
                "models (two classes are for model=logreg).")
        return
    labels, num_classes = getattr(data_cls, "num_classes", None), cfg.model.get("num_classes")
    if labels is not None and isinstance(num_classes, int) and num_classes < labels:
        raise UserError(
            f"model.num_classes={num_classes} is not allowed: {data_cls.__name__} has {labels} "
            f"classes, so model.num_classes must be at least {labels}.")
    if model_cls.task == Task.TWO_CLASS and data_cls.task == Task.CLASSIFICATION:
        raise UserError(f"model {model_cls.__name__} needs two classes: set data.classes=[a,b]"
                        " (e.g. [0,6], T-shirt/top against Shirt).")
    if model_cls.task != data_cls.task:
        raise UserError(
            f"model {model_cls.__name__} learns {model_cls.task} but data "
            f"{data_cls.__name__} holds {data_cls.task} data: use data=synthetic_linear "
            "with model=linreg and data=fashion_mnist with the classifiers."
        )


#: the nodes of a run's config that hold keys (null allowed where the second item says so)
NODES = (("model", False), ("model.net", False), ("data", False), ("optim", False),
         ("init", False), ("trainer", False), ("monitor", False), ("lr_scaling", False),
         ("scheduler", True), ("callbacks", True), ("logger", True))


def check_nodes(cfg: DictConfig) -> None:
    """Each node a run reads keys from is a node of keys (``model.net=5`` is refused)."""
    for key, optional in NODES:
        node = OmegaConf.select(cfg, key, default=None)
        require(isinstance(node, DictConfig) or (optional and node is None), key,
                OmegaConf.to_container(node) if isinstance(node, ListConfig) else node,
                f"a node of keys (as in conf/{key.split('.')[0]}/){' or null' * optional}")


#: the splits a run cannot go without (0 batches of them), and why; 0 validation batches
#: switch validation off, as in Lightning
NEEDED_SPLITS = {"train": "a run trains on it",
                 "test": "a run ends with a test on it, and an evaluation is one"}


def example_fraction(batches: int) -> float:
    """A fraction, of two significant digits, that keeps one of ``batches`` batches by
    Lightning's rule (int(batches x fraction) >= 1): 1/3 gives 0.34 (0.33 keeps none)."""
    scale = 10 ** (1 - math.floor(math.log10(1 / batches)))
    fraction = math.ceil(round(scale / batches, 9)) / scale
    while int(batches * fraction) < 1:
        fraction += 1 / scale
    return fraction


def check_batch_limits(trainer: L.Trainer, sizes: dict[str, int | None], batch_size: int
                       ) -> None:
    """The trainer's ``limit_*_batches`` of the splits in ``sizes`` (each one's examples; None:
    not known yet), refused before the run where they keep none of a split's batches: 0 of a
    split the run needs (Lightning then skips it; a test returns no result), or a fraction
    below 1.0 that keeps none (Lightning refuses it only once it reaches that split, the
    test's after the training). Each process takes its share of a split
    (``DistributedSampler``)."""
    for split, examples in sizes.items():
        key, limit = f"trainer.limit_{split}_batches", getattr(trainer, f"limit_{split}_batches")
        if split in NEEDED_SPLITS:
            require(limit != 0, key, limit, "null, a fraction above 0 or a whole number of at "
                    f"least 1 ({NEEDED_SPLITS[split]})")
        if examples is None or not isinstance(limit, float) or not 0 < limit < 1:
            continue
        batches = math.ceil(math.ceil(examples / trainer.world_size) / batch_size)
        each = " of each process" if trainer.world_size > 1 else ""
        allowed = (f"1.0, a whole number of batches or null (the {split} split{each} is one "
                   "batch)" if batches == 1 else
                   f"a fraction that keeps one of the {batches} {split} batches{each} (e.g. "
                   f"{example_fraction(batches):g}), a whole number of batches or null")
        require(int(batches * limit) >= 1, key, limit, allowed)


def check_run_config(cfg: DictConfig) -> None:
    """The run-level keys a typo would break late: checked before anything is built."""
    check_nodes(cfg)
    require(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool)
            and 0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed, f"an integer from 0 to {MAX_SEED}")
    require(isinstance(cfg.get("resume", False), bool), "resume", cfg.get("resume"),
            "true or false")
    gradients = cfg.get("gradients", "autograd")
    require_derived_gradients(cfg.model.get("net", {}).get("name"), gradients)
    if gradients == "manual":
        for key, plain in (("accumulate_grad_batches", 1), ("gradient_clip_val", None)):
            value = cfg.trainer.get(key, plain)
            require(value == plain, f"trainer.{key}", value,
                    f"{plain if plain is not None else 'null'} with gradients=manual (the "
                    "hand-derived step applies each batch's gradient as it is)")
    trainer = cfg.trainer
    require(isinstance(trainer.max_epochs, int) and trainer.max_epochs >= 1,
            "trainer.max_epochs", trainer.max_epochs, "an integer of at least 1")
    devices = trainer.get("devices", 1)
    require(devices in ("auto", -1) or (isinstance(devices, int) and devices >= 1)
            or (isinstance(devices, list | ListConfig) and len(devices) >= 1),
            "trainer.devices", devices, "an integer of at least 1, -1 (all), auto or a list")
    for key in ("num_nodes", "accumulate_grad_batches", "log_every_n_steps"):
        value = trainer.get(key, 1)
        optional = key == "log_every_n_steps"  # null: Lightning's default, 50
        require((optional and value is None) or (isinstance(value, int) and value >= 1),
                f"trainer.{key}", value, "an integer of at least 1" + " or null" * optional)
    require(cfg.monitor.mode in ("max", "min"), "monitor.mode", cfg.monitor.mode, "max or min")
    threads = cfg.get("threads")
    require(threads is None or (isinstance(threads, int) and threads >= 1), "threads", threads,
            "null or an integer of at least 1")
    check_model_fits_data(cfg)
    check_argument_types(cfg, ("trainer", "callbacks", "logger", "model", "data", "optim",
                               "scheduler"))  # after the checks above, whose words are the key's
    check_optim_and_scheduler(cfg)
