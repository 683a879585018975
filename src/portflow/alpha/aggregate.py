"""Aggregation + Strict Health (SPEC §6.1): the returns window of a sleeve, point in time.

A pure function of the candidates' stored bars (already loaded, each on its own calendar)
and the window end; the runner loads the files, the walk-forward validation calls the same
code with bars truncated at each rebalance.

1. The window is defined on the sleeve's *coarsest* calendar (the one with the fewest bars a
   year, e.g. XNYS when crypto and equities mix): its last `lookback_bars + 1` bars ending at
   the last closed bar of that calendar at the clock.
2. Strict Health, per candidate, on the candidate's own calendar and bars <= the clock:
   not toxic (Phase 1 health), bars stored, last bar = its own last closed bar (else stale),
   not flat (last 5 closes identical), history reaching the window start, and no missing bar
   of its own calendar inside the window. Each failure is a reason; a candidate is healthy
   with no reasons.
3. Returns: closes sampled as of each window bar (the last close at or before it), then simple
   returns. On a candidate's own calendar that is its daily return; on a coarser calendar it
   is the compounded return over the interval — never dropped days, never zero-filled days.
4. Gate: when the healthy share is below `min_healthy_fraction` or fewer than `min_assets`
   remain, `HealthGateError` (exit 3) with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from portflow import clock
from portflow.errors import HealthGateError

FLAT_BARS = 5
LIQUIDITY_BARS = 20


@dataclass(frozen=True)
class CandidateBars:
    """One candidate's stored daily bars (SPEC columns), on its own calendar."""

    key: str
    symbol: str
    direction: str
    calendar: str
    bars: pd.DataFrame | None
    phase1_status: str | None = None
    phase1_reason: str | None = None


@dataclass
class Window:
    """The aggregation result. `returns`: index UTC window dates (lookback_bars rows), columns
    healthy candidate keys, simple returns. `closes`: the sampled closes (one more row)."""

    returns: pd.DataFrame
    closes: pd.DataFrame
    health: list[dict[str, Any]]
    calendar: str
    window_end: pd.Timestamp
    liquidity: dict[str, float] = field(default_factory=dict)

    @property
    def healthy(self) -> list[str]:
        return list(self.returns.columns)


def coarsest(calendars: list[str]) -> str:
    """The calendar with the fewest bars per year (24/7 is the finest)."""
    uniq = sorted(set(calendars))
    if len(uniq) == 1:
        return uniq[0]
    year = (pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC"))
    return min(uniq, key=lambda c: (len(clock.sessions(c, *year)), c))


def window_index(calendar: str, as_of: pd.Timestamp, lookback_bars: int) -> pd.DatetimeIndex:
    """Step 1: the lookback_bars + 1 bar dates ending at the last closed bar."""
    end = clock.last_closed_bar(calendar, as_of)
    start = clock.start_for_bars(calendar, end, lookback_bars + 1)
    idx = clock.sessions(calendar, start, end)
    return idx[-(lookback_bars + 1):]


def _strict_health(c: CandidateBars, as_of: pd.Timestamp, span: pd.DatetimeIndex) -> list[str]:
    """Step 2 for one candidate: every reason it is unhealthy (empty = healthy)."""
    if c.phase1_status in ("toxic", "unreadable"):
        return [f"{c.phase1_status} in Phase 1: {c.phase1_reason}"]
    if c.bars is None or c.bars.empty:
        return ["no stored bars in the lakehouse (not ingested, or quarantined)"]
    own_end = clock.last_closed_bar(c.calendar, as_of)
    bars = c.bars[c.bars["timestamp"] <= own_end]
    reasons = []
    if bars.empty:
        return [f"no bar on or before {own_end:%Y-%m-%d}"]
    ts = pd.DatetimeIndex(bars["timestamp"])
    if ts[-1] < own_end:
        reasons.append(f"stale: last bar {ts[-1]:%Y-%m-%d}, last closed bar {own_end:%Y-%m-%d}")
    close = bars["close"].to_numpy(float)
    if len(close) >= FLAT_BARS and np.all(close[-FLAT_BARS:] == close[-1]):
        reasons.append(f"flat: last {FLAT_BARS} closes identical at {close[-1]:g}")
    if ts[0] > span[0]:
        reasons.append(
            f"history starts {ts[0]:%Y-%m-%d}; the window needs bars from {span[0]:%Y-%m-%d}"
        )
    own = clock.sessions(c.calendar, max(span[0], ts[0]), min(span[-1], own_end))
    missing = own.difference(ts)
    if len(missing):
        reasons.append(
            f"{len(missing)} missing bar(s) in the window on the {c.calendar} calendar,"
            f" first {missing[0]:%Y-%m-%d}"
        )
    return reasons


def build_window(
    candidates: list[CandidateBars],
    as_of: pd.Timestamp,
    lookback_bars: int,
    min_healthy_fraction: float,
    min_assets: int,
) -> Window:
    """Steps 1-4. Raises HealthGateError (with `.window` attached) when the gate fails."""
    if not candidates:
        raise HealthGateError("no candidates to aggregate: the data run found none for this sleeve")
    cal = coarsest([c.calendar for c in candidates])
    index = window_index(cal, as_of, lookback_bars)
    health: list[dict[str, Any]] = []
    closes: dict[str, np.ndarray] = {}
    liquidity: dict[str, float] = {}
    for c in sorted(candidates, key=lambda c: c.key):
        reasons = _strict_health(c, as_of, index)
        rec: dict[str, Any] = {"key": c.key, "symbol": c.symbol, "direction": c.direction,
                               "calendar": c.calendar, "healthy": not reasons,
                               "reasons": reasons}
        if not reasons:
            assert c.bars is not None
            bars = c.bars[c.bars["timestamp"] <= index[-1]]
            ts = bars["timestamp"].to_numpy(dtype="datetime64[ns]")
            pos = np.searchsorted(ts, index.to_numpy(dtype="datetime64[ns]"), side="right") - 1
            closes[c.key] = bars["close"].to_numpy(float)[pos]
            vt = (bars["close"] * bars["volume"]).to_numpy(float)[-LIQUIDITY_BARS:]
            liquidity[c.key] = float(np.median(vt))
            rec["last_bar"] = f"{pd.Timestamp(ts[-1]):%Y-%m-%d}"
        health.append(rec)
    close_df = pd.DataFrame(closes, index=index)
    returns = close_df.pct_change().iloc[1:]
    window = Window(returns=returns, closes=close_df, health=health, calendar=cal,
                    window_end=index[-1], liquidity=liquidity)
    n, ok = len(candidates), len(closes)
    share = ok / n
    if share < min_healthy_fraction or ok < min_assets:
        why = []
        if share < min_healthy_fraction:
            why.append(f"healthy share {share:.0%} < min_healthy_fraction {min_healthy_fraction:g}")
        if ok < min_assets:
            why.append(f"{ok} healthy < min_assets {min_assets}")
        err = HealthGateError(
            f"strict health failed: {ok} of {n} candidates healthy ({'; '.join(why)})"
        )
        err.window = window  # type: ignore[attr-defined]
        raise err
    return window
