"""One training step of every member of a fused group at once: the members' logits from the
stacked network, each member's mean cross-entropy l_k = -(1/B) sum_i log softmax(o_ki)_(y_ki),
the gradients of sum_k l_k (member k's parameters get exactly dl_k/dw_k), one update of every
rule, and each member's sums of the epoch's loss and correct predictions. It dispatches the
same operators whatever the number of members (dropout apart: a mask per member, from its own
generator), and waits for no result on the host (the loop reads the losses after it).

The gradients come from autograd, or for softmax regression in closed form
(``closed_form``), which records and walks no graph. Autograd's forward pass (the dropout
masks drawn before it), the closed form and the update are each one graph for
``torch.compile(fullgraph=True)``, of static shapes (the epoch's partial last batch apart):
what a CUDA graph needs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlfoundations.fused.closed_form import closed_form_gradients
from dlfoundations.fused.loss import cross_entropy
from dlfoundations.fused.rules import StackedOptimizer
from dlfoundations.fused.stacked import StackedNetwork

LossesOf = Callable[[StackedNetwork, torch.Tensor, torch.Tensor, list[torch.Tensor]],
                    tuple[torch.Tensor, torch.Tensor]]
#: computes the members' logits (K, B, classes) and losses (K,) on a batch and leaves the
#: gradients in ``network.grad``
Gradients = Callable[[StackedNetwork, torch.Tensor, torch.Tensor],
                     tuple[torch.Tensor, torch.Tensor]]


def member_losses(network: StackedNetwork, x: torch.Tensor, y: torch.Tensor,
                  masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The members' logits (K, B, classes) on batch ``x`` (K or 1, B, ...) with labels ``y``
    (K or 1, B) and dropout ``masks``, and each member's mean cross-entropy (K,)."""
    members = network.flat.shape[0]
    logits = network(x, masks)
    losses = cross_entropy(logits.flatten(0, 1), y.expand(members, -1).flatten()
                           ).view(members, -1).mean(dim=1)
    return logits, losses


def autograd_gradients(network: StackedNetwork, x: torch.Tensor, y: torch.Tensor,
                       losses_of: LossesOf = member_losses) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients by autograd, through ``losses_of`` (``member_losses``, or a compiled
    form of it)."""
    logits, losses = losses_of(network, x, y, network.dropout_masks(x.shape[1]))
    network.grad.zero_()
    losses.sum().backward()
    return logits.detach(), losses.detach()


def gradients_of(network: StackedNetwork) -> Gradients:
    """How a step computes ``network``'s gradients: in closed form for one linear layer."""
    return closed_form_gradients if network.one_linear_layer else autograd_gradients


def train_step(network: StackedNetwork, optimizer: StackedOptimizer, x: torch.Tensor,
               y: torch.Tensor, sums: torch.Tensor, gradients: Gradients | None = None
               ) -> torch.Tensor:
    """One step on batch ``x`` (K or 1, B, ...) with labels ``y`` (K or 1, B); adds each
    member's loss sum and correct count to ``sums`` (K, 2); returns the losses (K,).
    ``gradients``: ``gradients_of(network)`` unless given (e.g. compiled)."""
    logits, losses = (gradients or gradients_of(network))(network, x, y)
    optimizer.step()
    with torch.no_grad():
        correct = (logits.argmax(dim=2) == y).sum(dim=1)
        sums += torch.stack((losses * y.shape[1], correct.to(sums.dtype)), dim=1)
    return losses
