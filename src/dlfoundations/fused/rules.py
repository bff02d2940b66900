"""The optimizers' update rules over every member's parameters at once.

Each member's parameters lie side by side in one row of a flat tensor (K, P) (``Layout``), and
so do their gradients; the members that use one rule are rows ``[start, stop)``, a view. A
rule updates all its members and all their parameters with one sequence of operations, so a
step costs the same operators whatever the number of members and parameters: one sequence
per rule. Each hyperparameter is one value per member, a tensor (n, 1) kept in float64 (as
torch computes its optimizers' scalars in Python doubles), cast to the parameters' dtype once
per change (``constants``, in place), and where it depends on the step count t computed per
step in float64 from t itself kept as a tensor: a step reads no value back to the host and
branches on none, so it can be compiled as one graph or captured in a CUDA graph. The
formulas are those of ``torch.optim`` (and of ``dlfoundations.scratch_optimizers`` for the
notes' momentum), in its operations' order, down to ``addcmul``'s (c g) g and ``addcdiv``'s
(c v) / d, so that an update overflows where torch's does; g = dL/dw + lambda * w with
lambda = 0 for biases (weight decay on weights only), except AdamW's decoupled decay,
w <- w (1 - eta lambda).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dlfoundations import scratch_optimizers
from dlfoundations.errors import UserError

#: per-member values: float64 (n, 1) (``Hyper``), or in the parameters' dtype (``Constants``)
Hyper = dict[str, torch.Tensor]
Constants = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]


def zeros(state: State, key: str, like: torch.Tensor) -> torch.Tensor:
    """The state tensor ``key``, zeros like ``like`` at the first step (allocated once, not
    every step as ``dict.setdefault``'s argument would be)."""
    if key not in state:
        state[key] = torch.zeros_like(like)
    return state[key]


def sgd(p: torch.Tensor, g: torch.Tensor, state: State, c: Constants, h: Hyper,
        step: torch.Tensor) -> None:
    """b <- g (first step), then b <- mu b + (1 - dampening) g; w <- w - eta b (mu = 0: w <-
    w - eta g), as ``torch.optim.SGD``."""
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = g.clone()
    else:
        state["momentum_buffer"].mul_(c["momentum"]).add_(c["damped"] * g)
    p.sub_(c["lr"] * torch.where(c["moving"], state["momentum_buffer"], g))


def notes_momentum(p: torch.Tensor, g: torch.Tensor, state: State, c: Constants, h: Hyper,
                   step: torch.Tensor) -> None:
    """v <- gamma v + eta g, w <- w - v (``scratch_optimizers.Momentum``)."""
    v = zeros(state, "v", p)
    v.mul_(c["momentum"]).add_(c["lr"] * g)
    p.sub_(v)


def adagrad(p: torch.Tensor, g: torch.Tensor, state: State, c: Constants, h: Hyper,
            step: torch.Tensor) -> None:
    """s <- s + g^2, w <- w - eta_t g / (sqrt(s) + eps), eta_t = eta / (1 + (t - 1) lr_decay)."""
    s = zeros(state, "sum", p)
    s.addcmul_(g, g)
    eta = (h["lr"] / (1 + (step - 1) * h["lr_decay"])).to(p.dtype)
    p.sub_((eta * g).div_(s.sqrt().add_(c["eps"])))


def rmsprop(p: torch.Tensor, g: torch.Tensor, state: State, c: Constants, h: Hyper,
            step: torch.Tensor) -> None:
    """s <- gamma s + (1 - gamma) g^2, w <- w - eta g / (sqrt(s) + eps); gamma is ``alpha``."""
    s = zeros(state, "square_avg", p)
    s.mul_(c["alpha"]).add_((c["rest"] * g).mul_(g))
    p.sub_((c["lr"] * g).div_(s.sqrt().add_(c["eps"])))


def adadelta(p: torch.Tensor, g: torch.Tensor, state: State, c: Constants, h: Hyper,
             step: torch.Tensor) -> None:
    """s <- rho s + (1 - rho) g^2, g' = sqrt(delta + eps) / sqrt(s + eps) g, w <- w - eta g',
    delta <- rho delta + (1 - rho) g'^2."""
    s = zeros(state, "square_avg", p)
    delta = zeros(state, "acc_delta", p)
    s.mul_(c["rho"]).add_((c["rest"] * g).mul_(g))
    rescaled = (delta + c["eps"]).sqrt_().div_((s + c["eps"]).sqrt_()).mul_(g)
    delta.mul_(c["rho"]).add_((c["rest"] * rescaled).mul_(rescaled))
    p.sub_(c["lr"] * rescaled)


def adam(p: torch.Tensor, g: torch.Tensor, state: State, c: Constants, h: Hyper,
         step: torch.Tensor) -> None:
    """v <- beta1 v + (1 - beta1) g, s <- beta2 s + (1 - beta2) g^2,
    w <- w - eta v / (1 - beta1^t) / (sqrt(s / (1 - beta2^t)) + eps)."""
    v = zeros(state, "exp_avg", p)
    s = zeros(state, "exp_avg_sq", p)
    v.lerp_(g, c["rest1"])
    s.mul_(c["beta2"]).add_((c["rest2"] * g).mul_(g))
    denom = (s.sqrt() / (1 - h["beta2"] ** step).sqrt().to(p.dtype)).add_(c["eps"])
    p.sub_(((h["lr"] / (1 - h["beta1"] ** step)).to(p.dtype) * v).div_(denom))


def adamw(p: torch.Tensor, g: torch.Tensor, state: State, c: Constants, h: Hyper,
          step: torch.Tensor) -> None:
    """w <- w (1 - eta lambda), then Adam on dL/dw (``torch.optim.AdamW``)."""
    p.mul_(c["keep"])
    adam(p, g, state, c, h, step)


Rule = Callable[[torch.Tensor, torch.Tensor, State, Constants, Hyper, torch.Tensor], None]


def constants(rule: Rule, h: Hyper, decay_mask: torch.Tensor, dtype: torch.dtype) -> Constants:
    """The values a rule reads every step, computed in float64 from its members'
    hyperparameters and cast to the parameters' dtype once (again when a rate changes).
    ``decay_mask`` (1, P) is 1 on weights, 0 on biases; ``decay`` is lambda there."""
    values: Hyper = {"lr": h["lr"], "eps": h.get("eps"), "decay": h["weight_decay"] * decay_mask}
    if rule is sgd:
        values |= {"momentum": h["momentum"],
                   "damped": torch.where(h["momentum"] > 0, 1 - h["dampening"],
                                         torch.ones_like(h["lr"]))}
    elif rule is notes_momentum:
        values |= {"momentum": h["momentum"]}
    elif rule is rmsprop:
        values |= {"alpha": h["alpha"], "rest": 1 - h["alpha"]}
    elif rule is adadelta:
        values |= {"rho": h["rho"], "rest": 1 - h["rho"]}
    elif rule in (adam, adamw):
        values |= {"rest1": 1 - h["beta1"], "beta2": h["beta2"], "rest2": 1 - h["beta2"]}
        if rule is adamw:
            values["keep"] = 1 - h["lr"] * (h["decoupled_decay"] * decay_mask)
    cast = {key: value.to(dtype) for key, value in values.items() if value is not None}
    if rule is sgd:
        cast["moving"] = h["momentum"] > 0
    return cast


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
#: options of torch's optimizers that a rule computes at one value only (None: the default)
FIXED_OPTIONS = {"nesterov": False, "amsgrad": False, "centered": False, "maximize": False,
                 "initial_accumulator_value": 0, "capturable": False, "differentiable": False,
                 "fused": False, "decoupled_weight_decay": False}
#: keys that say how torch computes, not what, and the schedule's own (its base rate)
IMPLEMENTATION = ("params", "foreach", "initial_lr")


def hyperparameters(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """A member's hyperparameters, read from the optimizer its run alone builds."""
    return hyperparameters_of(type(optimizer), optimizer.param_groups[0])


def options(factory: functools.partial) -> dict[str, Any]:
    """The param group of the optimizer a config's partial (``optim``) would build, without
    building one: the class's defaults, then the config's values, as torch's optimizers (and
    the project's) fill their groups; except that AdamW's group also holds
    ``decoupled_weight_decay=True`` (``hyperparameters_of`` reads AdamW's decay as decoupled
    either way). Building an optimizer imports ``torch._dynamo`` (``add_param_group``):
    1.2 s of a 2-core CPU in a sweep's own process, where only the plan needs the options."""
    defaults = {name: parameter.default for name, parameter in
                inspect.signature(factory.func).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    return {**defaults, **factory.keywords}


def hyperparameters_of(optimizer_class: type, group: dict[str, Any]) -> dict[str, float]:
    """The hyperparameters of an ``optimizer_class`` whose param group is ``group`` (the
    class's defaults for the keys its config leaves out); refuses options no rule computes."""
    if optimizer_class not in RULES:
        raise UserError(f"optim._target_={optimizer_class.__module__}."
                        f"{optimizer_class.__qualname__} is not allowed with "
                        "hydra/launcher=fused: it fuses the optimizers of optim/ and "
                        "optim/scratch/; run this sweep with another launcher.")
    rule = RULES[optimizer_class]
    adamw = optimizer_class is torch.optim.AdamW  # decoupled decay: its own rule
    for key, value in group.items():
        if key in RULE_KEYS[rule] or key == "betas" or key in IMPLEMENTATION or (
                adamw and key == "decoupled_weight_decay" and value is True):
            continue
        if key == "momentum" and rule is rmsprop:
            allowed = 0
        elif key in FIXED_OPTIONS:
            allowed = FIXED_OPTIONS[key]
        else:
            raise UserError(f"optim.{key}={value!r} is not allowed with hydra/launcher=fused: a "
                            f"fused group does not compute {key}; run this sweep with another "
                            "launcher.")
        if value not in (allowed, None):
            raise UserError(f"optim.{key}={value!r} is not allowed with hydra/launcher=fused (it "
                            f"computes {key}={allowed} only); run this sweep with another "
                            "launcher.")
    values = dict(group)
    if "betas" in group:
        values["beta1"], values["beta2"] = group["betas"]
    if adamw:
        values["decoupled_decay"], values["weight_decay"] = values["weight_decay"], 0.0
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


@dataclass(frozen=True)
class Layout:
    """Where each parameter of a member lies in its row of the flat tensor (K, P): columns
    ``[offset, offset + numel)``, viewed as ``shape``."""

    shapes: tuple[torch.Size, ...]

    @property
    def offsets(self) -> list[int]:
        starts = [0]
        for shape in self.shapes:
            starts.append(starts[-1] + shape.numel())
        return starts

    def pieces(self, row: torch.Tensor) -> list[torch.Tensor]:
        """A member's row (P,) as its parameters, views of their shapes."""
        bounds = self.offsets
        return [row[bounds[i]:bounds[i + 1]].view(shape) for i, shape in enumerate(self.shapes)]

    def row(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        """A member's parameters (or their state) as one row (P,)."""
        return torch.cat([piece.reshape(-1) for piece in pieces])


@dataclass
class RuleGroup:
    """The members ``[start, stop)`` that share one rule, their hyperparameters (n values
    each, kept in float64), the constants cast from them, and their state, each (n, P)."""

    rule: Rule
    start: int
    stop: int
    values: dict[str, list[float]]
    state: State = field(default_factory=dict)
    hyper: Hyper = field(default_factory=dict)
    constants: Constants = field(default_factory=dict)


class StackedOptimizer:
    """Every member's optimizer over the flat parameters (K, P) and their gradients (K, P):
    members sorted by rule, each rule applied once to its members' rows. ``set_lr`` changes
    one member's rate (its schedule); the step count t is shared (the members step
    together), a float64 tensor counted in place (``steps``), so that a compiled or captured
    step reads the count of the step it runs."""

    def __init__(self, flat: torch.Tensor, grad: torch.Tensor, layout: Layout,
                 decay_mask: torch.Tensor, rules: list[Rule], values: list[dict[str, float]]):
        self.flat, self.grad, self.layout, self.decay_mask = flat, grad, layout, decay_mask
        self.steps = torch.zeros((), dtype=torch.float64, device=flat.device)
        self.groups: list[RuleGroup] = []
        for member, (rule, member_values) in enumerate(zip(rules, values, strict=True)):
            if not self.groups or self.groups[-1].rule is not rule:
                self.groups.append(RuleGroup(rule, member, member, {}))
            group = self.groups[-1]
            for key, value in member_values.items():
                group.values.setdefault(key, []).append(float(value))
            group.stop = member + 1
        for group in self.groups:
            self.prepare(group)

    def prepare(self, group: RuleGroup) -> None:
        """The group's hyperparameters as float64 (n, 1) tensors and its constants; when they
        change, written into the same tensors (a captured step reads them where they are)."""
        hyper = {key: torch.tensor(values, dtype=torch.float64,
                                   device=self.flat.device).view(-1, 1)
                 for key, values in group.values.items()}
        cast = constants(group.rule, hyper, self.decay_mask.double(), self.flat.dtype)
        if not group.hyper:
            group.hyper, group.constants = hyper, cast
            return
        for old, new in ((group.hyper, hyper), (group.constants, cast)):
            for key, value in new.items():
                old[key].copy_(value)

    def set_lr(self, member: int, lr: float) -> None:
        for group in self.groups:
            rates = group.values["lr"]
            if group.start <= member < group.stop and rates[member - group.start] != lr:
                rates[member - group.start] = lr
                self.prepare(group)

    @torch.no_grad()
    def step(self) -> None:
        self.steps.add_(1)
        for group in self.groups:
            p = self.flat[group.start:group.stop]
            g = self.grad[group.start:group.stop]
            if any(group.values["weight_decay"]):  # as torch: no addition where lambda = 0
                g = g + group.constants["decay"] * p
            group.rule(p, g, group.state, group.constants, group.hyper, self.steps)

    def load_members(self, states: list[dict[str, Any]]) -> None:
        """Every member's state as ``member_state`` saved it (each piece checked before, by
        ``fused.resume``); the members stepped together."""
        self.steps.fill_(states[0]["step"])
        for group in self.groups:
            saved = [states[member]["state"] for member in range(group.start, group.stop)]
            for key in saved[0][0] if saved[0] else ():
                group.state[key] = torch.stack([
                    self.layout.row([entry[key] for entry in member_state])
                    for member_state in saved]).to(self.flat)

    def member_state(self, member: int) -> dict[str, Any]:
        """Member ``member``'s optimizer state: per parameter index, its tensors."""
        for group in self.groups:
            if group.start <= member < group.stop:
                offset = member - group.start
                pieces = {key: self.layout.pieces(value[offset])
                          for key, value in group.state.items()}
                return {"step": int(self.steps.item()),
                        "state": [{key: piece[index].clone() for key, piece in pieces.items()}
                                  for index in range(len(self.layout.shapes))]}
        raise IndexError(member)
