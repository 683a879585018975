"""Local HTTP servers for offline provider tests (127.0.0.1 only, bounded, self-stopping).

- :class:`FakeBinance` answers the Binance REST paths ccxt uses (exchangeInfo, ticker/24hr,
  klines) with Binance-shaped bodies recorded from the public API's documented format,
  generated from seeded random walks up to a clock whose own bar is still forming. A
  ``fail`` hook scripts 429 (with Retry-After), 5xx or added latency per request.
- :class:`FakeScreener` answers TradingView screener POSTs ``/<market>/scan`` from a recorded
  table of rows, honouring ``range``, ``sort`` and the columns asked; it records each body.

Both log every request (path, query or body, status, arrival time) and shut down after
``ttl_s`` seconds even if a test forgets to stop them.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

DAY_MS = 86_400_000


class _Server:
    def __init__(self, ttl_s: float = 120.0) -> None:
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self, None)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                outer._handle(self, json.loads(self.rfile.read(n) or b"{}"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(ttl_s, self.stop)
        self._timer.daemon = True

    def __enter__(self) -> _Server:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, h: BaseHTTPRequestHandler, body: Any) -> None:
        u = urlparse(h.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with self.lock:
            n = len(self.log) + 1
            entry = {"n": n, "path": u.path, "query": q, "body": body, "t": time.monotonic()}
            self.log.append(entry)
        status, payload, headers = self.answer(n, u.path, q, body)
        entry["status"] = status
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def answer(self, n: int, path: str, q: dict[str, str],
               body: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        raise NotImplementedError


Fail = Callable[[int, str, dict[str, str]], "int | None"]


class FakeBinance(_Server):
    """Binance spot REST, 1d klines only (module docstring)."""

    def __init__(self, clock_ms: int, n_markets: int = 6, fail: Fail | None = None,
                 latency_s: float = 0.0, ttl_s: float = 120.0) -> None:
        super().__init__(ttl_s)
        self.clock_ms, self.fail, self.latency_s = clock_ms, fail, latency_s
        self.bars: dict[str, list[list[str | int]]] = {}
        self.info: list[dict[str, Any]] = []
        for k in range(n_markets):
            base = f"TST{chr(65 + k)}"
            rng = random.Random(1000 + k)
            tick, step = (0.01, 0.001) if k % 2 else (0.0001, 1.0)
            p, rows = rng.uniform(1, 200), []
            for t in range(clock_ms - (400 + 250 * k) * DAY_MS, clock_ms + DAY_MS, DAY_MS):
                o = p
                p = max(tick * 10, p * math.exp(rng.gauss(0.001, 0.03)))
                hi, lo = max(o, p) * (1 + abs(rng.gauss(0, 0.01))), min(o, p) * (1 - abs(rng.gauss(0, 0.01)))
                def fmt(x: float, tick: float = tick) -> str:
                    return f"{round(round(x / tick) * tick, 8):.8f}"
                rows.append([t, fmt(o), fmt(hi), fmt(lo), fmt(p), f"{rng.uniform(1e5, 1e7) / p:.3f}",
                             t + DAY_MS - 1])
            self.bars[base + "USDT"] = rows
            self.info.append({
                "symbol": base + "USDT", "status": "TRADING", "baseAsset": base,
                "baseAssetPrecision": 8, "quoteAsset": "USDT", "quotePrecision": 8,
                "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "permissions": [], "permissionSets": [["SPOT"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": f"{tick:.8f}",
                     "maxPrice": "1000000.00000000", "tickSize": f"{tick:.8f}"},
                    {"filterType": "LOT_SIZE", "minQty": f"{step:.8f}",
                     "maxQty": "9000000.00000000", "stepSize": f"{step:.8f}"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000",
                     "applyMinToMarket": True, "maxNotional": "9000000.00000000",
                     "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
            })

    def klines(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e["path"] == "/api/v3/klines"]

    def answer(self, n: int, path: str, q: dict[str, str],
               body: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        if self.latency_s:
            time.sleep(self.latency_s)
        status = self.fail(n, path, q) if self.fail else None
        if status == 429:
            return 429, {"code": -1003, "msg": "Too many requests."}, [("Retry-After", "0")]
        if status is not None:
            return status, {"code": -1000, "msg": "Internal error."}, []
        if path.endswith("/exchangeInfo"):
            return 200, {"timezone": "UTC", "serverTime": self.clock_ms, "rateLimits": [],
                         "exchangeFilters": [],
                         "symbols": self.info if path.startswith("/api/") else []}, []
        if path.startswith("/sapi/"):  # account endpoints ccxt calls once keys are set
            return 200, [], []
        if path == "/api/v3/ticker/24hr":
            names = json.loads(q["symbols"]) if "symbols" in q else list(self.bars)
            return 200, [self._ticker(s) for s in names if s in self.bars], []
        if path == "/api/v3/klines" and q.get("symbol") in self.bars:
            lo, hi = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
            rows = [r for r in self.bars[q["symbol"]] if lo <= int(r[0]) <= hi]
            rows = rows[: min(int(q.get("limit", 500)), 1000)]
            return 200, [[*r[:7], "0", 100, "0", "0", "0"] for r in rows], []
        return 404, {"code": -1100, "msg": f"no route {path}"}, []

    def _ticker(self, s: str) -> dict[str, Any]:
        last, prev = self.bars[s][-1], self.bars[s][-2]
        return {"symbol": s, "lastPrice": last[4], "openPrice": prev[4], "highPrice": last[2],
                "lowPrice": last[3], "volume": last[5],
                "quoteVolume": f"{float(last[5]) * float(last[4]):.8f}",
                "priceChangePercent": "0.0", "openTime": self.clock_ms - DAY_MS,
                "closeTime": self.clock_ms, "count": 10}


class FakeScreener(_Server):
    """TradingView screener POST /<market>/scan over recorded rows (module docstring)."""

    def __init__(self, rows: list[dict[str, Any]], fail: Fail | None = None,
                 ttl_s: float = 120.0) -> None:
        super().__init__(ttl_s)
        self.rows, self.fail = rows, fail

    def answer(self, n: int, path: str, q: dict[str, str],
               body: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        status = self.fail(n, path, q) if self.fail else None
        if status == 429:
            return 429, {"error": "too many requests"}, [("Retry-After", "0")]
        if status is not None:
            return status, "oops", []
        cols = body.get("columns", [])
        unknown = [c for c in cols if c not in self.rows[0]]
        if unknown:
            return 400, {"totalCount": 0, "error": f'Unknown field "{unknown[0]}"', "data": None}, []
        rows = self.rows
        if body.get("symbols", {}).get("tickers"):
            rows = [r for r in rows if r["s"] in body["symbols"]["tickers"]]
        sort = body.get("sort")
        if sort:
            rows = sorted(rows, key=lambda r: r[sort["sortBy"]], reverse=sort["sortOrder"] == "desc")
        lo, hi = body.get("range", [0, 50])
        return 200, {"totalCount": len(rows),
                     "data": [{"s": r["s"], "d": [r[c] for c in cols]} for r in rows[lo:hi]]}, []
