"""The optimizers of the notes, written out from their formulas (``optim=scratch/<name>``).

Each class is a plain ``torch.optim.Optimizer`` whose ``step`` is the update rule in its
docstring, one parameter at a time: no fused or foreach paths. For every rule,
g = dL/dw + lambda * w: weight decay is the L2 penalty lambda/2 * ||w||^2 added to the loss,
so lambda * w is added to the gradient (the run gives biases and norm parameters lambda = 0).
eta is the learning rate of the parameter group, so the run's learning-rate scaling and
schedulers apply as they do to torch's optimizers, and the state (v, s, ...) is saved in
checkpoints like theirs.

Where a rule is written differently from torch's, the docstring says so; each one except
``Momentum`` computes the same numbers as its ``torch.optim`` counterpart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class ScratchOptimizer(Optimizer):
    """The loop every rule shares: for each parameter with a gradient, ``update`` it."""

    def __init__(self, params: Iterable[Any], **defaults: Any):
        super().__init__(params, defaults)

    def gradient(self, param: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """g = dL/dw + lambda * w."""
        return param.grad + group["weight_decay"] * param

    def update(self, param: torch.Tensor, g: torch.Tensor, state: dict[str, Any],
               group: dict[str, Any]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self.update(param, self.gradient(param, group), self.state[param], group)
        return loss


class SGD(ScratchOptimizer):
    """Minibatch gradient descent: w <- w - eta * g."""

    def __init__(self, params: Iterable[Any], lr: float, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, weight_decay=weight_decay)

    def update(self, param, g, state, group) -> None:
        param -= group["lr"] * g


class Momentum(ScratchOptimizer):
    """Momentum in the notes' form: v <- gamma * v + eta * g, w <- w - v (v starts at 0).

    torch's SGD keeps b <- gamma * b + g and steps w <- w - eta * b. With a constant eta the
    two are the same (v = eta * b). When eta changes (a schedule, a warm-up) they differ:
    here the velocity remembers the rates it was built with, there every past gradient is
    rescaled by today's rate.
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def update(self, param, g, state, group) -> None:
        if "v" not in state:
            state["v"] = torch.zeros_like(param)
        v = state["v"]
        v.mul_(group["momentum"]).add_(group["lr"] * g)
        param -= v


class AdaGrad(ScratchOptimizer):
    """AdaGrad: s <- s + g^2, w <- w - eta_t * g / (sqrt(s) + eps) (s starts at 0), with
    eta_t = eta / (1 + (t - 1) * lr_decay), t the step count from 1 (torch's ``lr_decay``;
    0, the default, keeps eta)."""

    def __init__(self, params: Iterable[Any], lr: float, lr_decay: float = 0.0,
                 eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay)

    def update(self, param, g, state, group) -> None:
        if "t" not in state:
            state["t"], state["s"] = 0, torch.zeros_like(param)
        state["t"] += 1
        s = state["s"]
        s += g * g
        eta = group["lr"] / (1 + (state["t"] - 1) * group["lr_decay"])
        param -= eta * g / (s.sqrt() + group["eps"])


class RMSProp(ScratchOptimizer):
    """RMSProp: s <- gamma * s + (1 - gamma) * g^2, w <- w - eta * g / (sqrt(s) + eps).

    gamma is torch's ``alpha`` (the key of ``optim=rmsprop``).
    """

    def __init__(self, params: Iterable[Any], lr: float, alpha: float = 0.9,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)

    def update(self, param, g, state, group) -> None:
        if "s" not in state:
            state["s"] = torch.zeros_like(param)
        s, gamma = state["s"], group["alpha"]
        s.mul_(gamma).add_((1 - gamma) * g * g)
        param -= group["lr"] * g / (s.sqrt() + group["eps"])


class AdaDelta(ScratchOptimizer):
    """AdaDelta: s <- rho * s + (1 - rho) * g^2,
    g' = sqrt(delta + eps) / sqrt(s + eps) * g, w <- w - eta * g',
    delta <- rho * delta + (1 - rho) * g'^2 (s and delta start at 0).

    The notes have no eta (eta = 1, the default of ``optim=adadelta``); torch multiplies by it.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9,
                 eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)

    def update(self, param, g, state, group) -> None:
        if "s" not in state:
            state["s"], state["delta"] = torch.zeros_like(param), torch.zeros_like(param)
        s, delta, rho, eps = state["s"], state["delta"], group["rho"], group["eps"]
        s.mul_(rho).add_((1 - rho) * g * g)
        rescaled = (delta + eps).sqrt() / (s + eps).sqrt() * g
        param -= group["lr"] * rescaled
        delta.mul_(rho).add_((1 - rho) * rescaled * rescaled)


class Adam(ScratchOptimizer):
    """Adam: v <- beta1 * v + (1 - beta1) * g, s <- beta2 * s + (1 - beta2) * g^2,
    v_hat = v / (1 - beta1^t), s_hat = s / (1 - beta2^t),
    w <- w - eta * v_hat / (sqrt(s_hat) + eps), t the step count from 1 (v and s start at 0).
    """

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def update(self, param, g, state, group) -> None:
        if "t" not in state:
            state["t"], state["v"], state["s"] = 0, torch.zeros_like(param), torch.zeros_like(param)
        beta1, beta2 = group["betas"]
        state["t"] += 1
        t, v, s = state["t"], state["v"], state["s"]
        v.mul_(beta1).add_((1 - beta1) * g)
        s.mul_(beta2).add_((1 - beta2) * g * g)
        v_hat, s_hat = v / (1 - beta1 ** t), s / (1 - beta2 ** t)
        param -= group["lr"] * v_hat / (s_hat.sqrt() + group["eps"])


#: each hand-written optimizer and the torch optimizer it is checked against
TORCH_COUNTERPARTS: dict[type[Optimizer], type[Optimizer]] = {
    SGD: torch.optim.SGD, Momentum: torch.optim.SGD, AdaGrad: torch.optim.Adagrad,
    RMSProp: torch.optim.RMSprop, AdaDelta: torch.optim.Adadelta, Adam: torch.optim.Adam,
}
