"""Kernels against TA-Lib where it shares Pine's definition, and against straightforward
pure-numpy/pandas re-implementations of Pine where it does not (MACD and DMI seeding, CCI of
close); plus the exact-tie guarantees of SPEC §5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from numpy.testing import assert_allclose, assert_array_equal

from portflow import ratings as r

RTOL = 1e-9


def _cols(x: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(x[:, j]) for j in range(x.shape[1])]


def _same_nan(ours: np.ndarray, ref: np.ndarray, start: int = 0, rtol: float = RTOL) -> None:
    """Equal NaN pattern and close values from ``start`` on (rows before are not compared)."""
    assert_array_equal(np.isnan(ours[start:]), np.isnan(ref[start:]))
    assert_allclose(ours[start:], ref[start:], rtol=rtol, atol=1e-9, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# straightforward Pine references (loops, no cleverness)


def ref_ewm(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Pine: na(sum[1]) ? sma(src, n) : alpha * src + (1 - alpha) * sum[1]."""
    out = np.full(len(x), np.nan)
    state = np.nan
    for t in range(len(x)):
        if np.isnan(x[t]):
            state = np.nan
            continue
        if np.isnan(state):
            win = x[max(0, t - n + 1) : t + 1]
            if len(win) < n or np.isnan(win).any():
                continue
            state = win.mean()
        else:
            state = alpha * x[t] + (1 - alpha) * state
        out[t] = state
    return out


def ref_ema(x: np.ndarray, n: int) -> np.ndarray:
    return ref_ewm(x, n, 2.0 / (n + 1))


def ref_rma(x: np.ndarray, n: int) -> np.ndarray:
    return ref_ewm(x, n, 1.0 / n)


def ref_macd(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    line = ref_ema(c, 12) - ref_ema(c, 26)
    return line, ref_ema(line, 9)


def ref_dmi(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int = 14):
    """Pine ``ta.dmi(n, n)`` written out with pandas."""
    up = pd.Series(h).diff().to_numpy()
    down = -pd.Series(lo).diff().to_numpy()
    plus_dm = np.where(np.isnan(up), np.nan, np.where((up > down) & (up > 0), up, 0.0))
    minus_dm = np.where(np.isnan(down), np.nan, np.where((down > up) & (down > 0), down, 0.0))
    pc = pd.Series(c).shift(1).to_numpy()
    tr = np.fmax(h - lo, np.fmax(np.abs(h - pc), np.abs(lo - pc)))
    tr[0] = np.nan
    trur = ref_rma(tr, n)
    plus = pd.Series(100 * ref_rma(plus_dm, n) / trur).ffill().to_numpy()
    minus = pd.Series(100 * ref_rma(minus_dm, n) / trur).ffill().to_numpy()
    s = plus + minus
    adx = 100 * ref_rma(np.abs(plus - minus) / np.where(s == 0, 1, s), n)
    return plus, minus, adx


def ref_cci(x: np.ndarray, n: int = 20) -> np.ndarray:
    s = pd.Series(x)
    ma = s.rolling(n).mean()
    dev = s.rolling(n).apply(lambda w: np.mean(np.abs(w - w.mean())), raw=True)
    return ((s - ma) / (0.015 * dev)).to_numpy()


# ---------------------------------------------------------------------------------------------
# TA-Lib agreement (same definitions)


def test_moving_averages_match_talib(bars):
    _, _, _, c, _ = bars
    for n in (3, 10, 50, 200):
        ours_sma, ours_ema, ours_wma = r.sma(c, n), r.ema(c, n), r.wma(c, n)
        for j, col in enumerate(_cols(c)):
            _same_nan(ours_sma[:, j], talib.SMA(col, n))
            _same_nan(ours_ema[:, j], talib.EMA(col, n))
            _same_nan(ours_wma[:, j], talib.WMA(col, n))


def test_rma_hma_vwma_match_compositions(bars):
    _, _, _, c, v = bars
    ours_rma, ours_hma, ours_vwma = r.rma(c, 14), r.hma(c, 9), r.vwma(c, v, 20)
    for j, col in enumerate(_cols(c)):
        _same_nan(ours_rma[:, j], ref_rma(col, 14))
        hull = talib.WMA(2 * talib.WMA(col, 4) - talib.WMA(col, 9), 3)
        _same_nan(ours_hma[:, j], hull)
        vol = np.ascontiguousarray(v[:, j])
        _same_nan(ours_vwma[:, j], talib.SMA(col * vol, 20) / talib.SMA(vol, 20))


def test_oscillators_match_talib(bars):
    _, h, lo, c, _ = bars
    rsi = r.rsi(c)
    k, d = r.stoch(h, lo, c)
    wr = r.williams_r(h, lo, c)
    mom = r.mom(c)
    uo = r.ultimate_oscillator(h, lo, c)
    ao = r.ao(h, lo)
    srk, srd = r.stoch_rsi(c)
    bull, bear = r.bull_bear_power(h, lo, c)
    for j, (hj, lj, cj) in enumerate(zip(_cols(h), _cols(lo), _cols(c), strict=True)):
        _same_nan(rsi[:, j], talib.RSI(cj, 14))
        tk, td = talib.STOCH(hj, lj, cj, 14, 3, 0, 3, 0)
        # TA-Lib starts %K with %D (row 17); ours is available from row 15.
        assert np.isnan(k[14, j]) and not np.isnan(k[15, j])
        _same_nan(k[:, j], tk, start=17)
        _same_nan(d[:, j], td)
        _same_nan(wr[:, j], talib.WILLR(hj, lj, cj, 14))
        _same_nan(mom[:, j], talib.MOM(cj, 10))
        _same_nan(uo[:, j], talib.ULTOSC(hj, lj, cj, 7, 14, 28))
        med = talib.MEDPRICE(hj, lj)
        _same_nan(ao[:, j], talib.SMA(med, 5) - talib.SMA(med, 34))
        # TA-Lib's STOCHRSI fastd is our %K (SMA3 of the raw stochastic of RSI 14).
        _, fastd = talib.STOCHRSI(cj, 14, 14, 3, 0)
        _same_nan(srk[:, j], fastd, rtol=1e-7)
        _same_nan(srd[:, j], talib.SMA(fastd, 3), rtol=1e-7)
        _same_nan(bull[:, j], hj - talib.EMA(cj, 13))
        _same_nan(bear[:, j], lj - talib.EMA(cj, 13))


def test_ichimoku_matches_talib_extremes(bars):
    _, h, lo, _, _ = bars
    lines = r.ichimoku(h, lo)
    for j, (hj, lj) in enumerate(zip(_cols(h), _cols(lo), strict=True)):

        def mid(n, hj=hj, lj=lj):
            return (talib.MAX(hj, n) + talib.MIN(lj, n)) / 2

        conv, base, lead2 = mid(9), mid(26), mid(52)
        lead1 = (conv + base) / 2
        _same_nan(lines.conversion[:, j], conv)
        _same_nan(lines.base[:, j], base)
        _same_nan(lines.lead1[:, j], lead1)
        _same_nan(lines.lead2[:, j], lead2)
        _same_nan(lines.lead1_displaced[:, j], pd.Series(lead1).shift(26).to_numpy())
        _same_nan(lines.lead2_displaced[:, j], pd.Series(lead2).shift(26).to_numpy())
    for j, hj in enumerate(_cols(h)):
        _same_nan(r.highest(h, 14)[:, j], talib.MAX(hj, 14))
        _same_nan(r.lowest(h, 14)[:, j], talib.MIN(hj, 14))


# ---------------------------------------------------------------------------------------------
# Pine definitions where TA-Lib differs


def test_macd_follows_pine_and_converges_to_talib(long_bars):
    _, _, _, c, _ = long_bars
    line, sig = r.macd(c)
    for j, cj in enumerate(_cols(c)):
        ref_line, ref_sig = ref_macd(cj)
        _same_nan(line[:, j], ref_line)
        _same_nan(sig[:, j], ref_sig)
        assert np.isnan(sig[32, j]) and not np.isnan(sig[33, j])
        t_line, t_sig, _ = talib.MACD(cj, 12, 26, 9)
        # TA-Lib seeds differently; the difference decays geometrically.
        assert_allclose(line[400:, j], t_line[400:], rtol=1e-8)
        assert_allclose(sig[400:, j], t_sig[400:], rtol=1e-8)


def test_dmi_follows_pine_and_converges_to_talib(long_bars):
    _, h, lo, c, _ = long_bars
    plus, minus, adx = r.dmi(h, lo, c)
    for j, (hj, lj, cj) in enumerate(zip(_cols(h), _cols(lo), _cols(c), strict=True)):
        rp, rm, ra = ref_dmi(hj, lj, cj)
        _same_nan(plus[:, j], rp)
        _same_nan(minus[:, j], rm)
        _same_nan(adx[:, j], ra)
        assert np.isnan(adx[26, j]) and not np.isnan(adx[27, j])
        assert_allclose(plus[500:, j], talib.PLUS_DI(hj, lj, cj, 14)[500:], rtol=1e-8)
        assert_allclose(minus[500:, j], talib.MINUS_DI(hj, lj, cj, 14)[500:], rtol=1e-8)
        assert_allclose(adx[500:, j], talib.ADX(hj, lj, cj, 14)[500:], rtol=1e-8)


def test_cci_is_of_close(bars):
    _, _, _, c, _ = bars
    ours = r.cci(c)
    for j, cj in enumerate(_cols(c)):
        _same_nan(ours[:, j], ref_cci(cj))
        # TA-Lib's CCI of typical price equals CCI of close when high = low = close.
        _same_nan(ours[:, j], talib.CCI(cj, cj, cj, 20), rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# exact ties (SPEC §5)


def test_means_over_identical_values_are_exact():
    x = np.r_[np.linspace(1.0, 2.0, 30), np.full(250, 0.1)]
    for f in (r.sma, r.wma):
        for n in (3, 9, 20, 200):
            out = f(x, n)
            assert (out[29 + n :] == 0.1).all(), (f.__name__, n)
    assert (r.hma(x, 9)[29 + 11 :] == 0.1).all()
    flat = np.full(300, 0.1)
    for n in (10, 50, 200):
        assert (r.ema(flat, n)[n - 1 :] == 0.1).all()
        assert (r.rma(flat, n)[n - 1 :] == 0.1).all()
    vol = np.linspace(1e5, 3e9, 300)
    assert (r.vwma(flat, vol, 20)[19:] == 0.1).all()
    # Naive summation is not exact here, which is why the kernels special-case it.
    assert sum([0.1] * 10) / 10 != 0.1


def test_ema_is_a_fixed_point_once_it_equals_the_close():
    x = np.r_[np.full(10, 3.3), np.full(100, 3.3)]
    e = r.ema(x, 10)
    assert (e[9:] == 3.3).all()


def test_raw_stochastic_is_exact_at_the_extremes_and_k_equals_d_when_saturated():
    c = 10.0 + np.cumsum(np.linspace(0.1, 0.7, 30) ** 1.5)  # strictly rising, irregular steps
    h, lo = c.copy(), c - 0.37
    k, _ = r.stoch(h, lo, c, 14, 1, 1)
    assert (k[13:] == 100.0).all()
    k3, d3 = r.stoch(h, lo, c)
    assert (k3[15:] == 100.0).all() and (d3[17:] == 100.0).all()
    assert (k3[17:] == d3[17:]).all()
    wr = r.williams_r(h, lo, c)
    assert (wr[13:] == 0.0).all()
    falling = c[::-1].copy()
    kf, _ = r.stoch(falling + 0.2, falling, falling, 14, 1, 1)
    assert (kf[13:] == 0.0).all()
    assert (r.williams_r(falling + 0.2, falling, falling)[13:] == -100.0).all()


def test_rsi_unchanged_after_unchanged_close(bar_factory):
    _, _, _, c, _ = bar_factory(3, 400, 1, tick=0.5)
    x = c[:, 0]
    rsi = r.rsi(x)
    same = np.flatnonzero((np.diff(x) == 0) & ~np.isnan(rsi[1:]) & ~np.isnan(rsi[:-1])) + 1
    assert len(same) > 10
    assert_array_equal(rsi[same], rsi[same - 1])


def test_ao_and_cci_over_flat_windows():
    h = np.r_[np.linspace(5.0, 9.0, 40), np.full(60, 9.7)]
    lo = h - 0.3
    a = r.ao(h, lo)
    assert (a[40 + 33 :] == 0.0).all()
    c = np.r_[np.linspace(5.0, 9.0, 30), np.full(40, 0.7)]
    cci = r.cci(c)
    assert np.isnan(cci[30 + 19 :]).all()  # zero deviation is na, never a huge number
    assert not np.isnan(cci[19:30]).any()


# ---------------------------------------------------------------------------------------------
# NaN semantics and input handling


def test_nan_padding_and_resets():
    x = np.r_[np.linspace(1.0, 3.0, 50), np.full(10, np.nan)]
    for f in (r.sma, r.ema, r.wma, r.rsi, r.cci, r.mom):
        out = f(x, 5)
        assert np.isnan(out[50:]).all(), f.__name__
        assert not np.isnan(out[45:50]).any(), f.__name__
    gap = x.copy()
    gap[20] = np.nan
    e = r.ema(gap, 5)
    assert np.isnan(e[20:25]).all() and not np.isnan(e[25])  # reseeded from 5 fresh values
    assert e[25] == pytest.approx(gap[21:26].mean(), rel=1e-15)


def test_layouts_and_read_only_inputs_give_identical_results(bars):
    _, h, lo, c, _ = bars
    ref = r.dmi(h, lo, c)
    f_order = [np.asfortranarray(a) for a in (h, lo, c)]
    ro = [a.copy() for a in (h, lo, c)]
    for a in ro:
        a.flags.writeable = False
    wide = [np.repeat(a, 2, axis=1)[:, ::2] for a in (h, lo, c)]
    for args in (f_order, ro, wide):
        for got, want in zip(r.dmi(*args), ref, strict=True):
            assert_array_equal(got, want)
    one = r.dmi(h[:, 1], lo[:, 1], c[:, 1])
    assert one[2].shape == (len(c),)
    assert_array_equal(one[2], ref[2][:, 1])


def test_short_and_empty_series():
    assert r.sma(np.empty(0), 5).shape == (0,)
    assert r.rsi(np.empty((0, 3))).shape == (0, 3)
    assert np.isnan(r.ema(np.arange(4.0), 5)).all()
    k, d = r.stoch(np.ones(5), np.ones(5), np.ones(5))
    assert np.isnan(k).all() and np.isnan(d).all()


def test_zero_volume_vwma_is_nan_not_inf():
    c = np.linspace(1.0, 2.0, 60)
    v = np.r_[np.full(30, 1e6), np.zeros(30)]
    out = r.vwma(c, v, 20)
    assert np.isnan(out[49:]).all()
    assert np.isfinite(out[19:49]).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="length"):
        r.sma(np.ones(5), 0)
    with pytest.raises(TypeError):
        r.sma(np.ones(5), 2.5)
    with pytest.raises(ValueError, match="shape"):
        r.vwma(np.ones(5), np.ones(6))
    with pytest.raises(ValueError, match="shape"):
        r.sma(np.ones((2, 2, 2)), 2)
