"""The provider seam: one small interface every data source implements.

The rest of portflow never knows which provider it talks to. A provider answers these
questions for a *universe* (e.g. ``synthetic-crypto``) at a clock ``as_of`` (a UTC date):

1. ``calendar(universe)``: ``"24/7"`` or an exchange-calendars code such as ``"XNYS"``.
2. ``scan(universe, as_of, query)``: one row per listed symbol with the canonical scanner
   fields (``symbol``, ``exchange``, ``close``, ``volume``, ``value_traded``, ``change_pct``,
   ``perf_1w``, ``perf_1m``, ``perf_3m``, ``volatility_d``, ``adx``, ``market_cap``,
   ``asset_class`` and, where the provider has them, ``recommend_*``), computed as of the
   clock. ``query`` (the scanner as plain data) lets a remote screener narrow its answer
   server-side; the scan step applies the filters, sort and limit itself in any case.
3. ``fetch_ohlcv(universe, symbol, start, as_of)``: daily bars with ``timestamp >= start``
   (all history when ``start`` is None) up to the clock. Like a live API it may include the
   still-forming bar of ``as_of`` itself; the ingest step drops it. A paginated fetch that
   fails after some pages raises ``PartialFetchError`` carrying the pages it got.
4. ``metadata(universe, symbols, as_of)``: tick_size, lot_size, min_notional,
   price_precision, quote, asset_class, exchange, calendar; unknown values are null.
5. ``technicals(universe, symbols, as_of)``: current ratings where the source publishes them.
6. ``resolve(universe, tickers)``: which of another provider's tickers (the scan provider's
   symbols without their ``EXCHANGE:`` prefix) name a symbol of this provider, and which
   (the default symbol mapping of a profile with a ``scan_provider``).

``name`` is the provider's lakehouse key: OHLCV paths, health, metadata and the features
matrix are keyed by (name, symbol), so two sources with the same symbol never collide.

Frames use UTC ``timestamp`` columns (daily bars stamped 00:00 UTC of their day/session).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pandas as pd

OHLCV_COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
METADATA_COLUMNS = [
    "symbol",
    "tick_size",
    "lot_size",
    "min_notional",
    "price_precision",
    "quote",
    "asset_class",
    "exchange",
    "calendar",
]
SCAN_FIELDS = [
    "close",
    "volume",
    "value_traded",
    "change_pct",
    "perf_1w",
    "perf_1m",
    "perf_3m",
    "volatility_d",
    "adx",
    "market_cap",
    "asset_class",
    "exchange",
    "recommend_all",
    "recommend_ma",
    "recommend_other",
]


def utc_day(as_of: pd.Timestamp) -> pd.Timestamp:
    """The clock as 00:00 UTC of its day (a naive timestamp is taken as UTC)."""
    t = pd.Timestamp(as_of)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).normalize()


@dataclass(frozen=True)
class ScanQuery:
    """A scanner as plain data (SPEC §3), for providers that screen server-side.

    filters: filter nodes as dicts — ``{field, op, value}`` or ``{all: [...]}``,
    ``{any: [...]}``, ``{not: {...}}``; all of them must hold. sort: (field, "asc"|"desc").
    """

    name: str
    universe: str
    filters: tuple[dict[str, Any], ...] = ()
    sort: tuple[str, str] | None = None
    limit: int | None = None


@runtime_checkable
class Provider(Protocol):
    """A market data source. Implementations must be thread-safe for concurrent fetches."""

    name: str

    def universes(self) -> list[str]: ...

    def calendar(self, universe: str) -> str: ...

    def scan(
        self, universe: str, as_of: pd.Timestamp, query: ScanQuery | None = None
    ) -> pd.DataFrame: ...

    def fetch_ohlcv(
        self,
        universe: str,
        symbol: str,
        start: pd.Timestamp | None,
        as_of: pd.Timestamp,
    ) -> pd.DataFrame: ...

    def metadata(
        self, universe: str, symbols: list[str], as_of: pd.Timestamp
    ) -> pd.DataFrame: ...

    def technicals(
        self, universe: str, symbols: list[str], as_of: pd.Timestamp
    ) -> pd.DataFrame | None:
        """Current ratings from the source (TradingView), or None when it has none."""
        ...

    def resolve(self, universe: str, tickers: list[str]) -> dict[str, str]:
        """ticker -> this provider's symbol in ``universe``, for the tickers it knows."""
        ...
