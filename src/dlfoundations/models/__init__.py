"""One LightningModule per model; the classifiers share ``Classifier``."""

from dlfoundations.models.base import LabModule
from dlfoundations.models.classifier import Classifier
from dlfoundations.models.lenet import LeNet
from dlfoundations.models.linreg import LinearRegression
from dlfoundations.models.logreg import LogisticRegression
from dlfoundations.models.mlp import MLP
from dlfoundations.models.softmax import SoftmaxRegression

__all__ = ["MLP", "Classifier", "LabModule", "LeNet", "LinearRegression", "LogisticRegression",
           "SoftmaxRegression"]
