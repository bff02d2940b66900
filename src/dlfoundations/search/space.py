"""A search space from the config: Hydra's sweep syntax turned into Optuna distributions.

``choice(a, b, ...)`` and ``a,b,...`` are categorical; ``interval(low, high)`` is uniform,
``tag(log, interval(low, high))`` log-uniform, ``int(interval(low, high))`` an integer (add
``tag(log, ...)`` for log-spaced integers); ``range(start, stop[, step])`` is an integer range
(stop excluded, as in Python).
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from dlfoundations.errors import UserError

ALLOWED = ("choice(a, b, ...), interval(low, high), tag(log, interval(low, high)), "
           "int(interval(low, high)) or range(start, stop[, step])")


def distribution(key: str, value: Any) -> BaseDistribution:
    """The Optuna distribution of one search dimension, ``key`` with its sweep ``value``
    (a parsed sweep, or the text of one as in ``hydra.sweeper.params``)."""
    if isinstance(value, str):
        try:
            value = OverridesParser.create().parse_override(f"{key}={value}").value()
        except HydraException as err:
            raise UserError(f"hydra.sweeper.params.{key}={value!r} is not a search dimension "
                            f"({err}); allowed are {ALLOWED}.") from None
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep) and all(
            isinstance(v, int) for v in (value.start, value.stop, value.step)):
        return IntDistribution(value.start, value.stop - value.step, step=value.step)
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise UserError(f"hydra.sweeper.params.{key}={value!r} is not a search dimension; allowed "
                    f"are {ALLOWED}.")


def search_space(params: dict[str, Any], arguments: list[str]) -> tuple[
        dict[str, BaseDistribution], list[str]]:
    """The distributions of ``hydra.sweeper.params`` and of the sweeps among the command-line
    ``arguments`` (e.g. ``optim=sgd,adam``), and the arguments that hold for every trial (a
    fixed value, e.g. ``optim=adam``, takes its key out of the search)."""
    space = {key: distribution(key, str(value)) for key, value in params.items()}
    fixed = []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override.get_key_element(),
                                                             override.value())
        else:
            space.pop(override.get_key_element(), None)
            fixed.append(override.input_line)
    return space, fixed


def suggest(trial: Trial, name: str, dist: BaseDistribution) -> Any:
    """Ask ``trial`` for a value of ``name`` from ``dist``."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
