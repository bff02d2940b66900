"""The networks: plain ``nn.Module`` classes, usable without Lightning or Hydra.

A model config names its network (``model.net.name``) and the network's own options beside
it; the training module of the task (``dlfoundations.models``) builds it with ``build``, as
``torchvision.models.get_model`` builds a network by name. The table is also what a
checkpoint may name: nothing else is ever built from one.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from dlfoundations.errors import ArgumentError, UserError, require
from dlfoundations.networks.lenet import LeNet
from dlfoundations.networks.linear import LinearNet
from dlfoundations.networks.mlp import MLP

NETWORKS: dict[str, type[nn.Module]] = {"linear": LinearNet, "mlp": MLP, "lenet": LeNet}
#: the networks whose gradients the notes derive by hand (``gradients=manual``)
DERIVED_GRADIENTS = ("linear",)


def build(net: Mapping[str, Any], **sizes: int) -> nn.Module:
    """The network ``net["name"]`` with the options ``net`` gives and the sizes the task
    gives (``num_inputs``, ``num_outputs``); a refused option is named by its config key,
    ``model.net.<option>`` (the networks name their own arguments)."""
    options = dict(net)
    name = options.pop("name", None)
    require(name in NETWORKS, "model.net.name", name, f"one of {', '.join(NETWORKS)}")
    own = [key for key in inspect.signature(NETWORKS[name]).parameters if key not in sizes]
    for key in options:
        if key not in own:
            raise UserError(f"model.net.{key} is not an option of the {name} network (its "
                            f"options: name, {', '.join(own)}).")
    try:
        return NETWORKS[name](**options, **sizes)
    except ArgumentError as err:
        raise err.under("model.net.") from err


__all__ = ["DERIVED_GRADIENTS", "MLP", "NETWORKS", "LeNet", "LinearNet", "build"]
