"""Serial 1-D building blocks (numba) shared by the public kernels and the ratings engine.

Every function here works on one symbol's series ``x`` of shape (L,), float64, and writes a
caller-provided ``out`` of the same shape. NaN plays Pine's ``na``: a window that holds a NaN
yields NaN, and a recursive average (EMA/RMA) that meets a NaN restarts from a fresh SMA seed,
as Pine's ``na(sum[1]) ? sma(src, length) : ...`` does. A series shorter than a window yields
all NaN. Nothing here raises on data.

Exactness (SPEC §5 "Exact ties"):

1. Windowed sums are differences of double-double prefix sums (TwoSum), so their error stays
   near one rounding of the true window sum however long the series, and one prefix pass
   serves every window length of a series (the six SMAs of close share one).
2. A window mean additionally tracks the run of identical values ending at t; when the run
   covers the window the mean *is* that value, bit for bit (a running sum of 0.1 ten times
   is not 1.0).
3. Recursive averages update as ``s += alpha * (x - s)``, a fixed point when ``x == s``.
4. Ratios that define stochastics are formed as ``100 * ((x - lo) / (hi - lo))``, exactly 0 or
   100 at the extremes; a zero range gives NaN (Pine's division by zero is ``na``).
5. RSI keeps its previous value after an unchanged close: both Wilder averages decay by the
   same factor, so the ratio is unchanged mathematically and must not drift by an ulp.
6. Window extremes (highest/lowest) are exact by nature; WMA runs a numerator/sum pair that is
   recomputed from its window every 64 bars, and is exact over identical values as in 2.
7. A zero denominator (true-range sum, volume sum, deviation, DI sum of Pine's ``fixnan``
   case) never yields inf: the result is NaN, i.e. an absent vote, or Pine's documented value.
"""

from __future__ import annotations

import numba
import numpy as np

from portflow.ratings._jit import jit

# ---------------------------------------------------------------------------------------------
# sums and means


@jit
def _neumaier(s, comp, v):
    """Neumaier-compensated ``s + v``: returns the new sum and the accumulated correction."""
    t = s + v
    if abs(s) >= abs(v):
        comp += (s - t) + v
    else:
        comp += (v - t) + s
    return t, comp


@jit
def prefix_sums(x, ph, pl, nan_count, run):
    """Prefix data for window sums of ``x`` (L,): all outputs (L,).

    ph + pl: double-double running total of the finite values (TwoSum keeps the rounding error
    of every addition in ``pl``), so a window sum is a difference of prefixes with about one
    rounding of error however long the series. nan_count: number of NaNs in x[0..t].
    run: number of identical finite values ending at t (0 at a NaN).
    """
    hi = 0.0
    lo = 0.0
    nans = 0
    r = 0
    for t in range(x.shape[0]):
        xt = x[t]
        if xt == xt:
            s = hi + xt
            bp = s - hi
            lo += (hi - (s - bp)) + (xt - bp)
            hi = s
            r = r + 1 if (t > 0 and xt == x[t - 1]) else 1
        else:
            nans += 1
            r = 0
        ph[t] = hi
        pl[t] = lo
        nan_count[t] = nans
        run[t] = r


@jit
def window_from_prefix(x, ph, pl, nan_count, run, n, out, mean):
    """Rolling sum (``mean=False``) or SMA (``mean=True``) over ``n`` bars from ``prefix_sums``.

    NaN until ``n`` values are in the window or while the window holds a NaN; the SMA is exactly
    ``x[t]`` when the last ``n`` values are identical.
    """
    for t in range(x.shape[0]):
        if t < n - 1:
            out[t] = np.nan
            continue
        if t >= n:
            nans = nan_count[t] - nan_count[t - n]
            total = (ph[t] - ph[t - n]) + (pl[t] - pl[t - n])
        else:
            nans = nan_count[t]
            total = ph[t] + pl[t]
        if nans > 0:
            out[t] = np.nan
        elif mean:
            out[t] = x[t] if run[t] >= n else total / n
        else:
            out[t] = total


@jit
def window_sum(x, n, out, mean):
    """Rolling sum (``mean=False``) or SMA (``mean=True``) of ``x`` over ``n`` bars."""
    size = x.shape[0]
    ph = np.empty(size)
    pl = np.empty(size)
    nan_count = np.empty(size, np.int64)
    run = np.empty(size, np.int64)
    prefix_sums(x, ph, pl, nan_count, run)
    window_from_prefix(x, ph, pl, nan_count, run, n, out, mean)


@jit
def sma(x, n, out):
    """Simple moving average over ``n`` bars (exact over identical values)."""
    if n > 8:
        window_sum(x, n, out, True)
        return
    # Short windows (the 3-bar %K/%D smoothing): summing the window directly is cheaper than
    # building prefix arrays, and just as exact.
    valid_run = 0
    run = 0
    for t in range(x.shape[0]):
        xt = x[t]
        if xt != xt:
            valid_run = 0
            run = 0
            out[t] = np.nan
            continue
        valid_run += 1
        run = run + 1 if (t > 0 and xt == x[t - 1]) else 1
        if valid_run < n:
            out[t] = np.nan
        elif run >= n:
            out[t] = xt
        else:
            s = 0.0
            for i in range(t - n + 1, t + 1):
                s += x[i]
            out[t] = s / n


@jit
def _seed_mean(x, t, n):
    """Mean of x[t-n+1 .. t] (all finite), exactly x[t] when they are identical."""
    s = 0.0
    same = True
    x0 = x[t]
    for i in range(t - n + 1, t + 1):
        s += x[i]
        same = same and x[i] == x0
    return x0 if same else s / n


@jit
def ewm(x, n, alpha, out):
    """SMA-seeded exponential average: EMA with ``alpha = 2/(n+1)``, RMA with ``1/n``.

    The first output is the SMA of the first ``n`` finite values; a NaN input yields NaN and
    restarts the seed, as in Pine.
    """
    state = np.nan
    valid_run = 0
    for t in range(x.shape[0]):
        xt = x[t]
        if xt != xt:
            valid_run = 0
            state = np.nan
            out[t] = np.nan
            continue
        valid_run += 1
        if state != state:
            if valid_run < n:
                out[t] = np.nan
                continue
            state = _seed_mean(x, t, n)
        else:
            state += alpha * (xt - state)
        out[t] = state


@jit
def ema(x, n, out):
    """EMA seeded with the SMA of its first ``n`` values, alpha = 2/(n+1)."""
    ewm(x, n, 2.0 / (n + 1.0), out)


@jit
def rma(x, n, out):
    """Wilder's RMA seeded with the SMA of its first ``n`` values, alpha = 1/n."""
    ewm(x, n, 1.0 / n, out)


@jit
def wma(x, n, out):
    """Linearly weighted MA (weight n on the newest bar); exact over identical values.

    Running numerator and sum (W += n*x - S; S += x - x[t-n]), recomputed from the window
    every 64 bars so rounding cannot accumulate over a long series.
    """
    denom = n * (n + 1) / 2.0
    valid_run = 0
    run = 0
    num = 0.0
    tot = 0.0
    since = 0
    for t in range(x.shape[0]):
        xt = x[t]
        if xt != xt:
            valid_run = 0
            run = 0
            out[t] = np.nan
            continue
        valid_run += 1
        run = run + 1 if (t > 0 and xt == x[t - 1]) else 1
        if valid_run < n:
            out[t] = np.nan
            continue
        if valid_run == n or since >= 64:
            num = 0.0
            tot = 0.0
            for i in range(n):
                num += (n - i) * x[t - i]
                tot += x[t - i]
            since = 0
        else:
            num += n * xt - tot
            tot += xt - x[t - n]
            since += 1
        out[t] = xt if run >= n else num / denom


@jit
def hma(x, n, out):
    """Hull MA: WMA(2*WMA(x, n//2) - WMA(x, n), floor(sqrt(n)))."""
    size = x.shape[0]
    half = np.empty(size)
    full = np.empty(size)
    wma(x, max(n // 2, 1), half)
    wma(x, n, full)
    for t in range(size):
        half[t] = 2.0 * half[t] - full[t]
    wma(half, max(int(np.sqrt(n)), 1), out)


@jit
def vwma(c, v, n, out):
    """Volume-weighted MA = sum(c*v, n) / sum(v, n).

    NaN while the window holds a NaN or only zero volume (an absent vote, not inf); exactly
    the close when the window's closes are identical.
    """
    size = c.shape[0]
    s_cv = 0.0
    k_cv = 0.0
    s_v = 0.0
    k_v = 0.0
    nan_count = 0
    nonzero = 0
    run = 0
    for t in range(size):
        ct = c[t]
        vt = v[t]
        if ct == ct and vt == vt:
            s_cv, k_cv = _neumaier(s_cv, k_cv, ct * vt)
            s_v, k_v = _neumaier(s_v, k_v, vt)
            if vt != 0.0:
                nonzero += 1
        else:
            nan_count += 1
        run = run + 1 if (ct == ct and t > 0 and ct == c[t - 1]) else (1 if ct == ct else 0)
        if t >= n:
            co = c[t - n]
            vo = v[t - n]
            if co == co and vo == vo:
                s_cv, k_cv = _neumaier(s_cv, k_cv, -(co * vo))
                s_v, k_v = _neumaier(s_v, k_v, -vo)
                if vo != 0.0:
                    nonzero -= 1
            else:
                nan_count -= 1
        if nonzero == 0:
            # Restart from exact zeros so residue cannot fake a positive volume later.
            s_cv = 0.0
            k_cv = 0.0
            s_v = 0.0
            k_v = 0.0
        if t < n - 1 or nan_count > 0 or nonzero == 0:
            out[t] = np.nan
        elif run >= n:
            out[t] = ct
        else:
            den = s_v + k_v
            out[t] = (s_cv + k_cv) / den if den > 0.0 else np.nan


# ---------------------------------------------------------------------------------------------
# window extremes and stochastics


@jit
def rolling_extreme(x, n, out, is_max):
    """Highest (``is_max``) or lowest value over ``n`` bars into ``out``.

    NaN until the window is full or while it holds a NaN. van Herk / Gil-Werman: running
    extremes forward and backward inside blocks of ``n`` bars, so each output is the extreme of
    one suffix and one prefix, three comparisons per bar whatever the data (a monotone deque
    costs a data-dependent branch per bar and was ~6x slower here).
    """
    size = x.shape[0]
    if size == 0:
        return
    sign = 1.0 if is_max else -1.0
    fwd = np.empty(size)
    has_nan = False
    # Backward pass first, stored in ``out``; NaN becomes -inf so it never wins, and windows
    # that hold a NaN are masked at the end.
    for b0 in range(0, size, n):
        b1 = min(b0 + n, size)
        m = -np.inf
        for t in range(b0, b1):
            xt = sign * x[t]
            has_nan = has_nan or xt != xt
            if xt > m:
                m = xt
            fwd[t] = m
        m = -np.inf
        for t in range(b1 - 1, b0 - 1, -1):
            xt = sign * x[t]
            if xt > m:
                m = xt
            out[t] = m
    # Descending t so that out[t - n + 1] (a backward-pass value) is read before overwritten.
    for t in range(size - 1, -1, -1):
        if t < n - 1:
            out[t] = np.nan
        else:
            a = out[t - n + 1]
            b = fwd[t]
            out[t] = sign * (a if a > b else b)
    if not has_nan:
        return
    nan_count = 0
    for t in range(size):
        if x[t] != x[t]:
            nan_count += 1
        if t >= n and x[t - n] != x[t - n]:
            nan_count -= 1
        if nan_count > 0:
            out[t] = np.nan


@jit
def stoch_raw_from(src, hh, ll, out):
    """100 * ((src - ll) / (hh - ll)) given the window extremes; NaN on a zero range."""
    for t in range(src.shape[0]):
        rng = hh[t] - ll[t]
        out[t] = 100.0 * ((src[t] - ll[t]) / rng) if rng > 0.0 else np.nan


@jit
def stoch_raw(src, hi, lo, n, out):
    """100 * ((src - lowest(lo, n)) / (highest(hi, n) - lowest(lo, n))); NaN on a zero range."""
    size = src.shape[0]
    hh = np.empty(size)
    ll = np.empty(size)
    rolling_extreme(hi, n, hh, True)
    rolling_extreme(lo, n, ll, False)
    stoch_raw_from(src, hh, ll, out)


@jit
def stoch(hi, lo, src, n, smooth_k, smooth_d, k_out, d_out):
    """Slow stochastic: %K = SMA(raw, smooth_k), %D = SMA(%K, smooth_d)."""
    raw = np.empty(src.shape[0])
    stoch_raw(src, hi, lo, n, raw)
    sma(raw, smooth_k, k_out)
    sma(k_out, smooth_d, d_out)


@jit
def williams_r(hi, lo, c, n, out):
    """Williams %R = 100 * ((c - highest) / (highest - lowest)), in [-100, 0]."""
    size = c.shape[0]
    hh = np.empty(size)
    ll = np.empty(size)
    rolling_extreme(hi, n, hh, True)
    rolling_extreme(lo, n, ll, False)
    williams_r_from(c, hh, ll, out)


@jit
def williams_r_from(c, hh, ll, out):
    """Williams %R given the window extremes; NaN on a zero range."""
    for t in range(c.shape[0]):
        rng = hh[t] - ll[t]
        out[t] = 100.0 * ((c[t] - hh[t]) / rng) if rng > 0.0 else np.nan


# ---------------------------------------------------------------------------------------------
# oscillators


@jit
def _rsi_value(up, dn):
    if dn == 0.0:
        return 100.0
    if up == 0.0:
        return 0.0
    return 100.0 - 100.0 / (1.0 + up / dn)


@jit
def rsi(x, n, out):
    """Wilder RSI: RMA of gains and losses, each seeded with the SMA of its first ``n`` values.

    Pine's edge cases: no losses gives 100, no gains gives 0. After an unchanged close the
    previous value is kept exactly.
    """
    alpha = 1.0 / n
    up = np.nan
    dn = np.nan
    valid_run = 0
    for t in range(x.shape[0]):
        if t == 0 or x[t] != x[t] or x[t - 1] != x[t - 1]:
            valid_run = 0
            up = np.nan
            dn = np.nan
            out[t] = np.nan
            continue
        valid_run += 1
        ch = x[t] - x[t - 1]
        if up != up:
            if valid_run < n:
                out[t] = np.nan
                continue
            su = 0.0
            sd = 0.0
            for i in range(t - n + 1, t + 1):
                d = x[i] - x[i - 1]
                if d > 0.0:
                    su += d
                elif d < 0.0:
                    sd -= d
            up = su / n
            dn = sd / n
            out[t] = _rsi_value(up, dn)
            continue
        g = ch if ch > 0.0 else 0.0
        lo = -ch if ch < 0.0 else 0.0
        up += alpha * (g - up)
        dn += alpha * (lo - dn)
        out[t] = out[t - 1] if ch == 0.0 else _rsi_value(up, dn)


@jit
def cci(x, n, out):
    """CCI = (x - SMA(x, n)) / (0.015 * mean absolute deviation); NaN when the deviation is 0."""
    ma = np.empty(x.shape[0])
    sma(x, n, ma)
    cci_from_mean(x, ma, n, out)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def cci_from_mean(x, ma, n, out):
    """CCI of ``x`` given its SMA ``ma`` over ``n`` bars (NaN where ``ma`` is NaN)."""
    size = x.shape[0]
    s = min(n - 1, size)
    for t in range(s):
        out[t] = np.nan
    # Views from bar n - 1 and indices u + i >= 0: a possibly negative index (t - n + 1 + i)
    # makes numba's wraparound check turn the window loads into gathers.
    ma_v = ma[s:]
    x_v = x[s:]
    out_v = out[s:]
    for u in range(size - s):
        m = ma_v[u]
        if m != m:
            out_v[u] = np.nan
            continue
        # Reassociation (fastmath "reassoc", this function only) lets the deviation sum
        # vectorise; the order does not matter for the one exact case that counts: identical
        # values give exact zeros in any order.
        dev = 0.0
        for i in range(n):
            dev += abs(x[u + i] - m)
        dev /= n
        out_v[u] = (x_v[u] - m) / (0.015 * dev) if dev > 0.0 else np.nan


@jit
def dmi(hi, lo, c, n_di, n_adx, plus_out, minus_out, adx_out):
    """Pine ``ta.dmi``: +DI, -DI from RMA(+DM)/RMA(TR), ADX = 100 * RMA(|+DI - -DI| / sum).

    Pine's ``fixnan`` (carry the last DI) is applied where the smoothed true range is zero;
    NaN inputs still give NaN so padding stays NaN.
    """
    size = c.shape[0]
    tr = np.empty(size)
    pdm = np.empty(size)
    mdm = np.empty(size)
    if size > 0:
        tr[0] = np.nan
        pdm[0] = np.nan
        mdm[0] = np.nan
    for t in range(1, size):
        up = hi[t] - hi[t - 1]
        down = lo[t - 1] - lo[t]
        if up != up or down != down:
            pdm[t] = np.nan
            mdm[t] = np.nan
        else:
            pdm[t] = up if (up > down and up > 0.0) else 0.0
            mdm[t] = down if (down > up and down > 0.0) else 0.0
        pc = c[t - 1]
        tr[t] = max(hi[t] - lo[t], max(abs(hi[t] - pc), abs(lo[t] - pc)))
        if hi[t] != hi[t] or lo[t] != lo[t] or pc != pc:
            tr[t] = np.nan
    rtr = np.empty(size)
    rpdm = np.empty(size)
    rmdm = np.empty(size)
    rma(tr, n_di, rtr)
    rma(pdm, n_di, rpdm)
    rma(mdm, n_di, rmdm)
    dx = tr  # tr is no longer needed
    last_p = np.nan
    last_m = np.nan
    for t in range(size):
        den = rtr[t]
        if den != den or rpdm[t] != rpdm[t] or rmdm[t] != rmdm[t]:
            p = np.nan
            m = np.nan
        elif den == 0.0:
            p = last_p
            m = last_m
        else:
            p = 100.0 * rpdm[t] / den
            m = 100.0 * rmdm[t] / den
            last_p = p
            last_m = m
        plus_out[t] = p
        minus_out[t] = m
        s = p + m
        dx[t] = abs(p - m) / (s if s != 0.0 else 1.0)
    rma(dx, n_adx, adx_out)
    for t in range(size):
        adx_out[t] *= 100.0


@jit
def ao(hi, lo, fast, slow, out):
    """Awesome Oscillator = SMA(hl2, fast) - SMA(hl2, slow); exactly 0 over a flat hl2."""
    size = hi.shape[0]
    hl2 = np.empty(size)
    for t in range(size):
        hl2[t] = (hi[t] + lo[t]) / 2.0
    slow_ma = np.empty(size)
    sma(hl2, fast, out)
    sma(hl2, slow, slow_ma)
    for t in range(size):
        out[t] -= slow_ma[t]


@jit
def mom(x, n, out):
    """Momentum = x - x[n]."""
    for t in range(x.shape[0]):
        out[t] = x[t] - x[t - n] if t >= n else np.nan


@jit
def macd(x, fast, slow, signal, line_out, signal_out):
    """MACD line = EMA(fast) - EMA(slow); signal = EMA(line, signal); all SMA-seeded."""
    size = x.shape[0]
    slow_ma = np.empty(size)
    ema(x, fast, line_out)
    ema(x, slow, slow_ma)
    for t in range(size):
        line_out[t] -= slow_ma[t]
    ema(line_out, signal, signal_out)


@jit
def stoch_rsi(x, n_rsi, n_stoch, smooth_k, smooth_d, k_out, d_out):
    """Stoch RSI: %K = SMA(stoch(rsi, rsi, rsi, n_stoch), smooth_k), %D = SMA(%K, smooth_d)."""
    r = np.empty(x.shape[0])
    rsi(x, n_rsi, r)
    stoch(r, r, r, n_stoch, smooth_k, smooth_d, k_out, d_out)


@jit
def bull_bear_power(hi, lo, c, n, bull_out, bear_out):
    """Bull power = high - EMA(close, n); bear power = low - EMA(close, n)."""
    e = np.empty(c.shape[0])
    ema(c, n, e)
    for t in range(c.shape[0]):
        bull_out[t] = hi[t] - e[t]
        bear_out[t] = lo[t] - e[t]


@jit
def ultimate_oscillator(hi, lo, c, n1, n2, n3, out):
    """UO = 100 * (4*A1 + 2*A2 + A3) / 7 with A = sum(bp, n) / sum(tr, n).

    bp = close - min(low, close[1]); tr = max(high, close[1]) - min(low, close[1]). NaN when a
    true-range sum is zero.
    """
    size = c.shape[0]
    bp = np.empty(size)
    tr = np.empty(size)
    if size > 0:
        bp[0] = np.nan
        tr[0] = np.nan
    for t in range(1, size):
        pc = c[t - 1]
        tl = min(lo[t], pc)
        bp[t] = c[t] - tl
        tr[t] = max(hi[t], pc) - tl
        if pc != pc or lo[t] != lo[t] or hi[t] != hi[t] or c[t] != c[t]:
            bp[t] = np.nan
            tr[t] = np.nan
    pb_hi = np.empty(size)
    pb_lo = np.empty(size)
    pt_hi = np.empty(size)
    pt_lo = np.empty(size)
    nan_count = np.empty(size, np.int64)
    run = np.empty(size, np.int64)
    prefix_sums(bp, pb_hi, pb_lo, nan_count, run)
    prefix_sums(tr, pt_hi, pt_lo, nan_count, run)
    longest = max(n1, max(n2, n3))
    for t in range(size):
        # bp and tr start at bar 1 and share their NaNs, so one count serves both.
        if t < longest or nan_count[t] - nan_count[t - longest] > 0:
            out[t] = np.nan
            continue
        s1 = (pt_hi[t] - pt_hi[t - n1]) + (pt_lo[t] - pt_lo[t - n1])
        s2 = (pt_hi[t] - pt_hi[t - n2]) + (pt_lo[t] - pt_lo[t - n2])
        s3 = (pt_hi[t] - pt_hi[t - n3]) + (pt_lo[t] - pt_lo[t - n3])
        if s1 > 0.0 and s2 > 0.0 and s3 > 0.0:
            a1 = ((pb_hi[t] - pb_hi[t - n1]) + (pb_lo[t] - pb_lo[t - n1])) / s1
            a2 = ((pb_hi[t] - pb_hi[t - n2]) + (pb_lo[t] - pb_lo[t - n2])) / s2
            a3 = ((pb_hi[t] - pb_hi[t - n3]) + (pb_lo[t] - pb_lo[t - n3])) / s3
            out[t] = 100.0 * (4.0 * a1 + 2.0 * a2 + a3) / 7.0
        else:
            out[t] = np.nan


@jit
def donchian_mid(hi, lo, n, out):
    """(highest(hi, n) + lowest(lo, n)) / 2, the Ichimoku line over ``n`` bars."""
    ll = np.empty(hi.shape[0])
    rolling_extreme(hi, n, out, True)
    rolling_extreme(lo, n, ll, False)
    for t in range(hi.shape[0]):
        out[t] = (out[t] + ll[t]) / 2.0


@jit
def ichimoku(hi, lo, n_conv, n_base, n_span, disp, conv, base, lead1, lead2, l1d, l2d):
    """Ichimoku lines; ``l1d``/``l2d`` are lead1/lead2 ``disp`` bars back (the cloud at t)."""
    donchian_mid(hi, lo, n_conv, conv)
    donchian_mid(hi, lo, n_base, base)
    donchian_mid(hi, lo, n_span, lead2)
    for t in range(hi.shape[0]):
        lead1[t] = (conv[t] + base[t]) / 2.0
    for t in range(hi.shape[0]):
        if t >= disp:
            l1d[t] = lead1[t - disp]
            l2d[t] = lead2[t - disp]
        else:
            l1d[t] = np.nan
            l2d[t] = np.nan


# ---------------------------------------------------------------------------------------------
# engine fast paths (NaN-free inputs: the engine validates its bars first)


@jit
def ema_bank(x, lengths, out):
    """EMAs of NaN-free ``x`` (L,) for every length in the tuple ``lengths`` into ``out`` (m, L).

    One pass advances all m recursions together: each EMA is a serial dependency chain, and
    interleaving independent chains keeps the CPU busy instead of waiting on each one.
    """
    m = len(lengths)
    state = np.empty(m)
    alpha = np.empty(m)
    for i in range(m):
        alpha[i] = 2.0 / (lengths[i] + 1.0)
        state[i] = np.nan
    for t in range(x.shape[0]):
        xt = x[t]
        for i in range(m):
            n = lengths[i]
            if t < n - 1:
                out[i, t] = np.nan
            elif t == n - 1:
                st = _seed_mean(x, t, n)
                state[i] = st
                out[i, t] = st
            else:
                st = state[i]
                st += alpha[i] * (xt - st)
                state[i] = st
                out[i, t] = st
