"""What a fused member resumes from: the state its ``last.ckpt`` holds under ``fused``
(``FusedGroup.fused_state``), read as data and checked piece by piece against the member's
own, as ``RestoredStateGuard`` checks a single run's.

Each piece must have the type, shape, dtype and range of the member's own, and the pieces
must agree with each other and with the member's config: the step where the group stood
(epoch, batches done, global step, samples seen, the optimizer's step count), the schedule's
state and the rate it gives, the history's epochs, the epoch's sums, the optimizer's tensors
(the keys its rule keeps, each of its parameter's shape, finite, the squares at least 0).
A bad piece refuses the member in one sentence naming the file, before anything is loaded
or written; members saved at one point train on together (``launch.saved_together``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dlfoundations.callbacks.restored_state import CheckpointStateError, check_like
from dlfoundations.errors import UserError, first_line
from dlfoundations.fused import rules
from dlfoundations.fused.controls import precision_dtype
from dlfoundations.fused.split import batches
from dlfoundations.run.checkpoints import check_matches, read_checkpoint

if TYPE_CHECKING:
    from dlfoundations.fused.member import Member


def cannot_resume(path: Path, why: str) -> UserError:
    return UserError(f"resume=true is not allowed here: {path} cannot be resumed ({why}).")


def restore(member: Member) -> None:
    """Load what the member's ``last.ckpt`` holds to resume, once every piece is checked
    (``check_state``); its best checkpoint is the one of its best epoch in its own folder,
    never a path the file names."""
    path = member.run_dir / "checkpoints" / "last.ckpt"
    if not path.is_file() or path.is_symlink():
        return  # stopped before its first checkpoint: it starts afresh
    key = "resume"
    checkpoint = read_checkpoint(path, key)
    state = checkpoint["fused"]  # there: take_folder checked (check_same_launcher)
    if not isinstance(state, dict):
        raise cannot_resume(path, f"its fused state is a {type(state).__name__}, not a dict")
    check_matches(member.run.model, checkpoint, path, key)
    try:
        check_state(member, state)
        member.run.model.to(dtype=precision_dtype(member.cfg))  # the weights as saved
        member.run.model.load_state_dict(checkpoint["state_dict"])
        member.generator.set_state(state["generator"])
        if member.scheduler is not None:
            member.scheduler.load_state_dict(state["scheduler"])
        member.optimizer.param_groups[0]["lr"] = float(state["lr"])
        member.run.history.load_state_dict(state["history"])
    except (CheckpointStateError, UserError, RuntimeError, TypeError, ValueError,
            KeyError) as err:
        raise cannot_resume(path, first_line(err) or type(err).__name__) from err
    monitor = member.cfg.monitor
    best = member.run.history.best(monitor.metric, monitor.mode)
    best_path = path.parent / f"epoch{best.get('epoch', 0):02d}.ckpt"
    if best and best_path.is_file() and not best_path.is_symlink():
        weights = read_checkpoint(best_path, key)
        check_matches(member.run.model, weights, best_path, key)
        member.best_path, member.best_score = best_path, best.get(monitor.metric)
        member.best_state = {name.removeprefix("net."): value for name, value in
                             weights["state_dict"].items() if name.startswith("net.")}
    member.resume_from = state


def check_state(member: Member, state: dict[str, Any]) -> None:
    """Every piece of ``state`` against the member's own (``CheckpointStateError`` or
    ``UserError`` naming the piece)."""
    scheduler = member.scheduler.state_dict() if member.scheduler is not None else None
    generator = member.generator.get_state()
    reference = {"optimizer": {}, "epoch": 0, "batches_done": 0, "global_step": 0,
                 "sums": [0.0, 0.0], "seen": 0, "generator": generator, "lr": 0.0,
                 "scheduler": scheduler, "history": {"epochs": []}, "last_finite": None}
    check_like({k: v for k, v in reference.items() if k != "optimizer"},
               {k: v for k, v in state.items() if k != "optimizer"}, "the fused state")
    if "optimizer" not in state:
        raise CheckpointStateError("the fused state has no 'optimizer'")
    if state["generator"].dtype != generator.dtype:
        raise CheckpointStateError(f"the fused state's generator is a {state['generator'].dtype}"
                                   f" tensor, not {generator.dtype}")
    split = member.run.datamodule.splits["train"]
    steps = batches(member.cfg.trainer.limit_train_batches, len(split),
                    member.run.datamodule.batch_size)
    epoch, done = state["epoch"], state["batches_done"]
    within(epoch, 0, member.cfg.trainer.max_epochs, "epoch")
    within(done, 0, steps - 1 if epoch < member.cfg.trainer.max_epochs else 0, "batches_done")
    agree(state["global_step"], epoch * steps + done, "global_step",
          f"{epoch} epochs of {steps} batches and {done} batches")
    seen = min(done * member.run.datamodule.batch_size, len(split))
    agree(state["seen"], seen, "seen", f"{done} batches")
    loss_sum, correct = state["sums"]
    if not (loss_sum >= 0 and 0 <= correct <= seen and float(correct).is_integer()):
        raise CheckpointStateError(f"the fused state's sums {state['sums']} are not a loss sum "
                                   f"of at least 0 and a count of correct images of at most "
                                   f"{seen}")
    last = state["last_finite"]
    if last is not None and not math.isfinite(float(last)):
        raise CheckpointStateError(f"the fused state's last_finite is {last!r}, not finite")
    check_history(state["history"]["epochs"], epoch)
    check_schedule(member, state, scheduler)
    check_optimizer(member, state["optimizer"], state["global_step"])


def within(value: int, low: int, high: int, piece: str) -> None:
    if not low <= value <= high:
        raise CheckpointStateError(f"the fused state's {piece} is {value}, outside [{low}, "
                                   f"{high}]")


def agree(value: Any, expected: Any, piece: str, because: str) -> None:
    if value != expected:
        raise CheckpointStateError(f"the fused state's {piece} is {value!r} where {because} "
                                   f"make {expected!r}")


def check_schedule(member: Member, state: dict[str, Any], own: dict[str, Any] | None) -> None:
    """The schedule's state is the member's own schedule stepped once per epoch done, and the
    rate is the one it gives (the config's rate without a schedule)."""
    lr = state["lr"]
    if own is None:
        agree(lr, member.lr, "lr", "the member's optim.lr and lr_scaling")
        return
    with warnings.catch_warnings():  # its optimizer holds the rate, never steps
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
        for _ in range(state["epoch"]):
            member.scheduler.step()
    expected = member.scheduler.state_dict()
    for key, value in expected.items():
        if state["scheduler"][key] != value:
            raise CheckpointStateError(f"the fused state's scheduler {key} is "
                                       f"{state['scheduler'][key]!r} where the member's "
                                       f"schedule after {state['epoch']} epochs has {value!r}")
    agree(lr, member.lr, "lr", f"the member's schedule after {state['epoch']} epochs")


#: the range of each value a member's history keeps per epoch
HISTORY_RANGES = {"val/acc": (0.0, 1.0), "train/acc": (0.0, 1.0),
                  "val/loss": (0.0, math.inf), "train/loss_epoch": (0.0, math.inf)}


def check_history(epochs: list[Any], epoch: int) -> None:
    """One entry per epoch done, in order, each with the values a group's validation keeps,
    each finite and in its range."""
    agree([entry.get("epoch") if isinstance(entry, dict) else None for entry in epochs],
          list(range(epoch)), "history's epochs", f"epoch {epoch}")
    for entry in epochs:
        if set(entry) != {"epoch", *HISTORY_RANGES}:
            raise CheckpointStateError(f"the fused state's history of epoch {entry['epoch']} "
                                       f"does not hold exactly {sorted(HISTORY_RANGES)}")
        for key, (low, high) in HISTORY_RANGES.items():
            value = entry[key]
            if not (isinstance(value, float | int) and not isinstance(value, bool)
                    and math.isfinite(value) and low <= value <= high):
                raise CheckpointStateError(f"the fused state's history of epoch "
                                           f"{entry['epoch']} has {key}={value!r}, outside "
                                           f"[{low}, {high}]")


def check_optimizer(member: Member, saved: Any, global_step: int) -> None:
    """The member's optimizer state: its step count is the group's step, and per parameter
    the tensors its rule keeps (none before the first step), each of the parameter's shape,
    floating point, finite, and at least 0 where it sums squares."""
    if not isinstance(saved, dict) or set(saved) != {"step", "state"}:
        raise CheckpointStateError("the fused state's optimizer is not a dict of 'step' and "
                                   "'state'")
    agree(saved["step"], global_step, "optimizer step", "the group's steps")
    shapes = [param.shape for param in member.run.model.net.parameters()]
    entries = saved["state"]
    if not isinstance(entries, list) or len(entries) != len(shapes):
        raise CheckpointStateError(f"the fused state's optimizer state is not a list of "
                                   f"{len(shapes)} entries, one per parameter")
    kept = rules.STATE_KEYS[rules.RULES[type(member.optimizer)]] if global_step else ()
    for index, (entry, shape) in enumerate(zip(entries, shapes, strict=True)):
        where = f"the fused state's optimizer state of parameter {index}"
        if not isinstance(entry, dict) or set(entry) != set(kept):
            raise CheckpointStateError(f"{where} does not hold exactly {sorted(kept)}")
        for key, value in entry.items():
            if not (isinstance(value, torch.Tensor) and value.is_floating_point()
                    and value.shape == shape and bool(torch.isfinite(value).all())):
                raise CheckpointStateError(f"{where}: {key} is not a finite floating-point "
                                           f"tensor of shape {tuple(shape)}")
            if key in rules.SQUARES and bool((value < 0).any()):
                raise CheckpointStateError(f"{where}: {key} sums squares but holds a negative "
                                           "value")

