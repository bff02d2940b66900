"""The optimizers' update rules over stacked parameters, each hyperparameter one value per
member (a tensor of shape (n, 1, ...) broadcast over the member's parameter).

A rule updates the members ``[start, stop)`` of every stacked parameter at once: its slice is a
view, so one call per rule and parameter updates every member that uses that rule. The
formulas are those of ``torch.optim`` (and of ``dlfoundations.scratch_optimizers`` for the
notes' momentum); g = dL/dw + lambda * w, with lambda = 0 for biases (weight decay on weights
only), except AdamW's decoupled decay, w <- w (1 - eta lambda).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dlfoundations import scratch_optimizers
from dlfoundations.errors import UserError

Hyper = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]


def sgd(p: torch.Tensor, g: torch.Tensor, state: State, h: Hyper, step: int) -> None:
    """b <- g (first step), then b <- mu b + (1 - dampening) g; w <- w - eta b (mu = 0: w <-
    w - eta g), as ``torch.optim.SGD``."""
    moving = h["momentum"] > 0
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = g.clone()
    else:
        damped = torch.where(moving, 1 - h["dampening"], torch.ones_like(h["lr"]))
        state["momentum_buffer"].mul_(cast(h["momentum"], p)).add_(cast(damped, p) * g)
    p.sub_(cast(h["lr"], p) * torch.where(moving, state["momentum_buffer"], g))


def notes_momentum(p: torch.Tensor, g: torch.Tensor, state: State, h: Hyper, step: int) -> None:
    """v <- gamma v + eta g, w <- w - v (``scratch_optimizers.Momentum``)."""
    v = state.setdefault("v", torch.zeros_like(p))
    v.mul_(cast(h["momentum"], p)).add_(cast(h["lr"], p) * g)
    p.sub_(v)


def adagrad(p: torch.Tensor, g: torch.Tensor, state: State, h: Hyper, step: int) -> None:
    """s <- s + g^2, w <- w - eta_t g / (sqrt(s) + eps), eta_t = eta / (1 + (t - 1) lr_decay)."""
    s = state.setdefault("sum", torch.zeros_like(p))
    s.addcmul_(g, g)
    eta = cast(h["lr"] / (1 + (step - 1) * h["lr_decay"]), p)
    p.sub_(eta * (g / s.sqrt().add_(cast(h["eps"], p))))


def rmsprop(p: torch.Tensor, g: torch.Tensor, state: State, h: Hyper, step: int) -> None:
    """s <- gamma s + (1 - gamma) g^2, w <- w - eta g / (sqrt(s) + eps); gamma is ``alpha``."""
    s = state.setdefault("square_avg", torch.zeros_like(p))
    s.mul_(cast(h["alpha"], p)).add_(cast(1 - h["alpha"], p) * (g * g))
    p.sub_(cast(h["lr"], p) * (g / s.sqrt().add_(cast(h["eps"], p))))


def adadelta(p: torch.Tensor, g: torch.Tensor, state: State, h: Hyper, step: int) -> None:
    """s <- rho s + (1 - rho) g^2, g' = sqrt(delta + eps) / sqrt(s + eps) g, w <- w - eta g',
    delta <- rho delta + (1 - rho) g'^2."""
    s = state.setdefault("square_avg", torch.zeros_like(p))
    delta = state.setdefault("acc_delta", torch.zeros_like(p))
    rho, rest, eps = cast(h["rho"], p), cast(1 - h["rho"], p), cast(h["eps"], p)
    s.mul_(rho).add_(rest * (g * g))
    rescaled = (delta + eps).sqrt_().div_((s + eps).sqrt_()).mul_(g)
    delta.mul_(rho).add_(rest * (rescaled * rescaled))
    p.sub_(cast(h["lr"], p) * rescaled)


def adam(p: torch.Tensor, g: torch.Tensor, state: State, h: Hyper, step: int) -> None:
    """v <- beta1 v + (1 - beta1) g, s <- beta2 s + (1 - beta2) g^2,
    w <- w - eta v / (1 - beta1^t) / (sqrt(s / (1 - beta2^t)) + eps)."""
    v = state.setdefault("exp_avg", torch.zeros_like(p))
    s = state.setdefault("exp_avg_sq", torch.zeros_like(p))
    v.lerp_(g, cast(1 - h["beta1"], p))
    s.mul_(cast(h["beta2"], p)).add_(cast(1 - h["beta2"], p) * (g * g))
    denom = (s.sqrt() / cast((1 - h["beta2"] ** step).sqrt(), p)).add_(cast(h["eps"], p))
    p.sub_(cast(h["lr"] / (1 - h["beta1"] ** step), p) * (v / denom))


def adamw(p: torch.Tensor, g: torch.Tensor, state: State, h: Hyper, step: int) -> None:
    """w <- w (1 - eta lambda), then Adam on dL/dw (``torch.optim.AdamW``)."""
    p.mul_(cast(1 - h["lr"] * h["decoupled_decay"], p))
    adam(p, g, state, h, step)


def cast(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member value computed in float64 (as torch's optimizers compute their Python
    scalars), in the parameter's dtype only where it meets the parameter."""
    return value.to(like.dtype)


Rule = Callable[[torch.Tensor, torch.Tensor, State, Hyper, int], None]
#: each optimizer class a member may use, with its rule
RULES: dict[type[torch.optim.Optimizer], Rule] = {
    torch.optim.SGD: sgd, scratch_optimizers.SGD: sgd,
    scratch_optimizers.Momentum: notes_momentum,
    torch.optim.Adagrad: adagrad, scratch_optimizers.AdaGrad: adagrad,
    torch.optim.RMSprop: rmsprop, scratch_optimizers.RMSProp: rmsprop,
    torch.optim.Adadelta: adadelta, scratch_optimizers.AdaDelta: adadelta,
    torch.optim.Adam: adam, scratch_optimizers.Adam: adam,
    torch.optim.AdamW: adamw,
}
#: options a rule does not compute, with the only value it takes
FIXED_OPTIONS = {"nesterov": False, "amsgrad": False, "centered": False, "maximize": False,
                 "initial_accumulator_value": 0, "capturable": False, "differentiable": False}


def hyperparameters(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """A member's hyperparameters, read from the optimizer its run alone would build (the
    class's defaults for the keys its config leaves out); refuses options no rule computes."""
    if type(optimizer) not in RULES:
        raise UserError(f"optim._target_={type(optimizer).__module__}."
                        f"{type(optimizer).__qualname__} is not allowed with "
                        "hydra/launcher=fused: it fuses the optimizers of optim/ and "
                        "optim/scratch/; run this sweep with another launcher.")
    group = optimizer.param_groups[0]
    for key, allowed in FIXED_OPTIONS.items():
        if key in group and group[key] not in (allowed, None):
            raise UserError(f"optim.{key}={group[key]} is not allowed with hydra/launcher=fused "
                            f"(it computes {key}={allowed} only); run this sweep with another "
                            "launcher.")
    if group.get("momentum", 0) and type(optimizer) is torch.optim.RMSprop:
        raise UserError(f"optim.momentum={group['momentum']} is not allowed for RMSprop with "
                        "hydra/launcher=fused (it computes momentum=0 only).")
    values = dict(group)
    if "betas" in group:
        values["beta1"], values["beta2"] = group["betas"]
    if type(optimizer) is torch.optim.AdamW:
        values["decoupled_decay"], values["weight_decay"] = values["weight_decay"], 0.0
    rule = RULES[type(optimizer)]
    return {key: float(values.get(key, default)) for key, default in RULE_KEYS[rule].items()}


#: the hyperparameters of each rule, with the value of a key an optimizer does not have
RULE_KEYS: dict[Rule, dict[str, float]] = {
    sgd: {"lr": 0.0, "weight_decay": 0.0, "momentum": 0.0, "dampening": 0.0},
    notes_momentum: {"lr": 0.0, "weight_decay": 0.0, "momentum": 0.0},
    adagrad: {"lr": 0.0, "weight_decay": 0.0, "lr_decay": 0.0, "eps": 0.0},
    rmsprop: {"lr": 0.0, "weight_decay": 0.0, "alpha": 0.0, "eps": 0.0},
    adadelta: {"lr": 0.0, "weight_decay": 0.0, "rho": 0.0, "eps": 0.0},
    adam: {"lr": 0.0, "weight_decay": 0.0, "beta1": 0.0, "beta2": 0.0, "eps": 0.0},
    adamw: {"lr": 0.0, "weight_decay": 0.0, "beta1": 0.0, "beta2": 0.0, "eps": 0.0,
            "decoupled_decay": 0.0},
}

#: the state tensors each rule keeps per parameter once it has stepped
STATE_KEYS: dict[Rule, tuple[str, ...]] = {
    sgd: ("momentum_buffer",), notes_momentum: ("v",), adagrad: ("sum",),
    rmsprop: ("square_avg",), adadelta: ("square_avg", "acc_delta"),
    adam: ("exp_avg", "exp_avg_sq"), adamw: ("exp_avg", "exp_avg_sq"),
}
#: state tensors that sum squares, never below 0
SQUARES = ("sum", "square_avg", "acc_delta", "exp_avg_sq")


@dataclass
class RuleGroup:
    """The members ``[start, stop)`` that share one rule, their hyperparameters (n values
    each, kept in float64) and their state per stacked parameter."""

    rule: Rule
    start: int
    stop: int
    values: dict[str, list[float]]
    state: list[State] = field(default_factory=list)

    def hyper(self, like: torch.Tensor, decayed: bool) -> Hyper:
        """The hyperparameters as float64 tensors shaped (n, 1, ...) for a parameter like
        ``like``."""
        shape = (self.stop - self.start,) + (1,) * (like.ndim - 1)
        hyper = {key: torch.tensor(values, dtype=torch.float64, device=like.device).view(shape)
                 for key, values in self.values.items()}
        if not decayed:
            hyper["weight_decay"] = torch.zeros_like(hyper["weight_decay"])
            if "decoupled_decay" in hyper:
                hyper["decoupled_decay"] = torch.zeros_like(hyper["decoupled_decay"])
        return hyper


class StackedOptimizer:
    """Every member's optimizer over the stacked parameters: members sorted by rule, each
    rule applied once per parameter to its members' slice. ``set_lr`` changes one member's
    rate (its schedule); the step count t is shared (the members step together)."""

    def __init__(self, params: list[torch.nn.Parameter], rules: list[Rule],
                 values: list[dict[str, float]]):
        self.params = params
        self.step_count = 0
        self.groups: list[RuleGroup] = []
        for member, (rule, member_values) in enumerate(zip(rules, values, strict=True)):
            if not self.groups or self.groups[-1].rule is not rule:
                self.groups.append(RuleGroup(rule, member, member, {}))
            group = self.groups[-1]
            for key, value in member_values.items():
                group.values.setdefault(key, []).append(float(value))
            group.stop = member + 1
        for group in self.groups:
            group.state = [{} for _ in params]
        self._hyper: list[list[tuple[Hyper, Hyper]]] | None = None

    def set_lr(self, member: int, lr: float) -> None:
        for group in self.groups:
            if group.start <= member < group.stop:
                group.values["lr"][member - group.start] = lr
        self._hyper = None

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        if self._hyper is None:
            self._hyper = [[(group.hyper(param, True), group.hyper(param, False))
                            for param in self.params] for group in self.groups]
        self.step_count += 1
        for group, hypers in zip(self.groups, self._hyper, strict=True):
            for param, state, (decayed, plain) in zip(self.params, group.state, hypers,
                                                      strict=True):
                if param.grad is None:
                    continue
                p = param[group.start:group.stop]
                hyper = decayed if param.ndim > 2 else plain  # weights (ndim > 1 per member)
                g = param.grad[group.start:group.stop]
                g = g + cast(hyper["weight_decay"], p) * p
                group.rule(p, g, state, hyper, self.step_count)

    def load_members(self, states: list[dict[str, Any]]) -> None:
        """Every member's state as ``member_state`` saved it, each tensor checked against its
        parameter's shape (``UserError`` otherwise); the members stepped together."""
        steps = {state.get("step") if isinstance(state, dict) else None for state in states}
        step = steps.pop() if len(steps) == 1 else None
        if not (type(step) is int and step >= 0):
            raise UserError("resume=true is not allowed here: the members' optimizer step "
                            "counts are not one whole number")
        self.step_count = step
        for group in self.groups:
            saved = [states[member]["state"] for member in range(group.start, group.stop)]
            for index, param in enumerate(self.params):
                tensors: dict[str, list[torch.Tensor]] = {}
                for member_state in saved:
                    entry = member_state[index] if isinstance(member_state, list) and \
                        index < len(member_state) else None
                    if not isinstance(entry, dict):
                        raise UserError("resume=true is not allowed here: a member's optimizer "
                                        f"state has no entry for parameter {index}")
                    for key, value in entry.items():
                        if not (isinstance(value, torch.Tensor) and value.is_floating_point()
                                and value.shape == param.shape[1:]
                                and torch.isfinite(value).all()):
                            raise UserError(
                                f"resume=true is not allowed here: a member's optimizer state "
                                f"{key!r} of parameter {index} is not a finite tensor of shape "
                                f"{tuple(param.shape[1:])}")
                        tensors.setdefault(str(key), []).append(value)
                for key, values in tensors.items():
                    if len(values) != len(saved):
                        raise UserError("resume=true is not allowed here: the members of one "
                                        f"optimizer do not all hold {key!r}")
                    group.state[index][key] = torch.stack(values).to(param)

    def member_state(self, member: int) -> dict[str, Any]:
        """Member ``member``'s optimizer state: per parameter index, its tensors."""
        for group in self.groups:
            if group.start <= member < group.stop:
                offset = member - group.start
                return {"step": self.step_count,
                        "state": [{key: value[offset].clone() for key, value in state.items()}
                                  for state in group.state]}
        raise IndexError(member)
