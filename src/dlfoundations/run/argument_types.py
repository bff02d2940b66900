"""Config values against the types their classes declare, checked before anything is built.

Every node of a run's config with a ``_target_`` (the trainer, each callback and logger, the
model, the data, the optimizer, the scheduler) names a class whose constructor says, in its
type hints, what each argument may be. A value of another kind (``trainer.num_sanity_val_steps
=[1]``, ``callbacks.model_checkpoint.monitor=true``, ``data.batch_size=true``) would often be
accepted by the constructor and fail deep inside training; here it is one sentence instead.
Hints this check does not know (a class, a callable) are left to the class itself.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from typing import Any

from hydra.utils import get_class, get_method
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlfoundations.errors import UserError, first_line

SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)
MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def config_arms(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arms of a union a config value can be: all but ``torch.Tensor`` (no config value is
    a tensor; ``lr: float | Tensor`` takes a number from a config, and ``optim.lr=true`` is
    not one), unless that is all there is."""
    plain = tuple(arg for arg in args if not (getattr(arg, "__module__", None) == "torch"
                                              and getattr(arg, "__name__", None) == "Tensor"))
    return plain or args


def fits(value: Any, hint: Any) -> bool:
    """Whether a plain config value (number, text, bool, null, list, dict) fits ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(value, dict) and "_target_" in value:
        return True  # built by Hydra into whatever the class wants
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in config_arms(args))
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return type(value) is bool
    if hint is int:
        return type(value) is int
    if hint is float:
        return type(value) in (int, float)
    if hint is str:
        return isinstance(value, str)
    if hint in SEQUENCES or origin in SEQUENCES:
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(fits, value, args))
        return not args or all(fits(item, args[0]) for item in value)
    if hint in MAPPINGS or origin in MAPPINGS:
        return isinstance(value, dict)
    return True


def describe(hint: Any) -> str:
    """A hint in words: ``int | None`` is "a whole number or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(arg) for arg in config_arms(args)))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    words = {type(None): "null", bool: "true or false", int: "a whole number",
             float: "a number", str: "a text"}
    if hint in words:
        return words[hint]
    if hint in SEQUENCES or origin in SEQUENCES:
        return "a list" + (f" of {describe(args[0])}" if args and origin is not tuple else "")
    if hint in MAPPINGS or origin in MAPPINGS:
        return "a mapping of keys to values"
    return getattr(hint, "__name__", str(hint))


@functools.cache
def argument_hints(target: str) -> tuple[str, dict[str, Any]]:
    """The name of what ``target`` names and the type hints of its arguments (none where
    they cannot be read); read once per process (a fused group's members share their
    classes, whose hints take milliseconds to evaluate)."""
    try:
        built = get_class(target)
    except Exception:
        try:
            built = get_method(target)
        except Exception:
            return target, {}  # the run's own checks, or instantiate, say why
    try:
        hints = typing.get_type_hints(built.__init__ if isinstance(built, type) else built)
        parameters = inspect.signature(built).parameters
    except Exception:
        return getattr(built, "__name__", target), {}
    return built.__name__, {name: hints[name] for name in parameters if name in hints}


def check_node(node: dict[str, Any], where: str) -> None:
    """Each argument of the node's ``_target_`` against its hint; nested nodes as well."""
    name, hints = argument_hints(node["_target_"]) if isinstance(
        node.get("_target_"), str) else ("", {})
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if key in hints and not fits(value, hints[key]):
            raise UserError(f"{where}{key}={value!r} is not allowed: {where}{key} must be "
                            f"{describe(hints[key])} (an argument of {name}).")
        if isinstance(value, dict):
            check_node(value, f"{where}{key}.")


def check_argument_types(cfg: DictConfig, keys: tuple[str, ...]) -> None:
    """The nodes at ``keys`` of ``cfg`` (e.g. ``trainer``, ``callbacks``) by their classes'
    type hints (``check_node``)."""
    for key in keys:
        node = OmegaConf.select(cfg, key, default=None)
        if isinstance(node, DictConfig):
            try:
                values = OmegaConf.to_container(node, resolve=True)
            except OmegaConfBaseException as err:  # e.g. ${data.true_w} with other data
                raise UserError(f"{key} cannot be read: {first_line(err)} (in "
                                f"{getattr(err, 'full_key', None) or key}).") from err
            check_node(values, f"{key}.")
