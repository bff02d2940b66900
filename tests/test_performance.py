"""The pieces that keep the training path cheap, and the benchmark that measures it.

No test here asserts a speed: `benchmarks/epochs.py` measures it. These check that the cheap paths
do what the ordinary ones do.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler, SequentialSampler

from dlfoundations.data import FashionMNISTDataModule
from dlfoundations.data.resumable_loader import IndexTensorBatchSampler
from dlfoundations.environment import imports_frozen
from tests.conftest import ROOT, run_script


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


#: the page faults of the median of 11 fused steps of 32 MLPs with Adam
#: (benchmarks/fused_step.py; 26 MB a temporary), with ``keep_freed_memory``, which the
#: benchmark, as every entry point, calls on import, or without it and with glibc's threshold
#: for mapping a block afresh held at its initial 128 KiB (left to itself, glibc raises it
#: after a large block is freed, by an amount that depends on what the process freed before:
#: then no fault at all now and then, thousands a step otherwise)
FAULTS = """
import ctypes, ctypes.util, resource, sys, torch
import dlfoundations.environment as environment
keep = sys.argv[1] == "keep"
if not keep:
    environment.keep_freed_memory = lambda: False
    ctypes.CDLL(ctypes.util.find_library("c")).mallopt(environment.M_MMAP_THRESHOLD, 128 << 10)
sys.path.insert(0, sys.argv[2])
from fused_step import group, train_step
torch.set_num_threads(1)
net, optimizer, x, y = group("mlp", 32, [lambda p: torch.optim.Adam(p, lr=0.003)])
sums = torch.zeros(32, 2)
for _ in range(6):
    train_step(net, optimizer, x, y, sums)
faults = []
for _ in range(11):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    train_step(net, optimizer, x, y, sums)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[5])
"""


def test_freed_memory_is_kept_for_the_next_step() -> None:
    """``keep_freed_memory`` (every entry point): a step's freed temporaries are reused by the
    next step without faulting their pages in again, where glibc handing them back maps them
    afresh (thousands of faults a step). The median step of 11 is compared: now and then the
    heap grows once for a temporary (about 6,300 faults in one step, 26 MB)."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", FAULTS, mode,
                                        str(ROOT / "benchmarks")], capture_output=True,
                                       text=True, check=True).stdout)
              for mode in ("keep", "default")}
    assert faults["default"] > 10_000 and faults["keep"] < 1_000, faults


#: the workers' server's import (``side_by_side.PRELOAD``), watched: the collections that ran
#: once torch was being imported and before the freeze, then the collector's state, whether
#: the imports were frozen, and whether a worker's modules are there
SERVER_IMPORT = """
import gc, sys
collections = []
gc.callbacks.append(lambda phase, info: collections.append(phase) if phase == "start" and
                    "torch" in sys.modules and not gc.get_freeze_count() else 0)
import dlfoundations.frozen_server
modules = ("dlfoundations.run.train", "dlfoundations.fused.group", "dlfoundations.fused.launch")
print(len(collections), gc.isenabled(), gc.get_freeze_count() > 100_000,
      all(name in sys.modules for name in modules))
"""


def test_the_workers_server_imports_without_collecting_then_freezes() -> None:
    """The server CPU workers are forked from imports torch, Lightning and the project with
    the garbage collector paused (no collection during the import: about 1 s of 4.5 s on the
    2-core CPU), then freezes what it imported and collects again."""
    imported = subprocess.run([sys.executable, "-c", SERVER_IMPORT], capture_output=True,
                              text=True, check=True, timeout=300)
    assert imported.stdout.split() == ["0", "True", "True", "True"], imported.stderr


@pytest.mark.parametrize("enabled", [True, False])
def test_imports_run_with_the_collector_paused_then_are_frozen(
        enabled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``imports_frozen``: a module imported inside it is imported with the collector off,
    what exists then is frozen, and the collector is left as it was (off stays off); for a
    module imported before, the block just runs: nothing collected, paused or frozen."""
    name = f"paused_{enabled}"
    (tmp_path / f"{name}.py").write_text("import gc\nCOLLECTING = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (gc.enable if enabled else gc.disable)()
    try:
        with imports_frozen(name):
            module = importlib.import_module(name)
        frozen = gc.get_freeze_count()
        assert (module.COLLECTING, frozen > 0, gc.isenabled()) == (False, True, enabled)
        collections = gc.get_stats()[2]["collections"]
        fresh = [[] for _ in range(1000)]  # tracked objects that a freeze would take
        with imports_frozen(name):
            assert gc.isenabled() is enabled
            importlib.import_module(name)
        # none frozen anew; a frozen object that another thread of the test process frees
        # leaves the count (so it may fall, as by 2 once under pytest-xdist)
        assert gc.get_freeze_count() <= frozen and len(fresh) == 1000
        assert gc.get_stats()[2]["collections"] == collections
    finally:
        gc.unfreeze()
        gc.enable()
        sys.modules.pop(name, None)


def test_garbage_made_after_a_freeze_is_freed_before_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a process that froze at its start and then ran jobs (a sweep's own process), a later
    import collects their garbage before it freezes: freed, not kept to the end (about 100 MB
    of a job's tensors was, before a fused group's first import). The collector is off from
    the garbage on, so that only ``imports_frozen`` can collect it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("first_import", "later_import"):
        (tmp_path / f"{name}.py").write_text("")
    try:
        with imports_frozen("first_import"):
            importlib.import_module("first_import")
        gc.disable()
        job = Job()
        job.itself = job  # garbage in a cycle once dropped, as a run's objects are
        left = weakref.ref(job)
        del job
        with imports_frozen("later_import"):
            importlib.import_module("later_import")
        gc.collect()
        assert left() is None
    finally:
        gc.unfreeze()
        gc.enable()
        for name in ("first_import", "later_import"):
            sys.modules.pop(name, None)


class Job:
    """An object that can hold itself."""

    itself: Job


#: a script's end (argv: how it ends, a folder): exit handlers registered before and after
#: ``set_up_process`` (as a .pth file's or sitecustomize's, and a library's), a thread that is
#: no daemon still writing, output not yet flushed, and an object whose finaliser runs only in
#: the interpreter's teardown
ENDING = """
import atexit, os, signal, sys, threading, time
from pathlib import Path
folder = Path(sys.argv[2])
atexit.register(lambda: (folder / "early handler").write_text("ran"))
from dlfoundations.environment import set_up_process
set_up_process()
from dlfoundations.app import exit_with
from dlfoundations.interrupts import INTERRUPTS
INTERRUPTS.install()
atexit.register(lambda: (folder / "handler").write_text("ran"))
if sys.argv[1] == "signal in a handler":
    atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))
threading.Thread(target=lambda: (time.sleep(0.5), (folder / "thread").write_text("ran"))
                 ).start()
class Torn:
    def __del__(self):
        (folder / "teardown").write_text("ran")
kept = Torn()
sys.stdout.write("the last line, unflushed")
status = 0 if sys.argv[1] == "signal in a handler" else 2
exit_with(status) if sys.argv[1] != "sys.exit" else sys.exit(status)
"""


@pytest.mark.parametrize("end", ["exit_with", "sys.exit", "signal in a handler"])
def test_a_script_ends_as_the_interpreter_would_without_its_teardown(end: str, tmp_path: Path
                                                                     ) -> None:
    """``exit_with`` does what the interpreter does at exit (waits for the threads that are not
    daemons, runs every exit handler, flushes the output) and ends with its status without the
    teardown that frees every object (0.15 s after a sweep); a plain ``sys.exit`` still tears
    down. A signal that arrives meanwhile makes a completed command's status 3."""
    ended = subprocess.run([sys.executable, "-c", ENDING, end, str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    late = "error: SIGINT arrived before the program ended.\n"
    assert (ended.returncode, ended.stdout, ended.stderr) == (
        (3, "the last line, unflushed", late) if end == "signal in a handler"
        else (2, "the last line, unflushed", ""))
    assert {path.name for path in tmp_path.iterdir()} == {
        "early handler", "handler", "thread", *(["teardown"] if end == "sys.exit" else [])}


def test_output_that_cannot_be_flushed_at_the_end_is_not_a_success(tmp_path: Path) -> None:
    """Output lost at the very end (stdout on a full disk) ends as the interpreter ends it:
    status 120 and its message, not the command's status."""
    with open("/dev/full", "w") as full:
        ended = subprocess.run([sys.executable, "-c", ENDING, "exit_with", str(tmp_path)],
                               stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                               env={key: value for key, value in os.environ.items()
                                    if key != "PYTHONUNBUFFERED"})
    assert ended.returncode == 120 and "No space left on device" in ended.stderr


@pytest.mark.slow
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


@pytest.mark.slow
def test_sweep_benchmark_measures_every_launcher(tmp_path: Path, raw_paths: dict) -> None:
    out = tmp_path / "bench_sweep.json"
    result = run_script("benchmarks/sweep.py", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads(out.read_text())
    step = bench.pop("fused_step")  # 2 softmax members, SGD and Adam, at batch 64
    assert step["step_operators_at_64"] > 0 and step["step_host_ms_at_64"] > 0
    assert sorted(bench) == ["default", "default_one_process", "fused", "fused_side_by_side",
                             "sequential", "sequential_1_thread", "side_by_side"]
    for mode, (measured,) in bench.items():
        assert measured["jobs"] == 4 and measured["wall_s"] > measured["training_s"] / 4 > 0
        assert measured["startup_s"] > 0 and measured["fixed_cost_per_job_s"] > 0
        assert measured["samples_per_s"] > 0
        fused = mode.startswith(("fused", "default"))
        assert ("fixed_cost_per_member_s" in measured) == fused, mode
        if fused:  # a group per batch size, each of the two optimizers
            assert sorted(measured["fixed_cost_per_member_s"]) == ["1024 x 2", "64 x 2"]
            assert measured["step_ms_at_64_in_sweep"] > 0


@pytest.mark.parametrize("arguments, says", [
    (["--repeats", "0"], "--repeats 0: give at least 1"),
    (["--out", "."], "--out . cannot be written: give a file in a writable folder"),
    (["--out", "README.md/b.json"], "--out README.md/b.json cannot be written (File exists"),
    (["--quick", "--mlp32"], "argument --mlp32: not allowed with argument --quick"),
])
def test_sweep_benchmark_refuses_bad_arguments_before_it_measures(arguments: list[str],
                                                                   says: str) -> None:
    result = run_script("benchmarks/sweep.py", *arguments, timeout=60)
    assert result.returncode == 2 and says in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_internals_benchmark_compares_each_measure_with_the_project_path(raw_paths: dict
                                                                         ) -> None:
    result = run_script("benchmarks/internals.py", "--models", "softmax", "--repeats", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if "of project" in line]
    assert [line.split()[1] for line in lines] == ["project", "null_profiler",
                                                   "skip_step_hooks", "log_every_step"]
    assert "x1.000 of project" in lines[0]
