"""How a run ended: the ``status`` of its ``metrics.json``, one word from one list."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A run's status; a ``str``, so it is written to and compared with JSON as its word."""

    COMPLETED = "completed"      # trained and tested
    PRUNED = "pruned"            # a search's trial stopped for falling behind
    DIVERGED = "diverged"        # the loss or the final metrics stopped being finite
    FAILED = "failed"            # bad input, or a fault such as a full disk
    INTERRUPTED = "interrupted"  # a signal stopped it; resume=true continues it

    def __str__(self) -> str:
        return self.value


#: statuses of a run that ``resume=true`` reports as they are, without training again
FINISHED = (Status.COMPLETED, Status.PRUNED, Status.DIVERGED, Status.FAILED)
