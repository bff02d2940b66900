"""Packages hidden from the imports of one thread for a while.

``hidden_in_this_thread`` puts a finder first on ``sys.meta_path`` that refuses the named
packages (and their submodules) to the thread that entered it, as if they were not
installed; any other thread imports them as usual, and a package another thread has
already imported stays imported. The finder is consulted only for modules not yet in
``sys.modules``, so nothing already imported changes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Any


class HiddenFromThread(MetaPathFinder):
    """Refuses ``packages`` to the imports of thread ``thread`` (``threading.get_ident()``)."""

    def __init__(self, packages: Sequence[str], thread: int):
        self.packages = frozenset(packages)
        self.thread = thread

    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> ModuleSpec | None:
        if threading.get_ident() == self.thread and fullname.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden from this import)",
                                      name=fullname)
        return None  # the next finder's to find


@contextmanager
def hidden_in_this_thread(packages: Sequence[str]) -> Iterator[None]:
    """Within the block, this thread's imports of ``packages`` not yet imported fail with
    ``ModuleNotFoundError``; other threads' imports are unaffected."""
    finder = HiddenFromThread(packages, threading.get_ident())
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
