"""Walk-forward validation on in-memory point-in-time views (no files): no look-ahead, cost
arithmetic, stitching, metrics recomputed independently, and the vectorbt replay."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.alpha.views import AS_OF, make_settings, make_view, prices

from portflow import clock
from portflow.alpha import validate, vbt_check
from portflow.alpha.settings import SleeveSettings
from portflow.alpha.validate import BENCHMARK, Decision, Holding, Window
from portflow.alpha.view import SleeveView
from portflow.data.candidates import Direction


@pytest.fixture(scope="module")
def long_run() -> tuple[SleeveView, SleeveSettings, validate.Validation]:
    view, settings = make_view(), make_settings()
    return view, settings, validate.walk_forward(view, settings)


def test_windows_tile_the_out_of_sample_period(long_run: Any) -> None:
    _, settings, res = long_run
    idx = res.returns.index
    assert list(res.returns.columns) == [*settings.optimization.methods, BENCHMARK]
    assert idx.name == "timestamp" and str(idx.tz) == "UTC" and idx.is_unique
    for method, g in res.windows.groupby("method"):
        per = g.groupby("window").agg(start=("test_start", "first"), end=("test_end", "first"),
                                      reb=("rebalance_at", "first")).sort_index()
        assert (per["reb"] < per["start"]).all()
        assert per["start"].iloc[0] == idx[0] and per["end"].iloc[-1] == idx[-1]
        # contiguous and non-overlapping: each window starts on the bar after the last ended
        pos = {t: i for i, t in enumerate(idx)}
        for (_, a), (_, b) in zip(per.iloc[:-1].iterrows(), per.iloc[1:].iterrows(), strict=True):
            assert pos[b["start"]] == pos[a["end"]] + 1 and b["reb"] == a["end"]
        covered = sum(pos[e] - pos[s] + 1 for s, e in zip(per["start"], per["end"], strict=True))
        assert covered == len(idx), method
    assert idx[-1] == clock.last_closed_bar("24/7", AS_OF)
    ok = res.windows[res.windows["status"] == "ok"]
    gross = ok.groupby(["method", "window"])["weight"].apply(lambda w: w.abs().sum())
    assert np.allclose(gross, 1.0, atol=1e-9)


def test_costs_are_turnover_times_the_rate(long_run: Any) -> None:
    view, settings, res = long_run
    w = res.windows
    assert np.allclose(w["cost"], w["turnover"] * settings.backtest.cost_rate, rtol=0, atol=1e-15)
    first = w[w["window"] == w["window"].min()]
    assert np.allclose(first["turnover"], 1.0)  # the first window trades from cash
    # a free replay of the same decisions: the paid book pays the first window's cost out of
    # equity at the trade, then holds the same positions scaled by (1 - cost)
    dates = validate.bar_dates(view, settings.calendar)
    rets = validate.physical_returns(view, dates)
    oos = res.out_of_sample
    free = validate.simulate("hrp", oos, rets, dates, 0.0).returns
    paid = res.returns["hrp"].to_numpy()
    rate = settings.backtest.cost_rate
    assert 1 + paid[0] == pytest.approx((1 - rate) * (1 + free[0]), abs=1e-15)
    np.testing.assert_allclose(paid[1:oos[0].window.test_end - oos[0].window.test_start + 1],
                               free[1:oos[0].window.test_end - oos[0].window.test_start + 1],
                               rtol=0, atol=1e-15)


def _one_window(direction: str, weight: float, n: int = 30) -> tuple[list[Decision], pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(9)
    idx = pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC", name="timestamp")
    r = rng.normal(0.002, 0.04, n)
    r[0] = 0.0
    rets = pd.DataFrame({"X": r}, index=idx)
    w = Window(0, 0, 1, n - 1)
    h = (Holding("X:s:" + direction, "X", direction, weight),)
    d = Decision(w, {"m": h}, h)
    return [d], rets, idx.as_unit("ns").asi8


def test_zero_cost_buy_and_hold_earns_the_asset_and_a_short_loses_it() -> None:
    [d], rets, dates = _one_window("LONG", 1.0)
    asset = rets["X"].to_numpy()[1:]
    long = validate.simulate("m", [d], rets, dates, 0.0).returns
    np.testing.assert_allclose(long, asset, rtol=0, atol=1e-14)
    [d], rets, dates = _one_window("SHORT", -1.0)
    short = validate.simulate("m", [d], rets, dates, 0.0).returns
    # every bar the short loses what the asset gains (r < 100% here; the loss cap is below)
    assert (asset < 1).all()
    np.testing.assert_allclose(short, -asset, rtol=0, atol=1e-14)
    paid = validate.simulate("m", [d], rets, dates, 0.0014).returns
    # costs take exactly the traded notional x rate (1 x 14 bp) out of equity at the trade
    assert np.prod(1 + paid) == pytest.approx((1 - 0.0014) * np.prod(1 + short), abs=1e-12)
    # a short loses at most its notional in a bar
    spiked = rets.copy()
    spiked.iloc[5, 0] = 2.5
    assert validate.simulate("m", [d], spiked, dates, 0.0).returns[4] == pytest.approx(-1.0)


def test_metrics_match_an_independent_recomputation(long_run: Any) -> None:
    for calendar, periods in (("24/7", 365), ("XNYS", 252)):
        if calendar == "24/7":
            _, settings, res = long_run
        else:
            view, settings = make_view("XNYS", n_bars=480), make_settings("XNYS")
            res = validate.walk_forward(view, settings)
        assert settings.periods_per_year == periods
        m = res.metrics.set_index("method")
        for col in res.returns.columns:
            r = res.returns[col].to_numpy()
            wealth = np.cumprod(1 + r)
            peak = np.maximum.accumulate(np.r_[1.0, wealth])[1:]
            want = {
                "cagr": wealth[-1] ** (periods / len(r)) - 1,
                "ann_vol": r.std(ddof=1) * math.sqrt(periods),
                "sharpe": r.mean() / r.std(ddof=1) * math.sqrt(periods),
                "max_drawdown": (wealth / peak - 1).min(),
            }
            for k, v in want.items():
                assert m.loc[col, k] == pytest.approx(v, rel=1e-9), (calendar, col, k)
            assert m.loc[col, "calmar"] == pytest.approx(want["cagr"] / abs(want["max_drawdown"]))
            assert m.loc[col, "n_windows"] == res.windows.query("method == @col")["window"].nunique()


def test_no_look_ahead_changing_the_future_keeps_every_earlier_decision(long_run: Any) -> None:
    view, settings, res = long_run
    dates = validate.bar_dates(view, settings.calendar)
    cut = 330  # change every bar after this one
    t = pd.Timestamp(int(dates[cut]), tz="UTC")
    _, px = prices("24/7", 24, 520, 3)
    noise = np.exp(np.cumsum(np.random.default_rng(5).normal(0, 0.05, px.shape), axis=0))
    px2 = px.copy()
    px2[cut + 1:] *= noise[cut + 1:] / noise[cut]
    other = validate.walk_forward(make_view(closes=px2), settings)
    cols = ["method", "window", "rebalance_at", "test_start", "test_end", "atom", "weight",
            "turnover", "cost", "status"]
    a = res.windows[res.windows["rebalance_at"] <= t][cols].reset_index(drop=True)
    b = other.windows[other.windows["rebalance_at"] <= t][cols].reset_index(drop=True)
    assert len(a) > 50
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(res.returns[res.returns.index <= t],
                                  other.returns[other.returns.index <= t], check_exact=True)
    assert not res.windows.equals(other.windows)  # the future did change later decisions


def test_a_long_book_replays_exactly_in_vectorbt(long_run: Any) -> None:
    """Same target weights through vectorbt's from_orders: the equity curves agree to rounding
    without costs (vbt_check rules 1-3); with costs the documented conventions differ."""
    view, settings, res = long_run
    curves, rec = vbt_check.replay(view, settings, res)
    assert rec["exact_expected"]
    assert rec["without_costs_max_equity_rel_diff"] <= vbt_check.EXACT_TOLERANCE, rec
    assert rec["with_costs_max_equity_rel_diff"] < 1e-2
    assert list(curves.columns) == list(res.returns.columns)


def test_a_short_sleeve_holds_negative_weights_and_stays_fully_invested() -> None:
    view = make_view(seed=11, direction=Direction.SHORT)
    settings = make_settings()
    settings = replace(settings, backtest=replace(settings.backtest, eligibility=None))
    res = validate.walk_forward(view, settings)
    w = res.windows
    assert (w["weight"] <= 0).all() and (w["direction"] == "SHORT").all()
    gross = w.groupby(["method", "window"])["weight"].apply(lambda x: x.abs().sum())
    assert np.allclose(gross, 1.0, atol=1e-9)  # kept windows too: no cash, no leverage
    drift = res.drift.groupby("method")["drifted"].apply(lambda x: x.abs().sum())
    assert np.allclose(drift, 1.0, atol=1e-12)


def test_a_failed_window_keeps_its_holdings_and_says_why(long_run: Any) -> None:
    view, settings, _ = long_run
    strict = replace(settings, min_assets=20)  # most windows now fail the health gate
    res = validate.walk_forward(view, strict)
    kept = res.windows[res.windows["status"] == "kept"]
    assert len(kept) and kept["note"].str.contains("healthy|eligible").all()
    assert (kept["turnover"] == 0).all() and (kept["cost"] == 0).all()
