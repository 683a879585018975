"""TradingView technical ratings (Pine ``TechnicalRating`` v3, SPEC §5) for a panel of symbols.

Input layout: five float64 arrays of shape (T, N), one column per symbol holding that symbol's
own consecutive stored bars from row 0, NaN after its last bar. A missing calendar day is not a
bar, so there is no gap inside a column.

Algorithm (``compute_ratings``):

1. Spread blocks of 16 columns over threads (``numba.prange``). Each thread copies its block's
   high, low, close and volume, every row, into contiguous scratch, one row per column, so
   inputs may be read-only, strided or F-ordered views without a copy of the panel, and only
   outputs are written back: peak memory is the inputs, the outputs and O(T) scratch per
   thread. Blocks of 16 columns make each row read 128 contiguous bytes (a pair of cache
   lines), and gather and scatter prefetch the rows ahead; they go one array at a time (few
   memory streams), and all per-column scratch is allocated once per block.
2. Validate each column from that copy, so the panel is read once: the bar count ``n_j`` is
   the number of leading rows with a non-NaN close; every later close must be NaN (else
   ``ValueError``: bars must be left-aligned) and open/high/low/close must be finite in the
   first ``n_j`` rows. Volume may be NaN or 0; VWMA is then absent for the windows that hold
   it. A block with a bad column computes nothing further; the caller raises for the first
   bad column. Open, which no rule reads, is not gathered: after the blocks, threads check it
   in chunks of whole rows (contiguous memory) against the bar counts.
3. Per column compute the 26 components, with the serial kernels of ``_core`` (the code the
   public kernels in ``kernels`` run) or, where the bars being NaN-free allows a faster pass,
   with ``_fused``'s single-pass versions that repeat ``_core``'s floating-point operations
   in the same order (bit-identical; ``tests/ratings/test_fused.py``). Hot loops index from 0
   (views, ``x[u + k]``): a possibly negative index makes numba's wraparound check compile
   window loads to gathers. Each component becomes a vote per bar: +1 buy, -1 sell,
   0 neutral, or absent (``VOTE_ABSENT``) while any value the rule reads (including the
   previous bar for "rising", and ``[k]`` look-backs such as AO[2]) is not yet available.
   Rising means strictly greater than the previous bar. Work shared between components is
   done once: one prefix-sum pass serves the six SMAs, one pass advances all nine EMAs
   (10..200, 12, 26, 13; MACD and Bull Bear Power reuse them) and the MACD signal, the
   9-bar high/low extremes give the 14-, 26- and 52-bar ones exactly, RSI feeds Stoch RSI,
   and the 14-bar extremes feed both the stochastic and Williams %R. The tests check every
   engine vote against the SPEC rules applied to the public kernels, so these shortcuts
   cannot drift.
4. ``recommend_ma`` = mean of the available votes among the 15 MA components,
   ``recommend_other`` = mean of the available votes among the 11 oscillators (NaN when none),
   ``recommend_all`` = mean of the two when both exist, else the one that exists.
5. ADX 14 and ±DI 14, computed for the DMI vote anyway, are returned too (selection and the
   scanner use them).

The vote rules are exactly SPEC §5's; see ``COMPONENT_NAMES`` for the order of ``votes``.
The exact-tie guarantees are documented in ``portflow.ratings._core``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba import prange, types
from numpy.typing import ArrayLike, NDArray

from portflow.ratings import _core as k
from portflow.ratings import _fused as f
from portflow.ratings._jit import (
    F8_2D_IN,
    F8_2D_OUT,
    Pinned,
    jit,
    pjit,
    prefetch_read,
    prefetch_write,
)

#: Sentinel in ``Ratings.votes`` for a component that cannot vote yet (or padding).
VOTE_ABSENT = -128

#: Component order of ``Ratings.votes``: 15 moving averages, then 11 oscillators.
COMPONENT_NAMES: tuple[str, ...] = (
    "sma_10",
    "sma_20",
    "sma_30",
    "sma_50",
    "sma_100",
    "sma_200",
    "ema_10",
    "ema_20",
    "ema_30",
    "ema_50",
    "ema_100",
    "ema_200",
    "hma_9",
    "vwma_20",
    "ichimoku_9_26_52",
    "rsi_14",
    "stoch_14_3_3",
    "cci_20",
    "dmi_14_14",
    "ao",
    "mom_10",
    "macd_12_26_9",
    "stoch_rsi_3_3_14_14",
    "williams_r_14",
    "bull_bear_power_13",
    "uo_7_14_28",
)
N_MA = 15
N_COMPONENTS = len(COMPONENT_NAMES)

#: Labels of ``bucket`` in increasing order of the rating.
BUCKET_LABELS: tuple[str, ...] = ("strong sell", "sell", "neutral", "buy", "strong buy")

_MA_LENGTHS = (10, 20, 30, 50, 100, 200)


# ---------------------------------------------------------------------------------------------
# vote rules (serial, one column)


@jit
def _vote_ma(ma, c, out):
    for t in range(c.shape[0]):
        m = ma[t]
        if m != m:
            out[t] = VOTE_ABSENT
        elif m < c[t]:
            out[t] = 1
        elif m > c[t]:
            out[t] = -1
        else:
            out[t] = 0


@jit
def _vote_sma_from_prefix(c, ph, pl, run, n, out):
    """MA vote of SMA(c, n) straight from ``prefix_sums`` of NaN-free close (one pass)."""
    for t in range(c.shape[0]):
        if t < n - 1:
            out[t] = VOTE_ABSENT
            continue
        if run[t] >= n:
            out[t] = 0  # the SMA of identical closes is the close
            continue
        lo_t = t - n
        m = ((ph[t] - ph[lo_t]) + (pl[t] - pl[lo_t])) / n if lo_t >= 0 else (ph[t] + pl[t]) / n
        out[t] = 1 if m < c[t] else (-1 if m > c[t] else 0)


@jit
def _ichimoku_rule(c, conv, base, l1, l2):
    """Ichimoku vote of one bar; l1/l2 are the leads displaced 26 bars (the cloud at t)."""
    if conv != conv or base != base or l1 != l1 or l2 != l2:
        return VOTE_ABSENT
    if l1 > l2 and base > l1 and conv > base and c > conv:
        return 1
    if l1 < l2 and base < l1 and conv < base and c < conv:
        return -1
    return 0


@jit
def _vote_band_turn(x, lo, hi, out):
    """Buy below ``lo`` and rising, sell above ``hi`` and falling (RSI, CCI, Williams %R).

    Branch-free, indices ``u + k`` >= 0 (numba's negative-index wraparound would otherwise
    turn ``x[t - 1]`` into gathers): the vote loops vectorise.
    """
    size = x.shape[0]
    if size > 0:
        out[0] = VOTE_ABSENT
    for u in range(size - 1):
        a = x[u + 1]
        b = x[u]
        v = np.int8((a < lo) & (a > b)) - np.int8((a > hi) & (a < b))
        out[u + 1] = v if ((a == a) & (b == b)) else VOTE_ABSENT


@jit
def _vote_stoch(kk, d, c, trend, use_trend, out):
    """Stochastic rule; with ``use_trend`` (Stoch RSI) buys need close < EMA50, sells >."""
    for t in range(c.shape[0]):
        a = kk[t]
        b = d[t]
        m = trend[t]
        ct = c[t]
        buy = (a < 20.0) & (b < 20.0) & (a > b) & ((not use_trend) | (ct < m))
        sell = (a > 80.0) & (b > 80.0) & (a < b) & ((not use_trend) | (ct > m))
        ok = (a == a) & (b == b) & ((not use_trend) | (m == m))
        out[t] = np.int8(buy) - np.int8(sell) if ok else VOTE_ABSENT


@jit
def _vote_dmi(adx, plus, minus, out):
    size = adx.shape[0]
    if size > 0:
        out[0] = VOTE_ABSENT
    for u in range(size - 1):
        a = adx[u + 1]
        a1 = adx[u]
        p = plus[u + 1]
        m = minus[u + 1]
        up = (a > 20.0) & (a > a1)
        v = np.int8(up & (p > m)) - np.int8(up & (p < m))
        ok = (a == a) & (a1 == a1) & (p == p) & (m == m)
        out[u + 1] = v if ok else VOTE_ABSENT


@jit
def _vote_ao(x, out):
    """Zero-line cross or saucer; needs AO, AO[1] and AO[2]."""
    size = x.shape[0]
    for t in range(min(2, size)):
        out[t] = VOTE_ABSENT
    for u in range(size - 2):
        a0 = x[u + 2]
        a1 = x[u + 1]
        a2 = x[u]
        buy = ((a0 > 0.0) & (a1 <= 0.0)) | ((a0 > 0.0) & (a1 > 0.0) & (a0 > a1) & (a2 > a1))
        sell = ((a0 < 0.0) & (a1 >= 0.0)) | ((a0 < 0.0) & (a1 < 0.0) & (a0 < a1) & (a2 < a1))
        ok = (a0 == a0) & (a1 == a1) & (a2 == a2)
        out[u + 2] = np.int8(buy) - np.int8(sell) if ok else VOTE_ABSENT


@jit
def _vote_turn(x, out):
    """Buy when rising, sell when falling (momentum)."""
    for t in range(x.shape[0]):
        a = x[t]
        b = x[t - 1] if t > 0 else np.nan
        if a != a or b != b:
            out[t] = VOTE_ABSENT
        elif a > b:
            out[t] = 1
        elif a < b:
            out[t] = -1
        else:
            out[t] = 0


@jit
def _vote_above(x, y, out):
    """Buy when x > y, sell when x < y (MACD line vs signal)."""
    for t in range(x.shape[0]):
        if x[t] != x[t] or y[t] != y[t]:
            out[t] = VOTE_ABSENT
        elif x[t] > y[t]:
            out[t] = 1
        elif x[t] < y[t]:
            out[t] = -1
        else:
            out[t] = 0


@jit
def _vote_bbp(bull, bear, c, trend, out):
    size = c.shape[0]
    if size > 0:
        out[0] = VOTE_ABSENT
    for u in range(size - 1):
        t = u + 1
        m = trend[t]
        ct = c[t]
        b0 = bear[t]
        b1 = bear[u]
        buy = (ct > m) & (b0 < 0.0) & (b0 > b1)
        sell = (ct < m) & (bull[t] > 0.0) & (bull[t] < bull[u])
        ok = (m == m) & (b0 == b0) & (b1 == b1)
        out[t] = np.int8(buy) - np.int8(sell) if ok else VOTE_ABSENT


@jit
def _vote_level(x, buy_above, sell_below, out):
    """Buy above a level, sell below another (Ultimate Oscillator)."""
    for t in range(x.shape[0]):
        a = x[t]
        if a != a:
            out[t] = VOTE_ABSENT
        elif a > buy_above:
            out[t] = 1
        elif a < sell_below:
            out[t] = -1
        else:
            out[t] = 0


@jit
def _ichimoku_vote(hh9, ll9, c, hh26, ll26, lead1, lead2, out):
    """Ichimoku (9, 26, 52, displacement 26) vote in one pass from the 9-bar extremes.

    Windows of 26 and 52 bars are unions of overlapping shorter ones ([t-25, t] = the 9-bar
    windows ending at t, t-9, t-17; 52 = two 26-bar windows), exact because max and min are
    idempotent. hh26, ll26, lead1, lead2 are (n,) scratch. Every vote needs lead2 26 bars
    back, i.e. bar t >= 77; before that all are absent.
    """
    size = c.shape[0]
    for t in range(min(25, size)):
        hh26[t] = np.nan
        ll26[t] = np.nan
    # t = u + 25
    for u in range(size - 25):
        hh26[u + 25] = max(hh9[u + 25], max(hh9[u + 16], hh9[u + 8]))
        ll26[u + 25] = min(ll9[u + 25], min(ll9[u + 16], ll9[u + 8]))
    for t in range(size):
        conv = (hh9[t] + ll9[t]) / 2.0
        base = (hh26[t] + ll26[t]) / 2.0
        lead1[t] = (conv + base) / 2.0
    for t in range(min(51, size)):
        lead2[t] = np.nan
    # t = u + 51
    for u in range(size - 51):
        lead2[u + 51] = (max(hh26[u + 51], hh26[u + 25]) + min(ll26[u + 51], ll26[u + 25])) / 2.0
    for t in range(min(77, size)):
        out[t] = VOTE_ABSENT
    # t = u + 77: lead1/lead2 displaced 26 bars are lead1[u + 51], lead2[u + 51]
    for u in range(size - 77):
        t = u + 77
        ct = c[t]
        conv = (hh9[t] + ll9[t]) / 2.0
        base = (hh26[t] + ll26[t]) / 2.0
        l1 = lead1[u + 51]
        l2 = lead2[u + 51]
        buy = (l1 > l2) & (base > l1) & (conv > base) & (ct > conv)
        sell = (l1 < l2) & (base < l1) & (conv < base) & (ct < conv)
        out[t] = np.int8(buy) - np.int8(sell)


#: Rows of the per-thread float scratch of ``_rate_column`` (9 of them hold the EMAs).
_N_SCRATCH = 18


@jit
def _rate_column(h, lo, c, v, votes, adx, plus, minus, ws, run):
    """All 26 votes of one symbol: inputs (n,) float64, ``votes`` (26, n) int8, DMI (n,).

    ``ws`` is (``_N_SCRATCH``, n) float64 scratch and ``run`` (n,) int64 scratch, allocated
    once per thread block by the caller. Lengths are passed as ``i64(...)``: numba would
    otherwise compile a separate specialisation of a kernel for every integer literal it is
    called with (it doubled the cold compile).
    """
    i64 = np.int64
    n = c.shape[0]
    ph = ws[0]
    pl = ws[1]
    a = ws[2]
    b = ws[3]
    r = ws[4]
    t1 = ws[5]
    t2 = ws[6]
    hh9 = ws[7]
    ll9 = ws[8]
    emas = ws[9:18]

    # Six SMAs of close and CCI's SMA 20 share one prefix pass.
    f.prefix_sums_nan_free(c, ph, pl, run)
    for i in range(6):
        f.sma_votes_from_prefix(c, ph, pl, run, _MA_LENGTHS[i], votes[i])
    f.sma_from_prefix(c, ph, pl, run, i64(20), a)
    k.cci_from_mean(c, a, i64(20), b)
    _vote_band_turn(b, -100.0, 100.0, votes[17])

    # One pass advances all nine EMAs (Bull Bear Power reuses 13) and the MACD line (12 - 26)
    # with its signal, into a and b (ws[2:4]) and voted at once.
    f.ema_bank9(c, emas, k.ema_bank, ws[2:4], k.ema)
    _vote_above(a, b, votes[21])
    for i in range(6):
        f.vote_ma_from(emas[i], c, _MA_LENGTHS[i] - 1, votes[6 + i])
    e50 = emas[3]
    f.hma9(c, t1, t2, b, a)
    f.vote_ma_from(a, c, i64(10), votes[12])
    k.vwma(c, v, i64(20), a)
    _vote_ma(a, c, votes[13])

    # Every high/low window extreme (9, 14, 26, 52) comes from the 9-bar ones, exactly.
    f.extremes9(h, lo, hh9, ll9)
    _ichimoku_vote(hh9, ll9, c, t1, t2, a, b, votes[14])

    f.rsi14(c, r)
    _vote_band_turn(r, 30.0, 70.0, votes[15])
    # Stochastic and Williams %R share the 14-bar extremes.
    f.stoch_and_williams_raw(hh9, ll9, c, t1, t2)
    _vote_band_turn(t2, -80.0, -20.0, votes[23])
    f.sma3(t1, a)
    f.sma3(a, b)
    _vote_stoch(a, b, c, e50, False, votes[16])
    f.dmi14(h, lo, c, plus, minus, adx)
    _vote_dmi(adx, plus, minus, votes[18])
    # AO: SMA5 and SMA34 of hl2 (the prefix scratch of close is free again).
    for t in range(n):
        t1[t] = (h[t] + lo[t]) / 2.0
    f.prefix_sums_nan_free(t1, ph, pl, run)
    f.sma_from_prefix(t1, ph, pl, run, i64(34), t2)
    f.sma5(t1, a)
    for t in range(n):
        a[t] -= t2[t]
    _vote_ao(a, votes[19])
    f.mom_votes(c, i64(10), votes[20])
    # Stoch RSI: 14-bar extremes of RSI (finite from bar 14), raw, %K, %D.
    f.extremes(r, r, i64(14), i64(14), t1, t2)
    f.stoch_raw_from(r, t1, t2, i64(27), a)
    f.sma3(a, t1)
    f.sma3(t1, t2)
    _vote_stoch(t1, t2, c, e50, True, votes[22])
    for t in range(n):
        a[t] = h[t] - emas[8, t]
        b[t] = lo[t] - emas[8, t]
    _vote_bbp(a, b, c, e50, votes[24])
    f.uo_7_14_28(h, lo, c, ph, pl, t1, t2, a)
    _vote_level(a, 70.0, 30.0, votes[25])


# ---------------------------------------------------------------------------------------------
# panel kernels (parallel over symbols)


#: Columns handled together by one thread (at most). Reading a block of C-ordered (T, N)
#: inputs row by row takes ``_BLOCK`` * 8 bytes from every row: 16 columns = 128 bytes, the
#: pair of cache lines the adjacent-line prefetcher fetches together (a per-column copy made
#: the engine memory bound, ~2x slower). With gather and scatter prefetching rows ahead, 16
#: measured ~3% faster per call than 32 (staging that stays in L2, a finer split between
#: threads) and ~5% faster than 8.
_BLOCK = 16


@jit
def _validate_block(ins, n_bars, bad_bar, bad_pad):
    """Rule 2 of the module docstring for a block's gathered high, low, close (``ins[0..2]``,
    (width, T)); open is checked by ``_first_bad_open``.

    Writes per column: ``n_bars`` (rows before the first NaN close), ``bad_bar`` (first row
    inside the bars with a non-finite high/low/close, else -1) and ``bad_pad`` (first row
    after the bars with a close, else -1). Returns whether the whole block is valid.
    """
    width = ins.shape[1]
    n_rows = ins.shape[2]
    ok = True
    for jj in range(width):
        c = ins[2, jj]
        n = n_rows
        for t in range(n_rows):
            if c[t] != c[t]:
                n = t
                break
        n_bars[jj] = n
        pad = -1
        for t in range(n + 1, n_rows):
            if c[t] == c[t]:
                pad = t
                break
        bad_pad[jj] = pad
        h = ins[0, jj]
        lo = ins[1, jj]
        # x - x is NaN exactly when x is not finite: one branch-free pass finds out whether
        # any bar is bad, and only then is the first one looked for.
        acc = 0.0
        for t in range(n):
            acc += (h[t] - h[t]) + (lo[t] - lo[t]) + (c[t] - c[t])
        bad = -1
        if acc != acc:
            for t in range(n):
                if not (np.isfinite(h[t]) and np.isfinite(lo[t]) and np.isfinite(c[t])):
                    bad = t
                    break
        bad_bar[jj] = bad
        ok = ok and bad < 0 and pad < 0
    return ok


@jit
def _first_bad_open(o, counts, t0, t1, first):
    """Per column j, the first row in t0 .. t1 (and < ``counts[j]``) where ``o`` is not
    finite, into ``first[j]`` (-1: none). Rows are read whole, in order: the rows of a
    C-ordered panel are contiguous, so this streams (no rule reads open, so it is not
    gathered; checked in column blocks, as the other inputs are read, it cost about three
    times one input's gather)."""
    n_cols = o.shape[1]
    acc = np.zeros(n_cols)
    for t in range(t0, t1):
        row = o[t]
        for j in range(n_cols):
            x = row[j]
            acc[j] += (x - x) if t < counts[j] else 0.0
    for j in range(n_cols):
        first[j] = -1
        if acc[j] != acc[j]:
            for t in range(t0, min(t1, counts[j])):
                x = o[t, j]
                if x - x != 0.0:
                    first[j] = t
                    break


@jit
def _combine_votes(votes, ra, rm, ro, acc):
    """Group means of the present votes (26, n) -> recommend_all/ma/other (n,).

    ``acc`` is (4, n) int8 scratch: sums and counts of at most 15 votes fit in int8, so the
    component-major accumulation runs 32 bars per vector instruction.
    """
    n = votes.shape[1]
    ma_sum = acc[0]
    ma_cnt = acc[1]
    os_sum = acc[2]
    os_cnt = acc[3]
    for t in range(n):
        ma_sum[t] = 0
        ma_cnt[t] = 0
        os_sum[t] = 0
        os_cnt[t] = 0
    # Component-major, branch-free loops vectorise; a per-bar loop over 26 components did not.
    for i in range(N_MA):
        row = votes[i]
        for t in range(n):
            x = row[t]
            present = x != VOTE_ABSENT
            ma_sum[t] += x if present else 0
            ma_cnt[t] += present
    for i in range(N_MA, N_COMPONENTS):
        row = votes[i]
        for t in range(n):
            x = row[t]
            present = x != VOTE_ABSENT
            os_sum[t] += x if present else 0
            os_cnt[t] += present
    for t in range(n):
        cm = ma_cnt[t]
        co = os_cnt[t]
        r_ma = np.float64(ma_sum[t]) / np.float64(cm)
        r_os = np.float64(os_sum[t]) / np.float64(co)
        r_ma = r_ma if cm > 0 else np.nan
        r_os = r_os if co > 0 else np.nan
        both = (r_ma + r_os) / 2.0
        ra[t] = both if ((cm > 0) & (co > 0)) else (r_ma if cm > 0 else r_os)
        rm[t] = r_ma
        ro[t] = r_os


#: Rows ahead that gather and scatter ask the CPU to fetch (see ``_jit``'s prefetch hints).
#: On a cold 1,000-column panel both took ~40% less time with it; 16 was best for the two
#: together (8: a slightly faster gather, a much slower scatter; 32: both slower).
_PREFETCH_ROWS = 16


@jit
def _gather_block(x, j0, out):
    """Columns j0 .. j0 + width of (T, N) ``x`` into the rows of ``out`` (width, T)."""
    width = out.shape[0]
    n_rows = x.shape[0]
    xb = x[:, j0 : j0 + width]
    for t in range(n_rows):
        ahead = t + _PREFETCH_ROWS
        if ahead < n_rows:
            # every cache line of the block's row (8 float64 apart, and the last element)
            for k in range(0, width, 8):
                prefetch_read(x, ahead, j0 + k)
            prefetch_read(x, ahead, j0 + width - 1)
        for jj in range(width):
            out[jj, t] = xb[t, jj]


@jit
def _scatter_block(src, j0, width, n_bars, n_min, x):
    """Rows of ``src`` (width, >= n_bars) back into columns j0 .. j0 + width of (T, N) ``x``,
    NaN after each column's bars."""
    n_rows = x.shape[0]
    xb = x[:, j0 : j0 + width]
    for t in range(n_rows):
        ahead = t + _PREFETCH_ROWS
        if ahead < n_rows:
            for k in range(0, width, 8):
                prefetch_write(x, ahead, j0 + k)
            prefetch_write(x, ahead, j0 + width - 1)
        if t < n_min:
            for jj in range(width):
                xb[t, jj] = src[jj, t]
        else:
            for jj in range(width):
                xb[t, jj] = src[jj, t] if t < n_bars[jj] else np.nan


@pjit
def _ratings_panel(
    o,
    h,
    lo,
    c,
    v,
    n_blocks,
    want_votes,
    counts,
    bad_bar,
    bad_pad,
    rec_all,
    rec_ma,
    rec_oth,
    adx,
    plus,
    minus,
    votes,
):
    n_rows = c.shape[0]
    n_cols = c.shape[1]
    n_lines = (n_cols + 7) // 8
    for blk in prange(n_blocks):
        # Block edges on multiples of 8 columns (cache lines of the outputs), as even as that
        # allows (see ``_n_blocks``).
        j0 = min(n_cols, 8 * ((blk * n_lines) // n_blocks))
        width = min(n_cols, 8 * (((blk + 1) * n_lines) // n_blocks)) - j0
        if width == 0:
            continue
        ins = np.empty((4, width, n_rows))
        # One input array at a time: one read stream (the block's lines of each row) and
        # ``width`` write streams; all four at once was more streams than the hardware
        # prefetchers track. The bars are validated from the gathered copy, so the panel is
        # read once.
        _gather_block(h, j0, ins[0])
        _gather_block(lo, j0, ins[1])
        _gather_block(c, j0, ins[2])
        n_bars = counts[j0 : j0 + width]
        if not _validate_block(ins, n_bars, bad_bar[j0 : j0 + width], bad_pad[j0 : j0 + width]):
            continue  # the caller raises; nothing of this block is needed
        _gather_block(v, j0, ins[3])
        n_max = 0
        for jj in range(width):
            n_max = max(n_max, n_bars[jj])
        n_min = n_max
        for jj in range(width):
            n_min = min(n_min, n_bars[jj])
        outs = np.empty((6, width, n_max))
        vb = np.empty((width if want_votes else 0, N_COMPONENTS, n_max), np.int8)
        # Scratch allocated once per block; reshaped flat buffers so every row is C-contiguous
        # for each column's length.
        ws_buf = np.empty(_N_SCRATCH * n_max)
        run = np.empty(n_max, np.int64)
        vote_buf = np.empty(N_COMPONENTS * n_max, np.int8)
        acc_buf = np.empty(4 * n_max, np.int8)
        # Calling the column code straight from the parallel loop (no intermediate block
        # function) saves one LLVM re-optimisation of everything inlined below: ~9 s of
        # cold compile.
        for jj in range(width):
            n = n_bars[jj]
            col_votes = vote_buf[: N_COMPONENTS * n].reshape((N_COMPONENTS, n))
            _rate_column(
                ins[0, jj, :n],
                ins[1, jj, :n],
                ins[2, jj, :n],
                ins[3, jj, :n],
                col_votes,
                outs[3, jj, :n],
                outs[4, jj, :n],
                outs[5, jj, :n],
                ws_buf[: _N_SCRATCH * n].reshape((_N_SCRATCH, n)),
                run[:n],
            )
            _combine_votes(
                col_votes,
                outs[0, jj, :n],
                outs[1, jj, :n],
                outs[2, jj, :n],
                acc_buf[: 4 * n].reshape((4, n)),
            )
            if want_votes:
                vb[jj, :, :n] = col_votes
        # One output array at a time, for the same reason as the gather.
        _scatter_block(outs[0], j0, width, n_bars, n_min, rec_all)
        _scatter_block(outs[1], j0, width, n_bars, n_min, rec_ma)
        _scatter_block(outs[2], j0, width, n_bars, n_min, rec_oth)
        _scatter_block(outs[3], j0, width, n_bars, n_min, adx)
        _scatter_block(outs[4], j0, width, n_bars, n_min, plus)
        _scatter_block(outs[5], j0, width, n_bars, n_min, minus)
        if want_votes:
            for i in range(N_COMPONENTS):
                for t in range(n_rows):
                    for jj in range(width):
                        votes[i, t, j0 + jj] = vb[jj, i, t] if t < n_bars[jj] else VOTE_ABSENT
    # Open, once the bar counts are known: row chunks in parallel, then the first bad row of
    # each column (chunks are in row order) joins ``bad_bar``. 64 chunks split evenly over
    # the usual thread counts and keep ``first_open`` small (64 x N).
    n_chunks = min(64, n_rows) if n_cols > 0 else 0
    first_open = np.empty((n_chunks, n_cols), np.int64)
    for ch in prange(n_chunks):
        _first_bad_open(
            o, counts, (ch * n_rows) // n_chunks, ((ch + 1) * n_rows) // n_chunks, first_open[ch]
        )
    for j in range(n_cols):
        for ch in range(n_chunks):
            t = first_open[ch, j]
            if t >= 0:
                if bad_bar[j] < 0 or t < bad_bar[j]:
                    bad_bar[j] = t
                break


_I8_1D = types.Array(types.int64, 1, "C")
_RATINGS = Pinned(
    _ratings_panel,
    (F8_2D_IN,) * 5
    + (types.int64, types.boolean)
    + (_I8_1D,) * 3
    + (F8_2D_OUT,) * 6
    + (types.Array(types.int8, 3, "C"),),
)


# ---------------------------------------------------------------------------------------------
# public API


@dataclass(frozen=True, slots=True)
class Ratings:
    """Ratings of a panel; every (T, N) array is aligned with the inputs' rows and columns.

    recommend_all, recommend_ma, recommend_other: (T, N) float64 in [-1, 1]; NaN where no vote
        of the group is available yet, and in padding rows.
    adx, plus_di, minus_di: (T, N) float64, Pine ``ta.dmi(14, 14)`` in points (0-100).
    n_bars: (N,) int64, number of bars of each column.
    votes: (26, T, N) int8 in {-1, 0, +1, VOTE_ABSENT}, or None unless requested;
        ``component_names[i]`` names ``votes[i]``. 1-D inputs give (T,) and (26, T) arrays.
    """

    recommend_all: NDArray[np.float64]
    recommend_ma: NDArray[np.float64]
    recommend_other: NDArray[np.float64]
    adx: NDArray[np.float64]
    plus_di: NDArray[np.float64]
    minus_di: NDArray[np.float64]
    n_bars: NDArray[np.int64]
    votes: NDArray[np.int8] | None = None
    component_names: tuple[str, ...] = COMPONENT_NAMES


def _input(x: ArrayLike, name: str) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected shape (T,) or (T, N), got {a.shape}")
    return a


_PARALLEL_LOCK = threading.Lock()


def _n_blocks(n_cols: int) -> int:
    """Number of column blocks: at most ``_BLOCK`` columns each, and a multiple of numba's
    thread count. ``prange`` hands each thread an equal run of blocks, so equal blocks are
    equal work (1,000 columns in blocks of 16 gave one thread 512 columns, the other 488)."""
    threads = numba.get_num_threads()
    blocks = -(-n_cols // _BLOCK)
    return -(-blocks // threads) * threads


def compute_ratings(
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    volume: ArrayLike,
    *,
    with_components: bool = False,
) -> Ratings:
    """Technical ratings of every symbol column, point-in-time (row t uses rows <= t only).

    open_, high, low, close, volume: float64 (T, N) (or (T,) for one symbol), prices in quote
        currency, volume in units; column j is symbol j's consecutive bars from row 0 with NaN
        rows after its last bar. Any layout and read-only views are accepted without a copy.
    with_components: also return the 26 per-component votes (26 bytes per cell).

    Raises ``ValueError`` when shapes differ, a column has a bar after its NaN padding, or a
    price inside a column's bars is not finite. Too few bars is not an error: the votes stay
    absent and the ratings NaN.
    """
    arrays = [
        _input(x, name)
        for x, name in (
            (open_, "open_"),
            (high, "high"),
            (low, "low"),
            (close, "close"),
            (volume, "volume"),
        )
    ]
    one_d = np.ndim(close) == 1
    shape = arrays[3].shape
    for a, name in zip(arrays, ("open_", "high", "low", "close", "volume"), strict=True):
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape} but close has {shape}")
    o, h, lo, c, v = arrays
    n_rows, n_cols = shape
    counts = np.empty(n_cols, np.int64)
    bad_bar = np.empty(n_cols, np.int64)
    bad_pad = np.empty(n_cols, np.int64)
    outs = [np.empty((n_rows, n_cols)) for _ in range(6)]
    votes = (
        np.empty((N_COMPONENTS, n_rows, n_cols), np.int8)
        if with_components
        else np.empty((0, 0, 0), np.int8)
    )
    # numba's default (workqueue) threading layer aborts the process when two Python threads
    # launch parallel kernels at once; the kernel already uses every core, so serialise.
    with _PARALLEL_LOCK:
        _RATINGS(
            o,
            h,
            lo,
            c,
            v,
            _n_blocks(n_cols),
            with_components,
            counts,
            bad_bar,
            bad_pad,
            *outs,
            votes,
        )
    if (bad_pad >= 0).any():
        j = int(np.flatnonzero(bad_pad >= 0)[0])
        raise ValueError(
            f"column {j}: close is NaN at row {counts[j]} but a bar follows at row "
            f"{bad_pad[j]}; bars must be consecutive from row 0 with NaN only after the last"
        )
    if (bad_bar >= 0).any():
        j = int(np.flatnonzero(bad_bar >= 0)[0])
        raise ValueError(
            f"column {j}, row {bad_bar[j]}: open/high/low/close must be finite inside the "
            f"symbol's {counts[j]} bars; drop or repair that bar before computing ratings"
        )
    if one_d:
        outs = [x[:, 0] for x in outs]
        votes = votes[:, :, 0] if with_components else votes
    return Ratings(
        recommend_all=outs[0],
        recommend_ma=outs[1],
        recommend_other=outs[2],
        adx=outs[3],
        plus_di=outs[4],
        minus_di=outs[5],
        n_bars=counts,
        votes=votes if with_components else None,
    )


def bucket_codes(rating: ArrayLike) -> NDArray[np.int8]:
    """Bucket codes -2..2 (strong sell .. strong buy) of ratings; ``VOTE_ABSENT`` for NaN.

    SPEC §5: < -0.5 strong sell, < -0.1 sell, <= 0.1 neutral, <= 0.5 buy, else strong buy.
    """
    x = np.asarray(rating, dtype=np.float64)
    codes = np.full(x.shape, 2, np.int8)
    codes[x <= 0.5] = 1
    codes[x <= 0.1] = 0
    codes[x < -0.1] = -1
    codes[x < -0.5] = -2
    codes[np.isnan(x)] = VOTE_ABSENT
    return codes


_LABELS_BY_CODE = np.array([None, *BUCKET_LABELS], dtype=object)


def bucket(rating: ArrayLike) -> Any:
    """Labels of ``BUCKET_LABELS`` for ratings, same shape (object array); None for NaN.

    A scalar rating gives a ``str`` (or None).
    """
    codes = bucket_codes(rating).astype(np.int64)
    idx = np.where(codes == VOTE_ABSENT, 0, codes + 3)
    if idx.ndim == 0:
        return _LABELS_BY_CODE[int(idx)]
    return _LABELS_BY_CODE[idx]
