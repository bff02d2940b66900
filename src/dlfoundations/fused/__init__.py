"""Fused sweeps (``hydra/launcher=fused``): the jobs of a sweep that share the shape of their
work train together as one stacked model, each member still a whole run.

- ``grouping``: which jobs can train together, and the sweep's plan line;
- ``stacked``: the members' networks as one, each layer a batched product over the members;
- ``rules``: the optimizers' update rules over stacked tensors, hyperparameters per member;
- ``member``: one job's run (its folder, data, initial weights, outputs), as a single run
  builds and writes it;
- ``group``: the training of a group: steps, validation, checkpoints, test;
- ``launch``: the launcher's work, called by ``hydra_plugins.dlfoundations_fused``.
"""
