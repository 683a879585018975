"""The engine's fused NaN-free passes (``_fused``) reproduce the ``_core`` kernels bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from portflow.ratings import _core as k
from portflow.ratings import _fused as f

i64 = np.int64


def _series(bar_factory, seed: int, n: int, tick: float | None, flat: bool):
    _, h, lo, c, v = (np.ascontiguousarray(x[:, 0]) for x in bar_factory(seed, n, 1, tick=tick))
    if flat and n > 60:
        # flat stretches: identical closes, zero ranges (DMI fixnan, WMA/SMA exact paths)
        for x in (h, lo, c):
            x[:40] = 50.0
            if n > 130:
                x[100:130] = x[99]
    return h, lo, c, v


CASES = [
    (seed, n, tick, flat)
    for seed, n in enumerate([0, 1, 2, 9, 14, 15, 28, 29, 60, 77, 200, 201, 333, 2500])
    for tick in (None, 0.5)
    for flat in (False, True)
]


@pytest.mark.parametrize(("seed", "n", "tick", "flat"), CASES)
def test_fused_passes_match_core_kernels(bar_factory, seed, n, tick, flat):
    h, lo, c, _ = _series(bar_factory, seed, n, tick, flat)
    e = np.empty

    want = e(n)
    k.hma(c, i64(9), want)
    got = e(n)
    f.hma9(c, e(n), e(n), e(n), got)
    assert_array_equal(got, want, err_msg="hma9")

    lengths = (10, 20, 30, 50, 100, 200, 12, 26, 13)
    want2 = e((9, n))
    k.ema_bank(c, lengths, want2)
    got2 = e((9, n))
    f.ema_bank9(c, got2, k.ema_bank)
    assert_array_equal(got2, want2, err_msg="ema_bank9")

    wp, wm, wa = e(n), e(n), e(n)
    k.dmi(h, lo, c, i64(14), i64(14), wp, wm, wa)
    gp, gm, ga = e(n), e(n), e(n)
    f.dmi14(h, lo, c, gp, gm, ga)
    for g, w, name in ((gp, wp, "+di"), (gm, wm, "-di"), (ga, wa, "adx")):
        assert_array_equal(g, w, err_msg=name)

    k.ultimate_oscillator(h, lo, c, i64(7), i64(14), i64(28), want)
    f.uo_7_14_28(h, lo, c, e(n), e(n), e(n), e(n), got)
    assert_array_equal(got, want, err_msg="uo")

    r = e(n)
    k.rsi(c, i64(14), want)
    f.rsi14(c, r)
    assert_array_equal(r, want, err_msg="rsi14")

    wh, wl = e(n), e(n)
    k.rolling_extreme(h, i64(9), wh, True)
    k.rolling_extreme(lo, i64(9), wl, False)
    gh, gl = e(n), e(n)
    f.extremes9(h, lo, gh, gl)
    assert_array_equal(gh, wh, err_msg="highest 9")
    assert_array_equal(gl, wl, err_msg="lowest 9")

    # RSI is NaN for its first 14 bars: the stochastic of RSI
    k.rolling_extreme(r, i64(14), wh, True)
    k.rolling_extreme(r, i64(14), wl, False)
    f.extremes(r, r, i64(14), i64(14), gh, gl)
    assert_array_equal(gh, wh, err_msg="highest of rsi")
    assert_array_equal(gl, wl, err_msg="lowest of rsi")
    raw = e(n)
    k.stoch_raw_from(r, wh, wl, want)
    f.stoch_raw_from(r, gh, gl, i64(27), raw)
    assert_array_equal(raw, want, err_msg="raw stoch rsi")
    # %K / %D smoothing over a series with NaN warm-up and zero-range NaNs
    for x in (raw, r):
        k.sma(x, i64(3), want)
        f.sma3(x, got)
        assert_array_equal(got, want, err_msg="sma3")

    hl2 = (h + lo) / 2.0
    k.sma(hl2, i64(5), want)
    f.sma5(hl2, got)
    assert_array_equal(got, want, err_msg="sma5")

    ph, pl, run = e(n), e(n), e(n, np.int64)
    for x in (c, hl2):
        f.prefix_sums_nan_free(x, ph, pl, run)
        for m in (10, 20, 34, 200):
            k.sma(x, i64(m), want)
            f.sma_from_prefix(x, ph, pl, run, i64(m), got)
            assert_array_equal(got, want, err_msg=f"sma {m}")


def test_mom_votes_match_momentum_rule(bar_factory):
    _, _, c, _ = _series(bar_factory, 3, 300, 0.5, True)
    m = np.empty(300)
    k.mom(c, i64(10), m)
    prev = np.r_[np.nan, m[:-1]]
    want = np.where(m > prev, 1, np.where(m < prev, -1, 0)).astype(np.int8)
    want[~(np.isfinite(m) & np.isfinite(prev))] = -128
    got = np.empty(300, np.int8)
    f.mom_votes(c, i64(10), got)
    assert_array_equal(got, want)


@pytest.mark.parametrize(("seed", "n", "tick", "flat"), CASES)
def test_ema_bank_with_macd_matches_core_macd(bar_factory, seed, n, tick, flat):
    """The MACD line and signal advanced inside the EMA bank equal ``_core.macd``'s, and the
    bank itself is unchanged by carrying them."""
    _, _, c, _ = _series(bar_factory, seed, n, tick, flat)
    e = np.empty
    lengths = (10, 20, 30, 50, 100, 200, 12, 26, 13)
    want_bank = e((9, n))
    k.ema_bank(c, lengths, want_bank)
    want_line, want_signal = e(n), e(n)
    k.macd(c, i64(12), i64(26), i64(9), want_line, want_signal)
    bank, macd = e((9, n)), e((2, n))
    f.ema_bank9(c, bank, k.ema_bank, macd, k.ema)
    assert_array_equal(bank, want_bank, err_msg="ema_bank9")
    assert_array_equal(macd[0], want_line, err_msg="macd line")
    assert_array_equal(macd[1], want_signal, err_msg="macd signal")
