"""Meta-returns: sleeve streams and their alignment onto the coarser calendar (SPEC §6.1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portflow import clock
from portflow.errors import DataError, HealthGateError
from portflow.meta.returns import (
    Stream,
    align,
    in_sample_stream,
    meta_stream,
    validation_stream,
)

START, END = pd.Timestamp("2026-01-05", tz="UTC"), pd.Timestamp("2026-04-30", tz="UTC")


def _stream(calendar: str, seed: int, start: pd.Timestamp = START,
            end: pd.Timestamp = END) -> Stream:
    idx = clock.sessions(calendar, start, end)
    r = np.random.default_rng(seed).normal(0.0, 0.02, len(idx))
    return Stream(pd.Series(r, index=idx), calendar, "in_sample", True)


def test_24_7_compounds_onto_xnys_days_never_dropping_a_weekend() -> None:
    crypto, eq = _stream("24/7", 1), _stream("XNYS", 2)
    mr, cal = align({"crypto": crypto, "equities": eq})
    assert cal == "XNYS" and list(mr.columns) == ["crypto", "equities"]
    assert mr.index.isin(clock.sessions("XNYS", START, END)).all()
    # the XNYS sleeve keeps its own returns exactly
    assert (mr["equities"] == eq.returns.reindex(mr.index)).all()
    # Tuesday 2026-01-20 follows the MLK holiday: Sat, Sun, Mon and Tue compound into it
    c = crypto.returns
    days = pd.date_range("2026-01-17", "2026-01-20", tz="UTC")
    assert mr.loc["2026-01-20", "crypto"] == pytest.approx(np.prod(1 + c[days]) - 1, abs=1e-15)
    # every crypto day after the grid's first day is compounded in: the growth is kept whole
    kept = c[(c.index > clock.sessions("XNYS", START, END)[0]) & (c.index <= mr.index[-1])]
    assert np.prod(1 + mr["crypto"]) == pytest.approx(np.prod(1 + kept), rel=1e-12)


def test_same_calendar_streams_align_exactly_on_their_overlap() -> None:
    a = _stream("24/7", 3)
    b = _stream("24/7", 4, start=START + pd.Timedelta(days=10))
    mr, cal = align({"a": a, "b": b})
    assert cal == "24/7" and mr.index[0] == b.returns.index[0]
    assert (mr["a"] == a.returns.reindex(mr.index)).all()
    assert (mr["b"] == b.returns.reindex(mr.index)).all()


def test_a_stream_with_a_missing_bar_is_refused_not_zero_filled() -> None:
    gappy = _stream("XNYS", 5)
    gappy = Stream(gappy.returns.drop(gappy.returns.index[30]), "XNYS", "validation", False)
    with pytest.raises(DataError, match=r"sleeve 'eq'.*misses 1 bar.*never zero-fill"):
        align({"eq": gappy, "crypto": _stream("24/7", 6)})


def test_too_little_overlap_fails_the_gate() -> None:
    late = _stream("24/7", 7, start=END - pd.Timedelta(days=5))
    with pytest.raises(HealthGateError, match="overlap on 6 24/7 bars, fewer than 20"):
        align({"a": _stream("24/7", 8), "b": late})


def test_in_sample_stream_holds_shorts_in_synthetic_space() -> None:
    idx = clock.sessions("24/7", START, START + pd.Timedelta(days=4))
    syn = pd.DataFrame({"X:LONG": [0.01, 0.02, -0.01, 0.0, 0.03],
                        "Y:SHORT": [0.05, -0.02, 0.01, 0.02, -0.01]}, index=idx)
    w = pd.DataFrame({"method": ["hrp", "hrp", "min_var"], "symbol": ["X", "Y", "X"],
                      "atom": ["X:LONG", "Y:SHORT", "X:LONG"],
                      "direction": ["LONG", "SHORT", "LONG"], "weight": [0.6, -0.4, 1.0]})
    s = in_sample_stream(syn, w, "hrp", "24/7", "runs/m/sleeves/x")
    want = 0.6 * syn["X:LONG"] + 0.4 * syn["Y:SHORT"]
    assert s.in_sample and s.source == "in_sample"
    assert np.allclose(s.returns.to_numpy(), want.to_numpy(), atol=1e-16)
    with pytest.raises(DataError, match="no rows for the primary method 'risk_parity'"):
        in_sample_stream(syn, w, "risk_parity", "24/7", "runs/m/sleeves/x")


def test_validation_stream_takes_the_primary_column_out_of_sample() -> None:
    idx = clock.sessions("XNYS", START, START + pd.Timedelta(days=10))
    v = pd.DataFrame({"hrp": np.linspace(-0.01, 0.01, len(idx)), "benchmark": 0.0}, index=idx)
    s = validation_stream(v, "hrp", "XNYS", "runs/m/sleeves/eq")
    assert not s.in_sample and s.source == "validation" and (s.returns == v["hrp"]).all()
    with pytest.raises(DataError, match="no column for the primary method 'min_var'"):
        validation_stream(v, "min_var", "XNYS", "runs/m/sleeves/eq")
    late = v.assign(hrp=v["hrp"].where(v.index >= idx[3]))  # its first window started later
    assert validation_stream(late, "hrp", "XNYS", "x").returns.index[0] == idx[3]
    holed = late.assign(hrp=late["hrp"].where(late.index != idx[5]))
    with pytest.raises(DataError, match="not finite on"):
        validation_stream(holed, "hrp", "XNYS", "x")


def test_a_nested_meta_contributes_its_weighted_portfolio() -> None:
    mr, cal = align({"a": _stream("24/7", 9), "b": _stream("24/7", 10)})
    s = meta_stream(mr, pd.Series({"a": 0.25, "b": 0.75}), cal, True)
    assert s.source == "meta" and s.in_sample
    assert np.allclose(s.returns, 0.25 * mr["a"] + 0.75 * mr["b"], atol=1e-17)
