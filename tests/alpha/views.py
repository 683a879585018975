"""Point-in-time views built in memory for the Phase-2 tests (no files): a small factor market
with trends, its bars, ADX and ratings from the ratings engine, metadata known from the start."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from portflow import clock
from portflow.alpha.settings import SleeveSettings
from portflow.alpha.view import (
    Bars,
    Exclusion,
    MetaVersions,
    RatingsHistory,
    SleeveCandidate,
    SleeveView,
)
from portflow.context import Context
from portflow.data.candidates import Direction
from portflow.ratings.panel import frames_panel, rate

AS_OF = pd.Timestamp("2026-06-30", tz="UTC")


def prices(calendar: str, n_symbols: int, n_bars: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bar dates (int64 ns) and closes (n_bars, n_symbols) of a small factor market with
    persistent trends, so selection has signal and clusters have structure."""
    end = clock.last_closed_bar(calendar, AS_OF)
    dates = clock.sessions(calendar, clock.start_for_bars(calendar, end, n_bars), end)
    dates = dates.as_unit("ns").asi8
    rng = np.random.default_rng(seed)
    sectors = rng.integers(0, 4, n_symbols)
    market = rng.standard_t(5, n_bars) * 0.012
    factor = rng.standard_t(5, (n_bars, 4)) * 0.01
    trend = np.repeat(rng.normal(0, 0.0015, (n_bars // 60 + 1, n_symbols)), 60, axis=0)[:n_bars]
    r = market[:, None] + factor[:, sectors] + trend + rng.normal(0, 0.015, (n_bars, n_symbols))
    return dates, 50.0 * np.exp(np.cumsum(r, axis=0))


def make_view(calendar: str = "24/7", n_symbols: int = 24, n_bars: int = 520, seed: int = 3,
              direction: Direction = Direction.LONG, closes: np.ndarray | None = None,
              damage: Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
              exclusions: Mapping[str, Exclusion] | None = None,
              panel: bool = True) -> SleeveView:
    """A complete point-in-time view built in memory: bars, ADX and ratings from the ratings
    engine over each symbol's own bars (as feature-backfill computes them), metadata known from
    the start. `damage(symbol, columns)` may drop or alter a symbol's bars first; `panel`
    builds the view's Panel as read_view does."""
    dates, px = prices(calendar, n_symbols, n_bars, seed)
    if closes is not None:
        px = closes
    rng = np.random.default_rng(seed + 1)
    wick = 1.0 + np.abs(rng.normal(0, 0.01, px.shape))
    symbols = [f"S{j:03d}" for j in range(n_symbols)]
    frames = []
    for j, s in enumerate(symbols):
        f = {"ts": dates, "open": px[:, j] / wick[:, j] ** 0.5, "high": px[:, j] * wick[:, j],
             "low": px[:, j] / wick[:, j], "close": px[:, j],
             "volume": np.full(n_bars, 5e7) / px[:, j]}
        frames.append(damage(s, f) if damage is not None else f)
    table, counts = frames_panel(frames)
    ratings = rate(table)
    bars, hist, meta = {}, {}, {}
    for j, (s, f) in enumerate(zip(symbols, frames, strict=True)):
        n = int(counts[j])
        bars[s] = Bars(ts=np.asarray(f["ts"]), open=f["open"], high=f["high"], low=f["low"],
                       close=f["close"], volume=f["volume"], adx=ratings.adx[:n, j].copy())
        hist[s] = RatingsHistory(np.asarray(f["ts"]), {
            k: getattr(ratings, k)[:n, j].copy()
            for k in ("recommend_all", "recommend_ma", "recommend_other")})
        meta[s] = MetaVersions(np.array([dates[0]]), np.array([0.01]), np.array([1.0]))
    cands = tuple(SleeveCandidate(f"{s}:{direction.value}", s, direction, "scan", calendar)
                  for s in symbols)
    view = SleeveView(AS_OF, cands, bars, hist, meta, dict(exclusions or {}))
    return view.with_panel() if panel else view


def make_settings(calendar: str = "24/7", **backtest: Any) -> SleeveSettings:
    profile = "crypto_long" if calendar == "24/7" else "equities_long"
    cfg = Context(data_dir=Path("unused"), config_dir=None, as_of=AS_OF).resolved(profile)
    cfg["health"].update(min_assets=5, min_healthy_fraction=0.5)
    cfg["selection"].update(min_winners=5, max_winners=10)
    cfg["backtest"].update(train_bars=150, test_bars=20, step_bars=20, **backtest)
    cfg["scanners"] = ["scan"]
    return SleeveSettings.from_config(cfg)
