"""dlfoundations' local launcher: a sweep's jobs side by side (``hydra/launcher=side_by_side``)."""
