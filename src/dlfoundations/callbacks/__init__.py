"""Project callbacks: run bookkeeping, guards, training monitors and TensorBoard figures."""

from dlfoundations.callbacks.guards import (
    DivergenceGuard,
    GracefulInterrupt,
    TrainingDiverged,
)
from dlfoundations.callbacks.histograms import WeightHistograms
from dlfoundations.callbacks.history import ValidationHistory
from dlfoundations.callbacks.monitors import EpochTimer, LearningRateLogger
from dlfoundations.callbacks.restored_state import CheckpointStateError, RestoredStateGuard
from dlfoundations.callbacks.test_images import TestImages

__all__ = [
    "CheckpointStateError", "DivergenceGuard", "EpochTimer", "GracefulInterrupt",
    "LearningRateLogger", "RestoredStateGuard", "TestImages", "TrainingDiverged",
    "ValidationHistory", "WeightHistograms",
]
