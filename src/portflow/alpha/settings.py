"""Resolved sleeve settings: the typed values one sleeve is produced with.

Built from a *resolved* configuration — the `config` a production run records in run.json
(:meth:`portflow.context.Context.resolved`: calendar defaults filled in) — never from the
config files directly, so re-running a step inside an existing run uses exactly the values the
run was created with (SPEC §6.5), and a walk-forward window or a meta sleeve sees the same
settings as the production steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from portflow.alpha.select import DEFAULT_WEIGHTS, SelectionParams
from portflow.providers.registry import lake_key


@dataclass(frozen=True)
class OptimizationSettings:
    """methods: the allocators to run, in order; risk_free: an annual rate (SPEC §6.5)."""

    methods: tuple[str, ...]
    primary_method: str
    max_weight: float
    cluster_cap: float
    cap_headroom: float
    covariance: str
    linkage: str
    risk_free: float


@dataclass(frozen=True)
class BacktestSettings:
    """Walk-forward windows in bars, trading costs in basis points of traded notional, and
    the eligibility filter per direction (a filter tree as data; None = everyone eligible)."""

    train_bars: int
    test_bars: int
    step_bars: int
    commission_bps: float
    slippage_bps: float
    eligibility: Mapping[str, Any] | None = None

    @property
    def cost_rate(self) -> float:
        """(commission + slippage) as a fraction of traded notional."""
        return (self.commission_bps + self.slippage_bps) / 1e4


@dataclass(frozen=True)
class SleeveSettings:
    """Everything a sleeve's production needs besides its data (SPEC §6)."""

    profile: str
    provider: str  # the lakehouse key of the bar provider (e.g. ccxt-binance)
    timeframe: str
    calendar: str
    periods_per_year: int
    scanners: tuple[str, ...]
    lookback_bars: int
    min_healthy_fraction: float
    min_assets: int
    selection: SelectionParams
    optimization: OptimizationSettings
    backtest: BacktestSettings

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SleeveSettings:
        """From a resolved sleeve configuration (run.json `config`)."""
        sel, opt, bt = cfg["selection"], cfg["optimization"], cfg["backtest"]
        weights = dict(DEFAULT_WEIGHTS)
        for name, w in (sel.get("weights") or {}).items():
            weights[name] = (float(w), DEFAULT_WEIGHTS[name][1])
        periods = int(cfg["periods_per_year"])
        return cls(
            profile=str(cfg["name"]),
            provider=lake_key(str(cfg["provider"]["name"]), cfg["provider"]),
            timeframe=str(cfg["timeframe"]),
            calendar=str(cfg["calendar"]),
            periods_per_year=periods,
            scanners=tuple(cfg["scanners"]),
            lookback_bars=int(cfg["health"]["lookback_bars"]),
            min_healthy_fraction=float(cfg["health"]["min_healthy_fraction"]),
            min_assets=int(cfg["health"]["min_assets"]),
            selection=SelectionParams(
                periods_per_year=periods, weights=weights, top_n=int(sel["top_n"]),
                cluster_threshold=float(sel["cluster_threshold"]),
                max_clusters=int(sel["max_clusters"]), entropy_max=float(sel["entropy_max"]),
                efficiency_min=float(sel["efficiency_min"]),
                kurtosis_max=float(sel["kurtosis_max"]), vol_max=float(sel["vol_max"]),
                friction_hurdle=float(sel["friction_hurdle"]),
                min_winners=int(sel["min_winners"]), max_winners=int(sel["max_winners"]),
            ),
            optimization=OptimizationSettings(
                methods=tuple(opt["methods"]), primary_method=str(opt["primary_method"]),
                max_weight=float(opt["max_weight"]), cluster_cap=float(opt["cluster_cap"]),
                cap_headroom=float(opt.get("cap_headroom", 1.5)),
                covariance=str(opt["covariance"]), linkage=str(opt["linkage"]),
                risk_free=float(opt["risk_free"]),
            ),
            backtest=BacktestSettings(
                train_bars=int(bt["train_bars"]), test_bars=int(bt["test_bars"]),
                step_bars=int(bt["step_bars"]), commission_bps=float(bt["commission_bps"]),
                slippage_bps=float(bt["slippage_bps"]),
                eligibility=bt.get("eligibility"),
            ),
        )
