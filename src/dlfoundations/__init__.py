"""dlfoundations: Lightning modules, data and run logic for the foundations of deep learning."""

__version__ = "0.1.0"
