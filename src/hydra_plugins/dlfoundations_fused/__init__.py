"""dlfoundations' fused launcher: a sweep's jobs of one shape as one stacked model (``hydra/launcher=fused``)."""
