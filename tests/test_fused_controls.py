"""Every control of a single run is honoured by a fused group or refused (an allow-list): a
generated walk over every argument of Lightning's ``Trainer``, every option of every callback
and logger the configs know, with values other than the config's; each is refused in one
sentence naming the key and the launcher, or it is one of the controls that the run below
proves honoured (every member equal to its solo run, files, curves and all)."""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from dlfoundations.errors import UserError
from dlfoundations.fused.controls import check_fusable
from tests.conftest import compose_train
from tests.fused_runs import fused_sweep, largest_difference, metrics_of, solo_run, weights

#: the controls a group computes with values other than the defaults, proven together below
HONOURED = ("trainer.accelerator=cpu", "trainer.precision=64-true", "trainer.max_epochs=2",
            "trainer.log_every_n_steps=3", "trainer.limit_train_batches=7",
            "trainer.limit_val_batches=3", "trainer.limit_test_batches=2",
            "trainer.num_sanity_val_steps=0", "trainer.deterministic=true",
            "trainer.default_root_dir=${paths.output_dir}/root", "++trainer.max_steps=-1",
            "++trainer.val_check_interval=1.0", "callbacks.progress_bar.refresh_rate=5",
            "callbacks.test_images.num_images=5", "monitor.metric=val/loss",
            "monitor.mode=min", "threads=1")
HONOURED_KEYS = {override.lstrip("+").split("=")[0] for override in HONOURED}


def other_values(value: Any) -> list[Any]:
    """Values of the same kind as ``value`` but other, and of other kinds."""
    if isinstance(value, bool):
        return [not value, 2]
    if isinstance(value, int):
        return [value + 1, 0, -1, 0.5]
    if isinstance(value, float):
        return [0.0, 0.5, value * 2 + 1, 3] if math.isfinite(value) else [1.0]
    if value is None:
        return [0, 1, 0.5, True, "x"]
    return ["x", 1]


def options(target: str) -> dict[str, Any]:
    """The constructor arguments of a config's ``_target_`` class, with their defaults."""
    signature = inspect.signature(get_class(target).__init__)
    return {name: param.default for name, param in signature.parameters.items()
            if name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD,
                                                 param.KEYWORD_ONLY)}


def controls() -> Iterator[tuple[str, Any]]:
    """A (key, other value) per value of every Trainer argument and of every option of each
    callback (the default ones and the histograms) and logger (TensorBoard, CSV)."""
    config = OmegaConf.to_container(compose_train("callbacks=histograms",
                                                  "logger=[tensorboard,csv]"), resolve=False)
    given = config["trainer"]
    for key, default in options("lightning.pytorch.Trainer").items():
        for value in other_values(given.get(key, default)):
            yield f"trainer.{key}", value
    for group in ("callbacks", "logger"):
        for name, node in config[group].items():
            for key, default in options(node["_target_"]).items():
                for value in other_values(node.get(key, default)):
                    yield f"{group}.{name}.{key}", value


@cache
def default_config() -> DictConfig:
    return compose_train(hydra=True)


def refusal(*overrides: str, key: str | None = None, value: Any = None) -> str | None:
    """The sentence ``check_fusable`` refuses the job with, or None where it is computed: the
    config of ``overrides``, or the default config with ``key`` set to ``value`` (as
    ``++key=value`` sets it)."""
    if key is None:
        cfg = compose_train(*overrides, hydra=True)
    else:
        cfg = copy.deepcopy(default_config())
        OmegaConf.update(cfg, key, value, force_add=True)
    HydraConfig.instance().set_config(cfg)
    try:
        check_fusable(cfg)
    except UserError as err:
        return str(err)
    return None


def test_every_control_is_honoured_or_refused_in_one_sentence() -> None:
    accepted, walked = set(), 0
    for key, value in controls():
        walked += 1
        sentence = refusal(key=key, value=value)
        if sentence is None:
            accepted.add(key)
            continue
        assert "hydra/launcher=fused" in sentence and "\n" not in sentence, (key, value)
        assert ".".join(key.split(".")[:2]) in sentence, (key, value, sentence)  # its node
    assert walked > 200, walked  # Lightning's ~50 Trainer arguments, the callbacks' options
    assert accepted <= HONOURED_KEYS, accepted - HONOURED_KEYS
    assert "callbacks.model_checkpoint is required" in refusal("callbacks=none")
    for override in HONOURED:
        assert refusal(override) is None, override


@pytest.mark.parametrize("override", [
    "++trainer.limit_val_batches=0", "++trainer.limit_train_batches=0", "callbacks=none",
    "++trainer.max_steps=5", "++trainer.val_check_interval=0.5",
    "callbacks.model_checkpoint.save_top_k=2", "callbacks.model_checkpoint.monitor=val/loss",
    "++callbacks.model_checkpoint.every_n_epochs=2", "callbacks=histograms", "logger=csv",
    "++callbacks.early_stopping._target_=lightning.pytorch.callbacks.EarlyStopping",
    "hparams_search=mlp", "trainer.log_every_n_steps=0", "model=linreg", "model=lenet_modern",
    "trainer.precision=bf16-mixed", "scheduler._target_=torch.optim.lr_scheduler.LinearLR"])
def test_the_controls_the_issue_found_ignored_are_refused(override: str) -> None:
    sentence = refusal(override)
    assert sentence is not None and "hydra/launcher" in sentence, override


def test_the_honoured_controls_give_each_member_its_solo_run(tmp_path: Path,
                                                            raw_paths: dict) -> None:
    """Every control the walk accepts, set at once to values other than the defaults: each
    member's weights within 1e-9 of its solo run (float64), its metrics, files and curves the
    same."""
    from tests.test_fused import files_of, scalar_steps

    job = ("model=mlp", "model.net.hidden=[32]", *HONOURED)
    members = fused_sweep(tmp_path / "fused", *job, "optim=sgd,adam")
    for name, optim in (("0", "sgd"), ("1", "adam")):
        solo = solo_run(tmp_path / f"solo_{optim}", *job, f"optim={optim}")
        member, alone = metrics_of(members[name]), metrics_of(solo)
        assert member["status"] == alone["status"] == "completed"
        assert largest_difference(weights(members[name]), weights(solo)) < 1e-9
        for key in ("val/loss", "val/acc", "test/loss", "test/acc", "lr", "best_epoch",
                    "epochs", "global_step"):
            assert member[key] == pytest.approx(alone[key], rel=1e-6), key
        assert files_of(members[name]) == files_of(solo)
        assert scalar_steps(members[name]) == scalar_steps(solo)
