"""A vectorbt cross-check of the walk-forward simulator (`port-test --engine vectorbt`).

The target weights of every out-of-sample window are replayed through vectorbt's
``Portfolio.from_orders`` and its equity curve is compared with portflow's. Conventions:

1. Orders: at every rebalance bar, a target-percent order per symbol (signed: a short is a
   negative target; a symbol sold gets 0), executed at that bar's close (vectorbt's default
   price), with cash sharing across the sleeve (one portfolio) and ``call_seq="auto"`` (sells
   before buys); a window that kept its holdings sends no order. Targets are fractions of the
   equity before the trade, as in portflow.
2. Prices: the same closes; a missing bar holds the last price (a delisted symbol exits at its
   last clean price in both).
3. Without costs a long book is the same mechanics in both (trade at the rebalance close, hold
   shares through the test window, stitch): the equity curves must agree on every bar within
   ``EXACT_TOLERANCE`` — rounding, and vectorbt's skipping of orders below its size epsilon
   (an optimiser's weights of order 1e-9 are not traded there).
4. A short differs by construction: vectorbt holds a fixed number of shares short, portflow a
   short atom whose notional follows its value (the synthetic return −min(r, 1) the optimiser
   weighed, compounded bar by bar, loss capped at 100% of notional per bar). Over a test
   window the two part by the second-order effect of that rebalancing; the gap is reported
   (``without_costs_max_equity_rel_diff``), and the exact comparison applies to long books.
5. With costs they differ by construction too, so that comparison is reported, not asserted:
   portflow pays (commission + slippage) × turnover out of equity at the trade and stays fully
   invested, booking it in the first test bar's return (SPEC §6.7); vectorbt books the fee at
   the rebalance bar and never spends more cash than it has, so on a fully invested
   rebalance it shrinks the last buy by the fees already paid. Rebalance bars are skipped in
   that comparison (the fee's bar differs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from portflow.alpha.settings import SleeveSettings
from portflow.alpha.validate import (
    BENCHMARK,
    Decision,
    Validation,
    bar_dates,
    physical_returns,
    simulate_all,
    stitch,
)
from portflow.alpha.view import SleeveView
from portflow.errors import UsageError

EXACT_TOLERANCE = 1e-7
# Targets summing to 1 in floating point can ask vectorbt for a hair more cash than it holds;
# it then drops the last buy. Scaling them by 1 − 1e-12 avoids that, far below the tolerance.
_DUST = 1e-12


def closes(view: SleeveView, dates: np.ndarray) -> pd.DataFrame:
    """Closes of every candidate symbol on `dates`, the last price held over a missing bar
    (and the first one before it: such a day is never traded)."""
    idx = pd.DatetimeIndex(dates.view("datetime64[ns]")).tz_localize("UTC")
    out = {}
    for s in sorted({c.symbol for c in view.candidates}):
        b = view.bars.get(s)
        if b is None or not len(b):
            continue
        pos = np.searchsorted(b.ts, dates, side="right") - 1
        out[s] = np.where(pos >= 0, b.close[np.maximum(pos, 0)], b.close[0])
    return pd.DataFrame(out, index=idx)


def vectorbt_equity(close: pd.DataFrame, column: str, oos: Sequence[Decision],
                    dates: np.ndarray, rate: float) -> pd.Series:
    """vectorbt's equity (index `close.index`, starting at 1 before the first rebalance) for
    the targets of `column` (a method or BENCHMARK) in the windows `oos` (rule 1)."""
    try:
        import vectorbt as vbt
    except ImportError:
        raise UsageError(
            "port-test --engine vectorbt needs vectorbt: pip install 'portflow[vectorbt]'"
        ) from None
    size = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
    held: set[str] = set()
    for d in oos:
        new = d.benchmark if column == BENCHMARK else (d.targets or {}).get(column)
        if not new:
            continue
        row = dict.fromkeys(held, 0.0)
        for h in new:
            row[h.symbol] = row.get(h.symbol, 0.0) + h.weight * (1.0 - _DUST)
        when = close.index[d.window.rebalance]
        size.loc[when, list(row)] = list(row.values())
        held = {h.symbol for h in new}
    size = size.loc[:, size.notna().any()]
    # vectorbt ignores orders below ~1e-8 shares: rescale each price path to start at 100
    # (returns, and so the simulation, are unchanged) so a $100,000 coin's small adjustment
    # is not dropped
    prices = close[size.columns]
    prices = prices / prices.iloc[0] * 100.0
    pf = vbt.Portfolio.from_orders(
        prices, size=size, size_type="targetpercent", direction="both",
        group_by=True, cash_sharing=True, call_seq="auto", fees=rate, init_cash=1.0,
        freq="1D",
    )
    return pf.value()


def _ours(paths: Mapping[str, Any], index: pd.DatetimeIndex,
          oos: Sequence[Decision]) -> pd.DataFrame:
    return (1.0 + stitch(paths, index, oos)).cumprod()


def replay(view: SleeveView, settings: SleeveSettings,
           res: Validation) -> tuple[pd.DataFrame, dict[str, Any]]:
    """vectorbt's returns with the sleeve's costs (index the out-of-sample dates, one column
    per method and the benchmark) and the agreement record (rules 3-4)."""
    dates = bar_dates(view, settings.calendar)
    close = closes(view, dates)
    returns = physical_returns(view, dates)
    oos = res.out_of_sample
    columns = [*settings.optimization.methods, BENCHMARK]
    rate = settings.backtest.cost_rate
    zero = _ours(simulate_all(columns, oos, returns, dates, 0.0), returns.index, oos)
    ours = (1.0 + res.returns).cumprod()
    rebalances = set(res.windows["rebalance_at"])
    keep = ~ours.index.isin(list(rebalances))
    curves: dict[str, pd.Series] = {}
    exact: dict[str, float] = {}
    costly: dict[str, float] = {}
    for column in columns:
        free = vectorbt_equity(close, column, oos, dates, 0.0).reindex(zero.index)
        exact[column] = float((free / zero[column] - 1.0).abs().max())
        value = vectorbt_equity(close, column, oos, dates, rate).reindex(ours.index)
        costly[column] = float((value[keep] / ours[column][keep] - 1.0).abs().max())
        curves[column] = value.pct_change().fillna(value.iloc[0] - 1.0)
    long_only = bool((res.windows["weight"] >= 0).all())
    record = {
        "without_costs_max_equity_rel_diff": max(exact.values()),
        "without_costs_tolerance": EXACT_TOLERANCE,
        "exact_expected": long_only,
        "with_costs_max_equity_rel_diff": max(costly.values()),
        "per_method": {"without_costs": exact, "with_costs": costly},
        "conventions": "orders at the rebalance close, target percent of pre-trade equity,"
                       " cash sharing; without costs a long book must agree to rounding, shorts"
                       " part by vectorbt's fixed-share shorts vs portflow's synthetic short"
                       " atoms; with costs vectorbt books fees at the rebalance bar and never"
                       " spends more cash than it has (see portflow.alpha.vbt_check)",
    }
    return pd.DataFrame(curves, index=ours.index), record
