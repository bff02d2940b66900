"""Packages hidden from one thread's imports (``dlfoundations.hidden_imports``), in a fresh
process, so that the packages tried are not yet imported."""

from __future__ import annotations

import subprocess
import sys

IN_A_FRESH_PROCESS = """
import importlib, sys, threading
from dlfoundations.hidden_imports import HiddenFromThread, hidden_in_this_thread
assert "colorsys" not in sys.modules and "xml" not in sys.modules
with hidden_in_this_thread(["colorsys", "xml"]):
    for name in ("colorsys", "xml", "xml.dom"):
        try:
            importlib.import_module(name)
            raise SystemExit(name + " was imported in the hiding thread")
        except ModuleNotFoundError:
            pass
    imported = []
    other = threading.Thread(target=lambda: imported.append(importlib.import_module("colorsys")))
    other.start()
    other.join()
    assert [module.__name__ for module in imported] == ["colorsys"]
    import colorsys  # imported by the other thread: this one finds it too
import xml.dom  # after the block, as usual
assert not any(isinstance(finder, HiddenFromThread) for finder in sys.meta_path)
print("ok")
"""


def test_a_hidden_package_fails_in_the_hiding_thread_only_and_imports_after() -> None:
    done = subprocess.run([sys.executable, "-c", IN_A_FRESH_PROCESS], capture_output=True,
                          text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
