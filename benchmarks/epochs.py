"""Epoch benchmark: `python benchmarks/epochs.py [--quick] [--repeats 7] [--out FILE]`.

What the project's conveniences cost: full path vs Lightning's floor vs a bare PyTorch loop,
for softmax, mlp and lenet; the data path against torchvision's loader; and the time from
process start to the first training step. Every mode trains the same model class on the
same in-memory batches with the same optimizer (``nolog`` is the full path without its
logger); the modes
take turns, epoch by epoch (interleaved, in a rotating order), after ``WARMUP_EPOCHS`` each,
and the median epoch time is reported. An epoch is the training steps and the validation pass
that follows them, except for ``minimal`` (``MinimalModule`` under a barebones Trainer) and
``bare_train``, which train only: their ratio is the least Lightning's loop costs here.
"""

from __future__ import annotations

from dlfoundations.environment import set_up_process

set_up_process()  # before torch is imported

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from dlfoundations.callbacks import ValidationHistory
from dlfoundations.data import FashionMNISTDataModule, raw_files
from dlfoundations.data.in_memory import InMemoryImages
from dlfoundations.models.base import LabModule
from dlfoundations.optim import weight_decay_groups
from dlfoundations.run.train import build_model, build_trainer

ROOT = Path(__file__).resolve().parents[1]
#: epochs run before timing starts; on the 2-core machine the first two are still 25-60% slow
WARMUP_EPOCHS = 2
#: launches of ``scripts/train.py`` (and of ``import lightning``) timed for the start-up
START_REPEATS = 3


class EpochClock(L.Callback):
    """Wall time of each training epoch (its steps and the validation pass after them)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize()
        self.seconds.append(time.perf_counter() - self.started)


def synchronize() -> None:
    """Wait for queued GPU work, so that a wall-clock time covers it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class FirstStepClock(L.Callback):
    """Prints the wall-clock time of the first training step's start, then stops the run."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        print(f"FIRST_STEP_AT {time.time():.6f}", flush=True)
        trainer.should_stop = True


def run_config(model: str, output_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"model={model}", f"paths.output_dir={output_dir}",
                                           "trainer.max_epochs=1", *overrides])


class MinimalModule(L.LightningModule):
    """A lab model's network and optimizer with nothing else: cross-entropy training steps; no
    validation, metrics, logging or hooks. Under a barebones Trainer, fed premade batches, it
    shows the least that Lightning's loop costs."""

    def __init__(self, model: LabModule):
        super().__init__()
        self.net, self.optimizer_factory = model.net, model.optimizer

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(weight_decay_groups(self))


class PremadeBatches(torch.utils.data.IterableDataset):
    """The training split's shuffled batches, built exactly as a bare loop builds them."""

    def __init__(self, split: InMemoryImages, batch_size: int):
        self.split, self.batch_size = split, batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.split))
        for start in range(0, len(order), self.batch_size):
            yield self.split.__getitems__(order[start:start + self.batch_size])


class LightningMode:
    """One model trained by Lightning, one more epoch per ``epoch()`` call: the project's
    Trainer (full), a barebones one (floor), or a barebones one with ``MinimalModule`` and
    premade batches (minimal)."""

    def __init__(self, cfg: DictConfig, datamodule: FashionMNISTDataModule, barebones: bool,
                 minimal: bool = False):
        self.clock = EpochClock()
        if barebones:
            self.trainer = L.Trainer(barebones=True, max_epochs=1, accelerator="auto",
                                     devices=1, callbacks=[self.clock])
        else:
            self.trainer = build_trainer(cfg, ValidationHistory(), self.clock)
        self.model, _ = build_model(cfg, datamodule.batch_size)
        self.datamodule = datamodule
        self.minimal = minimal
        if minimal:
            self.model = MinimalModule(self.model)

    def epoch(self) -> float:
        self.trainer.fit_loop.max_epochs = self.trainer.current_epoch + 1
        if self.minimal:
            batches = PremadeBatches(self.datamodule.splits["train"], self.datamodule.batch_size)
            self.trainer.fit(self.model, train_dataloaders=DataLoader(batches, batch_size=None))
        else:
            self.trainer.fit(self.model, datamodule=self.datamodule)
        return self.clock.seconds[-1]


class BareMode:
    """The same network, optimizer and batches in a plain PyTorch loop (with or without the
    validation pass)."""

    def __init__(self, cfg: DictConfig, datamodule: FashionMNISTDataModule,
                 validate: bool = True):
        self.model, _ = build_model(cfg, datamodule.batch_size)
        self.model.to(datamodule.splits["train"].images.device)
        self.optimizer = self.model.configure_optimizers()
        if isinstance(self.optimizer, dict):
            self.optimizer = self.optimizer["optimizer"]
        self.train, self.val = datamodule.splits["train"], datamodule.splits["val"]
        self.batch_size = datamodule.batch_size
        self.validate = validate

    def epoch(self) -> float:
        started = time.perf_counter()
        self.model.train()
        order = torch.randperm(len(self.train))
        for start in range(0, len(order), self.batch_size):
            x, y = self.train.__getitems__(order[start:start + self.batch_size])
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(self.val) if self.validate else 0, self.batch_size):
                x, y = self.val.__getitems__(torch.arange(start, min(start + self.batch_size,
                                                                     len(self.val))))
                correct += (self.model(x).argmax(1) == y).sum()
        synchronize()
        return time.perf_counter() - started


def compare_modes(model: str, datamodule: FashionMNISTDataModule, repeats: int,
                  work_dir: Path) -> dict[str, Any]:
    """Median epoch seconds of full, full without a logger, floor and bare, after
    ``WARMUP_EPOCHS`` each; the order of the modes rotates from one repetition to the next."""
    cfg = run_config(model, work_dir / model)
    unlogged = run_config(model, work_dir / f"{model}_nolog", "logger=[]")
    modes: dict[str, Any] = {"full": LightningMode(cfg, datamodule, barebones=False),
                             "nolog": LightningMode(unlogged, datamodule, barebones=False),
                             "floor": LightningMode(cfg, datamodule, barebones=True),
                             "bare": BareMode(cfg, datamodule),
                             "minimal": LightningMode(cfg, datamodule, True, minimal=True),
                             "bare_train": BareMode(cfg, datamodule, validate=False)}
    times: dict[str, list[float]] = {name: [] for name in modes}
    names = list(modes)
    for repeat in range(WARMUP_EPOCHS + repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate
            seconds = modes[name].epoch()
            if repeat >= WARMUP_EPOCHS:
                times[name].append(seconds)
    steps = -(-len(datamodule.splits["train"]) // datamodule.batch_size)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "model": model, "steps_per_epoch": steps, "epochs_measured": repeats,
        **{f"{name}_epoch_s": median[name] for name in modes},
        **{f"{name}_samples_per_s": len(datamodule.splits["train"]) / median[name]
           for name in modes},
        "full_over_bare": median["full"] / median["bare"],
        "full_over_floor": median["full"] / median["floor"],
        "full_over_nolog": median["full"] / median["nolog"],
        "floor_over_bare": median["floor"] / median["bare"],
        "minimal_over_bare_train": median["minimal"] / median["bare_train"],
        "full_overhead_ms_per_step": 1000 * (median["full"] - median["bare"]) / steps,
        "floor_overhead_ms_per_step": 1000 * (median["floor"] - median["bare"]) / steps,
        "all_epoch_s": times,
    }


def images_per_second(loader: Any, wait: Callable[[], None] = lambda: None) -> float:
    started, count = time.perf_counter(), 0
    for _, y in loader:
        count += len(y)
    wait()
    return count / (time.perf_counter() - started)


def compare_data_paths(datamodule: FashionMNISTDataModule, work_dir: Path) -> dict[str, float]:
    """Images/s of one pass of the project's train loader and of torchvision's loader."""
    from torchvision import datasets, transforms

    raw = raw_files.raw_dir(work_dir / "torchvision")
    raw.mkdir(parents=True, exist_ok=True)
    for name, path in raw_files.find_files(datamodule.data_dir, datamodule.system_dirs).items():
        (raw / name).write_bytes(raw_files.verified_bytes(name, path))
    dataset = datasets.FashionMNIST(str(work_dir / "torchvision"), train=True,
                                    transform=transforms.ToTensor())
    result = {"project_images_per_s": images_per_second(datamodule.train_dataloader(),
                                                        synchronize)}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_size=datamodule.batch_size,
                                             shuffle=True, num_workers=workers)
        result[f"torchvision_workers{workers}_images_per_s"] = images_per_second(loader)
    best = max(v for k, v in result.items() if k.startswith("torchvision"))
    result["project_over_best_torchvision"] = result["project_images_per_s"] / best
    return result


def start_to_first_step(work_dir: Path) -> float:
    """Seconds from launching ``scripts/train.py`` to the start of its first training step."""
    launched = time.time()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={work_dir}",
         "+callbacks.first_step._target_=benchmarks.epochs.FirstStepClock",
         "trainer.limit_val_batches=0", "trainer.limit_test_batches=1"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return float(re.search(r"FIRST_STEP_AT (\d+\.\d+)", result.stdout).group(1)) - launched


def import_lightning_seconds() -> float:
    """Seconds from launching a fresh interpreter to the end of its ``import lightning``
    (measured as ``start_to_first_step``): the floor of any run's start-up."""
    launched = time.time()
    result = subprocess.run([sys.executable, "-c", "import time, lightning; print(time.time())"],
                            capture_output=True, text=True, check=True)
    return float(result.stdout) - launched


def load_data() -> FashionMNISTDataModule:
    """Fashion-MNIST at batch 256, its splits on the GPU when there is one (as the DataModule
    puts them under a GPU trainer)."""
    torch.manual_seed(0)
    datamodule = FashionMNISTDataModule(batch_size=256, seed=0)
    datamodule.setup()
    if torch.cuda.is_available():
        for split in datamodule.splits.values():
            split.to("cuda")
    return datamodule


def run(models: list[str], repeats: int, out: Path,
        report: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark; the table is reported line by line and written as JSON."""
    datamodule = load_data()
    results: dict[str, Any] = {"device": "cuda" if torch.cuda.is_available() else "cpu",
                               "torch_threads": torch.get_num_threads(), "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        report("| model | full s | floor s | bare s | full samples/s | full/bare | full/floor"
               " | floor/bare | full/no-logger | full overhead ms/step | minimal/bare train |")
        report("|---|---|---|---|---|---|---|---|---|---|---|")
        for model in models:
            row = compare_modes(model, datamodule, repeats, work_dir)
            results["models"].append(row)
            report(f"| {model} | {row['full_epoch_s']:.3f} | {row['floor_epoch_s']:.3f} | "
                   f"{row['bare_epoch_s']:.3f} | {row['full_samples_per_s']:,.0f} | "
                   f"{row['full_over_bare']:.3f} | {row['full_over_floor']:.3f} | "
                   f"{row['floor_over_bare']:.3f} | {row['full_over_nolog']:.3f} | "
                   f"{row['full_overhead_ms_per_step']:.3f} | "
                   f"{row['minimal_over_bare_train']:.3f} |")
        results["data"] = compare_data_paths(datamodule, work_dir)
        data = results["data"]
        report(f"\ndata path: project {data['project_images_per_s']:,.0f} images/s, torchvision "
               f"{data['torchvision_workers0_images_per_s']:,.0f} (0 workers) / "
               f"{data['torchvision_workers2_images_per_s']:,.0f} (2 workers): "
               f"{data['project_over_best_torchvision']:.1f}x the best")
        starts = [(start_to_first_step(work_dir / f"start{i}"), import_lightning_seconds())
                  for i in range(START_REPEATS)]
        results["start_to_first_step_s"] = statistics.median(s for s, _ in starts)
        results["import_lightning_s"] = statistics.median(i for _, i in starts)
        report(f"process start to first training step: {results['start_to_first_step_s']:.2f} s "
               f"(importing lightning alone: {results['import_lightning_s']:.2f} s; "
               f"medians of {START_REPEATS})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs each, softmax and mlp")
    parser.add_argument("--repeats", type=int, default=7, help="measured epochs per mode")
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp", "lenet"])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench.json")
    args = parser.parse_args()
    run(["softmax", "mlp"] if args.quick else args.models, 3 if args.quick else args.repeats,
        args.out)
