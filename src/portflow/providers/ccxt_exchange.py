"""The ``ccxt`` provider: any crypto exchange ccxt supports (extra ``portflow[ccxt]``).

Universes are ``<exchange>-<spot|swap>-<quote>`` (e.g. ``binance-spot-usdt``): the exchange's
active markets of that type whose quote currency is ``quote`` (for ``swap``, the linear
perpetuals settled in it). Calendar ``24/7``; symbols are ccxt's unified ones (``BTC/USDT``,
``BTC/USDT:USDT``); the lakehouse key is ``ccxt-<exchange>``, so two exchanges never collide.

Every HTTP request goes through one place (the exchange object's ``fetch``):

1. Rate limit: a request starts only when the provider's :class:`RateLimiter` allows it
   (``rate_limit_per_s``, shared by every thread); ccxt's own throttle is switched off.
2. Retry: HTTP 429/418, 5xx, 408 and timeouts or dropped connections are retried with
   exponential backoff and jitter (:class:`RetryPolicy`, honouring Retry-After), the same
   request verbatim; other errors (a bad symbol, a refused key) fail at once.
3. Each thread has its own ccxt exchange object (ccxt's sync objects keep per-request state);
   markets are loaded once (``load_markets``) and shared.

Steps of the protocol:

- ``scan``: the universe's markets (type, active, quote) from ``load_markets``; tickers to
  keep the markets that trade (and, with ``scan_markets_max``, the most liquid by the 24h
  quote volume); then the last ``scan_bars`` daily bars of each, so every canonical field is
  computed from bars as of the clock (:mod:`portflow.providers.fields`) — never from a live
  ticker, which would be the future at an earlier clock. The market list itself is today's
  (a market delisted since is missing: the scan's survivorship bias, as for every screener).
- ``fetch_ohlcv``: daily bars paginated by ``since`` (pages of up to 1000) until the clock's
  day or an empty page; overlapping pages are de-duplicated. If a page fails after its
  retries, the pages before it are returned in a ``PartialFetchError`` so ingest keeps them
  and the next run resumes after them.
- ``metadata``: tick size, lot size (amount step), min notional and price precision from the
  markets (precision in either of ccxt's modes, tick size or decimal places).

API keys are read from the environment variables the profile names (``api_key_env``,
``secret_env``, ``password_env``) and go only to ccxt: they are never logged, never written,
and scrubbed from any error message. Public market data needs none.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from portflow import clock
from portflow.errors import (
    ConfigError,
    PartialFetchError,
    ProviderError,
    ProviderResponseError,
    RateLimitedError,
    RetriesExhaustedError,
    TransientProviderError,
    suggest,
)
from portflow.providers.base import METADATA_COLUMNS, OHLCV_COLUMNS, ScanQuery, utc_day
from portflow.providers.fields import canonical_fields, panel_from_frames
from portflow.providers.registry import CCXT_UNIVERSE, CcxtOptions, lake_key
from portflow.providers.retry import RateLimiter, RetryPolicy

DAY_MS = 86_400_000
PAGE = 1000
SCAN_THREADS = 8


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a ccxt exception (its cause chain holds the requests error)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None and getattr(response, "status_code", None) is not None:
            return int(response.status_code)
        seen = seen.__cause__ or seen.__context__
    return None


class CcxtProvider:
    """One ccxt exchange (module docstring)."""

    def __init__(self, options: CcxtOptions) -> None:
        import ccxt

        self._ccxt = ccxt
        self.options = options
        if options.exchange not in ccxt.exchanges:
            raise ConfigError(f"ccxt has no exchange '{options.exchange}'"
                              f"{suggest(options.exchange, ccxt.exchanges)}")
        self.name = lake_key("ccxt", options)
        self._secrets: dict[str, str] = {}
        for key, env in (("apiKey", options.api_key_env), ("secret", options.secret_env),
                         ("password", options.password_env)):
            if env is None:
                continue
            value = os.environ.get(env)
            if not value:
                raise ConfigError(
                    f"{self.name}: environment variable {env} (named by the provider's"
                    f" {'api_key_env' if key == 'apiKey' else key + '_env'}) is not set; export"
                    " it, or remove the option for public data"
                )
            self._secrets[key] = value
        self.limiter = RateLimiter(options.rate_limit_per_s)
        self.policy = RetryPolicy(retries=options.max_retries, base_s=options.backoff_s)
        self._local = threading.local()
        self._markets_lock = threading.Lock()
        self._markets: dict[str, Any] | None = None
        self._currencies: Any = None

    # -- exchange objects and the request path ---------------------------------------------

    def _exchange(self) -> Any:
        """This thread's ccxt exchange object, with the markets once they are loaded."""
        ex = getattr(self._local, "exchange", None)
        if ex is None:
            cls = getattr(self._ccxt, self.options.exchange)
            ex = cls({"enableRateLimit": False, "timeout": int(self.options.timeout_s * 1000),
                      **self._secrets})
            if self.options.urls:
                ex.urls = _deep_merge(ex.urls, self.options.urls)
            plain = ex.fetch
            ex.fetch = lambda url, method="GET", headers=None, body=None: self.policy.call(
                lambda: self._request(ex, plain, url, method, headers, body),
                f"{self.name}: {method} {self._scrub(url.split('?')[0])}",
            )
            self._local.exchange = ex
        if self._markets is not None and not ex.markets:
            ex.set_markets(self._markets, self._currencies)
        return ex

    def _request(self, ex: Any, plain: Any, url: str, method: str, headers: Any,
                 body: Any) -> Any:
        """Steps 1-2 for one request: wait for the rate limit, map failures."""
        self.limiter.acquire()
        try:
            return plain(url, method, headers, body)
        except self._ccxt.BaseError as exc:
            raise self._classify(exc, ex) from None

    def _classify(self, exc: Exception, ex: Any) -> ProviderError:
        status = _http_status(exc)
        ccxt = self._ccxt
        what = f"{self.name}: {self._scrub(str(exc))[:300]}"
        if status in (418, 429) or (status is None and isinstance(exc, ccxt.DDoSProtection)):
            headers = getattr(ex, "last_response_headers", None) or {}
            retry_after = headers.get("Retry-After") or headers.get("retry-after")
            try:
                wait = float(retry_after) if retry_after is not None else None
            except ValueError:
                wait = None
            return RateLimitedError(what, retry_after=wait)
        if (status is not None and (status >= 500 or status == 408)) or (
            status is None and isinstance(exc, ccxt.NetworkError)
        ):
            return TransientProviderError(what)
        if isinstance(exc, ccxt.AuthenticationError) or status in (401, 403):
            return ProviderError(f"{what}; check the API key variables named in the profile")
        return ProviderResponseError(what)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets.values():
            text = text.replace(secret, "***")
        return text

    def _load_markets(self) -> dict[str, Any]:
        with self._markets_lock:
            if self._markets is None:
                ex = self._exchange()
                try:
                    ex.load_markets()
                except RetriesExhaustedError as exc:
                    raise RetriesExhaustedError(f"{self.name}: loading markets: {exc}") from None
                self._markets, self._currencies = ex.markets, ex.currencies
            return self._markets

    # -- universes ---------------------------------------------------------------------------

    def universes(self) -> list[str]:
        return sorted({f"{self.options.exchange}-{m['type']}-{str(m['quote']).lower()}"
                       for m in self._load_markets().values() if m.get("type") in ("spot", "swap")})

    def calendar(self, universe: str) -> str:
        self._parse(universe)
        return clock.ALWAYS_OPEN

    def _parse(self, universe: str) -> tuple[str, str]:
        m = CCXT_UNIVERSE.match(universe)
        if m is None or m["exchange"] != self.options.exchange:
            raise ProviderResponseError(
                f"{self.name}: unknown universe '{universe}'; use"
                f" {self.options.exchange}-<spot|swap>-<quote>, e.g. {self.options.exchange}-spot-usdt"
            )
        return m["type"], m["quote"]

    def _universe_markets(self, universe: str) -> dict[str, dict[str, Any]]:
        kind, quote = self._parse(universe)
        out = {}
        for sym, m in self._load_markets().items():
            if m.get("type") != kind or str(m.get("quote", "")).lower() != quote:
                continue
            if m.get("active") is False:
                continue
            if kind == "swap" and (not m.get("linear") or str(m.get("settle", "")).lower() != quote):
                continue
            out[sym] = m
        return out

    def _market(self, universe: str, symbol: str) -> dict[str, Any]:
        markets = self._universe_markets(universe)
        if symbol not in markets:
            raise ProviderResponseError(
                f"{self.name}: no active market '{symbol}' in {universe}"
                f"{suggest(symbol, markets)}"
            )
        return markets[symbol]

    # -- protocol ----------------------------------------------------------------------------

    def scan(
        self, universe: str, as_of: pd.Timestamp, query: ScanQuery | None = None
    ) -> pd.DataFrame:
        """The universe's markets with the canonical fields from their bars before the clock."""
        day = utc_day(as_of)
        markets = sorted(self._universe_markets(universe))
        markets = self._trading(markets)
        last_closed = clock.last_closed_bar(clock.ALWAYS_OPEN, day)
        start = last_closed - pd.Timedelta(days=self.options.scan_bars - 1)
        with ThreadPoolExecutor(max_workers=SCAN_THREADS) as pool:
            frames = dict(zip(markets, pool.map(
                lambda s: self.fetch_ohlcv(universe, s, start, day), markets), strict=True))
        frames = {s: f for s, f in frames.items() if len(f)}
        if not frames:
            return pd.DataFrame(columns=["symbol", "exchange", "asset_class"])
        rows = pd.date_range(start, last_closed, freq="D", tz="UTC").as_unit("ns")
        _, out = canonical_fields(panel_from_frames(frames, rows, last_closed), "24/7", day)
        out.insert(1, "exchange", self.options.exchange.upper())
        out.insert(2, "asset_class", "crypto")
        out["market_cap"] = np.nan
        return out

    def _trading(self, symbols: list[str]) -> list[str]:
        """Markets with a ticker (trading now); the `scan_markets_max` most liquid if set."""
        try:
            tickers = self._exchange().fetch_tickers(symbols)
        except self._ccxt.NotSupported:
            return symbols
        volume = {s: float(t.get("quoteVolume") or 0.0) for s, t in tickers.items()}
        keep = [s for s in symbols if s in volume]
        if self.options.scan_markets_max is not None:
            keep = sorted(keep, key=lambda s: (-volume[s], s))[: self.options.scan_markets_max]
        return sorted(keep)

    def fetch_ohlcv(
        self, universe: str, symbol: str, start: pd.Timestamp | None, as_of: pd.Timestamp
    ) -> pd.DataFrame:
        """Daily bars from ``start`` up to the clock's day (its forming bar included)."""
        self._market(universe, symbol)
        day = utc_day(as_of)
        end_ms = int(day.value // 1_000_000)
        since = int(pd.Timestamp(start).value // 1_000_000) if start is not None \
            else end_ms - 5000 * DAY_MS
        ex = self._exchange()
        rows: list[list[Any]] = []
        while True:
            try:
                page = ex.fetch_ohlcv(symbol, "1d", since=since, limit=PAGE)
            except RetriesExhaustedError as exc:
                got = _frame(symbol, rows, end_ms)
                if rows:
                    raise PartialFetchError(f"{self.name} {symbol}: stopped after {len(got)}"
                                            f" bar(s): {exc}", got) from None
                raise RetriesExhaustedError(f"{self.name} {symbol}: {exc}") from None
            page = [r for r in page if r[0] >= since]
            if not page:
                break
            rows.extend(page)
            last = int(page[-1][0])
            if last >= end_ms:
                break
            since = last + DAY_MS
        return _frame(symbol, rows, end_ms)

    def metadata(self, universe: str, symbols: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        """METADATA_COLUMNS from the markets; unknown values null."""
        markets = self._universe_markets(universe)
        ticks = self._exchange().precisionMode == self._ccxt.TICK_SIZE
        out = []
        for s in symbols:
            m = markets.get(s)
            if m is None:
                raise ProviderResponseError(f"{self.name}: no active market '{s}' in {universe}")
            prec, limits = m.get("precision") or {}, m.get("limits") or {}
            tick = _step(prec.get("price"), ticks)
            out.append({
                "symbol": s,
                "tick_size": tick,
                "lot_size": _step(prec.get("amount"), ticks),
                "min_notional": _num((limits.get("cost") or {}).get("min")),
                "price_precision": _decimals(tick),
                "quote": m.get("quote"),
                "asset_class": "crypto",
                "exchange": self.options.exchange.upper(),
                "calendar": clock.ALWAYS_OPEN,
            })
        return pd.DataFrame(out, columns=METADATA_COLUMNS)

    def technicals(
        self, universe: str, symbols: list[str], as_of: pd.Timestamp
    ) -> pd.DataFrame | None:
        """Exchanges publish no ratings: portflow computes them from the bars."""
        return None

    def resolve(self, universe: str, tickers: list[str]) -> dict[str, str]:
        """A ticker names a market by its unified symbol, its exchange id (BTCUSDT) or
        base+quote; a `.P` suffix (TradingView's perpetuals) names the swap market, which only
        a swap universe has."""
        kind, _ = self._parse(universe)
        markets = self._universe_markets(universe)
        index: dict[str, str] = {}
        for sym, m in markets.items():
            for key in (str(m.get("id", "")), f"{m.get('base', '')}{m.get('quote', '')}"):
                index.setdefault(key.upper(), sym)
        out = {t: t for t in tickers if t in markets}
        for t in tickers:
            if t in out:
                continue
            perp = t.upper().endswith(".P")
            if perp != (kind == "swap"):
                continue
            hit = index.get(t.upper().removesuffix(".P"))
            if hit is not None:
                out[t] = hit
        return out


def _frame(symbol: str, rows: list[list[Any]], end_ms: int) -> pd.DataFrame:
    """Pages -> OHLCV_COLUMNS: bars up to the clock's day, stamped 00:00 UTC, unique, sorted."""
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in OHLCV_COLUMNS}).assign(
            timestamp=pd.Series(dtype="datetime64[ns, UTC]"), symbol=pd.Series(dtype=object))
    arr = pd.DataFrame([r[:6] for r in rows], columns=["ms", "open", "high", "low", "close", "volume"])
    arr = arr[arr["ms"] <= end_ms + DAY_MS - 1]
    day_ms = (arr["ms"].astype("int64") // DAY_MS) * DAY_MS
    arr = arr.assign(ms=day_ms).drop_duplicates("ms", keep="last").sort_values("ms")
    out = pd.DataFrame({
        "timestamp": pd.to_datetime(arr["ms"].to_numpy(), unit="ms", utc=True).as_unit("ns"),
        "symbol": symbol,
    })
    for c in ("open", "high", "low", "close", "volume"):
        out[c] = pd.to_numeric(arr[c], errors="coerce").astype("float64").to_numpy()
    return out[OHLCV_COLUMNS]


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _step(v: Any, tick_mode: bool) -> float:
    """A precision as a step size (ccxt gives a tick size, or a number of decimals)."""
    x = _num(v)
    if math.isnan(x) or tick_mode:
        return x
    return 10.0 ** -x


def _decimals(tick: float) -> float:
    """Decimal places of a tick size that is a power of ten (else unknown)."""
    if math.isnan(tick) or tick <= 0:
        return math.nan
    d = -math.log10(tick)
    return float(round(d)) if abs(d - round(d)) < 1e-9 else math.nan


def from_options(options: CcxtOptions) -> CcxtProvider:
    """The registry's constructor."""
    return CcxtProvider(options)


__all__ = ["CcxtProvider", "from_options"]
