"""Aggregation + Strict Health (SPEC §6.1): the returns window of a sleeve, point in time.

A pure function of the candidates' stored bars (numpy arrays of a :class:`view.Bars`, each on
its own calendar) and the window end; the point-in-time view supplies them, cut at the clock,
for production and for every walk-forward window alike.

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

:func:`window_from_panel` computes the same window from a view's :class:`Panel` (one calendar
for every candidate): a candidate with a bar on every session of the window and none off its
calendar, not flat and not excluded in Phase 1 is healthy by slicing; any other goes through
step 2 on its own bars, so
every reason is the same as :func:`build_window`'s (tested equal).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from portflow import clock
from portflow.alpha.view import Bars, Panel
from portflow.errors import HealthGateError

FLAT_BARS = 5
LIQUIDITY_BARS = 20


@dataclass(frozen=True)
class CandidateBars:
    """One candidate on its own calendar; `source` maps symbols to their stored daily bars
    (a view's, cut at its clock), read only when :attr:`bars` is (the panel path needs a
    candidate's own bars only when it is not plainly healthy)."""

    key: str
    symbol: str
    direction: str
    calendar: str
    source: Mapping[str, Bars]
    phase1_status: str | None = None
    phase1_reason: str | None = None

    @functools.cached_property
    def bars(self) -> Bars | None:
        """The stored bars (None: nothing stored)."""
        return self.source.get(self.symbol)


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
    return idx[-(lookback_bars + 1):].rename("timestamp")


def _day(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[D]"))


@dataclass(frozen=True)
class _Calendar:
    """What Strict Health needs of one calendar at the clock, computed once per window:
    its last closed bar and its sessions inside the window (both int64 UTC ns)."""

    end: int
    sessions: np.ndarray

    @classmethod
    def at(cls, calendar: str, as_of: pd.Timestamp, span: np.ndarray) -> _Calendar:
        end = clock.last_closed_bar(calendar, as_of).value
        return cls(end, clock.session_ns(calendar, int(span[0]), min(int(span[-1]), end)))


def _strict_health(c: CandidateBars, cal: _Calendar, span: np.ndarray) -> list[str]:
    """Step 2 for one candidate: every reason it is unhealthy (empty = healthy).
    span: the window's bar dates, int64 UTC ns; cal: the candidate's calendar at the clock."""
    if c.phase1_status == "toxic":
        return [f"toxic in Phase 1: {c.phase1_reason}"]
    if c.phase1_status is not None and c.phase1_status != "healthy":
        return [f"{c.phase1_status} in Phase 1: {c.phase1_reason}"]
    if c.bars is None or len(c.bars) == 0:
        return ["no stored bars in the lakehouse (not ingested, or quarantined)"]
    own_end = cal.end
    ts = c.bars.ts[: int(np.searchsorted(c.bars.ts, own_end, side="right"))]
    if ts.size == 0:
        return [f"no bar on or before {_day(own_end)}"]
    reasons = []
    if ts[-1] < own_end:
        reasons.append(f"stale: last bar {_day(ts[-1])}, last closed bar {_day(own_end)}")
    close = c.bars.close[: ts.size]
    if close.size >= FLAT_BARS and np.all(close[-FLAT_BARS:] == close[-1]):
        reasons.append(f"flat: last {FLAT_BARS} closes identical at {close[-1]:g}")
    if ts[0] > span[0]:
        reasons.append(f"history starts {_day(ts[0])}; the window needs bars from {_day(span[0])}")
    # the sessions of its own calendar from the later of the window start and its first bar
    own = cal.sessions[int(np.searchsorted(cal.sessions, ts[0], side="left")):]
    inside = ts[int(np.searchsorted(ts, own[0], side="left")):] if own.size else ts[:0]
    if own.size != inside.size or not np.array_equal(own, inside):
        missing = np.setdiff1d(own, ts, assume_unique=True)
        if missing.size:
            reasons.append(
                f"{missing.size} missing bar(s) in the window on the {c.calendar} calendar,"
                f" first {_day(missing[0])}"
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
    traded: dict[str, np.ndarray] = {}
    span = index.as_unit("ns").asi8
    cals = {cal: _Calendar.at(cal, as_of, span) for cal in {c.calendar for c in candidates}}
    for c in sorted(candidates, key=lambda c: c.key):
        reasons = _strict_health(c, cals[c.calendar], span)
        rec: dict[str, Any] = {"key": c.key, "symbol": c.symbol, "direction": c.direction,
                               "calendar": c.calendar, "healthy": not reasons,
                               "reasons": reasons}
        if not reasons:
            assert c.bars is not None
            n = int(np.searchsorted(c.bars.ts, span[-1], side="right"))
            ts = c.bars.ts[:n]
            pos = np.searchsorted(ts, span, side="right") - 1
            closes[c.key] = c.bars.close[:n][pos]
            traded[c.key] = c.bars.close[:n][-LIQUIDITY_BARS:] * c.bars.volume[:n][-LIQUIDITY_BARS:]
            rec["last_bar"] = _day(ts[-1])
        health.append(rec)
    # median value traded over the last LIQUIDITY_BARS bars, every healthy candidate at once
    if len({v.size for v in traded.values()}) == 1:
        medians = np.median(np.vstack(list(traded.values())), axis=1)
    else:  # a window shorter than LIQUIDITY_BARS over a young history
        medians = np.array([np.median(v) for v in traded.values()])
    keys = list(closes)
    close_mat = (np.column_stack([closes[k] for k in keys]) if keys
                 else np.empty((index.size, 0)))
    return _finish(close_mat, keys, medians, health, cal, index, len(candidates),
                   min_healthy_fraction, min_assets)


def _finish(close_mat: np.ndarray, keys: list[str], medians: np.ndarray,
            health: list[dict[str, Any]], cal: str, index: pd.DatetimeIndex, n: int,
            min_healthy_fraction: float, min_assets: int) -> Window:
    """Step 3's returns of the healthy columns and step 4's gate."""
    liquidity = {k: float(m) for k, m in zip(keys, medians, strict=True)}
    close_df = pd.DataFrame(close_mat, index=index, columns=keys)
    returns = pd.DataFrame(close_mat[1:] / close_mat[:-1] - 1.0, index=index[1:], columns=keys)
    window = Window(returns=returns, closes=close_df, health=health, calendar=cal,
                    window_end=index[-1], liquidity=liquidity)
    ok = len(keys)
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


def window_from_panel(
    candidates: list[CandidateBars],
    panel: Panel,
    as_of: pd.Timestamp,
    lookback_bars: int,
    min_healthy_fraction: float,
    min_assets: int,
) -> Window:
    """:func:`build_window` from a view's panel (module docstring); every candidate on the
    panel's calendar."""
    if not candidates:
        raise HealthGateError("no candidates to aggregate: the data run found none for this sleeve")
    cal = panel.calendar
    index = window_index(cal, as_of, lookback_bars)
    span = index.as_unit("ns").asi8
    i1 = panel.row(int(span[-1]))
    i0 = i1 - span.size + 1
    if (i0 < 0 or panel.dates[i1] != span[-1] or span.size < LIQUIDITY_BARS
            or any(c.calendar != cal for c in candidates)):
        return build_window(candidates, as_of, lookback_bars, min_healthy_fraction, min_assets)
    ordered = sorted(candidates, key=lambda c: c.key)
    cols = np.array([panel.col.get(c.symbol, -1) for c in ordered])
    known = cols >= 0
    c_ = np.where(known, cols, 0)
    full = known & panel.aligned[c_] & (panel.present[i1 + 1, c_] - panel.present[i0, c_]
                                        == span.size)
    last5 = panel.close[i1 - FLAT_BARS + 1:i1 + 1, c_]
    flat = np.all(last5 == last5[-1], axis=0)
    excluded = np.array([c.phase1_status is not None and c.phase1_status != "healthy"
                         for c in ordered])
    fast = full & ~flat & ~excluded
    cals = {cal: _Calendar.at(cal, as_of, span)}
    health: list[dict[str, Any]] = []
    columns, keys = [], []
    last_bar = _day(span[-1])
    slow_close, slow_traded = {}, {}
    for c, j, ok in zip(ordered, c_, fast, strict=True):
        rec: dict[str, Any] = {"key": c.key, "symbol": c.symbol, "direction": c.direction,
                               "calendar": c.calendar}
        if ok:
            rec.update(healthy=True, reasons=[], last_bar=last_bar)
            columns.append(j)
            keys.append(c.key)
        else:  # step 2 on its own bars: its exact reasons (or healthy after all)
            reasons = _strict_health(c, cals[cal], span)
            rec.update(healthy=not reasons, reasons=reasons)
            if not reasons:
                assert c.bars is not None
                n = int(np.searchsorted(c.bars.ts, span[-1], side="right"))
                pos = np.searchsorted(c.bars.ts[:n], span, side="right") - 1
                slow_close[c.key] = c.bars.close[:n][pos]
                slow_traded[c.key] = np.median(c.bars.close[:n][-LIQUIDITY_BARS:]
                                               * c.bars.volume[:n][-LIQUIDITY_BARS:])
                rec["last_bar"] = _day(c.bars.ts[n - 1])
                columns.append(-1)
                keys.append(c.key)
        health.append(rec)
    idx = np.array(columns, dtype=np.int64)
    close_mat = panel.close[i0:i1 + 1][:, np.maximum(idx, 0)]
    medians = np.median(panel.traded[i1 - LIQUIDITY_BARS + 1:i1 + 1][:, np.maximum(idx, 0)],
                        axis=0)
    for k, key in enumerate(keys):
        if idx[k] < 0:
            close_mat[:, k] = slow_close[key]
            medians[k] = slow_traded[key]
    return _finish(close_mat, keys, medians, health, cal, index, len(candidates),
                   min_healthy_fraction, min_assets)
