from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portflow import clock
from portflow.alpha.aggregate import CandidateBars, build_window, coarsest
from portflow.alpha.view import Bars
from portflow.errors import HealthGateError

AS_OF = pd.Timestamp("2026-06-30", tz="UTC")


def _bars(calendar: str, n: int, seed: int, end: pd.Timestamp | None = None) -> pd.DataFrame:
    end = end or clock.last_closed_bar(calendar, AS_OF)
    ts = clock.sessions(calendar, clock.start_for_bars(calendar, end, n), end)
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(ts))))
    return pd.DataFrame({"timestamp": ts, "symbol": f"S{seed}", "open": close,
                         "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": 1000.0})


def _cand(key: str, calendar: str, bars: pd.DataFrame | None, **kw) -> CandidateBars:  # type: ignore[no-untyped-def]
    return CandidateBars(key=key, symbol=key, direction="LONG", calendar=calendar,
                         source={} if bars is None else {key: Bars.from_frame(bars)}, **kw)


def test_mixed_calendars_compound_onto_the_coarser_one() -> None:
    crypto, equity = _bars("24/7", 500, 1), _bars("XNYS", 400, 2)
    win = build_window([_cand("c", "24/7", crypto), _cand("e", "XNYS", equity)], AS_OF,
                       lookback_bars=100, min_healthy_fraction=1.0, min_assets=2)
    assert coarsest(["24/7", "XNYS"]) == "XNYS" and win.calendar == "XNYS"
    assert len(win.returns) == 100
    # a Monday return of the crypto asset compounds Saturday, Sunday and Monday
    monday = next(d for d in win.returns.index if d.day_of_week == 0 and
                  d - pd.Timedelta(days=3) in win.returns.index)
    c = crypto.set_index("timestamp")["close"]
    daily = c.pct_change()
    expected = np.prod(1 + daily.loc[monday - pd.Timedelta(days=2):monday]) - 1
    assert win.returns.loc[monday, "c"] == pytest.approx(expected, rel=1e-12)
    assert not win.returns.isna().any().any()


def test_strict_health_names_every_reason() -> None:
    cal = "24/7"
    good = [_cand(f"g{i}", cal, _bars(cal, 400, i)) for i in range(8)]
    stale = _bars(cal, 400, 20, end=clock.last_closed_bar(cal, AS_OF) - pd.Timedelta(days=3))
    flat = _bars(cal, 400, 21)
    flat.loc[flat.index[-6:], "close"] = flat["close"].iloc[-7]
    gappy = _bars(cal, 400, 22).drop(index=[350, 351])
    young = _bars(cal, 120, 23)
    bad = [_cand("stale", cal, stale), _cand("flat", cal, flat), _cand("gappy", cal, gappy),
           _cand("young", cal, young), _cand("none", cal, None),
           _cand("toxic", cal, _bars(cal, 400, 24), phase1_status="toxic", phase1_reason="x")]
    win = build_window(good + bad, AS_OF, lookback_bars=365, min_healthy_fraction=0.5,
                       min_assets=5)
    reasons = {h["key"]: " ".join(h["reasons"]) for h in win.health}
    assert "stale" in reasons["stale"] and "flat" in reasons["flat"]
    assert "2 missing bar(s)" in reasons["gappy"] and "history starts" in reasons["young"]
    assert "no stored bars" in reasons["none"] and "toxic" in reasons["toxic"]
    assert sorted(win.healthy) == sorted(c.key for c in good)


def test_gate_fails_fast_with_the_numbers() -> None:
    cal = "24/7"
    cands = [_cand(f"g{i}", cal, _bars(cal, 400, i)) for i in range(3)]
    cands += [_cand(f"b{i}", cal, _bars(cal, 100, 10 + i)) for i in range(3)]
    with pytest.raises(HealthGateError, match=r"3 of 6 candidates healthy .*min_healthy_fraction"):
        build_window(cands, AS_OF, lookback_bars=365, min_healthy_fraction=0.6, min_assets=2)


def test_the_window_ignores_bars_after_the_clock() -> None:
    cal = "24/7"
    full = [_bars(cal, 500, i, end=pd.Timestamp("2026-07-20", tz="UTC")) for i in range(4)]
    cut = [b[b["timestamp"] <= clock.last_closed_bar(cal, AS_OF)] for b in full]
    kw = {"lookback_bars": 200, "min_healthy_fraction": 0.5, "min_assets": 2}
    a = build_window([_cand(str(i), cal, b) for i, b in enumerate(cut)], AS_OF, **kw)
    b = build_window([_cand(str(i), cal, b[b["timestamp"] <= clock.last_closed_bar(cal, AS_OF)])
                      for i, b in enumerate(full)], AS_OF, **kw)
    pd.testing.assert_frame_equal(a.returns, b.returns)
