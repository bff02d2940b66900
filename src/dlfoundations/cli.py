"""What the command-line scripts share: bad input as one sentence, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from dlfoundations.errors import UserError

T = TypeVar("T")


def run_reporting_errors(task: Callable[..., T], *args: object) -> T:
    """Run ``task``; a ``UserError`` prints its sentence to stderr and exits with status 2.

    ``HYDRA_FULL_ERROR=1`` keeps the traceback for debugging.
    """
    try:
        return task(*args)
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
