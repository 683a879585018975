"""The command context: data dir, config, clock — resolved once from options and environment."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from portflow.config import Config, calendar_defaults, load_config
from portflow.config.models import SleeveProfile
from portflow.lakehouse.store import Lakehouse
from portflow.providers import get_provider
from portflow.providers.base import Provider


@dataclass
class Context:
    data_dir: Path
    config_dir: str | None
    as_of: pd.Timestamp
    debug: bool = False

    @functools.cached_property
    def config(self) -> Config:
        return load_config(self.config_dir)

    @functools.cached_property
    def lake(self) -> Lakehouse:
        return Lakehouse(self.data_dir)

    def provider(self, profile: SleeveProfile) -> Provider:
        """The profile's bar provider (OHLCV, metadata; its name keys the lakehouse)."""
        return _provider(profile.provider.name, _freeze(profile.provider.options))

    def scan_provider(self, profile: SleeveProfile) -> Provider:
        """The provider the profile's scanners run on: its `scan_provider`, else the bar one."""
        sp = profile.scan_provider
        return self.provider(profile) if sp is None else _provider(sp.name, _freeze(sp.options))

    def universe_of(self, profile: SleeveProfile) -> dict[str, str]:
        """scanner -> the bar provider's universe its candidates belong to (the scanner's own
        universe, or the scan_provider's `bars_universe`)."""
        sp = profile.scan_provider
        if sp is not None and sp.bars_universe is not None:
            return dict.fromkeys(profile.scanners, sp.bars_universe)
        return {s: self.config.scanners[s].universe for s in profile.scanners}

    def calendar_of(self, profile: SleeveProfile) -> str:
        """Calendar of the profile's bar universes (one calendar per sleeve)."""
        provider = self.provider(profile)
        cals = {provider.calendar(u) for u in self.universe_of(profile).values()}
        if len(cals) != 1:
            from portflow.errors import ConfigError

            raise ConfigError(
                f"profile '{profile.name}' mixes calendars {sorted(cals)} in one sleeve;"
                " split it into one sleeve per calendar and combine them in a meta profile"
            )
        return cals.pop()

    def sleeve_settings(self, profile: SleeveProfile) -> dict[str, float]:
        """Calendar-derived defaults overridden by whatever the profile sets explicitly."""
        out = calendar_defaults(self.calendar_of(profile))
        explicit = {
            "history_bars": profile.history_bars,
            "lookback_bars": profile.health.lookback_bars,
            "train_bars": profile.backtest.train_bars,
            "test_bars": profile.backtest.test_bars,
            "step_bars": profile.backtest.step_bars,
            "commission_bps": profile.backtest.commission_bps,
            "slippage_bps": profile.backtest.slippage_bps,
        }
        out.update({k: v for k, v in explicit.items() if v is not None})
        return out


def _freeze(opts: dict[str, object]) -> tuple[tuple[str, object], ...]:
    return tuple(sorted((k, _hashable(v)) for k, v in opts.items()))


def _hashable(v: object) -> object:
    if isinstance(v, dict):
        return _freeze(v)
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v


def _thaw(v: object) -> object:
    if isinstance(v, tuple) and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return {k: _thaw(x) for k, x in v}
    return v


@functools.lru_cache(maxsize=16)
def _provider(name: str, options: tuple[tuple[str, object], ...]) -> Provider:
    """One provider instance per (name, options) in a process, so caches are shared."""
    return get_provider(name, {k: _thaw(v) for k, v in options})
