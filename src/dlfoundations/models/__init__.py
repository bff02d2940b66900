"""One LightningModule per model, classifiers built on ``Classifier``."""

from dlfoundations.models.classifier import Classifier
from dlfoundations.models.softmax import SoftmaxRegression

__all__ = ["Classifier", "SoftmaxRegression"]
