"""K networks of the same shape as one: each layer computes all members at once.

A Linear layer's weights are stacked into W of shape (K, out, in) and applied as one batched
matrix product, o_k = x_k W_k^T + b_k; a Conv2d layer's into one grouped convolution
(``groups=K``) over the members' channels side by side. Activations and pooling act on every
member alike. Dropout draws each member's mask from the member's own generator, the numbers
its run alone draws from torch's global one: m = bernoulli(1 - p) / (1 - p), as ``F.dropout``
draws them on the CPU; drawn before the forward pass (``dropout_masks``), so that the pass
itself is one graph for ``torch.compile``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlfoundations.errors import UserError
from dlfoundations.fused.rules import Layout

# Each member's parameters are views of one row of a flat tensor, and so are their gradients,
# by design (one optimizer step for all); autograd adds into them in place and warns once
# that their strides are not those of a tensor of their own.
warnings.filterwarnings("ignore",
                        message="grad and param do not obey the gradient layout contract")

#: layers that act on each value alone, or on each channel alone: the same for every member
SHARED_LAYERS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU,
                 nn.AvgPool2d, nn.MaxPool2d, nn.Identity)


@dataclass
class Layer:
    """One layer of the stacked network: ``kind`` (linear, conv, flatten or shared), the
    module of the first member (its options), and the dropout rate of each member after it."""

    kind: str
    module: nn.Module
    dropout: list[float] = field(default_factory=list)


def layers_of(network: nn.Module) -> list[tuple[nn.Module, float]]:
    """The layers of a sequential network, each with the dropout rate that follows it."""
    layers: list[tuple[nn.Module, float]] = []
    for module in network.children():
        if isinstance(module, nn.Dropout):
            layers[-1] = (layers[-1][0], module.p)
        elif isinstance(module, nn.Sequential):
            layers += layers_of(module)
        else:
            layers.append((module, 0.0))
    return layers


def kind_of(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Flatten):
        return "flatten"
    if isinstance(module, SHARED_LAYERS):
        return "shared"
    raise UserError(f"hydra/launcher=fused cannot stack a {type(module).__name__} layer (it "
                    "stacks Linear, Conv2d, pooling, activations and dropout); run this sweep "
                    "with another launcher, e.g. hydra/launcher=side_by_side.")


def mask_widths(layers: list[Layer]) -> list[int]:
    """The width of each dropout layer's mask: the features of the Linear layer before it."""
    widths, width = [], None
    for layer in layers:
        if layer.kind == "linear":
            width = layer.module.out_features
        elif layer.kind != "shared":
            width = None
        if any(layer.dropout):
            if width is None:
                raise UserError("hydra/launcher=fused stacks dropout after a Linear layer only; "
                                "run this sweep with another launcher.")
            widths.append(width)
    return widths


class StackedLinear(torch.autograd.Function):
    """o_k = x_k W_k^T + b_k for every member k at once, x (K, B, in), W (K, out, in), with
    the weight's gradient computed as ``nn.Linear``'s is, dW_k = dO_k^T x_k (out, in), not as
    a batched product's backward computes it, x_k^T dO_k (in, out) transposed: each sum then
    runs in a single run's order, so that, e.g., hidden units that start equal stay equal to
    the last bit, as in the run alone."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
                ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = grad.bmm(weight) if ctx.needs_input_grad[0] else None
        return grad_x, grad.transpose(1, 2).bmm(x), grad.sum(1)


class StackedNetwork(nn.Module):
    """The members' networks as one. Every member's parameters lie side by side in one row of
    ``flat`` (K, P), their gradients in ``grad`` (K, P), so that the optimizer updates all of
    them at once; ``params[i]`` is the i-th parameter of every member, a view (K, *its shape)
    of ``flat`` whose gradient is a view of ``grad`` (autograd adds into it in place).

    Input (K, B, ...) gives output (K, B, outputs); input (1, B, ...), one batch that every
    member reads (members with one batch order), goes through the first layer as one matrix
    product (one convolution) for all members."""

    def __init__(self, networks: list[nn.Module], generators: list[torch.Generator],
                 device: torch.device, dtype: torch.dtype):
        super().__init__()
        members = [layers_of(network) for network in networks]
        first = [type(module) for module, _ in members[0]]
        if any([type(module) for module, _ in layers] != first for layers in members):
            raise UserError("the members of a fused group have networks of different layers")
        self.layers = [Layer(kind_of(module), module, [layers[i][1] for layers in members])
                       for i, (module, _) in enumerate(members[0])]
        self.layout = Layout(tuple(param.shape for param in networks[0].parameters()))
        self.flat = torch.stack([self.layout.row([param.detach() for param in
                                                  network.parameters()])
                                 for network in networks]).to(device, dtype)
        self.grad = torch.zeros_like(self.flat)
        self.params = nn.ParameterList()
        bounds = self.layout.offsets
        for index, shape in enumerate(self.layout.shapes):
            columns = slice(bounds[index], bounds[index + 1])
            param = nn.Parameter(self.flat[:, columns].view(len(networks), *shape))
            param.grad = self.grad[:, columns].view(len(networks), *shape)
            self.params.append(param)
        #: 1 on weights, 0 on biases: weight decay acts on weights only
        self.decay_mask = torch.cat([torch.full((shape.numel(),), float(len(shape) > 1))
                                     for shape in self.layout.shapes]).view(1, -1).to(
                                         device, dtype)
        self.generators = generators
        #: the features each dropout layer masks (the width of the Linear layer before it)
        self.mask_widths = mask_widths(self.layers)
        #: one linear layer on the flattened input (softmax regression): gradients in closed
        #: form (``fused.closed_form``)
        self.one_linear_layer = ([layer.kind for layer in self.layers] == ["flatten", "linear"]
                                 and not any(self.layers[1].dropout))

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None
                ) -> torch.Tensor:
        """The members' outputs; in training, ``masks`` are the dropout masks of this batch
        (``dropout_masks``; drawn here when not given)."""
        if masks is None:
            masks = self.dropout_masks(x.shape[1])
        masks_left = iter(masks)
        params = iter(self.params)
        members, batch = self.flat.shape[0], x.shape[1]
        shared = self.one_batch_for_all(x)  # until the first layer with parameters
        conv = x.ndim == 5  # (K, B, C, H, W): the members' channels side by side, (B, K*C, H, W)
        if conv:
            x = x.transpose(0, 1).flatten(1, 2)
        for layer in self.layers:
            if layer.kind == "linear":
                weight, bias = next(params), next(params)
                if shared:  # o = x W^T for every member's W at once: (B, K*out)
                    x = (x[0] @ weight.flatten(0, 1).T).view(batch, members, -1).transpose(0, 1)
                    x = x + bias.unsqueeze(1)
                else:
                    x = StackedLinear.apply(x, weight, bias)
                shared = False
            elif layer.kind == "conv":
                weight, bias = next(params), next(params)
                conv_layer = layer.module
                x = F.conv2d(x, weight.flatten(0, 1), bias.flatten(), conv_layer.stride,
                             conv_layer.padding, conv_layer.dilation,
                             groups=1 if shared else members)
                shared = False
            elif layer.kind == "flatten":
                if conv:
                    x = x.view(batch, 1 if shared else members, -1).transpose(0, 1)
                    conv = False
                else:
                    x = x.flatten(2)
            else:
                x = layer.module(x)
            if self.training and any(layer.dropout):
                x = x * next(masks_left)
        return x

    def one_batch_for_all(self, x: torch.Tensor) -> bool:
        """Whether input ``x`` (K or 1, B, ...) is one batch that every member reads (of more
        than one member): its first layer is then one product for all of them."""
        return x.shape[0] == 1 and self.flat.shape[0] > 1

    def dropout_masks(self, batch: int) -> list[torch.Tensor]:
        """In training, a mask (K, batch, width) per dropout layer, in the order of the layers:
        member k's m = bernoulli(1 - p_k) / (1 - p_k), drawn from its generator (ones for a
        member without dropout there); none in evaluation."""
        if not self.training:
            return []
        masks = []
        dropouts = [layer.dropout for layer in self.layers if any(layer.dropout)]
        for rates, width in zip(dropouts, self.mask_widths, strict=True):
            members = []
            for rate, generator in zip(rates, self.generators, strict=True):
                mask = self.flat.new_empty(batch, width)
                if rate > 0:
                    members.append(mask.bernoulli_(1 - rate, generator=generator).div_(1 - rate))
                else:
                    members.append(mask.fill_(1))
            masks.append(torch.stack(members))
        return masks

    def member_state(self, network: nn.Module, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s weights as a state dict of ``network`` (its own network)."""
        names = [name for name, _ in network.named_parameters()]
        return {name: param[member].detach().clone()
                for name, param in zip(names, self.params, strict=True)}
