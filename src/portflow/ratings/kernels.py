"""Public indicator kernels (Pine definitions, SPEC §5) on (T,) or (T, N) float64 arrays.

Every kernel takes arrays of shape (T,) (one series) or (T, N) (one column per symbol, rows are
that symbol's bars) and returns arrays of the same shape. NaN is Pine's ``na``: outputs are NaN
while warming up, for windows that hold a NaN, and in NaN padding after a symbol's last bar.
Columns are computed independently and in parallel (numba ``prange``) by the serial kernels of
``portflow.ratings._core``, the same code the ratings engine runs.

Each call copies its inputs to a (N, T) row-per-symbol array (free when the input is already
F-ordered, as ``DataFrame.to_numpy()`` of a float frame is) and hands numba a read-only
C-ordered array, so one compiled version serves writable, read-only and strided inputs.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
from numba import prange
from numpy.typing import ArrayLike, NDArray

from portflow.ratings import _core as k
from portflow.ratings._jit import pjit

F8 = NDArray[np.float64]

_SMA, _EMA, _RMA, _WMA, _HMA, _RSI, _CCI, _MOM = range(8)


@pjit
def _p_unary(kind, x, n, out):
    for j in prange(x.shape[0]):
        if kind == _SMA:
            k.sma(x[j], n, out[j])
        elif kind == _EMA:
            k.ema(x[j], n, out[j])
        elif kind == _RMA:
            k.rma(x[j], n, out[j])
        elif kind == _WMA:
            k.wma(x[j], n, out[j])
        elif kind == _HMA:
            k.hma(x[j], n, out[j])
        elif kind == _RSI:
            k.rsi(x[j], n, out[j])
        elif kind == _CCI:
            k.cci(x[j], n, out[j])
        else:
            k.mom(x[j], n, out[j])


@pjit
def _p_extreme(x, n, is_max, out):
    for j in prange(x.shape[0]):
        k.rolling_extreme(x[j], n, out[j], is_max)


@pjit
def _p_vwma(c, v, n, out):
    for j in prange(c.shape[0]):
        k.vwma(c[j], v[j], n, out[j])


@pjit
def _p_stoch(h, lo, c, n, sk, sd, k_out, d_out):
    for j in prange(c.shape[0]):
        k.stoch(h[j], lo[j], c[j], n, sk, sd, k_out[j], d_out[j])


@pjit
def _p_williams_r(h, lo, c, n, out):
    for j in prange(c.shape[0]):
        k.williams_r(h[j], lo[j], c[j], n, out[j])


@pjit
def _p_dmi(h, lo, c, n_di, n_adx, p_out, m_out, a_out):
    for j in prange(c.shape[0]):
        k.dmi(h[j], lo[j], c[j], n_di, n_adx, p_out[j], m_out[j], a_out[j])


@pjit
def _p_ao(h, lo, fast, slow, out):
    for j in prange(h.shape[0]):
        k.ao(h[j], lo[j], fast, slow, out[j])


@pjit
def _p_macd(x, fast, slow, signal, line, sig):
    for j in prange(x.shape[0]):
        k.macd(x[j], fast, slow, signal, line[j], sig[j])


@pjit
def _p_stoch_rsi(x, n_rsi, n_stoch, sk, sd, k_out, d_out):
    for j in prange(x.shape[0]):
        k.stoch_rsi(x[j], n_rsi, n_stoch, sk, sd, k_out[j], d_out[j])


@pjit
def _p_bbp(h, lo, c, n, bull, bear):
    for j in prange(c.shape[0]):
        k.bull_bear_power(h[j], lo[j], c[j], n, bull[j], bear[j])


@pjit
def _p_uo(h, lo, c, n1, n2, n3, out):
    for j in prange(c.shape[0]):
        k.ultimate_oscillator(h[j], lo[j], c[j], n1, n2, n3, out[j])


@pjit
def _p_ichimoku(h, lo, nc, nb, ns, disp, out):
    for j in prange(h.shape[0]):
        k.ichimoku(
            h[j],
            lo[j],
            nc,
            nb,
            ns,
            disp,
            out[0, j],
            out[1, j],
            out[2, j],
            out[3, j],
            out[4, j],
            out[5, j],
        )


# ---------------------------------------------------------------------------------------------
# input/output plumbing


class _Panel:
    """Inputs as read-only (N, T) rows plus how to shape results back to the caller's form."""

    def __init__(self, *arrays: ArrayLike, names: tuple[str, ...]) -> None:
        rows = []
        shape: tuple[int, ...] | None = None
        for x, name in zip(arrays, names, strict=True):
            a = np.asarray(x, dtype=np.float64)
            if a.ndim not in (1, 2):
                raise ValueError(f"{name}: expected shape (T,) or (T, N), got {a.shape}")
            if shape is not None and a.shape != shape:
                raise ValueError(f"{name} has shape {a.shape} but {names[0]} has {shape}")
            shape = a.shape
            p = np.ascontiguousarray((a[:, None] if a.ndim == 1 else a).T)
            if p.flags.writeable:
                p = p.view()
                p.flags.writeable = False
            rows.append(p)
        assert shape is not None
        self.rows = rows
        self.shape = shape

    def empty(self, *lead: int) -> F8:
        """Output buffer (*lead, N, T)."""
        return np.empty((*lead, *self.rows[0].shape))

    def back(self, out: F8) -> F8:
        """(N, T) buffer to the caller's (T,) or (T, N) shape (a transposed view, no copy)."""
        return out[0] if len(self.shape) == 1 else out.T


def _length(value: int, name: str) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def _unary(kind: int, x: ArrayLike, length: int) -> F8:
    p = _Panel(x, names=("x",))
    out = p.empty()
    _p_unary(kind, p.rows[0], _length(length, "length"), out)
    return p.back(out)


# ---------------------------------------------------------------------------------------------
# public kernels


def sma(x: ArrayLike, length: int) -> F8:
    """Simple moving average over ``length`` bars; exactly x[t] over identical values."""
    return _unary(_SMA, x, length)


def ema(x: ArrayLike, length: int) -> F8:
    """EMA, alpha = 2/(length+1), seeded with the SMA of its first ``length`` values."""
    return _unary(_EMA, x, length)


def rma(x: ArrayLike, length: int) -> F8:
    """Wilder's RMA, alpha = 1/length, seeded with the SMA of its first ``length`` values."""
    return _unary(_RMA, x, length)


def wma(x: ArrayLike, length: int) -> F8:
    """Linearly weighted moving average (weight ``length`` on the newest bar)."""
    return _unary(_WMA, x, length)


def hma(x: ArrayLike, length: int = 9) -> F8:
    """Hull MA = WMA(2*WMA(x, length//2) - WMA(x, length), floor(sqrt(length)))."""
    return _unary(_HMA, x, length)


def rsi(close: ArrayLike, length: int = 14) -> F8:
    """Wilder RSI in points (0-100), RMA-based; unchanged exactly after an unchanged close."""
    return _unary(_RSI, close, length)


def cci(source: ArrayLike, length: int = 20) -> F8:
    """CCI of ``source`` (the ratings use close, not hlc3); NaN when the deviation is zero."""
    return _unary(_CCI, source, length)


def mom(x: ArrayLike, length: int = 10) -> F8:
    """Momentum x - x[length], in price units."""
    return _unary(_MOM, x, length)


def highest(x: ArrayLike, length: int) -> F8:
    """Highest value over ``length`` bars."""
    p = _Panel(x, names=("x",))
    out = p.empty()
    _p_extreme(p.rows[0], _length(length, "length"), True, out)
    return p.back(out)


def lowest(x: ArrayLike, length: int) -> F8:
    """Lowest value over ``length`` bars."""
    p = _Panel(x, names=("x",))
    out = p.empty()
    _p_extreme(p.rows[0], _length(length, "length"), False, out)
    return p.back(out)


def vwma(close: ArrayLike, volume: ArrayLike, length: int = 20) -> F8:
    """Volume-weighted MA; NaN where the window's volume is all zero (no inf)."""
    p = _Panel(close, volume, names=("close", "volume"))
    out = p.empty()
    _p_vwma(p.rows[0], p.rows[1], _length(length, "length"), out)
    return p.back(out)


def stoch(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    length: int = 14,
    smooth_k: int = 3,
    smooth_d: int = 3,
) -> tuple[F8, F8]:
    """Slow stochastic (%K, %D) in points: %K = SMA(raw, smooth_k), %D = SMA(%K, smooth_d).

    raw = 100 * ((close - lowest(low)) / (highest(high) - lowest(low))), exactly 0 or 100 at
    the extremes and NaN on a zero range.
    """
    p = _Panel(high, low, close, names=("high", "low", "close"))
    k_out, d_out = p.empty(), p.empty()
    _p_stoch(
        p.rows[0],
        p.rows[1],
        p.rows[2],
        _length(length, "length"),
        _length(smooth_k, "smooth_k"),
        _length(smooth_d, "smooth_d"),
        k_out,
        d_out,
    )
    return p.back(k_out), p.back(d_out)


def williams_r(high: ArrayLike, low: ArrayLike, close: ArrayLike, length: int = 14) -> F8:
    """Williams %R in [-100, 0]; NaN on a zero range."""
    p = _Panel(high, low, close, names=("high", "low", "close"))
    out = p.empty()
    _p_williams_r(p.rows[0], p.rows[1], p.rows[2], _length(length, "length"), out)
    return p.back(out)


def dmi(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    di_length: int = 14,
    adx_length: int = 14,
) -> tuple[F8, F8, F8]:
    """Pine ``ta.dmi``: (+DI, -DI, ADX) in points, RMA-smoothed with SMA seeds."""
    p = _Panel(high, low, close, names=("high", "low", "close"))
    outs = p.empty(3)
    _p_dmi(
        p.rows[0],
        p.rows[1],
        p.rows[2],
        _length(di_length, "di_length"),
        _length(adx_length, "adx_length"),
        outs[0],
        outs[1],
        outs[2],
    )
    return p.back(outs[0]), p.back(outs[1]), p.back(outs[2])


def ao(high: ArrayLike, low: ArrayLike, fast: int = 5, slow: int = 34) -> F8:
    """Awesome Oscillator SMA(hl2, fast) - SMA(hl2, slow); exactly 0 over a flat hl2."""
    p = _Panel(high, low, names=("high", "low"))
    out = p.empty()
    _p_ao(p.rows[0], p.rows[1], _length(fast, "fast"), _length(slow, "slow"), out)
    return p.back(out)


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[F8, F8]:
    """(MACD line, signal): EMA(fast) - EMA(slow) and its EMA(signal), all SMA-seeded (Pine)."""
    p = _Panel(close, names=("close",))
    line, sig = p.empty(), p.empty()
    _p_macd(
        p.rows[0],
        _length(fast, "fast"),
        _length(slow, "slow"),
        _length(signal, "signal"),
        line,
        sig,
    )
    return p.back(line), p.back(sig)


def stoch_rsi(
    close: ArrayLike,
    rsi_length: int = 14,
    stoch_length: int = 14,
    smooth_k: int = 3,
    smooth_d: int = 3,
) -> tuple[F8, F8]:
    """Stoch RSI (%K, %D) in points: stochastic of RSI over ``stoch_length``, SMA-smoothed."""
    p = _Panel(close, names=("close",))
    k_out, d_out = p.empty(), p.empty()
    _p_stoch_rsi(
        p.rows[0],
        _length(rsi_length, "rsi_length"),
        _length(stoch_length, "stoch_length"),
        _length(smooth_k, "smooth_k"),
        _length(smooth_d, "smooth_d"),
        k_out,
        d_out,
    )
    return p.back(k_out), p.back(d_out)


def bull_bear_power(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, length: int = 13
) -> tuple[F8, F8]:
    """(bull, bear) power: high - EMA(close, length), low - EMA(close, length)."""
    p = _Panel(high, low, close, names=("high", "low", "close"))
    bull, bear = p.empty(), p.empty()
    _p_bbp(p.rows[0], p.rows[1], p.rows[2], _length(length, "length"), bull, bear)
    return p.back(bull), p.back(bear)


def ultimate_oscillator(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    fast: int = 7,
    mid: int = 14,
    slow: int = 28,
) -> F8:
    """Ultimate Oscillator in points (0-100); NaN where a true-range sum is zero."""
    p = _Panel(high, low, close, names=("high", "low", "close"))
    out = p.empty()
    _p_uo(
        p.rows[0],
        p.rows[1],
        p.rows[2],
        _length(fast, "fast"),
        _length(mid, "mid"),
        _length(slow, "slow"),
        out,
    )
    return p.back(out)


class IchimokuLines(NamedTuple):
    """Ichimoku lines, each shaped like the inputs; ``lead*_displaced`` = lead[displacement]."""

    conversion: F8
    base: F8
    lead1: F8
    lead2: F8
    lead1_displaced: F8
    lead2_displaced: F8


def ichimoku(
    high: ArrayLike,
    low: ArrayLike,
    conversion: int = 9,
    base: int = 26,
    span_b: int = 52,
    displacement: int = 26,
) -> IchimokuLines:
    """Ichimoku: Donchian midpoints over ``conversion``/``base``/``span_b`` bars, lead1 =
    (conversion + base)/2, and both leads as of ``displacement`` bars back (the cloud at t)."""
    p = _Panel(high, low, names=("high", "low"))
    outs = p.empty(6)
    if operator.index(displacement) < 0:
        raise ValueError(f"displacement must be >= 0, got {displacement}")
    _p_ichimoku(
        p.rows[0],
        p.rows[1],
        _length(conversion, "conversion"),
        _length(base, "base"),
        _length(span_b, "span_b"),
        operator.index(displacement),
        outs,
    )
    return IchimokuLines(*(p.back(o) for o in outs))
