"""The pieces that keep the training path cheap, and the benchmark that measures it.

No test here asserts a speed: `benchmarks/epochs.py` measures it. These check that the cheap paths
do what the ordinary ones do.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from lightning.pytorch.profilers import SimpleProfiler
from torch.utils.data import DistributedSampler, SequentialSampler

from dlfoundations.callbacks import DivergenceGuard, EpochTimer, ValidationHistory
from dlfoundations.callbacks.step_hooks import STEP_HOOKS
from dlfoundations.data import FashionMNISTDataModule
from dlfoundations.data.resumable_loader import IndexTensorBatchSampler
from dlfoundations.profiler import NullProfiler
from dlfoundations.train import build_trainer
from tests.conftest import compose_train, run_script


def _trainer(tmp_path: Path, *overrides: str) -> L.Trainer:
    return build_trainer(compose_train(f"paths.output_dir={tmp_path}", *overrides),
                         ValidationHistory())


def _callback(trainer: L.Trainer, cls: type) -> L.Callback:
    return next(cb for cb in trainer.callbacks if isinstance(cb, cls))


def test_callbacks_keep_only_the_step_hooks_they_implement(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "verbose=true")  # with the model summary
    summary = _callback(trainer, ModelSummary)  # added by Lightning; no per-step hook at all
    assert all(getattr(summary, name) is None for name in STEP_HOOKS)
    history = _callback(trainer, ValidationHistory)
    assert all(getattr(history, name) is None for name in STEP_HOOKS)
    # implemented hooks stay, bound to the instance
    assert callable(_callback(trainer, ModelCheckpoint).on_train_batch_end)
    assert callable(_callback(trainer, DivergenceGuard).on_train_batch_end)
    timer = _callback(trainer, EpochTimer)
    assert callable(timer.on_train_batch_end) and timer.on_train_batch_start is None
    # epoch-level hooks are never touched
    assert callable(history.on_validation_end) and callable(timer.on_train_epoch_end)


def test_profiler_is_null_by_default_and_a_named_one_is_used(tmp_path: Path) -> None:
    assert isinstance(_trainer(tmp_path).profiler, NullProfiler)
    assert isinstance(_trainer(tmp_path, "trainer.profiler=simple").profiler, SimpleProfiler)
    with NullProfiler().profile("any") as entered:
        assert entered is None


def test_index_tensor_batches_cover_the_split_in_sampler_order(
    fashion_mnist: FashionMNISTDataModule,
) -> None:
    loader = fashion_mnist.train_dataloader()
    sampler = loader.batch_sampler.sampler
    sampler.set_epoch(3)
    batches = list(loader.batch_sampler)
    assert all(b.dtype == torch.long for b in batches)
    assert [len(b) for b in batches[:-1]] == [256] * (len(batches) - 1)
    assert torch.cat(batches).tolist() == list(sampler)  # the sampler's order, batch by batch
    x, y = next(iter(loader))
    assert x.shape == (256, 1, 28, 28) and y.shape == (256,)


def test_index_tensor_batches_follow_any_sampler_and_drop_last() -> None:
    data = list(range(10))
    batches = list(IndexTensorBatchSampler(SequentialSampler(data), 4, drop_last=False))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(list(IndexTensorBatchSampler(SequentialSampler(data), 4, drop_last=True))) == 2
    shard = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=0)
    batches = IndexTensorBatchSampler(shard, 2, drop_last=False)
    assert torch.cat(list(batches)).tolist() == list(shard)


def test_epoch_benchmark_writes_the_table_and_the_json(tmp_path: Path, raw_paths: dict
                                                       ) -> None:
    out = tmp_path / "bench.json"
    result = run_script("benchmarks/epochs.py", "--models", "softmax", "--repeats", "1",
                        "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| softmax |" in result.stdout
    assert "process start to first training step" in result.stdout
    bench = json.loads(out.read_text())
    (row,) = bench["models"]
    for mode in ("full", "nolog", "floor", "bare", "minimal", "bare_train"):
        assert len(row["all_epoch_s"][mode]) == 1 and row[f"{mode}_epoch_s"] > 0
    assert row["full_over_floor"] == row["full_epoch_s"] / row["floor_epoch_s"]
    assert row["minimal_over_bare_train"] > 0
    assert row["steps_per_epoch"] == 215  # 55,000 training images in batches of 256
    assert bench["data"]["project_images_per_s"] > 0
    assert bench["data"]["torchvision_workers2_images_per_s"] > 0
    assert bench["import_lightning_s"] > 0 and bench["start_to_first_step_s"] > 0


def test_sweep_benchmark_measures_both_launchers(tmp_path: Path, raw_paths: dict) -> None:
    out = tmp_path / "bench_sweep.json"
    result = run_script("benchmarks/sweep.py", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads(out.read_text())
    assert sorted(bench) == ["sequential", "sequential_1_thread", "side_by_side"]
    for (measured,) in bench.values():
        assert measured["jobs"] == 4 and measured["wall_s"] > measured["training_s"] / 4 > 0
        assert measured["fixed_cost_s_max"] >= measured["fixed_cost_s_median"] > 0
        assert measured["samples_per_s"] > 0
