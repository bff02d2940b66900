"""DataModules: Fashion-MNIST (in memory, verified) and synthetic linear-regression data."""

from dlfoundations.data.fashion_mnist import CLASS_NAMES, FashionMNISTDataModule
from dlfoundations.data.synthetic_linear import SyntheticLinearDataModule

__all__ = ["CLASS_NAMES", "FashionMNISTDataModule", "SyntheticLinearDataModule"]
