"""One training module (LightningModule) per task, each around a network of
``dlfoundations.networks``: ten-class classification, two-class classification, regression."""

from dlfoundations.models.base import LabModule
from dlfoundations.models.binary_classifier import BinaryClassifier
from dlfoundations.models.classifier import Classifier
from dlfoundations.models.regressor import Regressor

__all__ = ["BinaryClassifier", "Classifier", "LabModule", "Regressor"]
