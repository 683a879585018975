"""The command context: data dir, config, clock — resolved once from options and environment."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from portflow.config import Config, calendar_defaults, load_config
from portflow.config.models import SleeveProfile
from portflow.errors import ConfigError, suggest
from portflow.lakehouse.store import Lakehouse
from portflow.providers import get_provider
from portflow.providers.base import Provider


@dataclass
class Context:
    data_dir: Path
    config_dir: str | None
    as_of: pd.Timestamp
    debug: bool = False
    jobs: int | None = None  # CPU-bound fan-out inside one command (None: every core)

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

    def resolved(self, name: str) -> dict[str, Any]:
        """A profile's resolved configuration (SPEC §4 run.json `config`): every value a run
        uses, the calendar-derived defaults filled in (never `null` for a derived value), the
        sleeve's `calendar` and `periods_per_year`, scanners inlined; a meta's sleeves nested.
        `profiles show` prints exactly this."""
        out = self.config.resolved(name)
        prof = self.config.profile(name)
        if isinstance(prof, SleeveProfile):
            from portflow.alpha.select import DEFAULT_WEIGHTS
            from portflow.executors import default_jobs

            _fill_calendar_defaults(out, self.calendar_of(prof), self.sleeve_settings(prof))
            unknown = sorted(set(prof.selection.weights or {}) - set(DEFAULT_WEIGHTS))
            if unknown:
                raise ConfigError(
                    f"{self.config.config_dir / 'manifest.yaml'}: profiles.{name}.selection."
                    f"weights.{unknown[0]}: unknown feature{suggest(unknown[0], DEFAULT_WEIGHTS)}"
                    f" (features: {', '.join(DEFAULT_WEIGHTS)})"
                )
            out["selection"]["weights"] = {
                k: float((prof.selection.weights or {}).get(k, w)) for k, (w, _) in
                DEFAULT_WEIGHTS.items()
            }
            if out["ingest"]["jobs"] is None:
                out["ingest"]["jobs"] = default_jobs()
        else:
            out["sleeve_configs"] = {r.id: self.resolved(r.target) for r in prof.sleeves}
        return out


_DERIVED = {
    ("history_bars",): "history_bars",
    ("health", "lookback_bars"): "lookback_bars",
    ("backtest", "train_bars"): "train_bars",
    ("backtest", "test_bars"): "test_bars",
    ("backtest", "step_bars"): "step_bars",
    ("backtest", "commission_bps"): "commission_bps",
    ("backtest", "slippage_bps"): "slippage_bps",
}


def _fill_calendar_defaults(out: dict[str, Any], calendar: str, values: dict[str, float]) -> None:
    for path, key in _DERIVED.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = copy.copy(values[key])
    out["calendar"] = calendar
    out["periods_per_year"] = int(values["periods_per_year"])


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
