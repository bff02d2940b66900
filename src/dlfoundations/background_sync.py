"""Atomic writes flushed to disk on a thread while the caller goes on.

``folder.atomic_file`` writes a temporary file, flushes it to disk (``fsync``: about 0.4 ms
on the 2-core CPU alone, 1-2 ms while another worker writes too) and renames it over its
target before it returns. A fused group writes its members' checkpoints at each validation
(82 files in the README sweep's batch-64 group of 6). ``BackgroundSync`` writes each
temporary file at once, so that a full disk fails the write where it is made, and leaves the
flush and the rename, in order, to one thread while the group trains on. Until ``wait``
returns a target may still hold its previous content; nothing queued after a failure runs
(e.g. the removal of the checkpoint that a failed one was to replace).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from dlfoundations.folder import name_file, settle, temporary_beside


class BackgroundSync:
    """Writes whose files appear, whole, in the order written (``write``), with steps that
    follow them (``then``); ``wait`` for all of them, ``close`` at the end."""

    def __init__(self) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync")
        self.pending: list[Future[None]] = []
        self.failure: OSError | None = None

    def write(self, path: Path, data: bytes | memoryview) -> None:
        """``data`` written to a temporary file beside ``path`` now; flushed to disk and
        renamed over ``path`` on the thread. An earlier write's failure is raised here."""
        if self.failure is not None:
            raise self.failure
        temporary = temporary_beside(path)
        try:
            file = open(temporary, "wb")  # noqa: SIM115 (closed on the thread)
        except OSError as err:
            name_file(err, path)
            raise
        try:
            file.write(data)
        except BaseException as err:
            file.close()
            temporary.unlink(missing_ok=True)
            if isinstance(err, OSError):
                name_file(err, path)
            raise
        self.pending.append(self.thread.submit(self.settle, file, temporary, path))

    def then(self, step: Callable[[], Any]) -> None:
        """Run ``step`` on the thread once the writes before it are in place (skipped where
        one of them failed)."""
        self.pending.append(self.thread.submit(self.run, step))

    def settle(self, file: BinaryIO, temporary: Path, path: Path) -> None:
        try:
            with file:
                if self.failure is None:
                    settle(file, temporary, path)
        except OSError as err:
            name_file(err, path)
            self.failure = err
        finally:
            temporary.unlink(missing_ok=True)

    def run(self, step: Callable[[], Any]) -> None:
        try:
            if self.failure is None:
                step()
        except OSError as err:
            self.failure = err

    def wait(self) -> None:
        """Return once every write so far is in place (or failed, which is raised: an
        ``OSError`` naming its file)."""
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        """Finish what is queued and stop the thread (a failure is left to ``wait``)."""
        self.thread.shutdown(wait=True)
