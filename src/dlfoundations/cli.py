"""What the command-line scripts share: bad input as one sentence, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from dlfoundations.errors import UserError

T = TypeVar("T")


def user_error_in(err: BaseException | None) -> UserError | None:
    """The ``UserError`` behind ``err``, also when Hydra's ``instantiate`` wrapped it."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None


def run_reporting_errors(task: Callable[..., T], *args: object) -> T:
    """Run ``task``; a ``UserError`` prints its sentence to stderr and exits with status 2.

    ``HYDRA_FULL_ERROR=1`` keeps the traceback for debugging.
    """
    try:
        return task(*args)
    except Exception as err:
        user_error = user_error_in(err)
        if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)
