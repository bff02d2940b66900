"""TensorBoard logging with one events file per run, every curve's step the number of
training samples seen, and hyperparameters that TensorBoard unions across runs."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from dlfoundations.event_checksums import use_fast_checksums

#: the section of what a run ends with (final metrics, test images): TensorBoard sorts
#: sections by name ("~" after the letters) and opens the first two, so that the curves
#: (train/*, val/*) come first
FINAL_SECTION = "~final"


def step_of(logger: TensorBoardLogger, steps: int) -> int:
    """The TensorBoard step after ``steps`` optimizer steps: samples seen for the run's own
    logger, the steps for another."""
    return logger.samples_seen(steps) if isinstance(logger, RunTensorBoardLogger) else steps


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, kept open from ``fit`` through ``test``.

    - Lightning finalizes (closes) the writer after ``fit``, ``validate`` and ``test``; the
      next stage then opens a second events file. Here ``finalize`` only flushes; the run
      calls ``close()`` once at its end. No ``hparams.yaml`` is written.
    - A scalar's step is the number of training samples seen (optimizer steps x
      ``samples_per_step``, the run's global batch size), so that runs of different batch
      sizes line up; Lightning's ``epoch`` scalar is left out (the x axis says it).
    - ``log_run`` writes the run's hyperparameters as TensorBoard's session start and end
      and no experiment of its own, so that TensorBoard builds the HParams table from every
      run: the union of their keys, the keys that differ first. The final metrics are single
      points in ``FINAL_SECTION`` (the HParams table's metric columns); Lightning's own
      single-point ``test/*`` scalars are left out.
    - Its records are checksummed in C (``use_fast_checksums``). That imports TensorBoard's
      writer (35 ms, without TensorBoard's own S3 client: ``record_writer_module``) as the run
      is built, before its first training step is timed.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        use_fast_checksums()
        self.samples_per_step = 1

    def samples_seen(self, steps: int) -> int:
        """The step TensorBoard shows after ``steps`` optimizer steps: samples seen."""
        return steps * self.samples_per_step

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = {key: value for key, value in metrics.items()
                   if key != "epoch" and not key.startswith("test/")}
        # Lightning logs after optimizer step k (from 0) as step k: k + 1 steps were taken
        super().log_metrics(metrics, None if step is None else self.samples_seen(step + 1))

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        """Nothing: Lightning calls this with the model's hyperparameters at the start of
        ``fit``; the run's own are written by ``log_run`` at its end."""

    @rank_zero_only
    def log_run(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """The run's hyperparameters and its final metrics (``val/acc``: one point each in
        ``FINAL_SECTION``, at ``step`` samples), as an HParams session of this run."""
        from torch.utils.tensorboard.summary import hparams

        final = {f"{FINAL_SECTION}/{key}": value for key, value in metrics.items()}
        for key, value in final.items():
            self.experiment.add_scalar(key, value, step)
        _, session_start, session_end = hparams(params, final)
        self.experiment.file_writer.add_summary(session_start, step)
        self.experiment.file_writer.add_summary(session_end, step)

    @rank_zero_only
    def save(self) -> None:
        """Flush only: no ``hparams.yaml`` (the run's config is its ``config.yaml``)."""
        self.experiment.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()

    @rank_zero_only
    def close(self) -> None:
        self.experiment.close()
