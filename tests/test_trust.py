"""Trust: a checkpoint is data, a run folder belongs to one run, every fault ends in a status.

Crafted checkpoints, two runs racing for one folder, a full disk (a real small tmpfs), a
read-only data folder (a real read-only bind mount): each through the real scripts.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from dlfoundations.background_sync import BackgroundSync
from dlfoundations.data import FashionMNISTDataModule, raw_files
from dlfoundations.errors import UserError
from dlfoundations.folder import CLAIM_FILE, claim
from dlfoundations.run.checkpoints import SafeCheckpointIO, read_checkpoint
from dlfoundations.run.rebuild import rebuild
from tests.conftest import ROOT, run_script, script_command, snapshot
from tests.in_process import SMALL, Outcome, interrupted_run, run_in_process

TINY = ("trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2")


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> Path:
    """The last.ckpt of a tiny real softmax run."""
    run_dir = tmp_path_factory.mktemp("softmax")
    result = run_in_process("train.py", *TINY, f"hydra.run.dir={run_dir}")
    assert result.status == 0, result.output[-3000:]
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
    result = run_in_process("eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.status == 2, result.output[-2000:]
    assert f"error: ckpt_path='{path}'" in result.output and "Traceback" not in result.output
    assert not marker.exists()
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["status"] == "failed"


def damaged(kind: str, real_checkpoint: Path, tmp_path: Path) -> tuple[Path, str]:
    """A checkpoint damaged one way, and the words its refusal must hold: its weights as
    whole numbers, a pickle that names ``os.system`` (never called: torch refuses it, which
    newer torch words as a blocked module), or the file cut in half."""
    path = tmp_path / f"{kind}.ckpt"
    if kind == "int_weights":
        checkpoint = torch.load(real_checkpoint, weights_only=True)
        checkpoint["state_dict"] = {name: value.to(torch.int32)
                                    for name, value in checkpoint["state_dict"].items()}
        torch.save(checkpoint, path)
        return path, "holds torch.int32 numbers where the model has torch.float32"
    if kind == "names_code":
        class Calls:
            def __reduce__(self) -> tuple:
                return os.system, (f"touch {tmp_path / 'pwned'}",)

        torch.save({"epoch": 0, "state_dict": {}, "hook": Calls()}, path)
        return path, f"holds a pickled {os.system.__module__}.system"
    data = real_checkpoint.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path, "its end is missing or damaged"


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
@pytest.mark.parametrize("kind", ["int_weights", "names_code", "cut_short"])
def test_a_damaged_checkpoint_is_refused_saying_how(script: str, kind: str,
                                                    real_checkpoint: Path, tmp_path: Path
                                                    ) -> None:
    path, words = damaged(kind, real_checkpoint, tmp_path)
    result = run_in_process(script, *(TINY if script == "train.py" else ()), f"ckpt_path={path}",
                            f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 2, result.output[-2000:]
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"ckpt_path='{path}'" in errors[0] and words in errors[0], \
        result.output[-2000:]
    assert "Traceback" not in result.output and not (tmp_path / "pwned").exists()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


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
        result = run_in_process(script, *overrides, f"ckpt_path={path}", f"hydra.run.dir={run_dir}")
        assert result.status == 2, result.output[-2000:]
        assert problem in result.output and "Traceback" not in result.output
        assert not (run_dir / "checkpoints").exists()


def test_lightning_reads_checkpoints_through_the_same_checks(real_checkpoint: Path,
                                                              tmp_path: Path) -> None:
    """What Lightning itself loads (``fit(ckpt_path=...)``, ``test(ckpt_path="best")``) goes
    through ``SafeCheckpointIO.load_checkpoint``, which is ``read_checkpoint``: a file changed
    after the run's own check is refused there too."""
    io = SafeCheckpointIO()
    assert io.load_checkpoint(real_checkpoint)["epoch"] == read_checkpoint(real_checkpoint)["epoch"]
    with pytest.raises(UserError, match="its epoch is a str"):
        io.load_checkpoint(crafted(real_checkpoint, tmp_path, epoch="zero"))


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
def test_a_text_file_is_not_a_checkpoint(script: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  _target_: subprocess.Popen\n")
    result = run_in_process(script, f"ckpt_path={config}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 2
    assert f"error: ckpt_path='{config}' is not a readable checkpoint" in result.output
    assert "Traceback" not in result.output


def not_a_checkpoint(kind: str, tmp_path: Path) -> Path:
    """A file given as ``ckpt_path`` that is no checkpoint: random bytes (seeds whose bytes
    make torch's reader fail in different ways: its unpickler advising weights_only=False, a
    list popped empty, an index out of range, a decoding error), a text file, or a link to
    /etc/passwd."""
    path = tmp_path / f"{kind}.ckpt"
    if kind == "link_to_passwd":
        path.symlink_to("/etc/passwd")
    elif kind == "text":
        path.write_text("epoch: 3\nstate_dict: none\n")
    else:
        path.write_bytes(random.Random(int(kind.split("_")[1])).randbytes(2000))
    return path


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
@pytest.mark.parametrize("kind", ["random_0", "random_2", "random_61", "random_195", "text",
                                  "link_to_passwd"])
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_sentence(
        script: str, kind: str, tmp_path: Path, raw_paths: dict) -> None:
    """Never torch's own message: it says 'list index out of range' for /etc/passwd, and for
    random bytes advises weights_only=False, which would run what the file names."""
    path = not_a_checkpoint(kind, tmp_path)
    result = run_in_process(script, *(TINY if script == "train.py" else ()), f"ckpt_path={path}",
                            f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 2, result.output[-2000:]
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    linked = ", /etc/passwd," if kind == "link_to_passwd" else ""
    assert errors == [f"error: ckpt_path='{path}' is not a readable checkpoint: "
                      f"{'the file it links to' if linked else 'it'}{linked} is not a file "
                      "saved by torch.save, the only checkpoints this project can read (e.g. "
                      "<run>/checkpoints/last.ckpt)."], result.output[-2000:]
    assert "weights_only" not in result.output and "Traceback" not in result.output
    assert "index out of range" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_full_disk_leaves_no_truncated_checkpoint(tmp_path: Path, mount, raw_paths: dict
                                                    ) -> None:
    """The checkpoint folder on a 160 KB tmpfs: the best checkpoint (106 KB) fits, last.ckpt
    does not. No partial file may remain, and the run says why it stopped, naming the file."""
    small = mount("-t", "tmpfs", "-o", "size=160k", "tmpfs", target=tmp_path / "small")
    run_dir = tmp_path / "run"
    result = run_script("train.py", *TINY, f"hydra.run.dir={run_dir}",
                        f"callbacks.model_checkpoint.dirpath={small}")
    assert result.returncode == 3, result.stderr[-3000:]
    reason = f"No space left on device ({small / 'last.ckpt'})"
    assert f"error: the run failed: {reason}" in result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["reason"] == reason
    files = sorted(p.name for p in small.iterdir())
    assert files == ["epoch00.ckpt"]
    read_checkpoint(small / "epoch00.ckpt")  # whole, and a valid checkpoint


def test_background_writes_land_whole_in_order_and_stop_at_a_failure(tmp_path: Path, mount
                                                                     ) -> None:
    """A fused group's checkpoints: each file whole at its path once ``wait`` returns, a path
    written twice holding the second, no temporary file left. A full disk (a 64 KB tmpfs)
    fails the write where it is made, naming the file. A rename that fails on the thread (over
    a folder) is raised by ``wait`` and by any later write, and nothing queued after it runs
    (the step that would remove the previous best checkpoint)."""
    writes = BackgroundSync()
    first, second = tmp_path / "epoch00.ckpt", tmp_path / "last.ckpt"
    for path, data in ((first, b"a" * 3000), (second, b"b" * 5000), (second, b"c" * 7000)):
        writes.write(path, data)
    writes.then(lambda: (tmp_path / "after").touch())
    writes.wait()
    assert first.read_bytes() == b"a" * 3000 and second.read_bytes() == b"c" * 7000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["after", "epoch00.ckpt", "last.ckpt"]

    small = mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", target=tmp_path / "small")
    writes.write(small / "fits.ckpt", b"x" * 40_000)
    with pytest.raises(OSError, match=f"No space left on device: '{small / 'full.ckpt'}'"):
        writes.write(small / "full.ckpt", b"y" * 40_000)
    writes.wait()
    assert [p.name for p in small.iterdir()] == ["fits.ckpt"]

    folder = tmp_path / "folder.ckpt"
    (folder / "inside").mkdir(parents=True)
    previous = tmp_path / "previous.ckpt"
    previous.write_bytes(b"best so far")
    writes.write(folder, b"z" * 100)
    writes.then(previous.unlink)
    with pytest.raises(OSError) as failed:
        writes.wait()
    assert f"-> '{folder}'" in str(failed.value)  # os.replace names both files
    with pytest.raises(OSError) as again:
        writes.write(tmp_path / "later.ckpt", b"w")
    assert again.value is failed.value
    writes.close()
    assert previous.read_bytes() == b"best so far"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


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


# -- what a checkpoint's restored state may make a run do (nothing outside the run folder) --

@dataclass
class Interrupted:
    """A real run stopped by SIGINT at step 7 (epoch 1): last.ckpt mid-epoch, epoch00.ckpt its
    best so far, status interrupted; ``command``: the overrides that started it."""

    run_dir: Path
    command: tuple[str, ...]

    def resume(self) -> Outcome:
        return run_in_process("train.py", *self.command, "resume=true")


@pytest.fixture
def interrupted(tmp_path: Path, raw_paths: dict) -> Interrupted:
    return Interrupted(*interrupted_run(tmp_path))


def model_checkpoint_key(checkpoint: dict) -> str:
    (key,) = [key for key in checkpoint["callbacks"] if key.startswith("ModelCheckpoint")]
    return key


def rewrite(path: Path, change) -> None:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


def outside_files(tmp_path: Path) -> dict[str, Path]:
    """Files a crafted checkpoint names, beside the run folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    files = {name: elsewhere / name for name in ("kth", "best", "last", "other")}
    for name, path in files.items():
        path.write_text(f"the user's {name} file\n")
    return files


def name_outside(checkpoint: dict, run_dir: Path, files: dict[str, Path]) -> None:
    """Point every path of ModelCheckpoint's state at a file outside ``run_dir`` (through
    ``..``), with scores that make the resumed run replace them."""
    state = checkpoint["callbacks"][model_checkpoint_key(checkpoint)]
    via = {name: str(run_dir / "checkpoints" / ".." / ".." / "elsewhere" / path.name)
           for name, path in files.items()}
    state.update(dirpath=str(run_dir / "checkpoints"), best_model_path=via["best"],
                 kth_best_model_path=via["kth"], last_model_path=via["last"],
                 best_k_models={via["kth"]: torch.tensor(0.0), via["other"]: torch.tensor(0.0)},
                 kth_value=torch.tensor(0.0), best_model_score=torch.tensor(0.0))


def test_a_resumed_checkpoint_never_makes_the_run_touch_a_file_outside_it(
        interrupted: Interrupted, tmp_path: Path) -> None:
    run_dir = interrupted.run_dir
    files = outside_files(tmp_path)
    rewrite(run_dir / "checkpoints" / "last.ckpt", lambda c: name_outside(c, run_dir, files))
    result = interrupted.resume()
    assert result.status == 0, result.output[-3000:]
    assert {name: path.read_text() for name, path in files.items()} == {
        name: f"the user's {name} file\n" for name in files}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert Path(metrics["best_checkpoint"]).parent == run_dir / "checkpoints"


def test_a_checkpoint_started_from_in_a_new_folder_brings_no_paths(
        interrupted: Interrupted, tmp_path: Path) -> None:
    run_dir = tmp_path / "new"
    files = outside_files(tmp_path)
    crafted = tmp_path / "crafted.ckpt"
    shutil.copy(interrupted.run_dir / "checkpoints" / "last.ckpt", crafted)
    rewrite(crafted, lambda c: name_outside(c, run_dir, files))
    result = run_in_process("train.py", *SMALL, f"hydra.run.dir={run_dir}",
                            f"ckpt_path={crafted}")
    assert result.status == 0, result.output[-3000:]
    assert all(path.read_text() == f"the user's {name} file\n" for name, path in files.items())
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    assert Path(best).parent == run_dir / "checkpoints" and Path(best).is_file()


@pytest.mark.parametrize(("change", "problem"), [
    (lambda c: c["loops"].update(fit_loop="a string"), "loops.fit_loop is a str, not a dict"),
    (lambda c: c["loops"]["fit_loop"]["epoch_progress"]["current"].update(completed="x"),
     "loops.fit_loop.epoch_progress.current.completed is 'x'"),
    (lambda c: c["callbacks"][model_checkpoint_key(c)].update(
        best_model_score=torch.tensor(float("nan"))), "best_model_score is tensor(nan)"),
    (lambda c: c["callbacks"]["ValidationHistory"].update(epochs=[{"epoch": 0,
                                                                   "val/acc": "high"}]),
     "epochs[0].val/acc is 'high'"),
    (lambda c: c["callbacks"]["ValidationHistory"].update(epochs=[{"epoch": -1}]),
     "epochs[0] has no epoch number"),
    (lambda c: c["optimizer_states"][0]["param_groups"][0].update(lr="fast"),
     "optimizer_states[0].param_groups[0].lr is 'fast'"),
    (lambda c: c["optimizer_states"][0]["state"][0].update(exp_avg=torch.zeros(3)),
     "optimizer_states[0].state[0].exp_avg has shape (3,)"),
    (lambda c: c["lr_schedulers"][0].update(last_epoch=-5),
     "lr_schedulers[0].last_epoch is -5"),
    (lambda c: c["loops"]["fit_loop"]["state_dict"].update(
        combined_loader=[{"batches_done": "many"}]), "batches_done is 'many'"),
])
def test_restored_state_of_the_wrong_form_is_refused_in_one_sentence(
        change, problem: str, interrupted: Interrupted, tmp_path: Path) -> None:
    run_dir = interrupted.run_dir
    last = run_dir / "checkpoints" / "last.ckpt"
    rewrite(last, change)
    before = snapshot(run_dir)
    result = interrupted.resume()
    assert result.status == 2, result.output[-3000:]
    assert f"error: ckpt_path='{last}' cannot be restored: " in result.output
    assert problem in result.output and "Traceback" not in result.output
    after = snapshot(run_dir)
    # metrics.json, config.yaml and the checkpoints as they were; the claim, the log and the
    # TensorBoard events of the run record the attempt
    recorded = {".claim", "train.log"}
    assert {k: v for k, v in after.items() if k in before and k not in recorded} == {
        k: v for k, v in before.items() if k not in recorded}
    assert all(name.startswith("events.out.tfevents.") for name in set(after) - set(before))


def test_eval_of_non_finite_weights_is_refused(real_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(real_checkpoint, weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    path = crafted(real_checkpoint, tmp_path, state_dict={
        **checkpoint["state_dict"], name: torch.full_like(checkpoint["state_dict"][name],
                                                          float("nan"))})
    result = run_in_process("eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.status == 2
    assert f"its weights {name} are not all finite numbers" in result.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["status"] == "failed"


# -- a refused run touches nothing --

def test_a_refused_eval_or_train_leaves_the_run_folder_as_it_was(
        real_checkpoint: Path, tmp_path: Path) -> None:
    run_dir = real_checkpoint.parent.parent
    before = snapshot(run_dir)
    refused = [run_in_process("eval.py", f"ckpt_path={real_checkpoint}",
                              f"hydra.run.dir={run_dir}"),
               run_in_process("train.py", *TINY, f"hydra.run.dir={run_dir}"),
               run_in_process("train.py", *TINY, "optim.lr=0.5", f"hydra.run.dir={run_dir}",
                              "resume=true")]
    for result in refused:
        assert result.status == 2 and "Traceback" not in result.output, result.output[-2000:]
    assert "it already holds another run" in refused[0].output
    assert snapshot(run_dir) == before  # no eval.log, no lines appended to train.log


@pytest.mark.parametrize(("script", "bad"), [("train.py", ("optim.lr=-1",)),
                                             ("eval.py", ("ckpt_path=/no/such.ckpt",))])
def test_the_corrected_command_takes_over_the_folder_of_a_run_refused_for_bad_input(
        script: str, bad: tuple[str, ...], tmp_path: Path, raw_paths: dict) -> None:
    """Bad input ends the run with one sentence and a status in metrics.json, marked refused;
    the corrected command into the same folder then runs there, replacing that record."""
    run_dir = tmp_path / "run"
    overrides = TINY if script == "train.py" else ()
    result = run_in_process(script, *overrides, *bad, f"hydra.run.dir={run_dir}")
    assert result.status == 2 and "Traceback" not in result.output, result.output[-2000:]
    refusal = json.loads((run_dir / "metrics.json").read_text())
    assert refusal["status"] == "failed" and refusal["refused"] is True
    assert refusal["reason"] in result.output
    log = run_dir / f"{script[:-3]}.log"
    assert refusal["reason"] in log.read_text()

    corrected = run_in_process("train.py", *TINY, f"hydra.run.dir={run_dir}")
    assert corrected.status == 0, corrected.output[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and "refused" not in metrics
    assert "reason" not in metrics
    assert refusal["reason"] not in (run_dir / "train.log").read_text()
    assert not (run_dir / "eval.log").exists()
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == list(TINY)
    again = run_in_process("train.py", *TINY, f"hydra.run.dir={run_dir}")
    assert again.status == 2 and "it already holds another run" in again.output


@pytest.mark.parametrize("added", ["a user's file", "a link", "checkpoints", "a changed mark"])
def test_a_refused_runs_folder_with_anything_more_is_never_taken_over(
        added: str, tmp_path: Path, raw_paths: dict) -> None:
    run_dir = tmp_path / "run"
    assert run_in_process("train.py", "optim.lr=-1", f"hydra.run.dir={run_dir}").status == 2
    if added == "a user's file":
        (run_dir / "notes.txt").write_text("mine\n")
    elif added == "a link":
        (run_dir / "train.log").unlink()
        (run_dir / "train.log").symlink_to(tmp_path / "elsewhere.txt")
        (tmp_path / "elsewhere.txt").write_text("not the run's\n")
    elif added == "checkpoints":
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    else:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        (run_dir / "metrics.json").write_text(json.dumps({**metrics, "refused": "yes"}))
    before = snapshot(tmp_path)
    result = run_in_process("train.py", *TINY, f"hydra.run.dir={run_dir}")
    assert result.status == 2 and "Traceback" not in result.output, result.output[-2000:]
    assert f"error: paths.output_dir='{run_dir}' is not allowed: it already holds" \
        in result.output
    assert snapshot(tmp_path) == before


def test_a_folder_of_the_users_own_files_is_never_a_run_folder(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own: settings\n")
    (mine / "train.log").symlink_to(tmp_path / "target.txt")
    (tmp_path / "target.txt").write_text("the link's target\n")
    before = snapshot(tmp_path)
    result = run_in_process("train.py", *TINY, f"hydra.run.dir={mine}")
    assert result.status == 2
    assert (f"error: paths.output_dir='{mine}' is not allowed: it already holds files that "
            "are not a run's (config.yaml, train.log)") in result.output
    assert snapshot(tmp_path) == before


def test_a_log_file_that_is_a_link_is_never_followed_on_resume(interrupted: Interrupted,
                                                               tmp_path: Path) -> None:
    run_dir = interrupted.run_dir
    target = tmp_path / "elsewhere.txt"
    target.write_text("not the run's\n")
    (run_dir / "train.log").unlink()
    (run_dir / "train.log").symlink_to(target)
    before = snapshot(tmp_path)
    result = interrupted.resume()
    assert result.status == 2
    assert f"error: {run_dir / 'train.log'} is a symbolic link" in result.output
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_two_sweeps_started_together_into_one_folder(tmp_path: Path, raw_paths: dict) -> None:
    sweep_dir = tmp_path / "sweep"
    command, env = script_command("train.py")
    sweeps = [subprocess.Popen([*command, "-m", "optim=sgd,adam", *TINY,
                                f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outputs = [(sweep.wait(timeout=600), sweep.stdout.read() + sweep.stderr.read())
               for sweep in sweeps]
    assert sorted(code for code, _ in outputs) == [0, 2], outputs
    (loser,) = [output for code, output in outputs if code == 2]
    assert f"error: hydra.sweep.dir='{sweep_dir}' is not allowed: it already holds" in loser
    (winner,) = [output for code, output in outputs if code == 0]
    assert "unknown" not in winner and winner.count(": completed, val/acc") == 2


@pytest.mark.parametrize(("refused_sweep", "sentence"), [
    (("hydra/launcher=fused", "model=linreg"), "is not allowed with hydra/launcher=fused"),
    (("hydra/launcher=side_by_side", "trainer.devices=2"),
     "trainer.devices=2 is not allowed with hydra/launcher=side_by_side"),
    (("optim=sgd,nonexistent",), "Could not find 'optim/nonexistent'"),
])
@pytest.mark.parametrize("folder_existed", [True, False])
@pytest.mark.parametrize("resume", [(), ("resume=true",)], ids=["new", "resume=true"])
def test_a_sweep_refused_before_any_job_leaves_its_folder_as_it_was(
        refused_sweep: tuple[str, ...], sentence: str, folder_existed: bool,
        resume: tuple[str, ...], tmp_path: Path, raw_paths: dict) -> None:
    """Refused by the fused launcher, the side-by-side one, or Hydra's basic sweeper after
    it wrote multirun.yaml, a new sweep or a resumed one that never ran there (found by a
    hostile try: its claim and multirun.yaml stayed and barred the folder): the claim and
    multirun.yaml go (and the folder, if the sweep made it), so the corrected command runs
    into the same folder."""
    sweep_dir = tmp_path / "sweep"
    if folder_existed:
        sweep_dir.mkdir()
    result = run_in_process("train.py", "-m", "optim=sgd,adam", *refused_sweep, *resume,
                            f"hydra.sweep.dir={sweep_dir}")
    assert result.status == 2 and sentence in result.output, result.output[-2000:]
    assert "Traceback" not in result.output
    assert (list(sweep_dir.iterdir()) == [] if folder_existed else not sweep_dir.exists())
    corrected = run_in_process("train.py", "-m", "optim=sgd,adam", *TINY,
                               f"hydra.sweep.dir={sweep_dir}")
    assert corrected.status == 0, corrected.output[-2000:]
    assert corrected.output.count(": completed, val/acc") == 2


def test_a_resumed_sweep_refused_before_any_job_keeps_its_folder(tmp_path: Path,
                                                                  raw_paths: dict) -> None:
    """resume=true retakes the sweep's folder: refused before any job (here by the
    side-by-side launcher), it leaves the claim, multirun.yaml and the jobs there, and the
    sweep resumes with the command that started it."""
    sweep_dir = tmp_path / "sweep"
    command = ("-m", "optim=sgd,adam", *TINY, f"hydra.sweep.dir={sweep_dir}")
    assert run_in_process("train.py", *command).status == 0
    jobs = snapshot(sweep_dir)
    refused = run_in_process("train.py", *command, "resume=true",
                             "hydra/launcher=side_by_side", "hydra.launcher.n_jobs=0")
    assert refused.status == 2 and "hydra.launcher.n_jobs=0 is not allowed" in refused.output
    assert (sweep_dir / CLAIM_FILE).is_file() and (sweep_dir / "multirun.yaml").is_file()
    assert {name: content for name, content in snapshot(sweep_dir).items()
            if "/" in name} == {name: content for name, content in jobs.items() if "/" in name}
    resumed = run_in_process("train.py", *command, "resume=true")
    assert resumed.status == 0, resumed.output[-2000:]
    assert resumed.output.count(": completed, val/acc") == 2
