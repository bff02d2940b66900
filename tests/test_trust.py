"""Trust: a checkpoint is data, a run folder belongs to one run, every fault ends in a status.

Crafted checkpoints, two runs racing for one folder, a full disk (a real small tmpfs), a
read-only data folder (a real read-only bind mount): each through the real scripts.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlfoundations.data import FashionMNISTDataModule, raw_files
from dlfoundations.errors import UserError
from dlfoundations.run.checkpoints import read_checkpoint
from dlfoundations.run.folder import CLAIM_FILE, claim
from dlfoundations.run.rebuild import rebuild
from tests.conftest import ROOT, run_script

TINY = ("trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2")


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> Path:
    """The last.ckpt of a tiny real softmax run."""
    run_dir = tmp_path_factory.mktemp("softmax")
    result = run_script("train.py", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"


def crafted(real_checkpoint: Path, tmp_path: Path, **changes: object) -> Path:
    """A copy of the real checkpoint with ``changes`` applied to its top-level fields (a
    dict value is merged into the field's dict)."""
    checkpoint = torch.load(real_checkpoint, weights_only=True)
    for field, value in changes.items():
        if isinstance(value, dict) and isinstance(checkpoint.get(field), dict):
            checkpoint[field] = {**checkpoint[field], **value}
        else:
            checkpoint[field] = value
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path


def popen(marker: Path) -> dict[str, object]:
    """Keyword arguments that would make ``subprocess.Popen`` create ``marker``."""
    return {"args": ["touch", str(marker)]}


@pytest.mark.parametrize("case", ["model_class", "datamodule_class", "nested_target",
                                  "other_project_class", "network_name", "network_options"])
def test_eval_never_runs_what_a_checkpoint_names(case: str, real_checkpoint: Path,
                                                 tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    changes = {
        "model_class": {"model_class": "subprocess.Popen", "hyper_parameters": popen(marker)},
        "datamodule_class": {"datamodule_class": "subprocess.Popen",
                             "datamodule_hyper_parameters": popen(marker)},
        "nested_target": {"hyper_parameters": {"init": {"_target_": "subprocess.Popen",
                                                        **popen(marker)}}},
        "other_project_class": {"model_class": "dlfoundations.callbacks.TestImages"},
        "network_name": {"hyper_parameters": {"net": {"name": "subprocess.Popen",
                                                      **popen(marker)}}},
        "network_options": {"hyper_parameters": {"net": {"name": "linear", **popen(marker)}}},
    }[case]
    path = crafted(real_checkpoint, tmp_path, **changes)
    result = run_script("eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: ckpt_path='{path}'" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["status"] == "failed"


def test_a_named_class_is_refused_before_anything_is_imported(real_checkpoint: Path) -> None:
    checkpoint = read_checkpoint(real_checkpoint)
    checkpoint["model_class"] = "http.server.HTTPServer"
    assert "http.server" not in sys.modules
    with pytest.raises(UserError, match="only the project's own classes can be rebuilt"):
        rebuild(checkpoint, str(real_checkpoint), {})
    assert "http.server" not in sys.modules


@pytest.mark.parametrize(("changes", "problem"), [
    ({"state_dict": {"net.1.weight": "not a tensor"}}, "state_dict['net.1.weight'] is a str"),
    ({"state_dict": [1, 2]}, "its state_dict is a list"),
    ({"epoch": "zero"}, "its epoch is a str"),
    ({"torch_rng_state": torch.zeros(3)}, "torch_rng_state is not a CPU generator state"),
    ({"hyper_parameters": {"init": {"_target_": "os.system"}}}, "holds a _target_"),
])
def test_checkpoints_with_wrong_types_are_refused_for_eval_and_resume(
        changes: dict, problem: str, real_checkpoint: Path, tmp_path: Path) -> None:
    path = crafted(real_checkpoint, tmp_path, **changes)
    for script, overrides in (("eval.py", ()), ("train.py", TINY)):
        run_dir = tmp_path / script
        result = run_script(script, *overrides, f"ckpt_path={path}", f"hydra.run.dir={run_dir}")
        assert result.returncode == 2, result.stderr[-2000:]
        assert problem in result.stderr and "Traceback" not in result.stderr
        assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
def test_a_text_file_is_not_a_checkpoint(script: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  _target_: subprocess.Popen\n")
    result = run_script(script, f"ckpt_path={config}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert f"error: ckpt_path='{config}' is not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def _try_claim(folder: str, results: multiprocessing.Queue) -> None:
    try:
        claim(Path(folder))
        results.put("won")
    except UserError:
        results.put("refused")


def test_of_many_processes_claiming_one_folder_exactly_one_wins(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_try_claim, args=(str(tmp_path), results))
                 for _ in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    outcomes = sorted(results.get() for _ in processes)
    assert outcomes == ["refused"] * 7 + ["won"]
    assert json.loads((tmp_path / CLAIM_FILE).read_text())["pid"] != os.getpid()


def test_two_runs_started_together_into_one_folder(tmp_path: Path, raw_paths: dict) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *TINY,
               f"hydra.run.dir={run_dir}"]
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in outputs) == [0, 2]
    (loser,) = [stderr for code, stderr in outputs if code == 2]
    assert f"error: paths.output_dir='{run_dir}' is not allowed: it already holds another run" \
        in loser and "Traceback" not in loser
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch00.ckpt", "last.ckpt"]
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_a_full_disk_leaves_no_truncated_checkpoint(tmp_path: Path, mount, raw_paths: dict
                                                    ) -> None:
    """The checkpoint folder on a 160 KB tmpfs: the best checkpoint (106 KB) fits, last.ckpt
    does not. No partial file may remain, and the run says why it stopped."""
    small = mount("-t", "tmpfs", "-o", "size=160k", "tmpfs", target=tmp_path / "small")
    run_dir = tmp_path / "run"
    result = run_script("train.py", *TINY, f"hydra.run.dir={run_dir}",
                        f"callbacks.model_checkpoint.dirpath={small}")
    assert result.returncode == 3, result.stderr[-3000:]
    assert "error: the run failed: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "No space left on device" in metrics["reason"]
    files = sorted(p.name for p in small.iterdir())
    assert files == ["epoch00.ckpt"]
    read_checkpoint(small / "epoch00.ckpt")  # whole, and a valid checkpoint


def test_a_read_only_data_folder_is_used_as_it_is(tmp_path: Path, mount, raw_paths: dict
                                                  ) -> None:
    source = raw_files.raw_dir(tmp_path / "source")
    source.mkdir(parents=True)
    for name, path in raw_paths.items():
        data = raw_files.verified_bytes(name, path)
        with open(source / f"{name}.gz", "wb") as handle:
            handle.write(gzip.compress(data, compresslevel=1))
    data_dir = tmp_path / "readonly"
    mount("--bind", str(tmp_path / "source"), target=data_dir)
    mount("-o", "remount,bind,ro", target=data_dir)
    with pytest.raises(OSError):
        (data_dir / "probe").touch()
    datamodule = FashionMNISTDataModule(data_dir=str(data_dir), system_dirs=())
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.splits["test"]) == 10_000
    assert sorted(p.name for p in raw_files.raw_dir(data_dir).iterdir()) == sorted(
        f"{name}.gz" for name in raw_files.FILES)


def test_partial_copies_never_outlive_a_failed_check(tmp_path: Path, raw_paths: dict) -> None:
    """Four .gz files of which the third is corrupt: the copies of the first two are never
    left behind as .partial files (nor as finished copies)."""
    found = tmp_path / "found"
    found.mkdir()
    names = list(raw_files.FILES)
    paths = {}
    for index, name in enumerate(names):
        source = raw_paths[name]
        paths[name] = found / f"{name}.gz"
        if source.suffix == ".gz":
            shutil.copy(source, paths[name])
        else:
            paths[name].write_bytes(gzip.compress(source.read_bytes(), compresslevel=1))
        if index == 2:
            paths[name].write_bytes(paths[name].read_bytes()[:5000])
    with pytest.raises(UserError, match="cannot be read as Fashion-MNIST data|corrupt"):
        raw_files.keep_uncompressed(paths, tmp_path / "data")
    left = list((tmp_path / "data").rglob("*"))
    assert [p for p in left if p.is_file()] == []
