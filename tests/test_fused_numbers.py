"""The fused launcher's numbers: every member equals the same job run alone (float64: within
1e-9 after 50 steps, per optimizer, scheduler, initialiser, seed, rate and network; float32:
as close as two thread counts). Real data and training steps, the scripts in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.fused_runs import fused_sweep, largest_difference, metrics_of, solo_run

#: 50 steps in float64 over two epochs (a schedule changes the rate between them)
STEPS_50 = ("trainer.precision=64-true", "trainer.max_epochs=2",
            "trainer.limit_train_batches=25", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "threads=1")
#: the MLP, narrower: the same layers (dropout included) in less time
MLP = ("model=mlp", "model.net.hidden=[64]")


SWEEPS = {
    "optimizers": (*MLP, "optim=sgd,momentum,adagrad,rmsprop,adadelta,adam,adamw,"
                   "scratch/sgd,scratch/momentum,scratch/adagrad,scratch/rmsprop,scratch/adadelta,"
                   "scratch/adam", "scheduler=exponential", "optim.weight_decay=0.001"),
    "schedulers": (*MLP, "optim=scratch/momentum",
                   "scheduler=cosine,exponential,step,none"),
    "initialisers": (*MLP, "optim=adam", "init=default,normal,xavier,kaiming,zeros",
                     "seed=3"),
    "seeds and rates": (*MLP, "optim=adam", "seed=0,1", "optim.lr=0.001,0.01",
                        "lr_scaling.rule=linear", "data.batch_size=128"),
    "dropout rates": (*MLP, "optim=sgd", "model.net.dropout=0.0,0.2,0.5"),
    "lenet": ("model=lenet", "optim=sgd,adam", "data.batch_size=64"),
}


@pytest.mark.slow
@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_member_equals_its_solo_run_in_float64(sweep: str, tmp_path: Path,
                                                     raw_paths: dict) -> None:
    """After 50 steps (two epochs, dropout on), every member's weights are within 1e-9 of the
    same job run alone, its metrics equal to float32's precision (the single run's metric
    objects keep float32): per optimizer (torch's and the notes' own), scheduler, initialiser,
    seed, learning rate and dropout rate, and for LeNet (grouped convolutions)."""
    members = fused_sweep(tmp_path / "fused", *STEPS_50, *SWEEPS[sweep])
    assert len(members) == len(list((tmp_path / "fused").glob("[0-9]*")))
    for name, member_dir in members.items():
        member = metrics_of(member_dir)
        assert member["status"] == "completed", member
        overrides = OmegaConf.load(member_dir / ".hydra" / "overrides.yaml")
        solo_dir = solo_run(tmp_path / f"solo{name}", *overrides)
        solo = metrics_of(solo_dir)
        last = [torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
                for run_dir in (member_dir, solo_dir)]
        assert last[0]["global_step"] == last[1]["global_step"]  # saved with a new best
        assert largest_difference(last[0]["state_dict"], last[1]["state_dict"]) < 1e-9, \
            overrides
        for key in ("val/loss", "val/acc", "test/loss", "test/acc", "train/loss_epoch", "lr"):
            # the single run's metric objects keep float32 (torchmetrics' default dtype)
            assert member[key] == pytest.approx(solo[key], rel=1e-6), (overrides, key)
        assert (member["epochs"], member["global_step"], member["best_epoch"]) == \
            (solo["epochs"], solo["global_step"], solo["best_epoch"])


@pytest.mark.slow
def test_in_float32_a_member_differs_from_its_solo_run_as_thread_counts_do(
        tmp_path: Path, raw_paths: dict) -> None:
    """float32, 300 steps with dropout: a member's final metrics are as close to one of the
    job's solo runs (1 or 2 threads) as those two runs are to each other (float32's
    resolution at least)."""
    job = ("model=mlp", "optim=adam", "trainer.max_epochs=3", "trainer.limit_train_batches=100",
           "trainer.limit_val_batches=10", "trainer.limit_test_batches=10")
    solo = [metrics_of(solo_run(tmp_path / f"threads{threads}", *job, f"threads={threads}"))
            for threads in (1, 2)]
    member = metrics_of(fused_sweep(tmp_path / "fused", *job, "threads=1", "seed=0,1")["0"])
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        threads_apart = max(abs(solo[0][key] - solo[1][key]), 1e-6 * abs(solo[0][key]))
        assert min(abs(member[key] - run[key]) for run in solo) <= threads_apart, key
