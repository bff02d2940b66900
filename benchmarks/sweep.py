"""Sweep benchmark: `python benchmarks/sweep.py [--quick | --mlp32] [--repeats N] [--modes ...]`.

The README's 18-job sweep (6 optimizers x 3 batch sizes, softmax, 10 epochs) run one job after
another (Hydra's own launcher, with torch's own thread count and with one thread), side
by side (``hydra/launcher=side_by_side``; with ``--jobs-per-gpu``, once per number of jobs per
GPU) and fused (``hydra/launcher=fused``: the 6 jobs of each batch size as one stacked model;
its groups one after another, and side by side on one worker per core) and with the
multirun's default (``hydra/launcher=auto``, which fuses these jobs; its groups on one worker
per core, and with ``default_one_process`` one after another in its own process), the modes taking
turns, each sweep a fresh ``scripts/train.py -m`` process. Per sweep: wall time; start-up
(from the command's start to its first job's claim on its folder: imports, Hydra, the plan);
time in training steps (the epochs' ``train/epoch_s``, counted once per fused group, whose
members share them); fixed cost per job (wall time less start-up and training, over the jobs:
set-up, validation, test and writes; for side by side, training counted once per worker);
for the fused modes, each group's fixed cost per member (from its first member's claim on
its folder to its last member's ``metrics.json``, less its training, over its members: a
worker's first group also reads the data and imports TensorBoard's writer); and training
samples per second over the whole sweep; and for the fused modes, the fused step at batch 64
of the sweep's first group's kind (the README's: softmax, its six optimizers, 6 members): its
operators and median host time per step alone (``benchmarks/fused_step.py``, measured once),
and the time per step of the sweep's batch-64 group as it trained (its epochs over its steps).
``--mlp32``: 32 MLPs of 32 learning rates, 3 epochs, instead (one fused group, its own batch
size). More members and rules, and a GPU: ``benchmarks/fused_step.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dlfoundations.reporting.jobs import find_jobs

ROOT = Path(__file__).resolve().parents[1]

SWEEP = ("model=softmax", "optim=sgd,momentum,adagrad,rmsprop,adadelta,adam",
         "data.batch_size=64,256,1024", "trainer.max_epochs=10")
#: 32 MLPs that differ only in their learning rate (log-spaced from 1e-3 to 1e-1), 3 epochs
MLP32 = ("model=mlp", "optim=sgd", "trainer.max_epochs=3",
         "optim.lr=" + ",".join(f"{10 ** (-3 + 2 * k / 31):.4g}" for k in range(32)))
QUICK = ("model=softmax", "optim=sgd,adam", "data.batch_size=64,1024", "trainer.max_epochs=1",
         "trainer.limit_train_batches=20", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2")

#: the fused step measured alone for each sweep (``fused_step.measure``'s network, members and
#: optimizers, as ``fused_step.SIX`` indexes them)
STEP_OF = {SWEEP: ("softmax", 6, range(6)), MLP32: ("mlp", 32, range(1)),
           QUICK: ("softmax", 2, (0, 5))}

#: the launchers compared: one job after another (Hydra's own launcher) with torch's own thread
#: count (all cores) and with one thread (what a side-by-side job gets on a machine with as
#: many cores as jobs); the multirun's default (``hydra/launcher=auto``: fused where exact, one
#: worker per core), and the same with its tasks one after another in its own process
MODES = {"sequential": ("hydra/launcher=basic",),
         "sequential_1_thread": ("hydra/launcher=basic", "threads=1"),
         "side_by_side": ("hydra/launcher=side_by_side",), "fused": ("hydra/launcher=fused",),
         "fused_side_by_side": ("hydra/launcher=fused", "hydra.launcher.n_jobs=null"),
         "default": (), "default_one_process": ("hydra.launcher.n_jobs=1",)}


def measure(sweep: tuple[str, ...], launcher: tuple[str, ...], folder: Path) -> dict[str, Any]:
    """Run one sweep; its wall time, start-up, training, fixed cost and samples per second."""
    started, wall_clock = time.perf_counter(), time.time()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *sweep,
                    *launcher, f"hydra.sweep.dir={folder}", "hydra.sweep.subdir=${hydra.job.num}"],
                   cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - started
    jobs = find_jobs(folder)
    startup = min((job.path / ".claim").stat().st_mtime for job in jobs) - wall_clock
    epochs = [tuple(value for _, value in job.curves.get("train/epoch_s", [])) for job in jobs]
    fused = "hydra/launcher=fused" in launcher or not any(  # the default fuses these sweeps
        part.startswith("hydra/launcher=") for part in launcher)
    training = sum(sum(seconds) for seconds in (set(epochs) if fused else epochs))
    per_gpu = [part.split("=")[1] for part in launcher if "jobs_per_gpu=" in part]
    on_workers = not launcher or "side_by_side" in " ".join(launcher) or \
        "n_jobs=null" in " ".join(launcher)  # the default: one worker per core
    workers = int(per_gpu[0]) if per_gpu else \
        len(os.sched_getaffinity(0)) if on_workers else 1
    samples = sum(job.metrics["global_step"] * job.metrics["global_batch_size"] for job in jobs)
    result = {"wall_s": round(wall, 1), "jobs": len(jobs), "startup_s": round(startup, 1),
              "training_s": round(training, 1),
              "fixed_cost_per_job_s": round((wall - startup - training / workers) / len(jobs),
                                            2),
              "samples_per_s": round(samples / wall)}
    if fused:
        result["fixed_cost_per_member_s"] = per_group_fixed_cost(jobs, epochs)
        result["step_ms_at_64_in_sweep"] = ms_per_step_at_64(jobs, epochs)
    return result


def step_at_64(sweep: tuple[str, ...]) -> dict[str, float]:
    """The sweep's fused step at batch 64 alone: operators and median host ms per step
    (``benchmarks/fused_step.py``, 200 steps after warm-up, one thread)."""
    import fused_step  # this folder's; it sets up the process before importing torch
    import torch

    net, members, chosen = STEP_OF[sweep]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a worker of the fused sweep runs it
    try:
        measured = fused_step.measure(net, members, [fused_step.SIX[i] for i in chosen], 200,
                                      "cpu")
    finally:
        torch.set_num_threads(threads)
    return {"step_operators_at_64": measured["operators"],
            "step_host_ms_at_64": measured["ms_per_step"]}


def ms_per_step_at_64(jobs: list[Any], epochs: list[tuple[float, ...]]) -> float | None:
    """The batch-64 group's time per training step in the sweep: its epochs' seconds over
    its steps (None where no job trained at batch 64)."""
    for job, seconds in zip(jobs, epochs, strict=True):
        if job.metrics.get("batch_size") == 64 and job.metrics.get("global_step"):
            return round(sum(seconds) * 1000 / job.metrics["global_step"], 3)
    return None


def per_group_fixed_cost(jobs: list[Any], epochs: list[tuple[float, ...]]
                         ) -> dict[str, float]:
    """Each fused group's fixed cost per member, by its members' batch size and count (e.g.
    ``"64 x 6"``, then ``"64 x 6 (2)"`` for a second such group): from its first member's
    claim on its folder to its last member's ``metrics.json``, less its training steps (the
    epochs its members share), over its members."""
    groups: dict[tuple[float, ...], list[Any]] = {}
    for job, seconds in zip(jobs, epochs, strict=True):
        groups.setdefault(seconds, []).append(job)
    costs = {}
    for seconds, members in groups.items():
        start = min((job.path / ".claim").stat().st_mtime for job in members)
        end = max((job.path / "metrics.json").stat().st_mtime for job in members)
        label = f"{members[0].metrics['batch_size']} x {len(members)}"
        same = sum(key.split(" (")[0] == label for key in costs)
        costs[label + (f" ({same + 1})" if same else "")] = round(
            (end - start - sum(seconds)) / len(members), 3)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="4 jobs of 20 steps")
    which.add_argument("--mlp32", action="store_true",
                       help="32 MLPs of 32 learning rates, 3 epochs, instead of the README's")
    parser.add_argument("--repeats", type=int, default=1, help="sweeps per mode, taking turns")
    parser.add_argument("--jobs-per-gpu", type=int, nargs="*", default=[],
                        help="side-by-side modes with this many jobs per GPU")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_sweep.json")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give at least 1")
    try:  # before the sweeps, not after them
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {args.out} cannot be written ({err.strerror}: {err.filename})")
    if args.out.is_dir() or not os.access(args.out.parent, os.W_OK):
        parser.error(f"--out {args.out} cannot be written: give a file in a writable folder")
    modes = {mode: MODES[mode] for mode in args.modes}
    for per_gpu in args.jobs_per_gpu:
        modes[f"side_by_side_{per_gpu}_per_gpu"] = ("hydra/launcher=side_by_side",
                                                    f"hydra.launcher.jobs_per_gpu={per_gpu}")
    results: dict[str, Any] = {mode: [] for mode in modes}
    sweep = QUICK if args.quick else MLP32 if args.mlp32 else SWEEP
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for mode, launcher in modes.items():
                folder = Path(scratch) / f"{mode}-{repeat}"
                results[mode].append(measure(sweep, launcher, folder))
                print(mode, results[mode][-1], flush=True)
    if any("fixed_cost_per_member_s" in runs[0] for runs in results.values()):
        results["fused_step"] = step_at_64(sweep)
        print("fused_step", results["fused_step"], flush=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
