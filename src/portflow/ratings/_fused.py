"""Fused single-pass kernels for the ratings engine (NaN-free high/low/close only).

The engine validates its bars first, so within a column high, low and close are finite. The
passes here exploit that: no NaN bookkeeping, several independent recursions advanced in one
loop (their serial dependency chains overlap instead of running one after another), window
extremes computed directly (vectorised), and vote loops written branch-free so they vectorise.

Bit-identity contract: every value is produced by the same floating-point operations, in the
same order, as the general kernels of ``_core`` (SMA-seeded recursions ``s += a * (x - s)``,
TwoSum prefix sums, WMA's recompute-every-65-bars schedule, ...); only the control flow and
memory traffic differ. ``tests/ratings/test_engine.py`` checks every engine vote and the DMI
lines against the public kernels, and ``tests/ratings/test_fused.py`` checks these passes
against the ``_core`` kernels on data with many exact ties.

All outputs are caller-provided; nothing here allocates.
"""

from __future__ import annotations

import numpy as np

from portflow.ratings._jit import jit

_ABSENT = -128  # engine.VOTE_ABSENT (kept local: engine imports this module)


# ---------------------------------------------------------------------------------------------
# votes (branch-free steady state)


@jit
def vote_ma_from(ma, c, start, out):
    """MA vote (buy MA < close, sell MA > close) with ``ma`` finite from ``start`` on.

    Hot loops index views from 0 (``view[u]``, ``x[u + k]`` with a literal k >= 0): with a
    runtime or negative offset numba's negative-index wraparound turns loads into gathers.
    """
    size = c.shape[0]
    s = min(start, size)
    for t in range(s):
        out[t] = _ABSENT
    ma_s = ma[s:]
    c_s = c[s:]
    out_s = out[s:]
    for u in range(size - s):
        m = ma_s[u]
        ct = c_s[u]
        out_s[u] = np.int8(m < ct) - np.int8(m > ct)


@jit
def sma_votes_from_prefix(c, ph, pl, run, n, out):
    """MA vote of SMA(c, n) from ``prefix_sums`` of NaN-free close (as ``window_from_prefix``)."""
    size = c.shape[0]
    for t in range(min(n - 1, size)):
        out[t] = _ABSENT
    if size < n:
        return
    t = n - 1
    m = (ph[t] + pl[t]) / n
    ct = c[t]
    out[t] = 0 if run[t] >= n else np.int8(m < ct) - np.int8(m > ct)
    # t = u + n (views from n, see ``vote_ma_from``)
    ph_n = ph[n:]
    pl_n = pl[n:]
    c_n = c[n:]
    run_n = run[n:]
    out_n = out[n:]
    for u in range(size - n):
        m = ((ph_n[u] - ph[u]) + (pl_n[u] - pl[u])) / n
        ct = c_n[u]
        v = np.int8(m < ct) - np.int8(m > ct)
        out_n[u] = v if run_n[u] < n else 0


@jit
def sma_from_prefix(c, ph, pl, run, n, out):
    """SMA(c, n) of NaN-free ``c`` from its ``prefix_sums`` (``window_from_prefix`` values)."""
    size = c.shape[0]
    for t in range(min(n - 1, size)):
        out[t] = np.nan
    if size < n:
        return
    t = n - 1
    out[t] = c[t] if run[t] >= n else (ph[t] + pl[t]) / n
    ph_n = ph[n:]
    pl_n = pl[n:]
    c_n = c[n:]
    run_n = run[n:]
    out_n = out[n:]
    for u in range(size - n):
        m = ((ph_n[u] - ph[u]) + (pl_n[u] - pl[u])) / n
        out_n[u] = c_n[u] if run_n[u] >= n else m


@jit
def sma3(x, out):
    """``_core.sma(x, 3, out)``: NaN while the window holds a NaN, exactly the value over three
    identical values, else the plain sum / 3 in window order (branch-free, vectorised)."""
    size = x.shape[0]
    for t in range(min(2, size)):
        out[t] = np.nan
    for u in range(size - 2):
        x0 = x[u]
        x1 = x[u + 1]
        x2 = x[u + 2]
        m = ((0.0 + x0) + x1) + x2
        m = m / 3
        ok = (x0 == x0) & (x1 == x1) & (x2 == x2)
        same = (x1 == x0) & (x2 == x1)
        out[u + 2] = (x2 if same else m) if ok else np.nan


@jit
def sma5(x, out):
    """``_core.sma(x, 5, out)`` for NaN-free ``x`` (see ``sma3``)."""
    size = x.shape[0]
    for t in range(min(4, size)):
        out[t] = np.nan
    for u in range(size - 4):
        x0 = x[u]
        x1 = x[u + 1]
        x2 = x[u + 2]
        x3 = x[u + 3]
        x4 = x[u + 4]
        m = ((((0.0 + x0) + x1) + x2) + x3) + x4
        m = m / 5
        same = (x1 == x0) & (x2 == x1) & (x3 == x2) & (x4 == x3)
        out[u + 4] = x4 if same else m


@jit
def prefix_sums_nan_free(x, ph, pl, run):
    """``_core.prefix_sums`` for a NaN-free ``x`` (no NaN count)."""
    hi = 0.0
    lo = 0.0
    r = 0
    prev = np.nan
    for t in range(x.shape[0]):
        xt = x[t]
        s = hi + xt
        bp = s - hi
        lo += (hi - (s - bp)) + (xt - bp)
        hi = s
        r = r + 1 if xt == prev else 1
        prev = xt
        ph[t] = hi
        pl[t] = lo
        run[t] = r


# ---------------------------------------------------------------------------------------------
# EMAs of close: (10, 20, 30, 50, 100, 200, 12, 26, 13)

_HEAD = 200  # the longest EMA; from this bar on every recursion is running


@jit
def ema_bank9(x, out, ema_bank, macd=None, ema=None):
    """``_core.ema_bank(x, (10, 20, 30, 50, 100, 200, 12, 26, 13), out)`` for NaN-free ``x``.

    The first 200 bars run the general kernel (``ema_bank``, passed in to avoid an import
    cycle); after that all nine recursions are live and advance together in scalar registers.

    With ``macd`` ((2, n) scratch) and ``ema`` (``_core.ema``) also the MACD (12, 26, 9) line
    EMA12 - EMA26 into ``macd[0]`` and its signal ``_core.ema(line, 9)`` into ``macd[1]``: the
    signal's recursion rides in the same loop (one more chain beside nine costs little; run
    on its own, its latency chain cost two thirds of the nine's pass). Without them (the
    default) that code is compiled out.
    """
    size = x.shape[0]
    head = min(size, _HEAD)
    ema_bank(x[:head], (10, 20, 30, 50, 100, 200, 12, 26, 13), out[:, :head])
    if macd is not None:
        # The signal is seeded (bar 33) well inside the head: after it, only its recursion.
        for t in range(head):
            macd[0, t] = out[6, t] - out[7, t]
        ema(macd[0, :head], np.int64(9), macd[1, :head])
    if size <= _HEAD:
        return
    a0 = 2.0 / (10 + 1.0)
    a1 = 2.0 / (20 + 1.0)
    a2 = 2.0 / (30 + 1.0)
    a3 = 2.0 / (50 + 1.0)
    a4 = 2.0 / (100 + 1.0)
    a5 = 2.0 / (200 + 1.0)
    a6 = 2.0 / (12 + 1.0)
    a7 = 2.0 / (26 + 1.0)
    a8 = 2.0 / (13 + 1.0)
    a9 = 2.0 / (9 + 1.0)  # _core.ema's alpha for the signal
    p = _HEAD - 1
    s0 = out[0, p]
    s1 = out[1, p]
    s2 = out[2, p]
    s3 = out[3, p]
    s4 = out[4, p]
    s5 = out[5, p]
    s6 = out[6, p]
    s7 = out[7, p]
    s8 = out[8, p]
    sig = macd[1, p] if macd is not None else 0.0
    for t in range(_HEAD, size):
        xt = x[t]
        s0 += a0 * (xt - s0)
        s1 += a1 * (xt - s1)
        s2 += a2 * (xt - s2)
        s3 += a3 * (xt - s3)
        s4 += a4 * (xt - s4)
        s5 += a5 * (xt - s5)
        s6 += a6 * (xt - s6)
        s7 += a7 * (xt - s7)
        s8 += a8 * (xt - s8)
        out[0, t] = s0
        out[1, t] = s1
        out[2, t] = s2
        out[3, t] = s3
        out[4, t] = s4
        out[5, t] = s5
        out[6, t] = s6
        out[7, t] = s7
        out[8, t] = s8
        if macd is not None:
            line = s6 - s7
            sig += a9 * (line - sig)
            macd[0, t] = line
            macd[1, t] = sig


# ---------------------------------------------------------------------------------------------
# Hull MA 9 = WMA(2 * WMA(x, 4) - WMA(x, 9), 3), three WMAs in one pass


@jit
def hma9(x, half, full, d, out):
    """``_core.hma(x, 9, out)`` for NaN-free ``x``; half, full, d are (n,) scratch.

    Each WMA keeps ``_core.wma``'s arithmetic: running numerator/sum, recomputed from the
    window when it first fills and then every 65th bar, exactly the newest value over a run
    of identical values.
    """
    size = x.shape[0]
    num_a = 0.0
    tot_a = 0.0
    since_a = 0
    num_b = 0.0
    tot_b = 0.0
    since_b = 0
    num_c = 0.0
    tot_c = 0.0
    since_c = 0
    run_x = 0
    run_d = 0
    den_a = 4 * 5 / 2.0
    den_b = 9 * 10 / 2.0
    den_c = 3 * 4 / 2.0
    prev = np.nan
    for t in range(size):
        xt = x[t]
        run_x = run_x + 1 if xt == prev else 1
        prev = xt
        # WMA(x, 4); valid run = t + 1
        if t < 3:
            half[t] = np.nan
        else:
            if t == 3 or since_a >= 64:
                num_a = 0.0
                tot_a = 0.0
                for i in range(4):
                    num_a += (4 - i) * x[t - i]
                    tot_a += x[t - i]
                since_a = 0
            else:
                num_a += 4 * xt - tot_a
                tot_a += xt - x[t - 4]
                since_a += 1
            half[t] = xt if run_x >= 4 else num_a / den_a
        # WMA(x, 9)
        if t < 8:
            full[t] = np.nan
            d[t] = np.nan
            out[t] = np.nan
            continue
        if t == 8 or since_b >= 64:
            num_b = 0.0
            tot_b = 0.0
            for i in range(9):
                num_b += (9 - i) * x[t - i]
                tot_b += x[t - i]
            since_b = 0
        else:
            num_b += 9 * xt - tot_b
            tot_b += xt - x[t - 9]
            since_b += 1
        fb = xt if run_x >= 9 else num_b / den_b
        full[t] = fb
        # WMA(d, 3) of d = 2 * half - full, finite from bar 8 (valid run = t - 7)
        dt = 2.0 * half[t] - fb
        d[t] = dt
        run_d = run_d + 1 if (t > 8 and dt == d[t - 1]) else 1
        if t < 10:
            out[t] = np.nan
            continue
        if t == 10 or since_c >= 64:
            num_c = 0.0
            tot_c = 0.0
            for i in range(3):
                num_c += (3 - i) * d[t - i]
                tot_c += d[t - i]
            since_c = 0
        else:
            num_c += 3 * dt - tot_c
            tot_c += dt - d[t - 3]
            since_c += 1
        out[t] = dt if run_d >= 3 else num_c / den_c


# ---------------------------------------------------------------------------------------------
# window extremes


@jit
def extremes(hi, lo, first, n, hh, ll):
    """Highest of ``hi`` and lowest of ``lo`` over ``n`` bars, both finite from ``first`` on.

    NaN before ``first + n - 1`` (as ``_core.rolling_extreme`` on a series NaN before
    ``first``). Direct window scans: exact, branch-free and vectorised for short windows.
    """
    size = hi.shape[0]
    s = min(first + n - 1, size)
    for t in range(s):
        hh[t] = np.nan
        ll[t] = np.nan
    if s == size:
        return
    hv = hi[first:]
    lv = lo[first:]
    hv_new = hi[s:]
    lv_new = lo[s:]
    hho = hh[s:]
    llo = ll[s:]
    for u in range(size - s):
        mh = hv_new[u]
        ml = lv_new[u]
        for i in range(n - 1):
            a = hv[u + i]
            b = lv[u + i]
            mh = a if a > mh else mh
            ml = b if b < ml else ml
        hho[u] = mh
        llo[u] = ml


@jit
def extremes9(hi, lo, hh, ll):
    """9-bar highest high and lowest low of NaN-free bars (window length fixed for unrolling)."""
    size = hi.shape[0]
    for t in range(min(8, size)):
        hh[t] = np.nan
        ll[t] = np.nan
    # Indices written as u + i with u, i >= 0: numba's negative-index wraparound then folds
    # away and the loop vectorises with plain loads (``t - i`` compiles to gathers).
    for u in range(size - 8):
        mh = hi[u + 8]
        ml = lo[u + 8]
        for i in range(8):
            a = hi[u + i]
            b = lo[u + i]
            mh = a if a > mh else mh
            ml = b if b < ml else ml
        hh[u + 8] = mh
        ll[u + 8] = ml


@jit
def stoch_raw_from(src, hh, ll, start, out):
    """``100 * ((src - ll) / (hh - ll))``, NaN on a zero range or before ``start``."""
    size = src.shape[0]
    s = min(start, size)
    for t in range(s):
        out[t] = np.nan
    src_s = src[s:]
    hh_s = hh[s:]
    ll_s = ll[s:]
    out_s = out[s:]
    for u in range(size - s):
        lt = ll_s[u]
        rng = hh_s[u] - lt
        q = 100.0 * ((src_s[u] - lt) / rng)
        out_s[u] = q if rng > 0.0 else np.nan


@jit
def stoch_and_williams_raw(hh9, ll9, c, raw, wr):
    """Raw 14-bar stochastic and Williams %R from the 9-bar extremes ([t-13, t] is the union
    of the 9-bar windows ending at t and t-5); NaN on a zero range."""
    size = c.shape[0]
    for t in range(min(13, size)):
        raw[t] = np.nan
        wr[t] = np.nan
    for u in range(size - 13):
        a = hh9[u + 13]
        b = hh9[u + 8]
        hh = max(a, b)
        a = ll9[u + 13]
        b = ll9[u + 8]
        ll = min(a, b)
        rng = hh - ll
        ct = c[u + 13]
        x = 100.0 * ((ct - ll) / rng)
        y = 100.0 * ((ct - hh) / rng)
        ok = rng > 0.0
        raw[u + 13] = x if ok else np.nan
        wr[u + 13] = y if ok else np.nan


# ---------------------------------------------------------------------------------------------
# DMI (14, 14) in one pass


@jit
def dmi14(hi, lo, c, plus_out, minus_out, adx_out):
    """``_core.dmi(hi, lo, c, 14, 14, ...)`` for NaN-free bars in one pass.

    The three Wilder averages of TR, +DM, -DM and the one of DX run side by side; each keeps
    ``_core.ewm``'s arithmetic (seed = plain sum of its first 14 values / 14, exactly the value
    when they are identical; restart after a NaN DX, which Pine's ``fixnan`` can produce
    before the first non-zero range).
    """
    size = c.shape[0]
    n = 14
    alpha = 1.0 / n
    if size > 0:
        plus_out[0] = np.nan
        minus_out[0] = np.nan
        adx_out[0] = np.nan
    # seeds of the three DI averages: bars 1..14
    s_tr = 0.0
    s_p = 0.0
    s_m = 0.0
    same_tr = True
    same_p = True
    same_m = True
    f_tr = 0.0
    f_p = 0.0
    f_m = 0.0
    rtr = np.nan
    rp = np.nan
    rm = np.nan
    last_p = np.nan
    last_m = np.nan
    # ADX average state (restarts on a NaN DX)
    adx = np.nan
    vr_dx = 0
    s_dx = 0.0
    same_dx = True
    f_dx = 0.0
    for u in range(size - 1):
        t = u + 1
        up = hi[t] - hi[u]
        down = lo[u] - lo[t]
        pdm = up if (up > down and up > 0.0) else 0.0
        mdm = down if (down > up and down > 0.0) else 0.0
        pc = c[u]
        tr = max(hi[t] - lo[t], max(abs(hi[t] - pc), abs(lo[t] - pc)))
        if t < n:
            if t == 1:
                f_tr = tr
                f_p = pdm
                f_m = mdm
            s_tr += tr
            s_p += pdm
            s_m += mdm
            same_tr = same_tr and tr == f_tr
            same_p = same_p and pdm == f_p
            same_m = same_m and mdm == f_m
            plus_out[t] = np.nan
            minus_out[t] = np.nan
            adx_out[t] = np.nan
            continue
        if t == n:
            s_tr += tr
            s_p += pdm
            s_m += mdm
            same_tr = same_tr and tr == f_tr
            same_p = same_p and pdm == f_p
            same_m = same_m and mdm == f_m
            rtr = tr if same_tr else s_tr / n
            rp = pdm if same_p else s_p / n
            rm = mdm if same_m else s_m / n
        else:
            rtr += alpha * (tr - rtr)
            rp += alpha * (pdm - rp)
            rm += alpha * (mdm - rm)
        if rtr == 0.0:
            p = last_p
            m = last_m
        else:
            p = 100.0 * rp / rtr
            m = 100.0 * rm / rtr
            last_p = p
            last_m = m
        plus_out[t] = p
        minus_out[t] = m
        sm = p + m
        dx = abs(p - m) / (sm if sm != 0.0 else 1.0)
        # Wilder average of DX (``_core.ewm`` with its NaN restart)
        if dx != dx:
            vr_dx = 0
            adx = np.nan
            adx_out[t] = np.nan
            continue
        vr_dx += 1
        if adx != adx:
            if vr_dx == 1:
                s_dx = 0.0
                same_dx = True
                f_dx = dx
            s_dx += dx
            same_dx = same_dx and dx == f_dx
            if vr_dx < n:
                adx_out[t] = np.nan
                continue
            adx = dx if same_dx else s_dx / n
        else:
            adx += alpha * (dx - adx)
        adx_out[t] = adx * 100.0


# ---------------------------------------------------------------------------------------------
# Ultimate Oscillator (7, 14, 28)


@jit
def uo_7_14_28(hi, lo, c, pb_hi, pb_lo, pt_hi, pt_lo, out):
    """``_core.ultimate_oscillator(hi, lo, c, 7, 14, 28, out)`` for NaN-free bars.

    Both TwoSum prefix chains (buying pressure, true range) advance in one loop; the four
    prefix arrays are (n,) scratch.
    """
    size = c.shape[0]
    bh = 0.0
    bl = 0.0
    th = 0.0
    tl_ = 0.0
    if size > 0:
        pb_hi[0] = 0.0
        pb_lo[0] = 0.0
        pt_hi[0] = 0.0
        pt_lo[0] = 0.0
    for u in range(size - 1):
        t = u + 1
        pc = c[u]
        low_t = min(lo[t], pc)
        bp = c[t] - low_t
        tr = max(hi[t], pc) - low_t
        s = bh + bp
        q = s - bh
        bl += (bh - (s - q)) + (bp - q)
        bh = s
        s = th + tr
        q = s - th
        tl_ += (th - (s - q)) + (tr - q)
        th = s
        pb_hi[t] = bh
        pb_lo[t] = bl
        pt_hi[t] = th
        pt_lo[t] = tl_
    for t in range(min(28, size)):
        out[t] = np.nan
    # t = u + 28
    for u in range(size - 28):
        t = u + 28
        s1 = (pt_hi[t] - pt_hi[u + 21]) + (pt_lo[t] - pt_lo[u + 21])
        s2 = (pt_hi[t] - pt_hi[u + 14]) + (pt_lo[t] - pt_lo[u + 14])
        s3 = (pt_hi[t] - pt_hi[u]) + (pt_lo[t] - pt_lo[u])
        a1 = ((pb_hi[t] - pb_hi[u + 21]) + (pb_lo[t] - pb_lo[u + 21])) / s1
        a2 = ((pb_hi[t] - pb_hi[u + 14]) + (pb_lo[t] - pb_lo[u + 14])) / s2
        a3 = ((pb_hi[t] - pb_hi[u]) + (pb_lo[t] - pb_lo[u])) / s3
        uo = 100.0 * (4.0 * a1 + 2.0 * a2 + a3) / 7.0
        out[t] = uo if ((s1 > 0.0) & (s2 > 0.0) & (s3 > 0.0)) else np.nan


# ---------------------------------------------------------------------------------------------
# RSI 14 and momentum 10 of NaN-free close


@jit
def rsi14(x, out):
    """``_core.rsi(x, 14, out)`` for NaN-free ``x``."""
    size = x.shape[0]
    n = 14
    alpha = 1.0 / n
    for t in range(min(n, size)):
        out[t] = np.nan
    if size <= n:
        return
    su = 0.0
    sd = 0.0
    for u in range(n):
        d = x[u + 1] - x[u]
        if d > 0.0:
            su += d
        elif d < 0.0:
            sd -= d
    up = su / n
    dn = sd / n
    prev = _rsi_value(up, dn)
    out[n] = prev
    for u in range(n, size - 1):
        ch = x[u + 1] - x[u]
        g = ch if ch > 0.0 else 0.0
        lo = -ch if ch < 0.0 else 0.0
        up += alpha * (g - up)
        dn += alpha * (lo - dn)
        if ch != 0.0:
            prev = _rsi_value(up, dn)
        out[u + 1] = prev


@jit
def _rsi_value(up, dn):
    if dn == 0.0:
        return 100.0
    if up == 0.0:
        return 0.0
    return 100.0 - 100.0 / (1.0 + up / dn)


@jit
def mom_votes(c, n, out):
    """Momentum vote (buy rising, sell falling) of ``c - c[n]``; needs bars n and n + 1 back."""
    size = c.shape[0]
    for t in range(min(n + 1, size)):
        out[t] = _ABSENT
    # t = u + n + 1, through views from n: with the runtime ``n`` inside the index numba's
    # wraparound check kept the loop scalar.
    c_n = c[n:]
    out_n1 = out[n + 1 :]
    for u in range(size - n - 1):
        a = c_n[u + 1] - c[u + 1]
        b = c_n[u] - c[u]
        out_n1[u] = np.int8(a > b) - np.int8(a < b)
