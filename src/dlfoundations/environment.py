"""Process set-up that must happen before torch is imported, and what it set up."""

from __future__ import annotations

import glob
import os


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
