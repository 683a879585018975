"""The ratings engine: vote rules, warm-up, exact ties, point-in-time, robustness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from portflow import ratings as r
from portflow.ratings import engine as eng

A = r.VOTE_ABSENT


def _prev(x: np.ndarray, k: int = 1) -> np.ndarray:
    return np.r_[np.full(k, np.nan), x[:-k]] if len(x) > k else np.full(len(x), np.nan)


def _vote(buy, sell, *needed) -> np.ndarray:
    out = np.where(buy, 1, np.where(sell, -1, 0)).astype(np.int8)
    avail = np.logical_and.reduce([np.isfinite(x) for x in needed])
    out[~avail] = A
    return out


def ref_votes(h, lo, c, v) -> np.ndarray:
    """SPEC §5 vote rules written with numpy over the public kernels: (26, T) int8."""
    votes = []
    for f in (r.sma, r.ema):
        for n in (10, 20, 30, 50, 100, 200):
            ma = f(c, n)
            votes.append(_vote(ma < c, ma > c, ma))
    for ma in (r.hma(c, 9), r.vwma(c, v, 20)):
        votes.append(_vote(ma < c, ma > c, ma))
    ich = r.ichimoku(h, lo)
    cv, bs, l1, l2 = ich.conversion, ich.base, ich.lead1_displaced, ich.lead2_displaced
    votes.append(
        _vote(
            (l1 > l2) & (bs > l1) & (cv > bs) & (c > cv),
            (l1 < l2) & (bs < l1) & (cv < bs) & (c < cv),
            cv,
            bs,
            l1,
            l2,
        )
    )
    rsi = r.rsi(c)
    votes.append(
        _vote((rsi < 30) & (rsi > _prev(rsi)), (rsi > 70) & (rsi < _prev(rsi)), rsi, _prev(rsi))
    )
    k, d = r.stoch(h, lo, c)
    votes.append(_vote((k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d), k, d))
    cci = r.cci(c)
    votes.append(
        _vote((cci < -100) & (cci > _prev(cci)), (cci > 100) & (cci < _prev(cci)), cci, _prev(cci))
    )
    plus, minus, adx = r.dmi(h, lo, c)
    up = (adx > 20) & (adx > _prev(adx))
    votes.append(_vote(up & (plus > minus), up & (plus < minus), adx, _prev(adx), plus, minus))
    ao = r.ao(h, lo)
    a1, a2 = _prev(ao), _prev(ao, 2)
    votes.append(
        _vote(
            ((ao > 0) & (a1 <= 0)) | ((ao > 0) & (a1 > 0) & (ao > a1) & (a2 > a1)),
            ((ao < 0) & (a1 >= 0)) | ((ao < 0) & (a1 < 0) & (ao < a1) & (a2 < a1)),
            ao,
            a1,
            a2,
        )
    )
    mom = r.mom(c)
    votes.append(_vote(mom > _prev(mom), mom < _prev(mom), mom, _prev(mom)))
    line, sig = r.macd(c)
    votes.append(_vote(line > sig, line < sig, line, sig))
    e50 = r.ema(c, 50)
    sk, sd = r.stoch_rsi(c)
    votes.append(
        _vote(
            (c < e50) & (sk < 20) & (sd < 20) & (sk > sd),
            (c > e50) & (sk > 80) & (sd > 80) & (sk < sd),
            sk,
            sd,
            e50,
        )
    )
    wr = r.williams_r(h, lo, c)
    votes.append(_vote((wr < -80) & (wr > _prev(wr)), (wr > -20) & (wr < _prev(wr)), wr, _prev(wr)))
    bull, bear = r.bull_bear_power(h, lo, c)
    votes.append(
        _vote(
            (c > e50) & (bear < 0) & (bear > _prev(bear)),
            (c < e50) & (bull > 0) & (bull < _prev(bull)),
            e50,
            bear,
            _prev(bear),
        )
    )
    uo = r.ultimate_oscillator(h, lo, c)
    votes.append(_vote(uo > 70, uo < 30, uo))
    return np.stack(votes)


def _ratings_from_votes(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    present = votes != A
    vals = np.where(present, votes, 0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = vals[: r.N_MA].sum(0) / present[: r.N_MA].sum(0)
        osc = vals[r.N_MA :].sum(0) / present[r.N_MA :].sum(0)
    both = np.where(np.isnan(ma), osc, np.where(np.isnan(osc), ma, (ma + osc) / 2))
    return both, ma, osc


# ---------------------------------------------------------------------------------------------
# votes and ratings on random walks


@pytest.mark.parametrize("tick", [None, 0.05])
def test_engine_votes_match_rules_over_public_kernels(bar_factory, tick):
    o, h, lo, c, v = bar_factory(5, 700, 3, tick=tick)
    res = r.compute_ratings(o, h, lo, c, v, with_components=True)
    assert res.votes is not None and res.votes.shape == (26, 700, 3)
    assert res.component_names == r.COMPONENT_NAMES
    for j in range(3):
        want = ref_votes(h[:, j], lo[:, j], c[:, j], v[:, j])
        for i, name in enumerate(r.COMPONENT_NAMES):
            assert_array_equal(res.votes[i, :, j], want[i], err_msg=name)
        ra, rm, ro = _ratings_from_votes(want)
        assert_array_equal(res.recommend_all[:, j], ra)
        assert_array_equal(res.recommend_ma[:, j], rm)
        assert_array_equal(res.recommend_other[:, j], ro)
        plus, minus, adx = r.dmi(h[:, j], lo[:, j], c[:, j])
        assert_array_equal(res.adx[:, j], adx)
        assert_array_equal(res.plus_di[:, j], plus)
        assert_array_equal(res.minus_di[:, j], minus)


def test_every_vote_occurs_and_ratings_are_bounded(bar_factory):
    o, h, lo, c, v = bar_factory(9, 2000, 6)
    res = r.compute_ratings(o, h, lo, c, v, with_components=True)
    for i, name in enumerate(r.COMPONENT_NAMES):
        seen = set(np.unique(res.votes[i]).tolist())
        assert {-1, 1, A} <= seen, name
        # A neutral momentum or MACD needs an exact tie, which continuous prices never give.
        if i >= r.N_MA and name not in ("mom_10", "macd_12_26_9"):
            assert 0 in seen, name
    for x in (res.recommend_all, res.recommend_ma, res.recommend_other):
        finite = x[~np.isnan(x)]
        assert finite.size and finite.min() >= -1 and finite.max() <= 1
    both = ~np.isnan(res.recommend_ma) & ~np.isnan(res.recommend_other)
    mean = (res.recommend_ma + res.recommend_other) / 2
    assert_array_equal(res.recommend_all[both], mean[both])


def test_warm_up_absent_votes_leave_the_denominator(bar_factory):
    o, h, lo, c, v = bar_factory(2, 260, 1)
    res = r.compute_ratings(o, h, lo, c, v, with_components=True)
    assert np.isnan(res.recommend_all[:9]).all()
    assert not np.isnan(res.recommend_ma[9])
    # At row 9 only SMA10 and EMA10 can vote, so the MA rating is their mean, not diluted by
    # 13 zeros as the prior system did.
    first = res.votes[:, 9, 0]
    assert (first[[0, 6]] != A).all() and (np.delete(first, [0, 6]) == A).all()
    assert res.recommend_ma[9, 0] == first[[0, 6]].mean()
    assert res.recommend_all[9, 0] == res.recommend_ma[9, 0]
    assert np.isnan(res.recommend_other[:11]).all() and not np.isnan(res.recommend_other[11])
    first_vote = [int(np.flatnonzero(res.votes[i, :, 0] != A)[0]) for i in range(26)]
    expected = dict(
        sma_200=199,
        ema_200=199,
        hma_9=10,
        vwma_20=19,
        ichimoku_9_26_52=77,
        rsi_14=15,
        stoch_14_3_3=17,
        cci_20=20,
        dmi_14_14=28,
        ao=35,
        mom_10=11,
        macd_12_26_9=33,
        stoch_rsi_3_3_14_14=49,
        williams_r_14=14,
        bull_bear_power_13=49,
        uo_7_14_28=28,
    )
    for name, row in expected.items():
        assert first_vote[r.COMPONENT_NAMES.index(name)] == row, name


# ---------------------------------------------------------------------------------------------
# vote rules on hand-built values


def _run(rule, *args):
    out = np.empty(len(args[0]), np.int8)
    rule(*args, out)
    return out.tolist()


def test_rule_rising_band():
    x = np.array([np.nan, 25.0, 26.0, 26.0, 75.0, 74.0, 74.5, 50.0])
    assert _run(eng._vote_band_turn, x, 30.0, 70.0) == [A, A, 1, 0, 0, -1, 0, 0]


def test_rule_stochastic_and_trend_filter():
    k = np.array([10.0, 10.0, 15.0, 90.0, 85.0, np.nan, 15.0])
    d = np.array([5.0, 10.0, 12.0, 85.0, 90.0, 10.0, 12.0])
    c = np.array([1.0, 1.0, 3.0, 1.0, 3.0, 1.0, 1.0])
    e50 = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, np.nan])
    assert _run(eng._vote_stoch, k, d, c, e50, False) == [1, 0, 1, 0, -1, A, 1]
    assert _run(eng._vote_stoch, k, d, c, e50, True) == [1, 0, 0, 0, -1, A, A]


def test_rule_dmi():
    adx = np.array([np.nan, 25.0, 26.0, 27.0, 26.0, 19.0, 19.5])
    plus = np.array([30.0, 30.0, 30.0, 10.0, 30.0, 30.0, 30.0])
    minus = np.array([10.0, 10.0, 10.0, 30.0, 10.0, 10.0, 10.0])
    assert _run(eng._vote_dmi, adx, plus, minus) == [A, A, 1, -1, 0, 0, 0]


def test_rule_awesome_oscillator():
    ao = np.array([np.nan, -1.0, -0.5, 0.5, 0.3, 0.4, 0.4, -0.2, -0.1, -0.3, 0.0])
    #              A     A     A    cross  fall  saucer flat cross rise  saucer
    assert _run(eng._vote_ao, ao) == [A, A, A, 1, 0, 1, 0, -1, 0, -1, 0]


def test_rules_turn_above_level_ma_ichimoku_bbp():
    assert _run(eng._vote_turn, np.array([1.0, 2.0, 1.0, 1.0])) == [A, 1, -1, 0]
    assert _run(
        eng._vote_above, np.array([1.0, 1.0, 2.0, np.nan]), np.array([0.0, 1.0, 3.0, 1.0])
    ) == [1, 0, -1, A]
    assert _run(eng._vote_level, np.array([71.0, 70.0, 30.0, 29.0, np.nan]), 70.0, 30.0) == [
        1,
        0,
        0,
        -1,
        A,
    ]
    c = np.array([2.0, 1.0, 1.0, 1.0])
    assert _run(eng._vote_ma, np.array([1.0, 2.0, 1.0, np.nan]), c) == [1, -1, 0, A]
    cases = [  # close, conversion, base, lead1[26], lead2[26]
        (10.0, 9.0, 8.0, 7.0, 6.0),
        (1.0, 2.0, 3.0, 4.0, 5.0),
        (10.0, 9.0, 8.0, 7.0, 7.5),
        (5.0, 5.0, 5.0, np.nan, 1.0),
    ]
    assert [eng._ichimoku_rule(*x) for x in cases] == [1, -1, 0, A]
    bull = np.array([1.0, 2.0, 1.0, 0.5, 0.4])
    bear = np.array([-1.0, -0.5, -0.7, -0.8, -0.7])
    c = np.array([5.0, 5.0, 1.0, 1.0, 5.0])
    e50 = np.array([3.0, 3.0, 3.0, 3.0, 3.0])
    assert _run(eng._vote_bbp, bull, bear, c, e50) == [A, 1, -1, -1, 1]


# ---------------------------------------------------------------------------------------------
# exact ties through the whole engine


def test_flat_series_rates_exactly_neutral():
    n = 300
    c = np.full(n, 0.1)
    res = r.compute_ratings(c, c, c, c, np.full(n, 1e6), with_components=True)
    votes = res.votes
    assert (res.recommend_ma[199:] == 0.0).all()
    assert (res.recommend_other[11:] == 0.0).all()
    assert (res.recommend_all[9:] == 0.0).all()
    names = r.COMPONENT_NAMES
    for name in (
        "stoch_14_3_3",
        "cci_20",
        "dmi_14_14",
        "stoch_rsi_3_3_14_14",
        "williams_r_14",
        "uo_7_14_28",
    ):
        assert (votes[names.index(name)] == A).all(), name  # zero range or deviation: na
    assert (votes[names.index("ao"), 35:] == 0).all()
    assert (votes[names.index("rsi_14"), 15:] == 0).all()


def test_saturated_stoch_rsi_has_k_equal_d_and_votes_neutral():
    # A choppy stretch, then a steady rise: RSI climbs to a new 14-bar high every bar (losses
    # decay but never vanish), so raw Stoch RSI is exactly 100, %K == %D exactly, and the
    # sell rule (%K < %D) must not fire on rounding noise.
    chop = np.tile([1.0, -1.3, 0.8, -0.6], 12)
    c = 100 + np.cumsum(np.r_[chop, np.full(30, 0.7)])
    k, d = r.stoch_rsi(c)
    sat = (k == 100.0) & (d == 100.0)
    assert sat.sum() >= 20
    assert_array_equal(k[sat], d[sat])
    res = r.compute_ratings(c, c + 0.1, c - 0.1, c, np.ones_like(c), with_components=True)
    sr = res.votes[r.COMPONENT_NAMES.index("stoch_rsi_3_3_14_14")]
    assert (sr[sat] == 0).all()


# ---------------------------------------------------------------------------------------------
# point-in-time and independence of columns


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n_bars=st.integers(0, 320),
    cut=st.integers(0, 320),
    tick=st.sampled_from([None, 0.5, 0.05]),
)
def test_truncation_never_changes_the_past_and_columns_are_independent(
    bar_factory, seed, n_bars, cut, tick
):
    bars = bar_factory(seed, n_bars, 3, tick=tick)
    full = r.compute_ratings(*bars, with_components=True)
    cut = min(cut, n_bars)
    trunc = [x.copy() for x in bars]
    for x in trunc:
        x[cut:, 1] = np.nan
    part = r.compute_ratings(*trunc, with_components=True)
    for name in ("recommend_all", "recommend_ma", "recommend_other", "adx", "plus_di", "minus_di"):
        a, b = getattr(full, name), getattr(part, name)
        assert_array_equal(b[:cut, 1], a[:cut, 1], err_msg=name)
        assert np.isnan(b[cut:, 1]).all(), name
        assert_array_equal(b[:, [0, 2]], a[:, [0, 2]], err_msg=name)
    assert_array_equal(part.votes[:, :cut, 1], full.votes[:, :cut, 1])
    assert (part.votes[:, cut:, 1] == A).all()
    assert part.n_bars.tolist() == [n_bars, cut, n_bars]
    alone = r.compute_ratings(*(x[:, 2] for x in bars))
    assert_array_equal(alone.recommend_all, full.recommend_all[:, 2])


# ---------------------------------------------------------------------------------------------
# robustness


def test_short_empty_and_padded_columns(bar_factory):
    o, h, lo, c, v = bar_factory(4, 50, 4)
    for x in (o, h, lo, c, v):
        x[5:, 1] = np.nan  # 5 bars: no vote computable
        x[:, 2] = np.nan  # no bars at all
    res = r.compute_ratings(o, h, lo, c, v, with_components=True)
    assert res.n_bars.tolist() == [50, 5, 0, 50]
    assert np.isnan(res.recommend_all[:, 1:3]).all()
    assert (res.votes[:, :, 1:3] == A).all()
    assert not np.isnan(res.recommend_all[9:, [0, 3]]).any()
    empty = r.compute_ratings(*(np.empty((0, 3)),) * 5)
    assert empty.recommend_all.shape == (0, 3)
    none = r.compute_ratings(*(np.empty((10, 0)),) * 5)
    assert none.adx.shape == (10, 0)


def test_zero_and_missing_volume_make_vwma_absent(bar_factory):
    o, h, lo, c, v = bar_factory(6, 120, 1)
    v[:, 0] = 0.0
    res = r.compute_ratings(o, h, lo, c, v, with_components=True)
    vw = res.votes[r.COMPONENT_NAMES.index("vwma_20")]
    assert (vw == A).all()
    assert np.isfinite(res.recommend_all[9:]).all()
    v[:, 0] = 1e6
    v[60, 0] = np.nan
    vw = r.compute_ratings(o, h, lo, c, v, with_components=True).votes[13, :, 0]
    assert (vw[60:80] == A).all() and (vw[[59, 80]] != A).all()


def test_views_read_only_and_pandas_inputs_match(bar_factory):
    bars = bar_factory(8, 400, 5)
    ref = r.compute_ratings(*bars)
    frames = [pd.DataFrame(x) for x in bars]
    from_pandas = r.compute_ratings(*(f.to_numpy() for f in frames))  # F-ordered, may be RO
    ro = [x.copy() for x in bars]
    for x in ro:
        x.flags.writeable = False
    strided = [np.repeat(x, 2, axis=1)[:, ::2] for x in bars]
    for got in (from_pandas, r.compute_ratings(*ro), r.compute_ratings(*strided)):
        assert_array_equal(got.recommend_all, ref.recommend_all)
        assert_array_equal(got.adx, ref.adx)


def test_invalid_bars_raise_value_error(bar_factory):
    o, h, lo, c, v = bar_factory(1, 30, 2)
    gap = c.copy()
    gap[10, 1] = np.nan
    with pytest.raises(ValueError, match="column 1: close is NaN at row 10"):
        r.compute_ratings(o, h, lo, gap, v)
    bad = h.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="column 0, row 3"):
        r.compute_ratings(o, bad, lo, c, v)
    with pytest.raises(ValueError, match="shape"):
        r.compute_ratings(o, h, lo, c, v[:-1])


def test_bucket_labels_and_boundaries():
    x = np.array([-1.0, -0.5001, -0.5, -0.1001, -0.1, 0.0, 0.1, 0.1001, 0.5, 0.5001, np.nan])
    assert r.bucket(x).tolist() == [
        "strong sell",
        "strong sell",
        "sell",
        "sell",
        "neutral",
        "neutral",
        "neutral",
        "buy",
        "buy",
        "strong buy",
        None,
    ]
    assert r.bucket_codes(x).tolist() == [-2, -2, -1, -1, 0, 0, 0, 1, 1, 2, A]
    assert r.bucket(0.3) == "buy" and r.bucket(float("nan")) is None
    assert r.bucket(np.zeros((2, 3))).shape == (2, 3)


def test_concurrent_calls_from_threads_are_safe_and_identical() -> None:
    """Scanners and ingest workers are threads; parallel kernels must not be launched twice
    at once (numba's workqueue layer would abort the process)."""
    import threading

    rng = np.random.default_rng(3)
    c = 100 * np.exp(np.cumsum(rng.standard_normal((400, 30)) * 0.02, axis=0))
    out: list[np.ndarray] = []

    def work() -> None:
        out.append(r.compute_ratings(c, c * 1.01, c * 0.99, c, np.ones_like(c)).recommend_all)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 6 and all(np.array_equal(out[0], o, equal_nan=True) for o in out)


def test_invalid_bars_are_found_in_any_block_and_the_first_bad_column_is_named(bar_factory):
    """Validation runs per block of columns inside the parallel pass: the error still names
    the first bad column of the panel, a bad open counts like a bad high/low/close, and a bad
    value after a column's bars (padding) is not an error."""
    o, h, lo, c, v = (x.copy() for x in bar_factory(2, 60, 70))
    for x in (o, h, lo, c, v):
        x[50:, 65] = np.nan
    h[55, 65] = np.inf  # inside the padding: ignored
    ok = r.compute_ratings(o, h, lo, c, v)
    assert ok.n_bars[65] == 50 and ok.n_bars[64] == 60
    bad_open = o.copy()
    bad_open[7, 40] = np.nan
    bad_open[3, 69] = np.inf
    with pytest.raises(ValueError, match="column 40, row 7: open/high/low/close"):
        r.compute_ratings(bad_open, h, lo, c, v)
    late = lo.copy()
    late[20, 33] = -np.inf
    late[25, 33] = np.nan
    with pytest.raises(ValueError, match="column 33, row 20"):
        r.compute_ratings(o, h, late, c, v)
    early_open = o.copy()
    early_open[12, 33] = np.inf  # before the bad low: the first bad row of the column
    early_open[55, 65] = np.inf  # padding of column 65: ignored
    with pytest.raises(ValueError, match="column 33, row 12"):
        r.compute_ratings(early_open, h, late, c, v)
    ok_open = o.copy()
    ok_open[55, 65] = np.inf
    assert r.compute_ratings(ok_open, h, lo, c, v).n_bars[65] == 50
    gap = c.copy()
    gap[30, 66] = np.nan
    gap[12, 1] = np.inf
    with pytest.raises(ValueError, match="column 66: close is NaN at row 30 but a bar follows"):
        r.compute_ratings(o, h, lo, gap, v)
