"""Each job's config composed once per sweep, not twice.

Hydra's sweepers compose every job's config to check it (``validate_batch_is_legal``) just
before the launcher composes it again (the README's 18-job sweep started 1-2 s sooner on a
2-core CPU once each job was composed once). The project's launchers keep what the check
composed and take each job's config from there, once (so no two holders share a config); a
config the check did not compose is composed then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig

Compose = Callable[..., DictConfig]


class ComposedConfigs:
    """Wraps a config loader's ``load_sweep_config``: what it composes is kept, keyed by the
    master config and the overrides, until ``take`` hands it out."""

    def __init__(self, compose: Compose) -> None:
        self.compose = compose
        self.kept: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: Sequence[str]
                          ) -> DictConfig:
        config = self.compose(master_config=master_config, sweep_overrides=sweep_overrides)
        self.kept[(id(master_config), tuple(sweep_overrides))] = config
        return config

    def take(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        """The job's config as the sweeper's check composed it, or composed now."""
        kept = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        if kept is not None:
            return kept
        return self.compose(master_config=master_config, sweep_overrides=list(sweep_overrides))


def composed_configs(config_loader: Any) -> ComposedConfigs:
    """The loader's ``ComposedConfigs``, installed on it the first time."""
    installed = getattr(config_loader.load_sweep_config, "__self__", None)
    if isinstance(installed, ComposedConfigs):
        return installed
    composed = ComposedConfigs(config_loader.load_sweep_config)
    config_loader.load_sweep_config = composed.load_sweep_config
    return composed
