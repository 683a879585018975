"""The embedded synthetic market: a deterministic, offline provider that behaves like a live one.

Two universes, history from ``start`` (default 2019-01-01):

- ``synthetic-crypto``: calendar ``24/7`` (a bar every UTC day), 150 symbols by default named
  ``CRY-0001/USDT`` ... (the ``/`` exercises the lakehouse's symbol_key sanitising), exchange
  ``SYNTHX``, quote ``USDT``, daily vol about 3-6%.
- ``synthetic-equities``: calendar ``XNYS`` (one bar per NYSE session, from exchange-calendars),
  250 symbols by default named ``EQ0001`` ..., exchange ``SYNTHNYSE``, quote ``USD``, daily vol
  about 1-2.5%.

Determinism. A bar is a function of (seed, symbol, date) only. Every random stream is a numpy
``Generator(Philox)`` keyed by a blake2b hash of ``(seed, stream name)`` (never Python's salted
``hash()``) and is drawn as one array per day from ``start`` onwards, so the first k draws never
depend on how far the panel is generated: a later clock extends the same history, bit for bit.
Per-symbol streams are keyed by the symbol, so a symbol's bars do not depend on the universe
size either. Generated panels are cached in-process per (universe, seed, size, start,
pathologies) and regenerated (same prefix) to the end of the clock's year when a later clock
asks for more.

Model (per universe; rows are days for 24/7, sessions for XNYS; vectorised over symbols):

1. Static draws per symbol: sector (8 crypto / 9 equity sectors), total calm vol sigma_i,
   variance shares of market rho_i and sector s_i factors (idiosyncratic share 1 - rho - s),
   trend amplitude A_i, liquidity level (log-uniform value traded), anchor price, supply.
2. Volatility regimes: a calm/crisis Markov chain shared by the universe (calm -> crisis about
   once a year, crisis spells of ~6 weeks). In a crisis the market shock is scaled x2.5, the
   sector shock x1.8, the idiosyncratic shock x1.5 (vol up about x2-2.5 and correlations up) and
   the market drifts down. On top, the market vol clusters: exp of an AR(1) (phi 0.98).
3. Fat tails: market and sector shocks are unit-variance Student-t (df 4), idiosyncratic shocks
   Student-t (df 3.5).
4. Trends: each symbol's drift is A_i * (0.9 * s_t + 0.3 * x_t) per year, where s_t is a sign
   that flips about once every 500 days (crypto; 350 sessions for equities) and x_t an AR(1)
   with a ~3-month memory, so 1-year momentum carries signal (a cross-sectional rank IC of
   about 0.1 against the next month) and some symbols fall a lot over a year (shorts work).
5. Log return r = drift + sigma_i * v_t * (sqrt(rho) * (m_t + d_t) + sqrt(s) * f_sector,t
   + sqrt(1 - rho - s) * e_i,t); the log price integrates r with a soft band: beyond +-B (3.0
   crypto, 1.2 equities) log units from the anchor it is pulled back (1% of the excess per
   row), so prices stay within a range where the fixed tick is meaningful.
6. OHLC: open = previous close x a small gap, high/low = max/min(open, close) x |normal| wicks,
   all rounded to the symbol's tick: a power of ten about 1e-6..1e-5 of the anchor price
   for crypto (its band is wide), 1e-5..1e-4 for equities.
7. Volume in base units = value traded / close; log value traded = level + half the log
   price's distance from its anchor + AR(1) noise (phi 0.95) + a bump on big-move days and in
   crises; value traded spans ~1e5-1e10 per day; market cap = close x a fixed supply.
8. Planted pathologies (below) overwrite bars at fixed calendar dates.
9. The still-forming bar of the clock's own day (24/7) or session (XNYS): open of the day,
   close at a Brownian-bridge mid-day point, high/low so far, a fraction of the volume, from a
   stream keyed by (seed, symbol, date).

Planted pathologies (defaults, the same dates in both universes; the dates are fixed calendar
dates chosen so the acceptance clock 2026-06-30 and clocks to the end of 2026 see them; pass
``pathologies=`` to move them). The planted symbols get a pinned top-tier liquidity (value
traded about 3e9-1e10, not following their price; log-price band 1.5), so scanners sorting by
``value_traded`` keep them at 2026 clocks (ranks 1-21 of the default universes for seeds 1, 2
and 7):

====================  ===============  ====================================================
kind                  crypto / equity  what
====================  ===============  ====================================================
``spike``             CRY-0003/USDT    close on 2026-05-20 is 7.5x the previous close, reverts
                      EQ0003           the next bar (toxic: |ln(1+r)| >= ln 6 both ways)
``spike``             CRY-0011/USDT    the same on 2026-10-21 (for clocks late in 2026)
                      EQ0011
``missing_bars``      CRY-0005/USDT    no bar on 2026-02-10, 2026-03-17, 2026-03-18,
                      EQ0005           2026-04-21, 2026-05-27 (all XNYS sessions: gappy)
``flat``              CRY-0007/USDT    from 2026-06-15 on open=high=low=close = the close of
                      EQ0007           the previous bar, volume cut to 30% (flat, stale feed)
``late_listing``      CRY-0009/USDT    first bar 2025-09-15: at a 2026-06-30 clock it has more
                      EQ0009           than the 250-bar ratings warm-up (crypto) but less than a
                                       365-bar selection window
``late_listing``      CRY-0013/USDT    first bar 2026-07-13 (young at clocks late in 2026)
                      EQ0013
``delisting``         CRY-0015/USDT    last bar 2026-06-17; the scan keeps listing it with its
                      EQ0015           last values for 30 days (stale)
``delisting``         CRY-0017/USDT    last bar 2026-11-18
                      EQ0017
``no_lot_size``       CRY-0019/USDT    lot_size is null in metadata (an HTR veto); otherwise
                                       healthy (crypto only)
====================  ===============  ====================================================

A universe smaller than a planted symbol's number simply does not plant it.
Timestamps are ``datetime64[ns, UTC]`` at 00:00 UTC of the day (crypto) or session (equities).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from portflow.errors import ProviderError, suggest
from portflow.providers.base import METADATA_COLUMNS, OHLCV_COLUMNS, SCAN_FIELDS, ScanQuery
from portflow.providers.fields import (
    BAR_FIELDS,
    BarPanel,
    canonical_fields,
)

CRYPTO = "synthetic-crypto"
EQUITIES = "synthetic-equities"
_TS_DTYPE = "datetime64[ns, UTC]"
_HORIZON_FLOOR = pd.Timestamp("2026-12-31", tz="UTC")
# the canonical scanner fields (providers.base) plus identity columns, in the scan's order
SCAN_COLUMNS = [
    "symbol",
    "exchange",
    "sector",
    "asset_class",
    *(f for f in SCAN_FIELDS if f not in ("asset_class", "exchange")),
]
PATHOLOGY_KINDS = ("spike", "missing_bars", "flat", "late_listing", "delisting", "no_lot_size")
SPIKE_RATIO = 7.5
FLAT_VOLUME_FRACTION = 0.3
TREND_SIGN_W = 0.9  # weight of the persistent trend sign in a symbol's drift
TREND_AR_W = 0.3  # weight of its AR(1) wobble
BAND_KAPPA = 0.01  # pull per row per log unit beyond the band


@dataclass(frozen=True)
class PlantedPathology:
    """One planted defect: ``symbol``, ``kind`` (one of PATHOLOGY_KINDS) and its ``dates``.

    dates (ISO strings): spike -> (spike day,); missing_bars -> the absent days; flat -> (first
    flat bar,); late_listing -> (first bar,); delisting -> (last bar,); no_lot_size -> ().
    """

    symbol: str
    kind: str
    dates: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Spec:
    name: str
    calendar: str
    asset_class: str
    exchange: str
    quote: str
    default_size: int
    sectors: tuple[str, ...]
    sigma_range: tuple[float, float]  # calm daily vol of a symbol
    rho_range: tuple[float, float]  # market variance share
    sector_share_range: tuple[float, float]
    trend_range: tuple[float, float]  # annual drift amplitude A_i (log units)
    liquidity_log10: tuple[float, float]  # value traded per day
    price_log10: tuple[float, float]  # anchor price
    band: float  # free log-price range around the anchor
    tick_rel: float  # tick ~ this fraction of the anchor price, rounded down to a power of 10
    trend_flip_rows: float  # mean rows between flips of a symbol's trend sign
    gap_scale: float  # open gap std as a fraction of sigma
    market_drift: tuple[float, float]  # (calm, crisis) in market-shock std per row
    trend_rows_per_year: float
    regime_p: tuple[float, float]  # P(calm -> crisis), P(crisis -> calm) per row
    turnover_days: tuple[float, float]  # market cap / value traded
    planted_liquidity_log10: float


_SPECS: dict[str, _Spec] = {
    CRYPTO: _Spec(
        name=CRYPTO,
        calendar="24/7",
        asset_class="crypto",
        exchange="SYNTHX",
        quote="USDT",
        default_size=150,
        sectors=(
            "Layer1",
            "DeFi",
            "Exchange",
            "Gaming",
            "AI",
            "Meme",
            "Infrastructure",
            "Payments",
        ),
        sigma_range=(0.028, 0.05),
        rho_range=(0.2, 0.42),
        sector_share_range=(0.1, 0.25),
        trend_range=(0.4, 1.4),
        liquidity_log10=(5.3, 9.7),
        price_log10=(-3.0, 4.5),
        band=3.0,
        tick_rel=1e-5,
        trend_flip_rows=500.0,
        gap_scale=0.08,
        market_drift=(0.02, -0.12),
        trend_rows_per_year=365.0,
        regime_p=(1 / 330, 1 / 45),
        turnover_days=(20.0, 300.0),
        planted_liquidity_log10=9.6,
    ),
    EQUITIES: _Spec(
        name=EQUITIES,
        calendar="XNYS",
        asset_class="equity",
        exchange="SYNTHNYSE",
        quote="USD",
        default_size=250,
        sectors=(
            "Technology",
            "Financials",
            "Health Care",
            "Energy",
            "Industrials",
            "Consumer Discretionary",
            "Consumer Staples",
            "Utilities",
            "Materials",
        ),
        sigma_range=(0.009, 0.02),
        rho_range=(0.2, 0.38),
        sector_share_range=(0.1, 0.25),
        trend_range=(0.1, 0.45),
        liquidity_log10=(6.0, 9.7),
        price_log10=(1.0, 2.8),
        band=1.2,
        tick_rel=1e-4,
        trend_flip_rows=350.0,
        gap_scale=0.3,
        market_drift=(0.04, -0.12),
        trend_rows_per_year=252.0,
        regime_p=(1 / 230, 1 / 32),
        turnover_days=(100.0, 1000.0),
        planted_liquidity_log10=9.8,
    ),
}


def _default_pathologies(universe: str) -> tuple[PlantedPathology, ...]:
    name = (lambda n: f"CRY-{n:04d}/USDT") if universe == CRYPTO else (lambda n: f"EQ{n:04d}")
    planted = [
        PlantedPathology(name(3), "spike", ("2026-05-20",)),
        PlantedPathology(name(11), "spike", ("2026-10-21",)),
        PlantedPathology(
            name(5),
            "missing_bars",
            ("2026-02-10", "2026-03-17", "2026-03-18", "2026-04-21", "2026-05-27"),
        ),
        PlantedPathology(name(7), "flat", ("2026-06-15",)),
        PlantedPathology(name(9), "late_listing", ("2025-09-15",)),
        PlantedPathology(name(13), "late_listing", ("2026-07-13",)),
        PlantedPathology(name(15), "delisting", ("2026-06-17",)),
        PlantedPathology(name(17), "delisting", ("2026-11-18",)),
    ]
    if universe == CRYPTO:
        planted.append(PlantedPathology(name(19), "no_lot_size"))
    return tuple(planted)


# ----------------------------------------------------------------------------- random streams


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A Philox generator keyed by a stable hash of (seed, names): same key, same stream."""
    digest = hashlib.blake2b("|".join((str(seed), *names)).encode(), digest_size=16).digest()
    key = np.frombuffer(digest, dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


def _unit_t(gen: np.random.Generator, df: float, size: Any) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return gen.standard_t(df, size=size) * np.sqrt((df - 2.0) / df)


def _ar1(z: np.ndarray, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) along axis 0 driven by standard normals ``z``."""
    # here, not at the top: scipy.signal (and the scipy.stats it loads) costs ~0.35 s to
    # import, and every configuration load imports this module for its universe names
    from scipy.signal import lfilter

    u = z * np.sqrt(1.0 - phi * phi)
    u[0] = z[0]
    return lfilter([1.0], [1.0, -phi], u, axis=0)


def _tick_rounder(tick: float, decimals: int) -> Any:
    """A function rounding a 1-D price array to ``tick`` (the nearest double of the decimal)."""
    if tick < 1.0:
        scale = 10.0**decimals
        return lambda x: np.round(x * scale) / scale
    return lambda x: np.round(x / tick) * tick


def _round_to_tick(x: np.ndarray, tick: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    """Round prices to their column's tick, to the nearest double of the decimal value."""
    scale = np.power(10.0, decimals.astype(np.float64))
    small = tick < 1.0
    below = np.round(x * scale) / scale
    above = np.round(x / tick) * tick
    return np.where(small, below, above)


# ----------------------------------------------------------------------------- calendars

_XNYS_LOCK = threading.Lock()
_XNYS_CACHE: dict[str, Any] = {}


def _xnys_sessions(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """XNYS sessions in [start, end] as UTC midnight timestamps."""
    import exchange_calendars as xcals

    end_year = f"{max(end.year, 2030)}-12-31"
    with _XNYS_LOCK:
        cal = _XNYS_CACHE.get("cal")
        if cal is None or cal.last_session < pd.Timestamp(end_year) - pd.Timedelta(days=7):
            cal = xcals.get_calendar("XNYS", start="2010-01-01", end=end_year)
            _XNYS_CACHE["cal"] = cal
    sessions = cal.sessions
    sessions = sessions[(sessions >= start.tz_localize(None)) & (sessions <= end.tz_localize(None))]
    return pd.DatetimeIndex(sessions).tz_localize("UTC").as_unit("ns")


def _rows(universe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    if _SPECS[universe].calendar == "24/7":
        return pd.date_range(start, end, freq="D").as_unit("ns")
    return _xnys_sessions(start, end)


# ----------------------------------------------------------------------------- the panel


@dataclass(frozen=True)
class _Panel:
    """One generated universe: (T, N) arrays, NaN where a symbol has no bar."""

    universe: str
    symbols: tuple[str, ...]
    dates: pd.DatetimeIndex  # T, UTC midnight
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sector: np.ndarray  # N, str
    sigma: np.ndarray  # N, calm daily vol
    tick: np.ndarray
    decimals: np.ndarray  # N, int: price_precision
    lot: np.ndarray  # N, NaN = unknown
    min_notional: np.ndarray  # N, NaN = unknown
    supply: np.ndarray  # N, base units for market_cap


def _symbol_names(universe: str, size: int) -> tuple[str, ...]:
    if universe == CRYPTO:
        return tuple(f"CRY-{n:04d}/USDT" for n in range(1, size + 1))
    return tuple(f"EQ{n:04d}" for n in range(1, size + 1))


def _generate(
    universe: str,
    seed: int,
    size: int,
    start: pd.Timestamp,
    end: pd.Timestamp,
    planted: Sequence[PlantedPathology],
) -> _Panel:
    """Generate the full panel of ``universe`` from ``start`` to ``end`` (steps 1-8)."""
    spec = _SPECS[universe]
    symbols = _symbol_names(universe, size)
    dates = _rows(universe, start, end)
    n_rows, n_sym = len(dates), len(symbols)
    if n_rows < 2:
        raise ValueError(f"synthetic panel needs at least 2 rows, got {n_rows} ({start}..{end})")

    # 1. static draws per symbol
    static = np.stack([_rng(seed, sym, "static").random(12) for sym in symbols])

    def lerp(lo_hi: tuple[float, float], u: np.ndarray) -> np.ndarray:
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * u

    sector_idx = np.minimum(
        (static[:, 0] * len(spec.sectors)).astype(np.int64), len(spec.sectors) - 1
    )
    sigma = lerp(spec.sigma_range, static[:, 1])
    rho = lerp(spec.rho_range, static[:, 2])
    s_share = lerp(spec.sector_share_range, static[:, 3])
    trend_amp = lerp(spec.trend_range, static[:, 4])
    liquidity = lerp(spec.liquidity_log10, static[:, 5])
    anchor = np.log(10.0) * lerp(spec.price_log10, static[:, 6])
    dev0 = spec.band * (2.0 * static[:, 7] - 1.0) * 0.5
    sign0 = np.where(static[:, 8] < 0.5, -1.0, 1.0)
    lo_turn, hi_turn = np.log(spec.turnover_days)
    turnover = np.exp(lerp((float(lo_turn), float(hi_turn)), static[:, 9]))
    min_notional_draw = static[:, 10]
    number = {sym: i for i, sym in enumerate(symbols)}
    vt_elasticity = np.full(n_sym, 0.5)  # of value traded to the price level
    band = np.full(n_sym, spec.band)
    for k, p in enumerate(planted):
        if p.symbol in number:
            # planted symbols are pinned to the top tier so scanners by value_traded keep them
            j = number[p.symbol]
            liquidity[j] = spec.planted_liquidity_log10 + 0.04 * (k % 5)
            vt_elasticity[j] = 0.0
            band[j] = min(spec.band, 1.5)  # keeps market cap / value traded sensible
            if p.kind == "flat":  # a frozen feed trades thin but stays scannable
                liquidity[j] = spec.planted_liquidity_log10 + 0.5

    # 2. regime chain and market vol clustering (shared by the universe)
    z_regime = _rng(seed, universe, "regime").standard_normal(n_rows)
    nd = NormalDist()
    enter, leave = nd.inv_cdf(1 - spec.regime_p[0]), nd.inv_cdf(1 - spec.regime_p[1])
    crisis = np.zeros(n_rows, dtype=bool)
    state = False
    for t, z in enumerate(z_regime.tolist()):
        state = (z <= leave) if state else (z > enter)
        crisis[t] = state
    tau = 0.25
    h = tau * _ar1(_rng(seed, universe, "volcluster").standard_normal(n_rows), 0.98)
    vol_mult = np.exp(h - tau * tau)

    # 3-5. fat-tailed shocks, trends and returns, one symbol at a time (1-D, cache-friendly)
    market = _unit_t(_rng(seed, universe, "market"), 4.0, n_rows)
    # drawn day by day (rows first) so the prefix is stable; used sector by sector
    sectors = _unit_t(_rng(seed, universe, "sectors"), 4.0, (n_rows, len(spec.sectors))).T
    market_term = np.where(crisis, 2.5, 1.0) * market + np.where(
        crisis, spec.market_drift[1], spec.market_drift[0]
    )
    sector_term = np.ascontiguousarray(np.where(crisis, 1.8, 1.0) * sectors)
    idio_scale = np.where(crisis, 1.5, 1.0)
    flip_level = nd.inv_cdf(1 - 1 / spec.trend_flip_rows)
    phi_trend = np.exp(-1 / (0.25 * spec.trend_rows_per_year))
    per_year = spec.trend_rows_per_year
    ret = np.empty((n_sym, n_rows))
    for j, sym in enumerate(symbols):
        z = _rng(seed, sym, "trend").standard_normal((n_rows, 2))
        idio = _unit_t(_rng(seed, sym, "idio"), 3.5, n_rows)
        sign = np.where(np.cumsum(z[:, 1] > flip_level) % 2 == 0, sign0[j], -sign0[j])
        drift = (trend_amp[j] / per_year) * (
            TREND_SIGN_W * sign + TREND_AR_W * _ar1(z[:, 0], phi_trend)
        )
        shock = np.sqrt(rho[j]) * market_term
        shock += np.sqrt(s_share[j]) * sector_term[sector_idx[j]]
        shock += np.sqrt(1.0 - rho[j] - s_share[j]) * idio_scale * idio
        ret[j] = drift + (sigma[j] * vol_mult) * shock

    # 5. the banded log price: a recursion in time, vectorised over symbols
    ret_t = np.ascontiguousarray(ret.T)
    del ret
    log_close_t = np.empty_like(ret_t)
    cur = anchor + dev0
    start_level = cur.copy()
    kappa = BAND_KAPPA
    for t in range(n_rows):
        dev = cur - anchor
        cur = cur + ret_t[t] - kappa * np.sign(dev) * np.maximum(np.abs(dev) - band, 0.0)
        log_close_t[t] = cur
    del ret_t
    log_close = np.ascontiguousarray(log_close_t.T)
    del log_close_t

    # 6-7. OHLC rounded to the tick, value traded and volume, one symbol at a time
    anchor_price = np.exp(anchor)
    tick = np.power(10.0, np.floor(np.log10(anchor_price * spec.tick_rel)))
    decimals = np.maximum(0, -np.round(np.log10(tick))).astype(np.int64)
    open_, high, low, close, volume = (np.empty((n_sym, n_rows)) for _ in range(5))
    wick_scale = 0.35 * np.where(crisis, 1.5, 1.0) * vol_mult
    liq_bump = np.where(crisis, 0.3, 0.0) - 0.24
    crypto = spec.asset_class == "crypto"
    for j, sym in enumerate(symbols):
        z = _rng(seed, sym, "bar").standard_normal((n_rows, 4))
        lc = log_close[j]
        row_vol = sigma[j] * vol_mult
        prev = np.empty(n_rows)
        prev[0] = start_level[j]
        prev[1:] = lc[:-1]
        c = np.exp(lc)
        o = np.exp(prev + spec.gap_scale * row_vol * z[:, 0])
        wick = sigma[j] * wick_scale
        h = np.maximum(o, c) * np.exp(wick * np.abs(z[:, 1]))
        lo = np.minimum(o, c) * np.exp(-wick * np.abs(z[:, 2]))
        rounder = _tick_rounder(float(tick[j]), int(decimals[j]))
        close[j], open_[j], high[j] = rounder(c), rounder(o), rounder(h)
        low[j] = np.maximum(rounder(lo), tick[j])
        move = np.minimum(np.abs(lc - prev) / row_vol, 5.0)
        # value traded follows the price level half-way (rallies draw volume), so market cap
        # (close x fixed supply) stays a sensible multiple of it
        log_vt = (
            np.log(10.0) * liquidity[j]
            + vt_elasticity[j] * (lc - anchor[j])
            + 0.3 * _ar1(z[:, 3], 0.95)
            + 0.3 * move
            + liq_bump
        )
        v = np.exp(log_vt) / close[j]
        volume[j] = np.round(v, 4) if crypto else np.maximum(np.round(v), 1.0)
    del log_close

    if crypto:
        lot = np.clip(np.power(10.0, np.floor(np.log10(0.1 / anchor_price))), 1e-8, 1.0)
        min_notional = np.where(min_notional_draw < 0.5, 5.0, 10.0)
    else:
        lot = np.ones(n_sym)
        min_notional = np.full(n_sym, np.nan)
    supply = np.power(10.0, liquidity) * turnover / anchor_price

    # 8. planted pathologies
    arrays = {"open": open_.T, "high": high.T, "low": low.T, "close": close.T, "volume": volume.T}
    for p in planted:
        if p.symbol in number:
            _plant(p, number[p.symbol], dates, arrays, tick, decimals, lot)

    for a in (*arrays.values(), sigma, tick, decimals, lot, min_notional, supply):
        a.flags.writeable = False
    return _Panel(
        universe=universe,
        symbols=symbols,
        dates=dates,
        open=arrays["open"],
        high=arrays["high"],
        low=arrays["low"],
        close=arrays["close"],
        volume=arrays["volume"],
        sector=np.asarray(spec.sectors, dtype=object)[sector_idx],
        sigma=sigma,
        tick=tick,
        decimals=decimals,
        lot=lot,
        min_notional=min_notional,
        supply=supply,
    )


def _plant(
    p: PlantedPathology,
    j: int,
    dates: pd.DatetimeIndex,
    a: dict[str, np.ndarray],
    tick: np.ndarray,
    decimals: np.ndarray,
    lot: np.ndarray,
) -> None:
    """Overwrite column ``j`` for one planted pathology (rows outside the panel are ignored)."""
    rows = [int(dates.searchsorted(pd.Timestamp(d, tz="UTC"))) for d in p.dates]
    n_rows = len(dates)
    col = slice(j, j + 1)

    def rnd(x: float) -> float:
        return float(_round_to_tick(np.array([x]), tick[col], decimals[col])[0])

    if p.kind == "no_lot_size":
        lot[j] = np.nan
    elif p.kind == "spike":
        k = rows[0]
        if 1 <= k < n_rows:
            a["close"][k, j] = rnd(a["close"][k - 1, j] * SPIKE_RATIO)
            a["high"][k, j] = rnd(a["close"][k, j] * 1.03)
            if k + 1 < n_rows:
                a["open"][k + 1, j] = rnd(a["close"][k, j] * 0.99)
                a["high"][k + 1, j] = max(a["high"][k + 1, j], a["open"][k + 1, j])
    elif p.kind == "missing_bars":
        for k in rows:
            if k < n_rows:
                for arr in a.values():
                    arr[k, j] = np.nan
    elif p.kind == "flat":
        k = rows[0]
        if 1 <= k < n_rows:
            level = a["close"][k - 1, j]
            for name in ("open", "high", "low", "close"):
                a[name][k:, j] = level
            a["volume"][k:, j] = np.round(a["volume"][k:, j] * FLAT_VOLUME_FRACTION, 4)
    elif p.kind == "late_listing":
        for arr in a.values():
            arr[: rows[0], j] = np.nan
    elif p.kind == "delisting":
        for arr in a.values():
            arr[rows[0] + 1 :, j] = np.nan


# ----------------------------------------------------------------------------- cache

_CACHE_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], _Panel] = {}
_KEY_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}


def _clear_cache() -> None:
    """Forget every generated panel (tests and benchmarks use it to time cold generation)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _utc_day(ts: Any, what: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(ts)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: cannot read {ts!r} as a date") from exc
    if pd.isna(t):
        raise ValueError(f"{what}: got NaT")
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.floor("D").as_unit("ns")


def _utc(ts: Any, what: str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if pd.isna(t):
        raise ValueError(f"{what}: got NaT")
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).as_unit("ns")


# ----------------------------------------------------------------------------- the provider


class SyntheticProvider:
    """The embedded synthetic market (see the module docstring for the model and pathologies).

    Args:
        seed: the market's seed; every bar is a function of (seed, symbol, date).
        sizes: symbols per universe, e.g. ``{"synthetic-crypto": 2000}`` (defaults 150 / 250).
        latency_ms: sleep before every fetch_ohlcv / scan / metadata call (GIL released).
        start: first day of history (ISO date).
        pathologies: per universe, the planted defects (defaults in the module docstring).
    """

    name = "synthetic"

    def __init__(
        self,
        seed: int = 7,
        sizes: dict[str, int] | None = None,
        latency_ms: float = 0.0,
        start: str = "2019-01-01",
        *,
        pathologies: Mapping[str, Sequence[PlantedPathology]] | None = None,
    ) -> None:
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms}")
        self.seed = int(seed)
        self._scans: dict[tuple[str, pd.Timestamp], pd.DataFrame] = {}
        self._scan_locks: dict[tuple[str, pd.Timestamp], threading.Lock] = {}
        self._scan_lock = threading.Lock()
        self.latency_ms = float(latency_ms)
        self.start = _utc_day(start, "start")
        self.sizes = {u: s.default_size for u, s in _SPECS.items()}
        for universe, size in (sizes or {}).items():
            self._check_universe(universe, exc=ValueError)
            if int(size) < 1:
                raise ValueError(f"sizes[{universe!r}] must be >= 1, got {size}")
            self.sizes[universe] = int(size)
        self._planted: dict[str, tuple[PlantedPathology, ...]] = {}
        for universe in _SPECS:
            given = (pathologies or {}).get(universe)
            chosen = _default_pathologies(universe) if given is None else tuple(given)
            self._planted[universe] = self._validate_planted(universe, chosen)
        for universe in pathologies or {}:
            self._check_universe(universe, exc=ValueError)

    # -- protocol -----------------------------------------------------------------------------

    def universes(self) -> list[str]:
        return list(_SPECS)

    def calendar(self, universe: str) -> str:
        return self._spec(universe).calendar

    def fetch_ohlcv(
        self,
        universe: str,
        symbol: str,
        start: pd.Timestamp | None,
        as_of: pd.Timestamp,
    ) -> pd.DataFrame:
        """Daily bars of ``symbol`` with timestamp >= start and day <= as_of.

        Includes the still-forming bar of the as_of day/session when the symbol trades that day
        (like a live API). Returns OHLCV_COLUMNS, timestamp ``datetime64[ns, UTC]``, sorted.
        """
        self._sleep()
        spec = self._spec(universe)
        day = _utc_day(as_of, "as_of")
        panel = self._panel(universe, day)
        j = self._column(panel, spec, symbol)
        end = int(panel.dates.searchsorted(day, side="right"))
        lo = 0 if start is None else int(panel.dates.searchsorted(_utc(start, "start")))
        rows = np.arange(lo, end)
        rows = rows[~np.isnan(panel.close[lo:end, j])]
        # plain arrays first: pandas cell assignment would dominate a fetch's cost
        cols = {c: getattr(panel, c)[rows, j] for c in ("open", "high", "low", "close", "volume")}
        if len(rows) and panel.dates[rows[-1]] == day:
            forming = self._forming_bar(panel, j, int(rows[-1]))
            for c, v in zip(("open", "high", "low", "close", "volume"), forming, strict=True):
                cols[c][-1] = v
        return pd.DataFrame(
            {"timestamp": pd.DatetimeIndex(panel.dates[rows]).astype(_TS_DTYPE),
             "symbol": symbol, **cols},
            columns=OHLCV_COLUMNS,
        )

    def scan(
        self, universe: str, as_of: pd.Timestamp, query: ScanQuery | None = None
    ) -> pd.DataFrame:
        """One row per symbol listed at the clock (plus those delisted in the last 30 days).

        The bar fields come from :mod:`portflow.providers.fields` over the symbol's bars up to
        the last closed bar (day < as_of); market_cap = close*supply. The whole universe is
        answered (``query`` is not needed: the scan step filters locally).
        """
        self._sleep()
        day = _utc_day(as_of, "as_of")
        key = (universe, day)
        with self._scan_lock:
            lock = self._scan_locks.setdefault(key, threading.Lock())
        with lock:  # scanners of one universe run in parallel: compute each clock's scan once
            if key not in self._scans:
                self._scans[key] = self._compute_scan(universe, day)
        return self._scans[key].copy()

    def _compute_scan(self, universe: str, day: pd.Timestamp) -> pd.DataFrame:
        spec = self._spec(universe)
        panel = self._panel(universe, day)
        end = int(panel.dates.searchsorted(day, side="left"))  # rows up to the last closed bar
        bars = BarPanel(panel.dates[:end], panel.symbols,
                        *(getattr(panel, f)[:end] for f in BAR_FIELDS))
        cols, frame = canonical_fields(bars, spec.calendar, day)
        if cols.size == 0:
            return _empty_scan()
        frame.insert(1, "exchange", spec.exchange)
        frame.insert(2, "sector", panel.sector[cols].astype(str))
        frame.insert(3, "asset_class", spec.asset_class)
        frame["market_cap"] = frame["close"].to_numpy() * panel.supply[cols]
        return frame[SCAN_COLUMNS]

    def metadata(self, universe: str, symbols: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        """METADATA_COLUMNS for ``symbols`` (in that order); unknown values are null."""
        self._sleep()
        spec = self._spec(universe)
        panel = self._panel(universe, _utc_day(as_of, "as_of"))
        cols = [self._column(panel, spec, s) for s in symbols]
        return pd.DataFrame(
            {
                "symbol": list(symbols),
                "tick_size": panel.tick[cols].astype(np.float64),
                "lot_size": panel.lot[cols].astype(np.float64),
                "min_notional": panel.min_notional[cols].astype(np.float64),
                "price_precision": panel.decimals[cols].astype(np.int64),
                "quote": spec.quote,
                "asset_class": spec.asset_class,
                "exchange": spec.exchange,
                "calendar": spec.calendar,
            },
            columns=METADATA_COLUMNS,
        )

    def technicals(
        self, universe: str, symbols: list[str], as_of: pd.Timestamp
    ) -> pd.DataFrame | None:
        """The synthetic market publishes no ratings: portflow computes them from the bars."""
        self._spec(universe)
        return None

    def resolve(self, universe: str, tickers: list[str]) -> dict[str, str]:
        """Tickers that are symbols of the universe, unchanged."""
        known = set(self.symbols(universe))
        return {t: t for t in tickers if t in known}

    # -- extras -------------------------------------------------------------------------------

    def symbols(self, universe: str) -> list[str]:
        """Every symbol of the universe (listed or not at any given clock)."""
        return list(_symbol_names(universe, self.sizes[self._spec(universe).name]))

    def planted(self, universe: str) -> tuple[PlantedPathology, ...]:
        """The planted pathologies of ``universe`` that exist at its configured size."""
        self._spec(universe)
        names = set(self.symbols(universe))
        return tuple(p for p in self._planted[universe] if p.symbol in names)

    def pathologies(self, universe: str) -> dict[str, str]:
        """Planted symbol -> kind (spike, missing_bars, flat, late_listing, delisting, ...)."""
        return {p.symbol: p.kind for p in self.planted(universe)}

    # -- internals ------------------------------------------------------------------------------

    def _forming_bar(self, panel: _Panel, j: int, k: int) -> list[float]:
        """The partial bar of row k (step 9): open, high and low so far, a mid-day close."""
        o, h, lo, c, v = (
            float(getattr(panel, n)[k, j]) for n in ("open", "high", "low", "close", "volume")
        )
        sym, date = panel.symbols[j], panel.dates[k].date().isoformat()
        u = _rng(self.seed, sym, date, "forming").random(4)
        frac = 0.35 + 0.4 * u[0]
        if h == lo:  # a frozen feed forms a frozen bar
            return [o, h, lo, c, float(np.round(v * frac, 4))]
        z = NormalDist().inv_cdf(0.02 + 0.96 * u[1])
        sigma = float(panel.sigma[j])
        mid = np.log(o) + frac * (np.log(c) - np.log(o)) + np.sqrt(frac * (1 - frac)) * sigma * z
        cf = float(np.exp(mid))
        hf = max(o, cf) * float(np.exp(0.2 * sigma * u[2]))
        lf = min(o, cf) * float(np.exp(-0.2 * sigma * u[3]))
        tick, dec = panel.tick[j : j + 1], panel.decimals[j : j + 1]
        cf, hf, lf = (float(_round_to_tick(np.array([x]), tick, dec)[0]) for x in (cf, hf, lf))
        vf = float(np.round(v * frac, 4)) if panel.universe == CRYPTO else float(round(v * frac))
        return [o, max(hf, o, cf), max(min(lf, o, cf), float(tick[0])), cf, vf]

    def _panel(self, universe: str, day: pd.Timestamp) -> _Panel:
        """The cached panel of ``universe``, generated (or extended) to cover ``day``."""
        key = (universe, self.seed, self.sizes[universe], self.start, self._planted[universe])
        with _CACHE_LOCK:
            panel = _CACHE.get(key)
            if panel is not None and panel.dates[-1] >= day:
                return panel
            lock = _KEY_LOCKS.setdefault(key, threading.Lock())
        with lock:
            with _CACHE_LOCK:
                panel = _CACHE.get(key)
            if panel is not None and panel.dates[-1] >= day:
                return panel
            end = max(_HORIZON_FLOOR, pd.Timestamp(f"{day.year}-12-31", tz="UTC"))
            panel = _generate(
                universe,
                self.seed,
                self.sizes[universe],
                self.start,
                end,
                self._planted[universe],
            )
            with _CACHE_LOCK:
                _CACHE[key] = panel
            return panel

    def _column(self, panel: _Panel, spec: _Spec, symbol: str) -> int:
        try:
            return panel.symbols.index(symbol)
        except ValueError:
            raise ProviderError(
                f"synthetic: unknown symbol '{symbol}' in universe '{spec.name}'"
                f"{suggest(symbol, panel.symbols)} (it has {len(panel.symbols)} symbols, "
                f"{panel.symbols[0]} .. {panel.symbols[-1]})"
            ) from None

    def _spec(self, universe: str) -> _Spec:
        self._check_universe(universe, exc=ProviderError)
        return _SPECS[universe]

    @staticmethod
    def _check_universe(universe: str, exc: type[Exception]) -> None:
        if universe not in _SPECS:
            raise exc(
                f"synthetic: unknown universe '{universe}'{suggest(universe, _SPECS)}; "
                f"known: {', '.join(_SPECS)}"
            )

    def _validate_planted(
        self, universe: str, planted: tuple[PlantedPathology, ...]
    ) -> tuple[PlantedPathology, ...]:
        seen: set[str] = set()
        for p in planted:
            if p.kind not in PATHOLOGY_KINDS:
                raise ValueError(f"pathology kind {p.kind!r} unknown; known: {PATHOLOGY_KINDS}")
            if p.symbol in seen:
                raise ValueError(f"{universe}: symbol {p.symbol} has more than one pathology")
            seen.add(p.symbol)
            if p.symbol.startswith("CRY-") != (universe == CRYPTO):
                raise ValueError(f"{universe}: {p.symbol} is not a symbol of this universe")
            wanted = 0 if p.kind == "no_lot_size" else (None if p.kind == "missing_bars" else 1)
            if (wanted is None and not p.dates) or (wanted is not None and len(p.dates) != wanted):
                raise ValueError(
                    f"{universe}: pathology {p.kind} of {p.symbol} has dates {p.dates}"
                )
            days = [_utc_day(d, f"{p.kind} date") for d in p.dates]
            if _SPECS[universe].calendar == "XNYS" and days:
                sessions = _xnys_sessions(min(days), max(days))
                bad = [d.date().isoformat() for d in days if d not in sessions]
                if bad:
                    raise ValueError(f"{universe}: {p.kind} dates {bad} are not XNYS sessions")
        return planted

    def _sleep(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)


def from_options(options: Any) -> SyntheticProvider:
    """The registry's constructor (options: registry.SyntheticOptions, validated)."""
    return SyntheticProvider(seed=options.seed, sizes=dict(options.sizes),
                             latency_ms=options.latency_ms, start=options.start)


def _empty_scan() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in SCAN_COLUMNS})
    for c in ("symbol", "exchange", "sector", "asset_class"):
        frame[c] = frame[c].astype(object)
    return frame


__all__ = ["CRYPTO", "EQUITIES", "PlantedPathology", "SyntheticProvider"]
