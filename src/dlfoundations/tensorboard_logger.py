"""TensorBoard logging with one events file per run."""

from __future__ import annotations

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, kept open from ``fit`` through ``test``.

    Lightning finalizes (closes) the writer after ``fit``, ``validate`` and ``test``; the next
    stage then opens a second events file. Here ``finalize`` only flushes and saves
    ``hparams.yaml``; the run calls ``close()`` once at its end.
    """

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._experiment.flush()
        if status == "success":
            self.save()

    @rank_zero_only
    def close(self) -> None:
        if self._experiment is not None:
            self._experiment.close()
