"""Hyperparameter search with Optuna: the search space, the study in its storage, pruning inside
a run, and the study's summary. The Hydra sweeper that drives it lives in
``hydra_plugins.dlfoundations_search``."""
