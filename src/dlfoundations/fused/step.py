"""One training step of every member of a fused group at once: the members' logits from the
stacked network, each member's mean cross-entropy l_k = -(1/B) sum_i log softmax(o_ki)_(y_ki),
the gradients of sum_k l_k (member k's parameters get exactly dl_k/dw_k), one update of every
rule, and each member's sums of the epoch's loss and correct predictions. It dispatches the
same operators whatever the number of members (dropout apart: a mask per member, from its own
generator), and waits for no result on the host (the loop reads the losses after it). Its
forward pass (the dropout masks drawn before it) and its update are each one graph for
``torch.compile(fullgraph=True)``, of static shapes (the epoch's partial last batch apart):
what a CUDA graph needs."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlfoundations.fused.rules import StackedOptimizer
from dlfoundations.fused.stacked import StackedNetwork

#: torch's float32 log-softmax on the CPU over fewer classes than this takes a path about 10x
#: slower per row (6,144 rows: 926 us at 10 classes, 99 us at 16, on the 2-core CPU), so
#: ``cross_entropy`` pads such logits with -inf to this many columns, from ``PAD_FROM``
#: classes on (with fewer, and in float64, the padded loss is no faster)
CPU_FAST_CLASSES = 16
PAD_FROM = 5

LossesOf = Callable[[StackedNetwork, torch.Tensor, torch.Tensor, list[torch.Tensor]],
                    tuple[torch.Tensor, torch.Tensor]]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row's cross-entropy -log softmax(o)_y (N,) of logits ``o`` (N, classes), every
    target a class of the logits (``check_model_fits_data``). On the CPU in float32, with
    ``PAD_FROM`` to ``CPU_FAST_CLASSES`` - 1 classes, of the logits padded with -inf: a class
    of logit -inf adds exp(-inf) = 0 to the softmax's sum and changes no loss or gradient,
    yet the kernel takes its fast path."""
    classes = logits.shape[1]
    if (logits.device.type == "cpu" and logits.dtype == torch.float32
            and PAD_FROM <= classes < CPU_FAST_CLASSES):
        logits = F.pad(logits, (0, CPU_FAST_CLASSES - classes), value=-math.inf)
    return F.cross_entropy(logits, targets, reduction="none")


def member_losses(network: StackedNetwork, x: torch.Tensor, y: torch.Tensor,
                  masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The members' logits (K, B, classes) on batch ``x`` (K or 1, B, ...) with labels ``y``
    (K or 1, B) and dropout ``masks``, and each member's mean cross-entropy (K,)."""
    members = network.flat.shape[0]
    logits = network(x, masks)
    losses = cross_entropy(logits.flatten(0, 1), y.expand(members, -1).flatten()
                           ).view(members, -1).mean(dim=1)
    return logits, losses


def train_step(network: StackedNetwork, optimizer: StackedOptimizer, x: torch.Tensor,
               y: torch.Tensor, sums: torch.Tensor, losses_of: LossesOf = member_losses
               ) -> torch.Tensor:
    """One step on batch ``x`` (K or 1, B, ...) with labels ``y`` (K or 1, B); adds each
    member's loss sum and correct count to ``sums`` (K, 2); returns the losses (K,).
    ``losses_of`` computes the forward pass (``member_losses``, or a compiled form of it)."""
    logits, losses = losses_of(network, x, y, network.dropout_masks(x.shape[1]))
    optimizer.zero_grad()
    losses.sum().backward()
    optimizer.step()
    with torch.no_grad():
        correct = (logits.argmax(dim=2) == y).sum(dim=1)
        sums += torch.stack((losses * y.shape[1], correct.to(sums.dtype)), dim=1)
    return losses.detach()
