"""The ``tradingview`` provider: the TradingView screener (extra ``portflow[tradingview]``).

Discovery and current ratings only — TradingView serves no OHLCV history, so a profile scans
on it as its ``scan_provider`` and takes its bars from another provider (e.g. ccxt). Queries
are built with the ``tradingview-screener`` package and POSTed to ``<url>/<market>/scan``
(``url`` is an option, so tests point it at a local server with recorded answers).

Universes are screener markets: ``crypto``, ``america``, ``forex``, ``futures``, a country...
Scanned symbols are TradingView's ``EXCHANGE:TICKER``.

A scanner becomes one screener query:

1. Fields: each canonical field maps to a screener column (``FIELDS``: ``value_traded`` is
   ``Value.Traded``, ``recommend_all`` is ``Recommend.All``, ...). ``asset_class`` has no
   column (it follows from the market) and is evaluated locally only.
2. Filters: each top-level filter whose leaves all translate goes to the server (``filter2``,
   with ``all`` / ``any`` as and / or); ``not`` never does (a negated screener operator drops
   empty values that the local ``not`` keeps), nor ``in`` on numbers (the screener reads a
   two-number list as a range). The scan step applies every filter locally anyway, so the
   server only ever narrows a superset of the answer.
3. Sort and limit go to the server when every filter and the sort field did; otherwise the
   query pages through all matches (up to ``max_rows``, an error beyond, never a silent cut).
4. Paging: ``range`` windows of ``page_size`` rows until the limit, a short page or the total.

Every request waits for the rate limiter (``rate_limit_per_s``) and is retried on 429 (its
Retry-After honoured), 5xx and timeouts with backoff and jitter (:mod:`.retry`). A field the
screener rejects is an error naming it and the canonical field it stands for.

The screener only knows *now*: a scan or ratings request at a clock other than today (UTC)
would use values from after the clock, so a scan there is refused and ``technicals`` returns
None (feature-ingest then computes the ratings from the bars instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import requests
from tradingview_screener import And, Column, Or, Query

from portflow.errors import (
    ProviderError,
    ProviderResponseError,
    RateLimitedError,
    TransientProviderError,
    UsageError,
)
from portflow.providers.base import ScanQuery, utc_day
from portflow.providers.registry import TradingViewOptions
from portflow.providers.retry import RateLimiter, RetryPolicy

FIELDS = {
    "close": "close",
    "volume": "volume",
    "value_traded": "Value.Traded",
    "change_pct": "change",
    "perf_1w": "Perf.W",
    "perf_1m": "Perf.1M",
    "perf_3m": "Perf.3M",
    "volatility_d": "Volatility.D",
    "adx": "ADX",
    "exchange": "exchange",
    "sector": "sector",
    "recommend_all": "Recommend.All",
    "recommend_ma": "Recommend.MA",
    "recommend_other": "Recommend.Other",
}
MARKET_CAP = {"crypto": "market_cap_calc", "coin": "market_cap_calc"}  # else market_cap_basic
ASSET_CLASS = {"crypto": "crypto", "coin": "crypto", "forex": "forex", "futures": "futures",
               "cfd": "cfd", "bond": "bond", "bonds": "bond"}  # else equity
RATINGS = ("recommend_all", "recommend_ma", "recommend_other")
_OPS = {">": "__gt__", ">=": "__ge__", "<": "__lt__", "<=": "__le__", "==": "__eq__",
        "!=": "__ne__"}


def columns_for(market: str) -> dict[str, str]:
    """Canonical field -> screener column in ``market``."""
    return {**FIELDS, "market_cap": MARKET_CAP.get(market, "market_cap_basic")}


class TradingViewProvider:
    """The TradingView screener (module docstring)."""

    name = "tradingview"

    def __init__(self, options: TradingViewOptions,
                 today: Callable[[], pd.Timestamp] | None = None) -> None:
        self.options = options
        self.limiter = RateLimiter(options.rate_limit_per_s)
        self.policy = RetryPolicy(retries=options.max_retries, base_s=options.backoff_s)
        self.today = today or (lambda: pd.Timestamp.now(tz="UTC").normalize())
        self._session = requests.Session()

    # -- protocol ----------------------------------------------------------------------------

    def universes(self) -> list[str]:
        return sorted({"crypto", "coin", "america", "forex", "futures", "cfd", "bond"})

    def calendar(self, universe: str) -> str:
        return "24/7" if ASSET_CLASS.get(universe) == "crypto" else "XNYS"

    def scan(
        self, universe: str, as_of: pd.Timestamp, query: ScanQuery | None = None
    ) -> pd.DataFrame:
        """Rows of the screener for ``query`` (steps 1-4), canonical columns."""
        self._live(as_of, "scan")
        cols = columns_for(universe)
        q = _query(universe).select(*cols.values())
        exact = True
        if query is not None:
            pushed = [expr for expr in (_translate(f, cols) for f in query.filters)
                      if expr is not None]
            exact = len(pushed) == len(query.filters)
            if pushed:
                q = q.where2(And(*pushed))
            if query.sort is not None and query.sort[0] in cols:
                q = q.order_by(cols[query.sort[0]], ascending=query.sort[1] == "asc")
            else:
                exact = exact and query.sort is None
        limit = query.limit if query is not None and exact and query.limit else None
        rows = self._pages(q, universe, limit)
        frame = pd.DataFrame(rows, columns=["symbol", *cols])
        frame["asset_class"] = ASSET_CLASS.get(universe, "equity")
        for c in cols:
            if c not in ("exchange", "sector"):
                frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        return frame

    def technicals(
        self, universe: str, symbols: list[str], as_of: pd.Timestamp
    ) -> pd.DataFrame | None:
        """Current Recommend.All / MA / Other of ``symbols`` (EXCHANGE:TICKER), or None when
        the clock is not today (they would be from after it)."""
        if not symbols or utc_day(as_of) != self.today():
            return None
        cols = {r: FIELDS[r] for r in RATINGS}
        q = _query(universe).select(*cols.values()).set_tickers(*symbols)
        rows = self._pages(q, universe, len(symbols))
        frame = pd.DataFrame(rows, columns=["symbol", *RATINGS])
        for c in RATINGS:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        frame["timestamp"] = utc_day(as_of)
        return frame

    def fetch_ohlcv(self, universe: str, symbol: str, start: pd.Timestamp | None,
                    as_of: pd.Timestamp) -> pd.DataFrame:
        raise ProviderError(
            "tradingview has no OHLCV history; scan on it as the profile's scan_provider and"
            " take bars from a bar provider such as ccxt"
        )

    def metadata(self, universe: str, symbols: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        raise ProviderError("tradingview has no symbol metadata; the bar provider has it")

    def resolve(self, universe: str, tickers: list[str]) -> dict[str, str]:
        """TradingView holds no bars: nothing resolves to it."""
        return {}

    # -- requests ----------------------------------------------------------------------------

    def _live(self, as_of: pd.Timestamp, what: str) -> None:
        today = self.today()
        if utc_day(as_of) != today:
            raise UsageError(
                f"tradingview {what} at clock {utc_day(as_of):%Y-%m-%d}: the screener only has"
                f" today's values ({today:%Y-%m-%d}), which would be look-ahead; run at today's"
                " clock (omit --as-of) or scan with a bar provider"
            )

    def _pages(self, q: Query, market: str, limit: int | None) -> list[list[Any]]:
        """Step 4: every row (symbol first, then the selected columns)."""
        cap = self.options.max_rows if limit is None else min(limit, self.options.max_rows)
        size = self.options.page_size
        rows: list[list[Any]] = []
        total = 0
        while len(rows) < cap:
            start = len(rows)
            page = q.copy().offset(start).limit(start + min(size, cap - start))
            body = self._call(page, market)
            data = body.get("data") or []
            rows.extend([r["s"], *r["d"]] for r in data)
            total = int(body.get("totalCount") or 0)
            if len(data) < min(size, cap - start) or len(rows) >= total:
                break
        if limit is None and total > len(rows):
            raise ProviderError(
                f"tradingview: the scan of {market} matches {total} rows, more than"
                f" max_rows {self.options.max_rows}; narrow the scanner's filters or raise"
                " max_rows in the scan_provider block"
            )
        return rows[:cap]

    def _call(self, page: Query, market: str) -> dict[str, Any]:
        return self.policy.call(lambda: self._post(page, market), f"tradingview: scan of {market}")

    def _post(self, q: Query, market: str) -> dict[str, Any]:
        self.limiter.acquire()
        url = f"{self.options.url.rstrip('/')}/{market}/scan"
        try:
            payload: dict[str, Any] = dict(q.query)
            r = self._session.post(url, json=payload, timeout=self.options.timeout_s)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientProviderError(f"tradingview: {type(exc).__name__} on {url}") from None
        if r.status_code == 429:
            wait = r.headers.get("Retry-After")
            raise RateLimitedError(f"tradingview: HTTP 429 on {url}",
                                   retry_after=_float(wait))
        if r.status_code >= 500:
            raise TransientProviderError(f"tradingview: HTTP {r.status_code} on {url}")
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            raise ProviderResponseError(
                f"tradingview: HTTP {r.status_code} on {url} is not JSON: {r.text[:120]!r}"
            ) from None
        if r.status_code != 200 or body.get("error"):
            raise ProviderResponseError(_explain(str(body.get("error") or r.status_code)))
        return body


def _query(market: str) -> Query:
    """An empty screener query on ``market`` (the package's default one screens US stocks:
    primary listings, common shares, sorted by market cap — none of it is wanted here)."""
    q = Query()
    q.query = {"markets": [market], "symbols": {}, "options": {"lang": "en"}, "columns": [],
               "range": [0, 50], "ignore_unknown_fields": False}
    return q


def _translate(node: dict[str, Any], cols: dict[str, str]) -> Any:
    """Step 2: a filter node as a screener expression, or None when it stays local."""
    if "all" in node or "any" in node:
        key = "all" if "all" in node else "any"
        parts = [_translate(x, cols) for x in node[key]]
        if not parts or any(p is None for p in parts):
            return None
        return (And if key == "all" else Or)(*parts)
    if "not" in node or node.get("field") not in cols:
        return None
    col, op, value = Column(cols[node["field"]]), node["op"], node["value"]
    if op in _OPS:
        return getattr(col, _OPS[op])(value)
    if op == "between":
        return col.between(value[0], value[1])
    if all(isinstance(v, str) for v in value):  # in / not_in on names only
        return col.isin(value) if op == "in" else col.not_in(value)
    return None


def _explain(error: str) -> str:
    """A screener error, with the canonical field when it names a column we sent."""
    reverse = {v: k for k, v in {**FIELDS, **MARKET_CAP, "mc": "market_cap_basic"}.items()}
    hint = ""
    for column, field in reverse.items():
        if f'"{column}"' in error or f"'{column}'" in error:
            hint = f" (the canonical field '{field}' maps to the screener column '{column}')"
            break
    return (f"tradingview rejected the query: {error[:200]}{hint}; canonical fields it knows:"
            f" {', '.join([*FIELDS, 'market_cap', 'asset_class'])}")


def _float(v: str | None) -> float | None:
    try:
        x = float(v) if v is not None else None
    except ValueError:
        return None
    return x if x is None or math.isfinite(x) else None


def from_options(options: TradingViewOptions) -> TradingViewProvider:
    """The registry's constructor."""
    return TradingViewProvider(options)


__all__ = ["FIELDS", "TradingViewProvider", "columns_for", "from_options"]
