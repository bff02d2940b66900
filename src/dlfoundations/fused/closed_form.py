"""The gradients of softmax regression in closed form, for a fused group whose network is one
linear layer on the flattened input (``LinearNet``), as the notes derive them and
``Classifier.loss_and_gradients`` computes them for a single run: o = x W^T + b,
l = -(1/B) sum_i log softmax(o_i)_(y_i), dl/do_i = (softmax(o_i) - e_(y_i)) / B,
dl/dW = (dl/do)^T x, dl/db = sum_i dl/do_i.

It gives autograd's numbers (float64 within rounding) without recording and walking a graph:
43 operators against autograd's 51, but on the 2-core CPU a step of the README's six
optimizers at batch 64 took 0.60 ms instead of 0.74 (``benchmarks/fused_step.py``), and the
README sweep makes 8,600 of them. No value is read back to the host and no branch depends on
one."""

from __future__ import annotations

import torch

from dlfoundations.fused.loss import padded
from dlfoundations.fused.stacked import StackedNetwork


@torch.no_grad()
def closed_form_gradients(network: StackedNetwork, x: torch.Tensor, y: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's logits (K, B, classes) and mean cross-entropy (K,) on batch ``x``
    (K or 1, B, ...) with labels ``y`` (K or 1, B); writes dl_k/dW_k and dl_k/db_k into the
    network's gradients (``network.grad``). One batch for every member (K = 1 in ``x``) goes
    through one matrix product, batch-major (B, K * classes); K batches through a batched one,
    member-major (K, B, classes)."""
    weight, bias = network.params  # (K, classes, inputs), (K, classes)
    members, classes = bias.shape
    # their gradients as columns of the members' flat gradients (views of ``network.grad``)
    weight_grad = network.grad[:, :weight[0].numel()].view_as(weight)
    bias_grad = network.grad[:, weight[0].numel():]
    batch = x.shape[1]
    inputs = x.flatten(2)  # (K or 1, B, inputs)
    shared = network.one_batch_for_all(x)
    if shared:  # o = x [W_1; ...; W_K]^T + [b_1, ..., b_K]: row i holds every member's o_i
        logits = torch.addmm(bias.reshape(-1), inputs[0], weight.reshape(-1, inputs.shape[2]).T)
        targets = y[0].unsqueeze(1).expand(-1, members).reshape(-1)  # y_i for each o_ki
    else:
        logits = torch.baddbmm(bias.unsqueeze(1), inputs, weight.transpose(1, 2))
        targets = y.expand(members, -1).reshape(-1)
    rows = logits.view(-1, classes)  # (B * K or K * B, classes), each a member's o_i
    log_p = torch.log_softmax(padded(rows), dim=1)
    picked = log_p.gather(1, targets.unsqueeze(1))  # log softmax(o_i)_(y_i)
    delta = log_p[:, :classes].exp()
    delta.scatter_add_(1, targets.unsqueeze(1), torch.full_like(picked, -1.0)).div_(batch)
    if shared:
        losses = picked.view(batch, members).mean(dim=0).neg()
        delta = delta.view(batch, -1)  # (B, K * classes)
        weight_grad.copy_(torch.mm(delta.T, inputs[0]).view_as(weight))
        bias_grad.copy_(delta.sum(dim=0).view_as(bias))
        return logits.view(batch, members, classes).transpose(0, 1), losses
    losses = picked.view(members, batch).mean(dim=1).neg()
    delta = delta.view(members, batch, classes)
    weight_grad.copy_(torch.bmm(delta.transpose(1, 2), inputs))  # as nn.Linear's: dO^T x
    bias_grad.copy_(delta.sum(dim=1))
    return logits, losses
