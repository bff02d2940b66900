"""A run folder belongs to one run: an atomic claim, and files that are whole or absent.

The claim is a file created with ``O_EXCL`` before the run writes anything: of two runs
started together into one folder exactly one creates it, the other is refused. Every file a
run writes (``metrics.json``, checkpoints, configs) is first written to a temporary file in
the same folder and then renamed over its target (``os.replace``, atomic within one
filesystem), so a full disk or a signal never leaves a truncated file where a later resume or
eval would read it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from dlfoundations.errors import UserError
from dlfoundations.status import Status

#: overrides that say how to run, not what: left out of a job's recorded overrides, so that a
#: job first started by a resumed sweep is named and summarised as the others are
RUN_CONTROL = ("resume=", "+resume=", "++resume=")

#: the claim file; its content says which process claimed the folder, and when
CLAIM_FILE = ".claim"
#: files of a run that predates the claim file
RUN_FILES = ("metrics.json", "checkpoints")
#: the files a run refused for bad input before it trained leaves beside its claim and
#: Hydra's record (``.hydra/``): its log, ``config.yaml`` and ``metrics.json``, marked
#: ``"refused": true`` (last: a takeover removes it last)
REFUSED_RUN_FILES = ("train.log", "eval.log", "config.yaml", "metrics.json")
#: the files of Hydra's record (``.hydra/``) that a run writes once it has claimed its folder
HYDRA_RECORD = ("config.yaml", "overrides.yaml")
#: created with ``O_EXCL`` by the one command that takes over a refused run's folder
TAKEOVER_FILE = ".claim.takeover"


def _create_claim(path: Path, **extra: Any) -> bool:
    """Create the claim file with ``O_EXCL``; False when it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as file:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}, file)
    return True


def claim(run_dir: Path, key: str = "paths.output_dir") -> Path:
    """Claim ``run_dir`` for this process, or raise ``UserError`` when it holds anything: a
    run (or a sweep) starts in a new or empty folder, so that nothing of another run or of the
    user's is ever overwritten (``key``: the config key that names the folder). The one
    exception is a folder that holds only a run refused for bad input before it trained: its
    record is replaced (``_take_over_refused_run``)."""
    held = sorted(entry.name for entry in run_dir.iterdir()) if run_dir.is_dir() else []
    if not held and _create_claim(run_dir / CLAIM_FILE):
        return run_dir / CLAIM_FILE
    if held and _take_over_refused_run(run_dir):
        return run_dir / CLAIM_FILE
    held = held or [CLAIM_FILE]
    runs = [name for name in (CLAIM_FILE, *RUN_FILES) if name in held]
    runs += [name for name in held if name.startswith("events.out.tfevents.")][:1]
    if runs:
        raise UserError(
            f"{key}={str(run_dir)!r} is not allowed: it already holds another run "
            f"({', '.join(runs)}); give a new hydra.run.dir (or hydra.sweep.dir), or "
            "continue that run with resume=true.")
    raise UserError(
        f"{key}={str(run_dir)!r} is not allowed: it already holds files that are not a run's "
        f"({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); a run starts in a new or "
        "empty folder: give a new hydra.run.dir (or hydra.sweep.dir).")


def holds_training(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds anything a run writes once it trains: checkpoints or
    TensorBoard events."""
    return (run_dir / "checkpoints").exists() or any(run_dir.glob("events.out.tfevents.*"))


def holds_only_refused_run(run_dir: Path, *also: str) -> bool:
    """Whether ``run_dir`` holds nothing but a run refused for bad input before it trained
    (and ``also``): its claim, a ``metrics.json`` that says so (``"refused": true``), and the
    files such a run writes (``REFUSED_RUN_FILES``), each a regular file (``.hydra`` a folder
    of Hydra's record), never a link. Anything else (a checkpoint, a user's file) is not a
    refused run's, so the folder is not."""
    try:
        entries = {entry.name: entry for entry in run_dir.iterdir()}
        if CLAIM_FILE not in entries or not set(entries) <= {
                CLAIM_FILE, ".hydra", *REFUSED_RUN_FILES, *also}:
            return False
        for name, entry in entries.items():
            if entry.is_symlink():
                return False
            if name == ".hydra":
                if not entry.is_dir() or any(
                        part.name not in HYDRA_RECORD or part.is_symlink() or not part.is_file()
                        for part in entry.iterdir()):
                    return False
            elif not entry.is_file():
                return False
    except OSError:
        return False
    metrics = read_metrics(run_dir) or {}
    return metrics.get("refused") is True and metrics.get("status") == Status.FAILED


def _take_over_refused_run(run_dir: Path) -> bool:
    """Claim ``run_dir`` when it holds only a run refused for bad input before it trained
    (``holds_only_refused_run``): that record is removed and the claim made this process's,
    so the corrected command runs where the refused one was given. The one process that
    creates ``TAKEOVER_FILE`` (``O_EXCL``) does it, after checking the folder again, and
    removes ``metrics.json`` last, so a takeover cut short is still a refused run's folder.
    False, touching nothing, when the folder holds anything else."""
    if not holds_only_refused_run(run_dir):
        return False
    lock = run_dir / TAKEOVER_FILE
    if not _create_claim(lock, took_over="a run refused for bad input"):
        return False  # another command takes it over now
    try:
        if not holds_only_refused_run(run_dir, TAKEOVER_FILE):
            return False
        hydra = run_dir / ".hydra"
        for name in HYDRA_RECORD:
            (hydra / name).unlink(missing_ok=True)
        with suppress(FileNotFoundError):
            hydra.rmdir()
        for name in REFUSED_RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        os.replace(lock, run_dir / CLAIM_FILE)
        return True
    finally:
        lock.unlink(missing_ok=True)


def give_back(run_dir: Path, *made: str) -> bool:
    """Remove this process's claim of ``run_dir`` and the files ``made`` that the command
    wrote there, when the folder holds nothing else: a command refused before any job ran
    leaves the folder as it was. False, touching nothing, when the claim is not this
    process's or the folder holds anything more (a job's folder, a user's file)."""
    holder = claim_holder(run_dir)
    if holder.get("pid") != os.getpid() or holder.get("host") != socket.gethostname():
        return False
    try:
        if not {entry.name for entry in run_dir.iterdir()} <= {CLAIM_FILE, *made}:
            return False
        for name in made:
            (run_dir / name).unlink(missing_ok=True)
        (run_dir / CLAIM_FILE).unlink()
    except OSError:
        return False
    return True


def remove_made_dirs(path: Path, top: Path) -> None:
    """Remove ``path`` and its parents up to ``top`` (the first folder a command created for
    it), each only while it is empty."""
    for folder in (path, *path.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return


def first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (None when it exists): what
    creating ``path`` with its parents would make."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing = folder
    return missing


def claim_holder(run_dir: Path) -> dict[str, Any]:
    """What the claim file of ``run_dir`` says (empty if it has none or cannot be read)."""
    try:
        holder = json.loads((run_dir / CLAIM_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def holder_is_alive(holder: dict[str, Any]) -> bool:
    """Whether the process named by a claim may still run: on this host, whether its pid
    exists; on another host, assumed so."""
    if not holder:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    return process_exists(pid)


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` runs on this host: it exists and is not a zombie (ended, not
    yet reaped by its parent, e.g. a launcher killed by a caller that has not waited for it:
    its workers and claims are then those of an ended process), where /proc tells."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc here, or the process is gone meanwhile
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def retake(run_dir: Path, key: str = "paths.output_dir") -> None:
    """Take over the claim of ``run_dir`` from a run that has ended (``resume=true``).

    The old claim is renamed away (only one process can rename it) and a new one created with
    ``O_EXCL``, so of two resumers started together one wins and the other is refused.
    """
    holder = claim_holder(run_dir)
    if holder_is_alive(holder):
        raise UserError(
            f"{key}={str(run_dir)!r} cannot be resumed now: the run that claimed it "
            f"(pid {holder.get('pid')} on {holder.get('host')}) is still running."
        )
    stale = run_dir / f"{CLAIM_FILE}.{os.getpid()}.stale"
    with suppress(FileNotFoundError):
        (run_dir / CLAIM_FILE).replace(stale)
    try:
        if not _create_claim(run_dir / CLAIM_FILE, resumed=True):
            raise UserError(f"{key}={str(run_dir)!r} cannot be resumed now: another "
                            "run resumed it at the same moment.")
    finally:
        stale.unlink(missing_ok=True)


#: numbers the temporary files of this process (two writes of one path may be under way)
_TEMPORARIES = itertools.count()


def temporary_beside(path: Path) -> Path:
    """A name for a temporary file beside ``path`` (same filesystem), unique to this write."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_TEMPORARIES)}.tmp")


def name_file(err: OSError, path: Path) -> None:
    """Where the system's ``err`` names no file (a write to a full disk), make it name
    ``path``."""
    if err.filename is None and err.errno is not None:
        err.filename = str(path)


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only once it is completely written.

    The bytes go to a temporary file beside ``path`` (same filesystem), are flushed to disk,
    then renamed over ``path``; on any error (a full disk, a signal) the temporary file is
    removed and ``path`` keeps its old content, if any. An error of the system that names no
    file (a write to a full disk) names ``path``.
    """
    temporary = temporary_beside(path)
    try:
        with open(temporary, "wb") as file:
            yield file
            settle(file, temporary, path)
    except OSError as err:
        name_file(err, path)
        raise
    finally:
        temporary.unlink(missing_ok=True)


def settle(file: BinaryIO, temporary: Path, path: Path) -> None:
    """Flush ``file``, open on ``temporary``, to disk and rename it over ``path``."""
    file.flush()
    os.fsync(file.fileno())
    os.replace(temporary, path)


def write_atomically(path: Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(file)`` on an ``atomic_file`` for ``path``."""
    with atomic_file(path) as file:
        write(file)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomically(path, lambda file: file.write(text.encode()))


def first_non_finite(metrics: dict[str, Any]) -> str | None:
    """Why a run's results cannot stand when one of its metrics (``val/acc``, ``test/loss``,
    ...) is NaN or infinite: ``"test/loss is nan"``; None when all are finite."""
    for key, value in sorted(metrics.items()):
        if "/" in key and isinstance(value, float) and not math.isfinite(value):
            return f"{key} is {value}"
    return None


def json_value(value: Any) -> Any:
    """``value`` with every NaN or infinite number as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write the run's final numbers as one flat JSON object, atomically (a non-finite number
    as null)."""
    text = json.dumps(json_value(metrics), indent=2, sort_keys=True, allow_nan=False)
    return write_text(run_dir / "metrics.json", text + "\n")


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json``, or None when it has none (or it is not a JSON object)."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def make_writable_dir(key: str, path: Path) -> None:
    """Create ``path`` (and its parents) or raise ``UserError`` saying why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"{key}={str(path)!r} is not allowed: {key} must be a folder this user "
                        f"can write to ({reason}: {err.filename or path}).") from err
