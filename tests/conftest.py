"""Shared fixtures: the real Fashion-MNIST (never skipped) and runs of the real scripts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dlfoundations.data import FashionMNISTDataModule, raw_files
from dlfoundations.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def raw_paths() -> dict[str, Path]:
    """The four raw files; a missing dataset fails the test with the way to get it."""
    try:
        return raw_files.find_files(ROOT / "data", raw_files.SYSTEM_DIRS, download=True)
    except UserError as err:
        pytest.fail(f"these tests need the real Fashion-MNIST ({err}) Run `bash scripts/setup.sh`.")


@pytest.fixture(scope="session")
def fashion_mnist(raw_paths: dict[str, Path]) -> FashionMNISTDataModule:
    """The DataModule at its defaults, set up once for the session."""
    datamodule = FashionMNISTDataModule(data_dir=str(ROOT / "data"))
    datamodule.setup()
    return datamodule


def script_command(script: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``scripts/<script>`` (or ``<folder>/<script>`` of
    the project) from the project root (first on ``PYTHONPATH``), unbuffered, without
    ``HYDRA_FULL_ERROR``."""
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    env.pop("HYDRA_FULL_ERROR", None)
    script_path = ROOT / script if "/" in script else ROOT / "scripts" / script
    return [sys.executable, str(script_path)], env


def run_script(script: str, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a script (``script_command``) with Hydra overrides in a subprocess."""
    command, env = script_command(script)
    return subprocess.run([*command, *overrides], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def start_script(script: str, *overrides: str, log: Path) -> subprocess.Popen:
    """Start a script (``script_command``) in the background, its output into ``log``, with
    Python's SIGINT handling (a background child of a non-interactive shell would ignore
    SIGINT)."""
    command, env = script_command(script)
    return subprocess.Popen(
        [*command, *overrides], cwd=ROOT, env=env, stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen,
             seconds: float = 300) -> None:
    """Poll ``condition`` until it holds; fail if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def compose_train(*overrides: str, hydra: bool = False) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, composed as ``scripts/train.py`` would (with the
    ``hydra`` node when asked)."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file under ``folder`` by relative path: its bytes, or where a link points."""
    return {str(path.relative_to(folder)): (f"link to {os.readlink(path)}" if path.is_symlink()
                                            else path.read_bytes())
            for path in sorted(folder.rglob("*")) if path.is_symlink() or path.is_file()}


def missing_piece(reason: str) -> NoReturn:
    """A piece of the machine a test needs is missing: the test fails with the reason (a skip
    would pass a run that never tested it)."""
    pytest.fail(reason)


@contextmanager
def service(script: str, needs: str) -> Iterator[str]:
    """A service the tests bring up with ``scripts/<script> start`` (root and apt-get: it
    installs Debian's packages when missing); yields what the script printed, and stops the
    service by its PIDs (``stop``) afterwards."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        missing_piece(f"{needs} needs root and apt-get (scripts/{script})")
    path = ROOT / "scripts" / script
    started = subprocess.run(["bash", str(path), "start"], capture_output=True, text=True,
                             timeout=600)
    if started.returncode:
        missing_piece(f"scripts/{script} failed: {started.stderr.strip()[-2000:]}")
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run(["bash", str(path), "stop"], check=False, timeout=60)


@pytest.fixture
def mount() -> Iterator[Callable[..., Path]]:
    """``mount(*options, target=path)``: a real mount (a small tmpfs, a read-only bind),
    undone after the test. Needs root."""
    mounted: list[Path] = []

    def do_mount(*options: str, target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
        if result.returncode:
            missing_piece(f"`mount {' '.join(options)}` failed ({result.stderr.strip()}): this "
                          "test needs root to mount a small tmpfs or a read-only folder")
        mounted.append(target)
        return target

    yield do_mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, path: str, body: dict | None = None) -> object:
    """A TensorBoard server's answer: JSON, or the bytes of a PNG."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
        return raw if response.headers.get_content_type() == "image/png" else json.loads(raw)


@contextmanager
def tensorboard_server(logdir: Path) -> Iterator[str]:
    """A real TensorBoard server over ``logdir``; its base URL. Stopped (by its PID) after."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
         "127.0.0.1", "--port", str(port), "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read()
            try:
                if get(url, "/data/runs"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"TensorBoard did not list the runs of {logdir} within 120 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
