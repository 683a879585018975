"""Meta-returns (SPEC §7.2): one return stream per sleeve, aligned by calendar.

Streams:

1. A leaf sleeve contributes the out-of-sample stream of its profile's `primary_method`: the
   column of its `validation/returns.parquet` (stitched walk-forward returns, net of costs).
   When validation was skipped or is not available, it contributes the in-sample portfolio
   return of the primary method's weights on its optimiser window: Σ_atom w_atom · R_syn,atom
   over `synthetic_returns.parquet`, with w_atom the weight in synthetic space (a SHORT atom's
   |weight|: its synthetic return already carries the short) — flagged ``in_sample``.
2. A nested meta contributes its own meta-portfolio's stream: its aligned meta-returns times
   its sleeve weights (constant weights, rebalanced every bar), on its aligned calendar;
   in-sample when any of its sleeves' streams is.

Alignment (:func:`align`) reuses Phase 2's aggregation rule (SPEC §6.1,
:mod:`portflow.alpha.aggregate` step 3):

1. Each stream must be complete on its own calendar between its first and last bar (a missing
   bar would be a silently zero-filled day): otherwise ``DataError`` naming the sleeve.
2. The target calendar is the *coarsest* of the streams' calendars
   (:func:`portflow.alpha.aggregate.coarsest`, e.g. XNYS when XNYS and 24/7 mix).
3. The grid: the target calendar's bars from the latest stream start (the bar before a
   stream's first return, where its wealth is 1) to the earliest stream end, so every stream
   is known over every interval.
4. Each stream's return over a grid interval (t_{k−1}, t_k] is its own returns compounded over
   the interval: Π(1 + r) − 1 (exactly r when the interval holds one bar) — crypto weekend
   days are compounded into Monday's equity return, never dropped or zero-filled. An interval
   holding none of a stream's bars (another exchange's holiday) is 0: nothing traded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from portflow import clock
from portflow.alpha.aggregate import coarsest
from portflow.errors import DataError, HealthGateError

MIN_META_ROWS = 20


@dataclass(frozen=True)
class Stream:
    """One sleeve's returns. returns: Series, index UTC bar dates (sorted, unique), simple
    returns per bar of `calendar`; source: ``validation`` (out of sample), ``in_sample`` or
    ``meta`` (a nested meta's portfolio)."""

    returns: pd.Series
    calendar: str
    source: str
    in_sample: bool

    def summary(self) -> dict[str, object]:
        idx = self.returns.index
        return {"source": self.source, "in_sample": self.in_sample, "calendar": self.calendar,
                "bars": len(idx), "first": f"{idx[0]:%Y-%m-%d}" if len(idx) else None,
                "last": f"{idx[-1]:%Y-%m-%d}" if len(idx) else None}


def validation_stream(returns: pd.DataFrame, method: str, calendar: str, where: str) -> Stream:
    """Stream 1, out of sample: column `method` of a sleeve's validation/returns.parquet."""
    if method not in returns.columns:
        raise DataError(
            f"{where}: validation/returns.parquet has no column for the primary method"
            f" '{method}' (columns: {', '.join(map(str, returns.columns))}); re-run port-test"
        )
    col = returns[method]
    # A method's out-of-sample period starts at its first window with targets: the rows
    # before it (and after its last) are no returns, not zero returns. A gap inside stays an
    # error (_clean).
    have = col.notna().to_numpy()
    if not have.any():
        raise DataError(f"{where}: validation/returns.parquet has no '{method}' returns")
    first, last = int(have.argmax()), len(have) - int(have[::-1].argmax())
    return Stream(_clean(col.iloc[first:last], where), calendar, "validation", False)


def in_sample_stream(synthetic: pd.DataFrame, weights: pd.DataFrame, method: str,
                     calendar: str, where: str) -> Stream:
    """Stream 1, in sample. synthetic: index UTC dates, columns atom ids; weights: a sleeve's
    weights.csv (signed physical weights, one row per method and atom)."""
    w = weights[weights["method"] == method]
    if w.empty:
        raise DataError(f"{where}: weights.csv has no rows for the primary method '{method}'")
    missing = sorted(set(w["atom"]) - set(synthetic.columns))
    if missing:
        raise DataError(f"{where}: atoms {missing[:3]} of weights.csv are not in"
                        " synthetic_returns.parquet; re-run port-pre-opt and port-optimize")
    sign = np.where(w["direction"].to_numpy() == "SHORT", -1.0, 1.0)
    w_syn = w["weight"].to_numpy(dtype=np.float64) * sign
    port = synthetic[list(w["atom"])].to_numpy(dtype=np.float64) @ w_syn
    return Stream(_clean(pd.Series(port, index=synthetic.index), where), calendar, "in_sample",
                  True)


def meta_stream(meta_returns: pd.DataFrame, weights: pd.Series, calendar: str,
                in_sample: bool) -> Stream:
    """Stream 2: a nested meta's portfolio. weights: Series indexed by its sleeve ids."""
    port = meta_returns[list(weights.index)].to_numpy(dtype=np.float64) @ weights.to_numpy()
    return Stream(pd.Series(port, index=meta_returns.index), calendar, "meta", in_sample)


def _clean(s: pd.Series, where: str) -> pd.Series:
    s = s.astype(np.float64)
    idx = pd.DatetimeIndex(s.index)
    s.index = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    s = s.sort_index()
    if s.index.has_duplicates:
        raise DataError(f"{where}: the return stream repeats dates")
    if not np.isfinite(s.to_numpy()).all():
        bad = s.index[~np.isfinite(s.to_numpy())][0]
        raise DataError(f"{where}: the return stream is not finite on {bad:%Y-%m-%d}")
    return s


def _bar_before(calendar: str, day: pd.Timestamp) -> pd.Timestamp:
    prev = clock.sessions(calendar, day - pd.Timedelta(days=15), day - pd.Timedelta(days=1))
    if not len(prev):
        raise DataError(f"no {calendar} bar in the 15 days before {day:%Y-%m-%d}")
    return prev[-1]


def align(streams: Mapping[str, Stream]) -> tuple[pd.DataFrame, str]:
    """Alignment steps 1-4 (module docstring). Returns (meta_returns, calendar): index UTC
    dates of the coarsest calendar, one column per stream (in the mapping's order).

    Raises DataError for an incomplete stream, HealthGateError when the streams overlap on
    fewer than MIN_META_ROWS intervals (too little to estimate a covariance).
    """
    if not streams:
        raise ValueError("align needs at least one stream")
    starts, ends = [], []
    for name, s in streams.items():
        idx = pd.DatetimeIndex(s.returns.index)
        if not len(idx):
            raise HealthGateError(f"sleeve '{name}': empty return stream")
        own = clock.sessions(s.calendar, idx[0], idx[-1])
        if len(own) != len(idx) or not np.array_equal(own.as_unit("ns").asi8, idx.as_unit("ns").asi8):
            gap = own.difference(idx)
            first = f", first {gap[0]:%Y-%m-%d}" if len(gap) else ""
            raise DataError(
                f"sleeve '{name}': its {s.source} return stream misses {len(gap)} bar(s) of"
                f" its {s.calendar} calendar{first}; meta-returns never zero-fill a day"
            )
        starts.append(_bar_before(s.calendar, idx[0]))
        ends.append(idx[-1])
    calendar = coarsest([s.calendar for s in streams.values()])
    grid = clock.sessions(calendar, max(starts), min(ends))
    if len(grid) - 1 < MIN_META_ROWS:
        spans = ", ".join(f"{n} {s.returns.index[0]:%Y-%m-%d}..{s.returns.index[-1]:%Y-%m-%d}"
                          for n, s in streams.items())
        raise HealthGateError(
            f"the sleeves' return streams overlap on {max(len(grid) - 1, 0)} {calendar} bars,"
            f" fewer than {MIN_META_ROWS} ({spans}); pin the sleeves to one data run"
        )
    g = grid.as_unit("ns").asi8
    cols = {}
    for name, s in streams.items():
        ts = pd.DatetimeIndex(s.returns.index).as_unit("ns").asi8
        r = s.returns.to_numpy(dtype=np.float64)
        cut = np.searchsorted(ts, g, side="right")
        out = np.empty(len(g) - 1)
        for k in range(1, len(g)):
            lo, hi = cut[k - 1], cut[k]
            out[k - 1] = r[lo] if hi - lo == 1 else float(np.prod(1.0 + r[lo:hi])) - 1.0
        cols[name] = out
    return pd.DataFrame(cols, index=grid[1:].rename("timestamp")), calendar
