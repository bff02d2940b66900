"""Classes of bad input, not cases: a real checkpoint with one field at a time replaced by a
value of another type or shape, and a real config with one leaf key at a time set to such a
value. Every case ends with exit status 0, 2 or 3, never a traceback, and nothing outside the
run's folder is created, changed or removed.

The cases are drawn by a seeded generator (``FUZZ_SEED``, default 0) and bounded in number
(``FUZZ_CASES``, default 25 of each kind); they run in this process (``run_in_process``), each
a real run of a few training steps. The test names how many cases ran.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import ROOT, compose_train, snapshot
from tests.in_process import SMALL, Outcome, interrupted_run, run_in_process

pytestmark = pytest.mark.slow  # subprocesses, services or many runs

SEED = int(os.environ.get("FUZZ_SEED", "0"))
CASES = int(os.environ.get("FUZZ_CASES", "25"))
#: fused-state cases (each resumes a sweep of two members): ``FUZZ_FUSED_CASES``, default 15
FUSED_CASES = int(os.environ.get("FUZZ_FUSED_CASES", "15"))
#: the exit statuses a case may end with: completed, bad input, not completed
ALLOWED = (0, 2, 3)
#: stands for "the key is removed"
MISSING = object()
Path_ = tuple[Any, ...]


def paths(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every field of a checkpoint, nested ones too (tensors are leaves)."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(checkpoint: dict, path: Path_, value: Any) -> dict:
    """A copy of ``checkpoint`` with the field at ``path`` replaced (or removed)."""
    checkpoint = {**checkpoint}
    node: Any = checkpoint
    for key in path[:-1]:
        child = node[key]
        child = {**child} if isinstance(child, dict) else list(child)
        node[key] = child
        node = child
    if value is MISSING:
        if isinstance(node, dict):
            del node[path[-1]]
        else:
            node.pop(path[-1])
    else:
        node[path[-1]] = value
    return checkpoint


def checkpoint_values(run_dir: Path, outside: Path) -> list[Any]:
    """Values of other types and shapes, paths out of the run among them."""
    return ["a string", str(outside), f"{run_dir}/checkpoints/../../outside/precious",
            "../../outside/precious", [1, 2, 3], {"key": "value"}, float("nan"), float("inf"),
            10**30, -1, None, True, torch.tensor([1.0, 2.0]), torch.tensor(float("nan")),
            MISSING]


def check_outcome(outcome: Outcome, what: str) -> None:
    assert outcome.status in ALLOWED, f"{what}: exit {outcome.status}\n{outcome.output[-3000:]}"
    assert "Traceback" not in outcome.output, f"{what}:\n{outcome.output[-3000:]}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> dict[str, Path]:
    """An interrupted real run (SIGINT at step 7, in epoch 1), a pristine copy of its folder,
    and a folder of the user's files beside it that no case may touch."""
    root = tmp_path_factory.mktemp("fuzz")
    run_dir, command = interrupted_run(root)
    shutil.copytree(run_dir, root / "pristine", symlinks=True)
    outside = root / "outside"
    outside.mkdir()
    (outside / "precious").write_text("the user's file\n")
    return {"root": root, "run": run_dir, "pristine": root / "pristine", "outside": outside,
            "command": command}


def test_a_checkpoint_with_any_field_replaced_is_resumed_or_refused(
        workspace: dict, tmp_path: Path) -> None:
    root, run_dir, outside = workspace["root"], workspace["run"], workspace["outside"]
    original = torch.load(workspace["pristine"] / "checkpoints" / "last.ckpt", weights_only=True)
    fields = list(paths(original))
    values = checkpoint_values(run_dir, outside / "precious")
    generator = random.Random(SEED)
    user_files = snapshot(outside)
    statuses: dict[int, int] = {}
    for case in range(CASES):
        path, value = generator.choice(fields), generator.choice(values)
        what = f"case {case}: {'.'.join(map(str, path))} = {value!r}"
        shutil.rmtree(run_dir)
        shutil.copytree(workspace["pristine"], run_dir, symlinks=True)
        crafted = run_dir / "checkpoints" / "last.ckpt"
        torch.save(replaced(original, path, value), crafted)
        copy = tmp_path / f"case{case}.ckpt"
        shutil.copy(crafted, copy)
        resumed = run_in_process("train.py", *workspace["command"], "resume=true")
        check_outcome(resumed, f"resume, {what}")
        evaluated = run_in_process("eval.py", f"ckpt_path={copy}",
                                   f"hydra.run.dir={tmp_path / f'eval{case}'}")
        check_outcome(evaluated, f"eval, {what}")
        for outcome in (resumed, evaluated):
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        assert snapshot(outside) == user_files, what
        assert sorted(p.name for p in root.iterdir()) == [
            "outside", "pristine", "run", "sent"], what
    print(f"{CASES} checkpoint cases (seed {SEED}), resume and eval each: exit statuses "
          f"{dict(sorted(statuses.items()))}")


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf key of a config (as plain containers) with its value, and every node, to
    replace whole."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict | list) and value:
            yield name, value
            yield from leaves(value, f"{name}.")
        else:
            yield name, value


#: keys each case sets to keep the run short, and where outputs go: not drawn
PINNED = ("trainer.max_epochs", "trainer.limit_", "paths", "hydra", "experiment",
          "hparams_search", "resume", "ckpt_path")


def other_values(value: Any) -> list[str]:
    """Overrides of other types or out of range for a value of ``value``'s type."""
    if isinstance(value, bool):
        return ["maybe", "2", "null", "[true]"]
    if isinstance(value, int):
        return ["-1", "0", str(10**30), "0.5", "abc", "[1]", "null", "true"]
    if isinstance(value, float):
        return ["-1.0", "0.0", "nan", "inf", "1e30", "abc", "[0.1]", "null"]
    if isinstance(value, str):
        return ["123", "''", "nonsense", "'../../x'", "[1]", "null", "true"]
    if isinstance(value, list):
        return ["abc", "[]", "[[1]]", "5", "null", "[-1]"]
    if isinstance(value, dict):
        return ["5", "abc", "null", "[1]"]
    return ["5", "abc", "[1]", "-1"]


#: keys that name where a run writes or reads (a folder of the user's choice): a case that sets
#: one may create that folder, beside the run's
WHERE = ("dir", "path", "root")


def test_a_config_with_any_key_set_to_another_type_runs_or_is_refused(
        raw_paths: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative folder a case names lands here
    config = OmegaConf.to_container(compose_train(), resolve=False)
    keys = [(key, value) for key, value in leaves(config) if not key.startswith(PINNED)]
    generator = random.Random(SEED)
    statuses: dict[int, int] = {}
    for case in range(CASES):
        key, value = generator.choice(keys)
        override = f"{key}={generator.choice(other_values(value))}"
        before = sorted(tmp_path.iterdir())
        run_dir = tmp_path / f"run{case}"
        outcome = run_in_process("train.py", *SMALL, override, f"hydra.run.dir={run_dir}",
                                 f"paths.data_dir={ROOT / 'data'}")
        check_outcome(outcome, f"case {case}: {override}")
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        created = set(tmp_path.iterdir()) - set(before) - {run_dir}
        assert not created or key.rsplit(".", 1)[-1].endswith(WHERE), (override, created)
    print(f"{CASES} config cases (seed {SEED}): exit statuses {dict(sorted(statuses.items()))}")


#: a fused sweep of two members, long enough to be stopped in its second epoch
FUSED = ("-m", "hydra/launcher=fused", "model=mlp", "model.net.hidden=[16]", "optim=sgd,adam",
         *SMALL, "hydra.sweep.subdir=${hydra.job.num}")


@pytest.fixture(scope="module")
def fused_workspace(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> dict[str, Any]:
    """A real fused sweep stopped by SIGINT at step 7 (in epoch 1: both members' last.ckpt
    hold mid-epoch state), a pristine copy of it, and a folder of the user's files beside it."""
    from dlfoundations.fused.group import FusedGroup

    root = tmp_path_factory.mktemp("fused_fuzz")
    sweep_dir = root / "sweep"
    real = FusedGroup.check_finite

    def signal_at_step_7(self: FusedGroup, losses: torch.Tensor) -> None:
        real(self, losses)
        if self.global_step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FusedGroup, "check_finite", signal_at_step_7)
        outcome = run_in_process("train.py", *FUSED, f"hydra.sweep.dir={sweep_dir}")
    assert outcome.status == 3, outcome.output[-3000:]
    shutil.copytree(sweep_dir, root / "pristine", symlinks=True)
    outside = root / "outside"
    outside.mkdir()
    (outside / "precious").write_text("the user's file\n")
    return {"root": root, "sweep": sweep_dir, "pristine": root / "pristine", "outside": outside}


def fused_values(value: Any) -> list[Any]:
    """Values of another type, shape, dtype or range than ``value``."""
    if isinstance(value, torch.Tensor):
        return [value.flatten()[:1].clone(), value.to(torch.int64), value.to(torch.float16),
                torch.full_like(value.double(), float("nan")), -value.double().abs() - 1,
                value.unsqueeze(0), "a string", None]
    if isinstance(value, bool):
        return [not value, 1, "true"]
    if isinstance(value, int):
        return [value + 1, value - 1, -1, 10**9, 1.5, "1", None]
    if isinstance(value, float):
        return [value * 2 + 1, -1.0, float("nan"), float("inf"), "0.1", None]
    if isinstance(value, list):
        return [[], value[:-1], [*value, value[-1]] if value else [1], "a list", None]
    if isinstance(value, dict):
        return [{}, {"key": "value"}, "a dict", None, MISSING]
    return ["a string", -1, None, MISSING]


def test_a_fused_state_with_any_piece_replaced_is_resumed_or_refused(
        fused_workspace: dict, raw_paths: dict) -> None:
    """Each case replaces one piece of the ``fused`` state, in one member's last.ckpt or in
    both: the resumed sweep ends 0, 2 or 3 without a traceback, nothing outside the sweep is
    touched, and a member whose file was refused keeps every file of its folder as it was."""
    root, sweep_dir = fused_workspace["root"], fused_workspace["sweep"]
    originals = {job: torch.load(fused_workspace["pristine"] / job / "checkpoints" / "last.ckpt",
                                 weights_only=True) for job in ("0", "1")}
    fields = list(paths(originals["0"]["fused"]))
    generator = random.Random(SEED)
    user_files = snapshot(fused_workspace["outside"])
    statuses: dict[int, int] = {}
    refused = 0
    for case in range(FUSED_CASES):
        path = generator.choice(fields)
        node: Any = originals["0"]["fused"]
        for key in path:
            node = node[key]
        value = generator.choice(fused_values(node))
        crafted = ("0",) if case % 3 else ("0", "1")
        what = f"case {case}: fused.{'.'.join(map(str, path))} = {value!r:.80} in {crafted}"
        shutil.rmtree(sweep_dir)
        shutil.copytree(fused_workspace["pristine"], sweep_dir, symlinks=True)
        for job in crafted:
            torch.save(replaced(originals[job], ("fused", *path), value),
                       sweep_dir / job / "checkpoints" / "last.ckpt")
        before = {job: snapshot(sweep_dir / job) for job in crafted}
        outcome = run_in_process("train.py", *FUSED, f"hydra.sweep.dir={sweep_dir}",
                                 "resume=true")
        check_outcome(outcome, what)
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        for job in crafted:  # refused (its status as it was): every file as it was
            after = snapshot(sweep_dir / job)
            if after.get("metrics.json") == before[job].get("metrics.json"):
                assert {k: v for k, v in after.items() if k != ".claim"} == \
                    {k: v for k, v in before[job].items() if k != ".claim"}, what
                assert f"{sweep_dir / job}" in outcome.output, what  # the sentence names it
                refused += 1
        assert snapshot(fused_workspace["outside"]) == user_files, what
        assert sorted(p.name for p in root.iterdir()) == ["outside", "pristine", "sweep"], what
    print(f"{FUSED_CASES} fused-state cases (seed {SEED}): exit statuses "
          f"{dict(sorted(statuses.items()))}, {refused} members refused")
