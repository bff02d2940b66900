"""dlfoundations' fused launcher: the jobs of a sweep that share one shape train as one
stacked model (``hydra/launcher=fused``)."""
