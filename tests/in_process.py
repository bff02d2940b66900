"""The scripts run inside the test process: the same entry point (``run_app``) as on the
command line, without a new interpreter's start-up (about 4 s of imports per run here), for
tests that run many small cases (the fuzz tests)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from hydra.core.singleton import Singleton

from dlfoundations.app import run_app
from dlfoundations.interrupts import INTERRUPTS
from dlfoundations.run.cli import FULL_ERROR_ASKED
from tests.conftest import ROOT


@dataclass
class Outcome:
    """What a script run ended with: its exit status and everything it printed."""

    status: int
    output: str


@cache
def script(name: str) -> ModuleType:
    """``scripts/<name>`` imported once (its ``main`` is the Hydra app)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name[:-3]}", ROOT / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Hydra finds ``config_path`` beside the file of a task function of ``__main__``, as it
    # is on the command line (for any other module it looks for a package)
    module.main.__wrapped__.__module__ = "__main__"
    return module


def run_in_process(name: str, *overrides: str) -> Outcome:
    """Run ``scripts/<name>`` with ``overrides`` as its command line would, in this process.
    Hydra's global state and the environment ``run_app`` sets (``HYDRA_FULL_ERROR``) are put
    back afterwards, so runs, and the subprocesses tests start later, do not see each other's."""
    main = script(name).main
    state = Singleton.get_state()
    environment = {key: os.environ.get(key) for key in ("HYDRA_FULL_ERROR", FULL_ERROR_ASKED)}
    argv, output = sys.argv, io.StringIO()
    sys.argv = [str(ROOT / "scripts" / name), *overrides]
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            status = run_app(main)
    except Exception as err:  # a traceback on the command line: exit status 1
        output.write(f"Traceback (in process): {type(err).__name__}: {err}\n")
        status = 1
    finally:
        sys.argv = argv
        Singleton.set_state(state)
        for key, value in environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        INTERRUPTS.forget()
    return Outcome(status, output.getvalue())


#: a short run: two epochs of five steps
SMALL = ("trainer.max_epochs=2", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2")


def interrupted_run(folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A real run in ``folder / "run"`` stopped by SIGINT at step 7 (in epoch 1): last.ckpt
    mid-epoch, epoch00.ckpt its best so far, status interrupted. Returns the run's folder and
    the overrides that started it (the same command resumes it: the signal comes once)."""
    run_dir = folder / "run"
    command = (*SMALL, f"hydra.run.dir={run_dir}",
               "+callbacks.probe._target_=tests.signal_probe.SignalAtStep",
               "+callbacks.probe.step=7", f"+callbacks.probe.once_file={folder / 'sent'}")
    outcome = run_in_process("train.py", *command)
    assert outcome.status == 3, outcome.output[-3000:]
    return run_dir, command
