"""dlfoundations' Optuna sweeper: a search that prunes and resumes (``hydra/sweeper=search``)."""
