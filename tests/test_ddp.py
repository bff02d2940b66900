"""DDP on two CPU processes (gloo): one run folder, disjoint shards, exact metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_script
from tests.test_sweeps import summary_rows

pytestmark = pytest.mark.slow  # subprocesses, services or many runs


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, raw_paths: dict) -> tuple[Path, Path]:
    """Two epochs of softmax regression on 2 CPU processes; (run folder, shard folder)."""
    root = tmp_path_factory.mktemp("ddp")
    shards = root / "shards"
    result = run_script("train.py", "trainer=ddp_cpu", "trainer.max_epochs=2",
                        "trainer.limit_train_batches=10", f"paths.output_root={root / 'outputs'}",
                        "+callbacks.shards._target_=tests.shard_recorder.ShardRecorder",
                        f"+callbacks.shards.out_dir={shards}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (root / "outputs" / "runs").iterdir()  # one folder, not one per rank
    return run_dir, shards


def test_one_run_folder_with_one_metrics_file_and_one_events_file(
    ddp_run: tuple[Path, Path],
) -> None:
    run_dir, _ = ddp_run
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["global_batch_size"] == 512
    assert metrics["lr"] == pytest.approx(3e-3 * 2 ** 0.5)  # sqrt scaling to batch 512
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch01.ckpt", "last.ckpt"]


def test_ranks_draw_disjoint_shards_that_cover_the_split_and_reshuffle(
    ddp_run: tuple[Path, Path],
) -> None:
    _, shards = ddp_run

    def drawn(rank: int, epoch: int) -> list[int]:
        return json.loads((shards / f"rank{rank}_epoch{epoch}.json").read_text())

    for epoch in (0, 1):
        first, second = drawn(0, epoch), drawn(1, epoch)
        assert len(first) == len(second) == 27_500  # 55,000 / 2: no padding needed
        assert not set(first) & set(second)
        assert set(first) | set(second) == set(range(55_000))
    assert drawn(0, 0) != drawn(0, 1) and set(drawn(0, 0)) != set(drawn(0, 1))


def test_ddp_test_accuracy_equals_single_process_evaluation(
    ddp_run: tuple[Path, Path], tmp_path: Path,
) -> None:
    run_dir, _ = ddp_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = run_script("eval.py", f"ckpt_path={metrics['best_checkpoint']}",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluation["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert evaluation["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)


def test_subprocess_ddp_inside_a_multirun_is_refused(tmp_path: Path, raw_paths: dict) -> None:
    result = run_script("train.py", "-m", "trainer=ddp_cpu", "optim=sgd,adam",
                        f"paths.output_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(tmp_path.joinpath("multiruns").iterdir())) == 1
    (sweep_dir,) = (tmp_path / "multiruns").iterdir()
    rows = summary_rows(sweep_dir)
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all("not allowed inside a multirun (-m)" in row["reason"] for row in rows)
