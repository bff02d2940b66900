"""The training of a fused group: every member's step at once, each member's bookkeeping as
its run alone keeps it.

Per epoch e, member k draws its batch order from ``randperm`` seeded by its seed + e (its
loader's ``EpochRandomSampler``), from its own train/validation split, normalised by its own
split's statistics. After each step, the members' losses are checked: a member whose loss is
not finite stops (``diverged``, the step named) and the others go on. After the epoch's
steps come validation, the checkpoints (``last.ckpt``, the best epoch's: flushed to disk on a
thread while the next epoch trains, ``BackgroundSync``, and in place before any member ends)
and the scheduler's step, per member. At the end each member tests its best weights and
writes its outputs.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable
from functools import partial
from typing import Any

import torch

from dlfoundations.background_sync import BackgroundSync
from dlfoundations.data.resumable_loader import EpochRandomSampler
from dlfoundations.fused.controls import precision_dtype
from dlfoundations.fused.means import MemberMeans
from dlfoundations.fused.member import Member
from dlfoundations.fused.rules import RULES, StackedOptimizer
from dlfoundations.fused.split import StackedSplit, batches
from dlfoundations.fused.stacked import StackedNetwork
from dlfoundations.fused.step import train_step
from dlfoundations.fused.testing import evaluated_batches, test_together
from dlfoundations.interrupts import INTERRUPTS, RunInterrupted
from dlfoundations.status import Status


class FusedGroup:
    """Members of one shape trained as one stacked model on one device."""

    def __init__(self, members: list[Member]):
        members.sort(key=lambda member: list(RULES).index(type(member.optimizer)))
        self.members = members
        first = members[0].run
        self.cfg = first.cfg
        self.device = first.trainer.strategy.root_device
        self.dtype = precision_dtype(self.cfg)
        self.network = StackedNetwork([member.run.model.net for member in members],
                                      [member.generator for member in members],
                                      self.device, self.dtype)
        for member in members:  # its checkpoints and its test in the group's precision
            member.run.model.to(self.device, self.dtype)
        network = self.network
        self.optimizer = StackedOptimizer(network.flat, network.grad, network.layout,
                                          network.decay_mask,
                                          [RULES[type(member.optimizer)] for member in members],
                                          [member.hyperparameters() for member in members])
        self.splits = {split: StackedSplit.of(members, split, self.device)
                       for split in ("train", "val")}
        seeds = {member.run.datamodule.seed for member in members}
        #: every member reads the same batches: one split, one batch order
        self.one_order = self.splits["train"].copies == 1 and len(seeds) == 1
        #: the training split in the epoch's order, where ``one_order`` (its memory reused)
        self.in_order: StackedSplit | None = None
        self.batch_size = first.datamodule.batch_size
        self.global_step = 0
        self.epoch = 0
        self.active = [True] * len(members)
        self.last_finite: list[float | None] = [None] * len(members)
        self.batches_done, self.seen = 0, 0
        self.sums = torch.zeros(len(members), 2, dtype=self.dtype, device=self.device)
        #: the checkpoints, flushed to disk on a thread while the group trains on
        self.writes = BackgroundSync()
        if any(member.resume_from is not None for member in members):
            self.resume()

    # -- training ---------------------------------------------------------------------------

    def fit(self) -> None:
        """Train every member for ``trainer.max_epochs`` epochs, then test and write each.
        A signal in the steps is acted on after the current step or the current epoch's
        validation: every member saves its state (``last.ckpt``) and ends ``interrupted``
        (``resume=true`` continues from there); during the final tests, as in a single run's
        test, it stops at once and the members not yet written end ``interrupted``."""
        try:
            with INTERRUPTS.run():
                INTERRUPTS.enter_steps()
                while self.epoch < self.cfg.trainer.max_epochs and any(self.active):
                    self.train_epoch()
                    self.validate_and_save()
                    self.epoch, self.batches_done = self.epoch + 1, 0
                    self.stop_if_signalled()
                INTERRUPTS.leave_steps()
                self.end_all()
        except RunInterrupted as err:
            self.writes.close()  # what was saved is in place before the members end
            self.stop_all(Status.INTERRUPTED, str(err))
            raise
        finally:
            self.writes.close()

    def stop_if_signalled(self) -> None:
        """After a signal: save every member's ``last.ckpt`` where the group stands and stop."""
        if INTERRUPTS.received is None:
            return
        INTERRUPTS.leave_steps()
        self.save_all((self.epoch, self.batches_done))
        self.writes.wait()
        raise RunInterrupted(f"{INTERRUPTS.signal_name()} at step {self.global_step} (epoch "
                             f"{self.epoch}); last.ckpt holds the state to resume from")

    def train_epoch(self) -> None:
        """The epoch's steps from ``batches_done`` on (a resumed group skips those done)."""
        split, trainer = self.splits["train"], self.cfg.trainer
        orders = torch.stack([EpochRandomSampler(range(len(split)),
                                                 member.run.datamodule.seed + self.epoch)
                              .order() for member in self.members[:1 if self.one_order else None]]
                             ).to(self.device)
        steps = batches(trainer.limit_train_batches, len(split), self.batch_size)
        log_every = trainer.log_every_n_steps  # read once: a config's key is 30 us a read
        started = time.perf_counter()
        if self.one_order:  # the epoch's rows gathered in order once; a batch is a slice
            split = self.in_order = split.ordered(orders[0, :steps * self.batch_size],
                                                  self.in_order)
        self.network.train()
        for index in range(self.batches_done, steps):
            if self.global_step % log_every == 0:
                self.log_each({"train/lr": member.lr} for member in self.members)
            start, stop = index * self.batch_size, (index + 1) * self.batch_size
            x, y = (split.rows(start, stop, self.dtype) if self.one_order
                    else split.batch(orders[:, start:stop], self.dtype))
            losses = train_step(self.network, self.optimizer, x, y, self.sums)
            self.seen += y.shape[1]
            if (self.global_step + 1) % log_every == 0:
                self.log_each({"train/loss": loss} for loss in losses.tolist())
            self.global_step += 1
            self.check_finite(losses)
            self.batches_done = index + 1
            self.stop_if_signalled()
        seconds = time.perf_counter() - started
        means = (self.sums / max(self.seen, 1)).tolist()
        self.train_metrics = [{"train/loss_epoch": loss, "train/acc": acc} for loss, acc in means]
        self.timing = {"train/epoch_s": seconds, "train/samples_per_s": self.seen / seconds}
        self.sums.zero_()
        self.seen = 0

    def check_finite(self, losses: torch.Tensor) -> None:
        """Stop each member whose loss is not finite, naming the step as ``DivergenceGuard``
        names a single run's (the steps taken, this one included; on a GPU, checked every
        ``log_every_n_steps`` steps)."""
        if self.device.type != "cpu" and self.global_step % self.cfg.trainer.log_every_n_steps:
            return
        values = losses.detach().tolist()
        for k, member in enumerate(self.members):
            if not self.active[k]:
                continue
            if math.isfinite(values[k]):
                self.last_finite[k] = values[k]
                continue
            self.active[k] = False
            self.writes.wait()  # its checkpoints in place before its metrics.json
            member.finish({**member.run.history.last(), "status": Status.DIVERGED,
                           "reason": f"the training loss became {values[k]} at step "
                           f"{self.global_step} (epoch {self.epoch}); the last finite loss was "
                           f"{self.last_finite[k]}"}, self.epoch, self.global_step)

    # -- validation, checkpoints, schedules --------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: StackedSplit, limit: int | float | None) -> torch.Tensor:
        """Each member's mean loss and accuracy over ``split`` (K, 2), in order."""
        means = MemberMeans(len(self.members), self.device)
        for _ in evaluated_batches(self.network, split, self.batch_size, limit, self.dtype,
                                   means):
            pass
        return torch.stack((means.losses(), means.accuracies()), dim=1).double()

    def validate_and_save(self) -> None:
        """Each member's validation, its epoch in TensorBoard and its history, its
        scheduler's step, then its checkpoints (which resume at the next epoch)."""
        val = self.evaluate(self.splits["val"], self.cfg.trainer.limit_val_batches).tolist()
        for k, member in enumerate(self.members):
            if not self.active[k]:
                continue
            metrics = {"val/loss": val[k][0], "val/acc": val[k][1], **self.train_metrics[k]}
            member.run.history.epochs.append({"epoch": self.epoch, **metrics})
            self.log(member, {**metrics, **self.timing}, self.global_step - 1)
            if member.scheduler is not None:
                with warnings.catch_warnings():  # its optimizer holds the rate, never steps
                    warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
                    member.scheduler.step()
                self.optimizer.set_lr(k, member.lr)
            self.save(k, member, (self.epoch + 1, 0))

    def fused_state(self, k: int, member: Member, resume_at: tuple[int, int]
                    ) -> dict[str, Any]:
        """What member ``k`` resumes from besides its weights: where the group goes on
        (``resume_at``: the epoch and the batches of it done), its optimizer's state, its
        dropout generator, schedule, history and the epoch's sums so far."""
        return {"optimizer": self.optimizer.member_state(k),
                "epoch": resume_at[0], "batches_done": resume_at[1],
                "global_step": self.global_step,
                "sums": self.sums[k].tolist(), "seen": self.seen,
                "generator": member.generator.get_state(), "lr": member.lr,
                "scheduler": member.scheduler.state_dict() if member.scheduler else None,
                "history": member.run.history.state_dict(),
                "last_finite": self.last_finite[k]}

    def save(self, k: int, member: Member, resume_at: tuple[int, int],
             last_only: bool = False) -> None:
        """As ``ModelCheckpoint`` with ``save_top_k=1, save_last=True`` in Lightning 2.6: when
        this epoch is the member's best so far, ``epochNN.ckpt`` (the previous best removed)
        and ``last.ckpt``; with ``last_only`` (a signal), ``last.ckpt`` now."""
        monitor = member.cfg.monitor
        score = member.run.history.last().get(monitor.metric)
        better = not last_only and score is not None and math.isfinite(score) and (
            member.best_score is None
            or (score > member.best_score if monitor.mode == "max"
                else score < member.best_score))
        if not (better or last_only):
            return
        state = self.network.member_state(member.run.model.net, k)
        checkpoint = member.checkpoint(state, min(self.epoch, resume_at[0]), self.global_step,
                                       self.fused_state(k, member, resume_at))
        with INTERRUPTS.shield():
            if last_only:
                member.save(checkpoint, self.writes, "last.ckpt")
                return
            previous, member.best_score = member.best_path, score
            member.best_path = member.save(checkpoint, self.writes,
                                           f"epoch{self.epoch:02d}.ckpt", "last.ckpt")
            if previous is not None and previous != member.best_path:
                self.writes.then(partial(previous.unlink, missing_ok=True))
            member.best_state = state

    def save_all(self, resume_at: tuple[int, int]) -> None:
        for k, member in enumerate(self.members):
            if self.active[k]:
                self.save(k, member, resume_at, last_only=True)

    def resume(self) -> None:
        """Continue where every member's ``last.ckpt`` says the group stood (each member's
        state checked by ``fused.resume.restore``; the members saved at one point, as
        ``launch.saved_together`` puts them)."""
        states = [member.resume_from for member in self.members]
        self.epoch, self.batches_done = states[0]["epoch"], states[0]["batches_done"]
        self.global_step = states[0]["global_step"]
        self.optimizer.load_members([state["optimizer"] for state in states])
        for k, state in enumerate(states):
            self.sums[k] = torch.tensor(state["sums"], dtype=self.dtype)
            self.last_finite[k] = state["last_finite"]
        self.seen = states[0]["seen"]  # checked equal to what the batches done make

    # -- the end ------------------------------------------------------------------------------

    def end_all(self) -> None:
        """Each member still training tests its best weights (all at once through the
        stacked network) and writes its outputs."""
        self.writes.wait()
        finishing = [k for k, active in enumerate(self.active) if active]
        if not finishing:
            return
        for k in finishing:
            net = self.members[k].run.model.net
            if self.members[k].best_state is not None:
                net.load_state_dict(self.members[k].best_state)
                self.network.flat[k] = self.network.layout.row(
                    [param.detach() for param in net.parameters()])
            else:  # the model as it is
                for param, value in zip(net.parameters(),
                                        self.network.layout.pieces(self.network.flat[k]),
                                        strict=True):
                    param.data.copy_(value)
        first = self.members[0]
        tested = test_together(self.network, StackedSplit.of(self.members, "test", self.device),
                               self.batch_size, self.cfg.trainer.limit_test_batches,
                               self.dtype, max(member.num_images for member in self.members),
                               first.run.model.num_classes)
        for k in finishing:
            self.members[k].finish({"status": Status.COMPLETED}, self.epoch, self.global_step,
                                   tested[k])
            self.active[k] = False

    def stop_all(self, status: Status, reason: str) -> None:
        for k, member in enumerate(self.members):
            if self.active[k]:
                self.active[k] = False
                member.finish({**member.run.history.last(), "status": status,
                               "reason": reason}, self.epoch, self.global_step)

    def fail_all(self, err: BaseException) -> None:
        """Every member still training ends ``failed`` with the one-line reason."""
        for k, member in enumerate(self.members):
            if self.active[k]:
                self.active[k] = False
                member.fail(err)

    # -- TensorBoard --------------------------------------------------------------------------

    def log(self, member: Member, metrics: dict[str, float], step: int) -> None:
        for logger in member.run.trainer.loggers:
            logger.log_metrics(metrics, step)

    def log_each(self, metrics: Iterable[dict[str, float]]) -> None:
        for k, (member, values) in enumerate(zip(self.members, metrics, strict=True)):
            if self.active[k]:
                self.log(member, values, self.global_step)
