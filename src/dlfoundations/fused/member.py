"""One job of a fused group: a whole run, built and written by the single run's own code.

A member claims its folder (``take_folder``), is checked (``check_run_config``) and built
(``start_run``: seed, data, trainer with its loggers and callbacks, model with its initial
weights, ``config.yaml``, the plan line) exactly as the job alone would be; the group then
trains it with the others, and the member ends with the single run's test and outputs
(``test``, ``finish_run``). While the launcher works on a member (``active``), Hydra's
config is the member's and its log file is the one that receives the lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from dlfoundations import folder
from dlfoundations.background_sync import BackgroundSync
from dlfoundations.callbacks.test_images import TestImages, add_test_figures
from dlfoundations.fused import rules
from dlfoundations.models.base import qualified_name
from dlfoundations.run import console
from dlfoundations.run.checkpoints import serialized
from dlfoundations.run.checks import check_run_config
from dlfoundations.run.cli import (
    as_user_error,
    check_added_keys,
    one_line,
    record_job_failure,
    take_folder,
    writes_its_failure,
)
from dlfoundations.run.train import RunStart, best_epoch, finish_run, start_run
from dlfoundations.side_by_side import sweep_job_folder
from dlfoundations.status import Status

if TYPE_CHECKING:
    from dlfoundations.fused.testing import MemberTest


def dropout_generator(device: torch.device) -> torch.Generator:
    """The generator a member's dropout masks come from: on the CPU, torch's global one as
    the job alone has it once its model is built (so both draw the same masks); on a GPU,
    where a single run's dropout kernel draws otherwise, one on the device seeded from it."""
    own = torch.Generator().set_state(torch.get_rng_state())
    if device.type == "cpu":
        return own
    seed = int(torch.randint(2**62, (1,), generator=own))
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class Member:
    """One job of the group: its configs, folder, log file and, once built, its run."""

    position: int
    sweep_config: DictConfig
    cfg: DictConfig
    run_dir: Path
    log: console.RunLog
    #: Hydra's copy of the job's config (``HydraConfig``), the one set while it is ``active``
    hydra_config: DictConfig
    run: RunStart | None = None
    #: the member's dropout masks come from here: torch's global generator as its run
    #: alone has it once its model is built
    generator: torch.Generator | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    best_path: Path | None = None
    best_score: float | None = None
    #: the weights of the best epoch so far, tested at the end
    best_state: dict[str, torch.Tensor] | None = None
    #: ``resume=true``: the state its ``last.ckpt`` holds (``FusedGroup.fused_state``)
    resume_from: dict[str, Any] | None = None
    #: ``take_folder``'s answer: "claimed" (a new folder), "resumed", or None (not its own)
    owner: str | None = None

    @contextmanager
    def active(self, log: bool = True) -> Iterator[None]:
        """Hydra's config is this job's and (with ``log``) its log file receives the lines,
        as in a job of the default launcher (Hydra's copy of the job's config, made once by
        ``open_member``, set again each time)."""
        HydraConfig.instance().cfg = self.hydra_config  # made once: a copy takes 2-4 ms
        root = logging.getLogger()
        if log:
            root.addHandler(self.log)
        try:
            yield
        finally:
            root.removeHandler(self.log)

    @property
    def failed(self) -> bool:
        return bool(self.metrics) and self.metrics.get("status") != Status.COMPLETED

    def fail(self, err: BaseException) -> None:
        """End this member alone with ``failed`` and the one-line reason, in its folder as the
        job alone records it (``record_job_failure``: marked refused where bad input stopped
        it before it trained; a refused resume leaves the folder as it was); the group goes
        on without it."""
        self.metrics = {"status": Status.FAILED, "reason": one_line(err)}
        bad_input = as_user_error(err) is not None
        if writes_its_failure(self.owner, bad_input):
            self.log.open()  # its log file gets the lines too
        record_job_failure(self.run_dir, self.owner, self.metrics, bad_input)
        with self.active():
            console.say(f"job {Status.FAILED}: {self.metrics['reason']}", error=True)
            console.say_outcome(self.metrics, self.run_dir)

    def hyperparameters(self) -> dict[str, float]:
        return rules.hyperparameters(self.optimizer)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def checkpoint(self, network_state: dict[str, torch.Tensor], epoch: int, global_step: int,
                   fused_state: dict[str, Any]) -> dict[str, Any]:
        """The member's checkpoint in the single run's format (``scripts/eval.py`` reads it),
        with the state a fused group resumes from (``fused``)."""
        model, datamodule = self.run.model, self.run.datamodule
        model.net.load_state_dict(network_state)
        return {"epoch": epoch, "global_step": global_step,
                "pytorch-lightning_version": lightning.__version__,
                "state_dict": model.state_dict(), "hparams_name": "kwargs",
                "hyper_parameters": dict(model.hparams),
                "datamodule_hparams_name": "kwargs",
                "datamodule_hyper_parameters": dict(datamodule.hparams),
                "model_class": qualified_name(type(model)),
                "datamodule_class": qualified_name(type(datamodule)), "fused": fused_state}

    def save(self, checkpoint: dict[str, Any], writes: BackgroundSync, *names: str) -> Path:
        """Write ``checkpoint``, serialised once, under each of ``names`` in its checkpoints
        folder (in place once ``writes`` has flushed it); the first one's path."""
        paths = [self.run_dir / "checkpoints" / name for name in names]
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        data = serialized(checkpoint)
        for path in paths:
            writes.write(path, data)
        return paths[0]

    @property
    def num_images(self) -> int:
        """How many misclassified test images its figure shows (0: no test figures, as a run
        without the ``TestImages`` callback)."""
        images = [callback for callback in self.run.trainer.callbacks
                  if isinstance(callback, TestImages)] if self.run else []
        return images[0].num_images if images else 0

    def finish(self, metrics: dict[str, Any], epochs: int, global_step: int,
               tested: MemberTest | None = None) -> None:
        """End the run as a single run ends: where it completed, its test's metrics (``tested``,
        of its best weights, which its network holds) and figures, then ``metrics.json`` and
        the final HParams through ``finish_run``."""
        with self.active():
            if metrics.get("status") == Status.COMPLETED and tested is not None:
                metrics = {**metrics, **best_epoch(self.run, str(self.best_path or "")),
                           **tested.metrics, **self.run.model.report()}
                if any(isinstance(callback, TestImages) for callback in
                       self.run.trainer.callbacks) and self.run.trainer.is_global_zero:
                    add_test_figures(self.run.trainer.loggers, tested.confusion,
                                     tested.wrong[:self.num_images],
                                     getattr(self.run.datamodule, "class_names", None),
                                     global_step)
            self.metrics = finish_run(self.run, metrics, epochs, global_step)
            if self.metrics["status"] != Status.COMPLETED:
                console.say(f"job {self.metrics['status']}: {self.metrics.get('reason')}",
                            error=True)
            console.say_outcome(self.metrics, self.run_dir)


def open_member(position: int, sweep_config: DictConfig) -> Member:
    """The job at ``position`` of the sweep with its folder and log file (not yet claimed)."""
    run_dir = sweep_job_folder(sweep_config)
    hydra_config = HydraConfig.instance().cfg  # the job's, as sweep_job_folder set it
    for config in (sweep_config, hydra_config):
        with read_write(config.hydra.runtime):
            config.hydra.runtime.output_dir = str(run_dir.absolute())
    cfg = OmegaConf.masked_copy(sweep_config, [key for key in sweep_config if key != "hydra"])
    log = console.RunLog(str(run_dir / f"{sweep_config.hydra.job.name}.log"))
    log.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
    return Member(position, sweep_config, cfg, run_dir, log, hydra_config)


#: the data module set up last in this process (a worker trains its groups one after another)
_LAST_SET_UP: list[Any] = []


def set_up_data(data: Any, built: list[Any]) -> None:
    """Set up ``data``'s splits, or share those of a data module whose splits are the same
    (equal ``split_settings``): one of the group's members ``built`` before, or the one set up
    last in this process, e.g. by the worker's previous group (about 0.1 s a group on the
    2-core CPU)."""
    settings = getattr(data, "split_settings", None)
    same = [other for other in (*built, *_LAST_SET_UP) if settings is not None
            and getattr(other, "split_settings", None) == settings]
    if same:
        data.share_splits(same[0])
    else:
        data.setup("fit")
    _LAST_SET_UP[:] = [data] if settings is not None else []


def build_member(member: Member, built: list[Member]) -> bool:
    """Claim the member's folder and build its run as the job alone would (its data splits
    shared with a member ``built`` before whose splits are the same); False where it was
    refused (``failed`` in its folder, one sentence) or had finished before (resume). Its log
    file keeps its lines until the group is built (``Member.log.open``)."""
    try:
        with member.active(log=False):  # the log file opens once the member is built
            member.run_dir.mkdir(parents=True, exist_ok=True)  # as Hydra's run_job does
            member.owner = take_folder(member.cfg, member.run_dir, fused=True)
        if member.owner is None:  # finished before: reported as it is
            member.metrics = folder.read_metrics(member.run_dir) or {}
            return False
        with member.active():
            check_added_keys(member.cfg)
            check_run_config(member.cfg)
            with open_dict(member.cfg):
                OmegaConf.resolve(member.cfg)  # ${hydra:...} while Hydra's config is the job's
            member.run = start_run(member.cfg)
            member.generator = dropout_generator(member.run.trainer.strategy.root_device)
            dummy = torch.zeros(1, requires_grad=True)
            member.optimizer = member.run.model.optimizer([{"params": [dummy]}])
            if member.run.model.scheduler is not None:
                member.scheduler = member.run.model.scheduler(member.optimizer)
            member.hyperparameters()  # refuses options no rule computes
            set_up_data(member.run.datamodule, [other.run.datamodule for other in built])
            if member.owner == "resumed":
                from dlfoundations.fused.resume import restore  # it checks a Member's state

                restore(member)
    except Exception as err:  # as in a multirun: the job fails, the sweep goes on
        member.fail(err)
        return False
    return True
