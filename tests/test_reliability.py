"""Reliability as a user meets it: bad values, divergence, interruption, resume, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_script, snapshot
from tests.in_process import run_in_process

#: an MLP with dropout, so that the RNG state matters, in a short budget
SHORT_MLP = ("model=mlp", "trainer.max_epochs=2", "trainer.limit_train_batches=40",
             "trainer.limit_val_batches=5", "trainer.limit_test_batches=5")
COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "epochs", "global_step",
            "best_epoch", "lr")


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.batch_size=0"], "data.batch_size=0 is not allowed"),
    (["optim.lr=0"], "optim.lr=0 is not allowed"),
    (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1 is not allowed"),
    (["model=mlp", "model.net.dropout=1.0"], "model.net.dropout=1.0 is not allowed"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 is not allowed"),
    (["trainer.limit_test_batches=0"], "trainer.limit_test_batches=0 is not allowed: "
     "trainer.limit_test_batches must be null, a fraction above 0 or a whole number of at "
     "least 1 (a run ends with a test on it, and an evaluation is one)"),
    (["trainer.limit_train_batches=0.0"], "trainer.limit_train_batches=0.0 is not allowed: "
     "trainer.limit_train_batches must be null, a fraction above 0 or a whole number of at "
     "least 1 (a run trains on it)"),
    (["trainer.limit_train_batches=0.00001"], "trainer.limit_train_batches=1e-05 is not "
     "allowed: trainer.limit_train_batches must be a fraction that keeps one of the 215 train "
     "batches (e.g. 0.0047), a whole number of batches or null"),
    (["trainer.limit_val_batches=0.01"], "trainer.limit_val_batches=0.01 is not allowed"),
    (["trainer.limit_test_batches=0.02"], "trainer.limit_test_batches=0.02 is not allowed: "
     "trainer.limit_test_batches must be a fraction that keeps one of the 40 test batches "
     "(e.g. 0.025)"),
    (["data.classes=[0,6]", "model=logreg", "trainer.limit_test_batches=0.1"],
     "trainer.limit_test_batches=0.1 is not allowed: trainer.limit_test_batches must be a "
     "fraction that keeps one of the 8 test batches (e.g. 0.13)"),
    (["data.val_size=100", "trainer.limit_val_batches=0.5"], "trainer.limit_val_batches=0.5 "
     "is not allowed: trainer.limit_val_batches must be 1.0, a whole number of batches or null "
     "(the val split is one batch)"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 is not allowed: "
     "trainer.log_every_n_steps must be an integer of at least 1 or null"),
    (["+model.num_classes=5"], "model.num_classes=5 is not allowed: FashionMNISTDataModule "
     "has 10 classes, so model.num_classes must be at least 10"),
    (["data.val_size=60000"], "data.val_size=60000 is not allowed"),
    (["data.num_folds=5", "data.fold=5"], "data.fold=5 is not allowed"),
    (["trainer.devices=0"], "trainer.devices=0 is not allowed"),
    (["model=mlp", "model.net.activation=gelu"], "model.net.activation='gelu' is not allowed"),
    (["model=lenet", "model.net.pool=median"], "model.net.pool='median' is not allowed"),
    (["model.net.name=resnet"], "model.net.name='resnet' is not allowed"),
    (["+model.width=3"], "model.width is not an option of model"),
    (["seed=abc"], "seed='abc' is not allowed: seed must be an integer"),
    (["optim=sgd", "optim.momentum=-0.5"], "optim.momentum=-0.5 is not allowed"),
    (["scheduler=exponential", "scheduler.gamma=-1"], "scheduler.gamma=-1 is not allowed"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0 is not allowed"),
    (["optim.lr=inf"], "optim.lr=inf is not allowed"),
    (["optim.betas=[0.9,1.5]"], "optim.betas=[0.9, 1.5] is not allowed"),
    (["optim.lr=true"], "optim.lr=True is not allowed: optim.lr must be a number (an argument "
     "of Adam)"),  # torch hints lr as float | Tensor: no config value is a tensor
    (["optim=rmsprop", "optim.eps=0"], "optim.eps=0 is not allowed"),
    (["optim=sgd", "+optim.foo=2"], "optim.foo is not an option of optim (torch.optim.SGD)"),
    (["+foo=1"], "+foo=1 is not allowed: foo is not a key of this config"),
    (["+monitor.foo=1"], "+monitor.foo=1 is not allowed"),
    (["seed=-1"], "seed=-1 is not allowed: seed must be an integer from 0 to 4294967295"),
    (["seed=1180591620717411303424"], "seed=1180591620717411303424 is not allowed"),
    (["monitor.metric=val/nonexistent"], "monitor.metric='val/nonexistent' is not allowed: "
     "monitor.metric must be a metric that Classifier logs: val/acc, val/loss"),
    (["model._target_=os.system"], "model._target_='os.system' is not allowed"),
    (["data._target_=collections.OrderedDict"], "data._target_='collections.OrderedDict' is "
     "not allowed: data._target_ must be a LightningDataModule class with a task"),
    (["data.batch_size=100000000"], "data.batch_size=100000000 is not allowed: "
     "data.batch_size must be at most the training split's size (55000 images)"),
    (["data.num_folds=100000", "data.fold=99999"], "data.num_folds=100000 is not allowed"),
    (["data.classes=[0,6]", "model=logreg", "data.batch_size=20000"],
     "data.batch_size=20000 is not allowed"),
    (["model=linreg", "data=fashion_mnist"], "model Regressor learns regression but data "
     "FashionMNISTDataModule holds classification data"),
    (["trainer.num_sanity_val_steps=[1]"], "trainer.num_sanity_val_steps=[1] is not allowed: "
     "trainer.num_sanity_val_steps must be a whole number or null (an argument of Trainer)"),
])
def test_bad_values_fail_fast_in_one_sentence(overrides: list[str], message: str,
                                              tmp_path: Path, raw_paths: dict) -> None:
    result = run_in_process("train.py", *overrides, f"hydra.run.dir={tmp_path}")
    assert result.status == 2, result.output[-3000:]
    assert f"error: {message}" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "checkpoints").exists()
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and message in metrics["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("make", ["file", "inside_a_file", "read_only"])
def test_an_output_folder_that_cannot_be_written_is_refused(make: str, tmp_path: Path,
                                                           mount) -> None:
    target = {"file": tmp_path / "taken", "inside_a_file": tmp_path / "taken" / "run",
              "read_only": tmp_path / "ro" / "run"}[make]
    (tmp_path / "taken").write_text("a file, not a folder\n")
    if make == "read_only":
        (tmp_path / "ro_source").mkdir()
        mount("--bind", str(tmp_path / "ro_source"), target=tmp_path / "ro")
        mount("-o", "remount,bind,ro", target=tmp_path / "ro")
    result = run_script("train.py", f"hydra.run.dir={target}")
    assert result.returncode == 2
    assert (f"error: hydra.run.dir='{target}' is not allowed: hydra.run.dir must be a folder "
            "this user can write to") in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "taken").read_text() == "a file, not a folder\n"


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "names"), [
    (["trainer.foo=1"], ["trainer.foo"]),
    (["init=orthogonal"], ["init/orthogonal", "kaiming", "xavier", "zeros"]),
    (["model=resnet"], ["model/resnet", "lenet", "mlp", "softmax", "linreg"]),
])
def test_unknown_keys_and_options_are_refused(overrides: list[str], names: list[str],
                                              tmp_path: Path) -> None:
    result = run_script("train.py", *overrides, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert all(name in result.stderr for name in names)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_divergence_ends_with_status_and_message(tmp_path: Path, raw_paths: dict) -> None:
    result = run_script("train.py", *SHORT_MLP, "optim=sgd", "optim.lr=1e20",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 3
    assert "error: the run diverged: the training loss became nan at step" in result.stderr
    assert "the last finite loss was" in result.stderr and "Traceback" not in result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["global_step"] < 10


def run_to_end(run_dir: Path, *overrides: str) -> dict:
    result = run_script("train.py", *SHORT_MLP, *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run_to_end(run_dir)
    return run_dir


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(uninterrupted: Path, tmp_path: Path) -> None:
    first = json.loads((uninterrupted / "metrics.json").read_text())
    second = run_to_end(tmp_path)
    assert {k: second[k] for k in COMPARED} == {k: first[k] for k in COMPARED}


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupted_then_resumed_run_equals_uninterrupted(
    uninterrupted: Path, tmp_path: Path, signal_name: str
) -> None:
    interrupted = tmp_path / "interrupted"
    result = run_script("train.py", *SHORT_MLP, f"hydra.run.dir={interrupted}",
                        "+callbacks.probe._target_=tests.signal_probe.SignalAtStep",
                        "+callbacks.probe.step=25", f"+callbacks.probe.signal_name={signal_name}")
    assert result.returncode == 3
    assert f"error: the run interrupted: {signal_name} at step 25 (epoch 0)" in result.stderr
    stopped = json.loads((interrupted / "metrics.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["global_step"] == 25
    last = interrupted / "checkpoints" / "last.ckpt"
    assert last.is_file()

    resumed = run_to_end(tmp_path / "resumed", f"ckpt_path={last}")
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    assert {k: resumed[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    final, reference = weights(tmp_path / "resumed/checkpoints/last.ckpt"), weights(
        uninterrupted / "checkpoints/last.ckpt")
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[name], reference[name]) for name in final)


@pytest.mark.slow
@pytest.mark.parametrize(("hook", "epoch", "signal_name"), [
    ("setup", 0, "SIGTERM"),
    ("on_validation_start", 1, "SIGINT"),
    ("on_test_start", 0, "SIGINT"),
])
def test_a_signal_at_any_point_ends_interrupted_and_resume_finishes_the_run(
    uninterrupted: Path, tmp_path: Path, hook: str, epoch: int, signal_name: str
) -> None:
    """Set-up, validation, testing: not only training steps. The same command with
    resume=true then continues in the same folder to the uninterrupted result."""
    run_dir = tmp_path / "run"
    command = (*SHORT_MLP, f"hydra.run.dir={run_dir}",
               "+callbacks.probe._target_=tests.signal_probe.SignalAtHook",
               f"+callbacks.probe.hook={hook}", f"+callbacks.probe.epoch={epoch}",
               f"+callbacks.probe.signal_name={signal_name}",
               f"+callbacks.probe.once_file={tmp_path / 'sent'}")
    result = run_script("train.py", *command)
    assert result.returncode == 3, result.stderr[-3000:]
    assert f"error: the run interrupted: {signal_name}" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"

    again = run_script("train.py", *command)
    assert again.returncode == 2 and "already holds another run" in again.stderr

    resumed = run_script("train.py", *command, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    assert {k: metrics[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}


@pytest.mark.slow
def test_a_signal_inside_a_library_that_wraps_exceptions_still_ends_interrupted(
        tmp_path: Path, raw_paths: dict) -> None:
    """SIGINT while Lightning's TensorBoard logger adds a validation scalar: the signal's
    exception reaches the run inside the logger's ValueError, and the run still ends
    interrupted (exit 3, one sentence), not failed with the logger's message."""
    run_dir = tmp_path / "run"
    result = run_script("train.py", *SHORT_MLP, f"hydra.run.dir={run_dir}",
                        "+logger.probe._target_=tests.signal_probe.SignalInsideTensorBoard",
                        f"+logger.probe.save_dir={tmp_path / 'probe'}")
    assert result.returncode == 3, result.stderr[-3000:]
    assert "error: the run interrupted: SIGINT" in result.stderr
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["reason"].startswith("SIGINT")


@pytest.mark.slow
def test_a_signal_while_the_results_are_written_ends_interrupted_with_whole_files(
        uninterrupted: Path, tmp_path: Path) -> None:
    """SIGINT while metrics.json and the TensorBoard results are written: they are written
    whole, the run says it was interrupted (exit 3), and resume=true finishes it."""
    run_dir = tmp_path / "run"
    command = (*SHORT_MLP, f"hydra.run.dir={run_dir}",
               "+logger.probe._target_=tests.signal_probe.SignalWhileWritingResults",
               f"+logger.probe.once_file={tmp_path / 'sent'}")
    result = run_script("train.py", *command)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "error: the run interrupted: SIGINT arrived while the results were written" \
        in result.stderr and "Traceback" not in result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    assert {k: metrics[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    resumed = run_script("train.py", *command, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads((run_dir / "metrics.json").read_text())
    assert final["status"] == "completed"
    assert {k: final[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}


@pytest.mark.slow
def test_resume_reports_a_finished_run_and_refuses_another_command(uninterrupted: Path
                                                                   ) -> None:
    before = (uninterrupted / "metrics.json").read_text()
    result = run_script("train.py", *SHORT_MLP, f"hydra.run.dir={uninterrupted}", "resume=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "completed: test/acc" in result.stdout
    assert (uninterrupted / "metrics.json").read_text() == before
    files = snapshot(uninterrupted)
    other = run_script("train.py", *SHORT_MLP, "optim.lr=0.1", f"hydra.run.dir={uninterrupted}",
                       "resume=true")
    assert other.returncode == 2
    assert "error: resume=true is not allowed here: the command gives optim.lr=0.1" in other.stderr
    assert snapshot(uninterrupted) == files  # metrics.json, train.log, .claim as they were


@pytest.mark.slow
def test_eval_reproduces_the_test_accuracy(uninterrupted: Path, tmp_path: Path) -> None:
    metrics = json.loads((uninterrupted / "metrics.json").read_text())
    result = run_script("eval.py", f"ckpt_path={metrics['best_checkpoint']}",
                        "trainer.limit_test_batches=5", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluation["test/acc"] == metrics["test/acc"]
    assert evaluation["test/loss"] == metrics["test/loss"]
    confusion = (tmp_path / "confusion_matrix.csv").read_text().splitlines()
    assert len(confusion) == 10 and sum(
        int(v) for line in confusion for v in line.split(",")) == 5 * 256


@pytest.mark.slow
@pytest.mark.parametrize(("limit", "message"), [
    ("0", "trainer.limit_test_batches=0 is not allowed"),
    ("0.02", "trainer.limit_test_batches=0.02 is not allowed: trainer.limit_test_batches must "
     "be a fraction that keeps one of the 40 test batches (e.g. 0.025)"),
    ("abc", "trainer.limit_test_batches='abc' is not allowed"),
])
def test_eval_refuses_a_test_limit_that_keeps_no_batch(limit: str, message: str,
                                                       uninterrupted: Path,
                                                       tmp_path: Path) -> None:
    """As a training run refuses it: before the test, in one sentence."""
    result = run_script("eval.py", f"ckpt_path={uninterrupted / 'checkpoints/last.ckpt'}",
                        f"trainer.limit_test_batches={limit}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: {message}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_eval_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"not a checkpoint at all")
    result = run_script("eval.py", f"ckpt_path={bogus}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2
    assert f"error: ckpt_path='{bogus}' is not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_model(uninterrupted: Path, tmp_path: Path) -> None:
    result = run_script("train.py", "model=softmax",
                        f"ckpt_path={uninterrupted / 'checkpoints/last.ckpt'}",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "does not match model Classifier with LinearNet" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_run_never_writes_into_another_runs_folder(uninterrupted: Path) -> None:
    before = sorted(p.name for p in uninterrupted.rglob("*"))
    result = run_script("train.py", *SHORT_MLP, f"hydra.run.dir={uninterrupted}")
    assert result.returncode == 2
    assert "it already holds another run (.claim, metrics.json, checkpoints, events.out" \
        in result.stderr
    assert sorted(p.name for p in uninterrupted.rglob("*")) == before
