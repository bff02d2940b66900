"""A/B of speed measures that would reach into Lightning: the project's training path as it
is, against the same path with one measure, epoch by epoch in one process.

    python -m benchmarks.internals [--models softmax mlp] [--repeats 9]

Variants (each a full project Trainer and model, fitted one more epoch per turn, in a
rotating order after ``WARMUP_EPOCHS``): ``project`` as it runs; ``null_profiler``: a
profiler whose ``profile`` hands back one shared ``nullcontext`` instead of Lightning's
``PassThroughProfiler``; ``skip_step_hooks``: every callback's per-step hooks that it leaves
as ``Callback``'s no-op set to ``None``, which Lightning skips; ``log_every_step``:
``train/loss`` handed to ``self.log`` on every step instead of only on the steps whose logs
Lightning writes. Prints, per model and variant, the median epoch seconds, its ratio to
``project`` and the spread (min-max of the per-turn ratios).
"""

from __future__ import annotations

from dlfoundations.environment import set_up_process

set_up_process()  # before torch is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import AbstractContextManager, nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402

import lightning as L  # noqa: E402
from lightning.pytorch.profilers import PassThroughProfiler  # noqa: E402

from benchmarks.epochs import WARMUP_EPOCHS, LightningMode, load_data, run_config  # noqa: E402
from dlfoundations.data import FashionMNISTDataModule  # noqa: E402
from dlfoundations.run import console  # noqa: E402


class NullProfiler(PassThroughProfiler):
    """Lightning's ``PassThroughProfiler`` without a generator context per hook call."""

    def profile(self, action_name: str) -> AbstractContextManager:
        return NOTHING


NOTHING = nullcontext()
#: hooks Lightning calls on every callback once per batch
STEP_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward",
              "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
              "on_validation_batch_start", "on_validation_batch_end")


def null_profiler(mode: LightningMode) -> None:
    mode.trainer.profiler = NullProfiler()


def skip_step_hooks(mode: LightningMode) -> None:
    for callback in mode.trainer.callbacks:
        for name in STEP_HOOKS:
            if getattr(type(callback), name) is getattr(L.Callback, name):
                setattr(callback, name, None)


def log_every_step(mode: LightningMode) -> None:
    mode.model.writes_logs_this_step = lambda: True


VARIANTS: dict[str, Callable[[LightningMode], None] | None] = {
    "project": None, "null_profiler": null_profiler, "skip_step_hooks": skip_step_hooks,
    "log_every_step": log_every_step}


def compare(model: str, datamodule: FashionMNISTDataModule, repeats: int,
            work_dir: Path) -> None:
    modes = {}
    for name, change in VARIANTS.items():
        modes[name] = LightningMode(run_config(model, work_dir / model / name), datamodule,
                                    barebones=False)
        if change:
            change(modes[name])
    names = list(modes)
    times: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(WARMUP_EPOCHS + repeats):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            seconds = modes[name].epoch()
            if turn >= WARMUP_EPOCHS:
                times[name].append(seconds)
    base = statistics.median(times["project"])
    for name in names:
        ratios = [t / p for t, p in zip(times[name], times["project"], strict=True)]
        print(f"{model:8s} {name:17s} median {statistics.median(times[name]):.3f} s/epoch, "
              f"x{statistics.median(times[name]) / base:.3f} of project "
              f"(per-turn ratios {min(ratios):.3f}-{max(ratios):.3f})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp"])
    parser.add_argument("--repeats", type=int, default=9, help="measured epochs per variant")
    args = parser.parse_args()
    console.configure(verbose=False)  # Lightning's device lines and tips left out
    data = load_data()
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            compare(name, data, args.repeats, Path(work))
