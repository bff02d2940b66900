"""Process set-up that must happen before torch is imported, and what it set up."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import glob
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: glibc's ``mallopt`` parameters (malloc.h) and the values ``keep_freed_memory`` sets: blocks
#: up to 32 MiB (glibc's largest mmap threshold on 64-bit) come from the heap, which keeps up
#: to 1 GiB of freed memory instead of handing it back
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 1 << 30


def set_up_process() -> None:
    """What an entry point does first, before torch is imported."""
    hide_absent_gpus()
    keep_freed_memory()


def hide_absent_gpus() -> bool:
    """Set ``CUDA_VISIBLE_DEVICES=""`` on a machine with no NVIDIA device; True if it did.

    With torch's CUDA build and no GPU, every Adam/AdamW step calls
    ``torch.cuda.device_count()``, which loads NVML afresh until CUDA is initialised: a cost
    on every step (docs/performance.md). Hiding the absent GPUs removes it.
    Never done where a GPU device node exists or the variable is already set.
    """
    if "CUDA_VISIBLE_DEVICES" in os.environ or glob.glob("/dev/nvidia[0-9]*"):
        return False
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return True


def cuda_visible_devices() -> list[str] | None:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` names, as the machine numbers them; None where it is
    not set (then every GPU is visible)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    return [device.strip() for device in visible.split(",") if device.strip()]


def keep_freed_memory() -> bool:
    """Keep freed memory in this process for the next allocation; True where glibc took it.

    By default glibc maps each block above 128 KiB afresh and hands freed memory back to the
    system, so a training step's large temporaries (the update terms of many stacked
    members) can fault their pages in again on every step: on the 2-core CPU a fused step of
    32 MLPs with Adam faulted in about 45,000 pages a step and took 147-157 ms, and 72-78 ms
    with this (docs/performance.md); smaller steps were within the noise. The memory stays
    at its peak instead. No-op off glibc (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


@contextmanager
def imports_frozen(module: str) -> Iterator[None]:
    """For a block that imports ``module`` (and what it imports): where it is not imported
    yet, Python's garbage collector is paused inside the block, every object made so far is
    then frozen (``gc.freeze``: left out of every later collection), and the collector goes
    on as it was; where it is, the block just runs.

    Importing torch and Lightning makes millions of objects that live to the process's end;
    the collections they set off, during the import and once after it, took about 1 s of the
    4.5 s import on the 2-core CPU (docs/performance.md). For imports: an object alive at the
    freeze that later becomes garbage in a cycle is never collected, and neither is the
    garbage the import itself made (about 8 MB, e.g. the copies of ``sys.modules`` that
    ``inspect`` leaves in cycles), once per process. A process's first freeze comes at its
    start-up; in a process that froze before, the block first collects the garbage made since
    (e.g. of jobs run in a sweep's own process before a fused group's first import there:
    about 100 MB of tensors), so that it is freed, not frozen."""
    if module in sys.modules:
        yield
        return
    if gc.get_freeze_count():
        gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()
