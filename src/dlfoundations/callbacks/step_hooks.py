"""Callbacks pay per training step only for the per-step hooks they implement."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L

#: hooks Lightning calls on every callback once per batch
STEP_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_validation_batch_start",
    "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)


def skip_unused_step_hooks(callbacks: Iterable[L.Callback]) -> None:
    """Set to ``None``, on each callback, the per-batch hooks it leaves as ``Callback``'s no-op.

    Lightning calls every hook of every callback on every batch, each call wrapped in a
    profiler context and a name built from ``state_key`` (about 1-2 us), unless the hook is
    not callable. With ten callbacks and six hooks per training step that is about 60
    calls a step, nearly all to empty methods; afterwards only the implemented ones run.
    """
    for callback in callbacks:
        for name in STEP_HOOKS:
            if getattr(type(callback), name) is getattr(L.Callback, name):
                setattr(callback, name, None)
