"""The ccxt provider through ccxt's real Binance parsing code against a local fake exchange:
retries on 429 and 5xx, the rate limit measured, a fetch failing midway that loses nothing and
resumes, and API keys that never leave the environment."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.providers.servers import FakeBinance
from tests.providers.test_contract import _ccxt_urls

from portflow.data.ingest import Ingestor, Target
from portflow.errors import ConfigError, PartialFetchError, RetriesExhaustedError
from portflow.lakehouse.store import Lakehouse
from portflow.providers import get_provider

pytest.importorskip("ccxt")
CLOCK = pd.Timestamp("2026-06-30", tz="UTC")
CLOCK_MS = int(CLOCK.value // 10**6)
UNI = "binance-spot-usdt"


def _provider(url: str, **extra: object) -> object:
    return get_provider("ccxt", {"exchange": "binance", "rate_limit_per_s": 200,
                                 "backoff_s": 0.01, "urls": _ccxt_urls(url), **extra})


def test_429_and_5xx_are_retried_verbatim_and_every_bar_arrives_once() -> None:
    def fail(n: int, path: str, q: dict[str, str]) -> int | None:
        return 429 if n % 4 == 0 else 500 if n % 7 == 0 else None

    with FakeBinance(CLOCK_MS, fail=fail, latency_s=0.005) as srv:
        p = _provider(srv.url)
        bars = p.fetch_ohlcv(UNI, "TSTC/USDT", CLOCK - pd.Timedelta(days=1400), CLOCK)  # type: ignore[attr-defined]
        want = [int(r[0]) for r in srv.bars["TSTCUSDT"]]
        assert [int(t.value // 10**6) for t in bars["timestamp"]] == want
        assert bars["close"].to_numpy().tolist() == [float(r[4]) for r in srv.bars["TSTCUSDT"]]
        failed = [e for e in srv.log if e["status"] in (429, 500)]
        assert failed and all(any(x["n"] > e["n"] and x["status"] == 200 and x["path"] == e["path"]
                                  and x["query"] == e["query"] for x in srv.log) for e in failed)


def test_retries_run_out_with_a_clear_error_naming_provider_and_symbol() -> None:
    with FakeBinance(CLOCK_MS, fail=lambda n, p, q: 503 if p == "/api/v3/klines" else None) as srv:
        p = _provider(srv.url, max_retries=2)
        with pytest.raises(RetriesExhaustedError, match=r"ccxt-binance TSTA/USDT: .*gave up after 3 tries"):
            p.fetch_ohlcv(UNI, "TSTA/USDT", CLOCK - pd.Timedelta(days=30), CLOCK)  # type: ignore[attr-defined]
        assert len(srv.klines()) == 3


def test_the_rate_limit_is_honoured_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    rate = 8.0
    with FakeBinance(CLOCK_MS) as srv:
        p = _provider(srv.url, rate_limit_per_s=rate)
        p.metadata(UNI, ["TSTA/USDT"], CLOCK)  # type: ignore[attr-defined]  # markets loaded
        start = len(srv.log)
        t0 = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda s: p.fetch_ohlcv(UNI, s, CLOCK - pd.Timedelta(days=5), CLOCK),  # type: ignore[attr-defined]
                          sorted(f"TST{c}/USDT" for c in "ABCDEF") * 2))
        elapsed = time.monotonic() - t0
        arrivals = sorted(e["t"] for e in srv.log[start:])
    n = len(arrivals)
    assert n == 12
    assert elapsed >= (n - 1) / rate * 0.95  # 12 requests at 8/s take >= 1.375 s
    # measured where they land: any 6 consecutive requests span >= 5/rate, less network jitter
    spans = np.array(arrivals[5:]) - np.array(arrivals[:-5])
    assert spans.min() >= 5 / rate - 0.25


def test_a_fetch_failing_midway_keeps_its_pages_and_resumes(tmp_path: Path) -> None:
    broken = {"on": True}

    start = CLOCK - pd.Timedelta(days=1500)  # what ingest asks for 1500 bars: two pages
    first_ms = int(start.value // 10**6)

    def fail(n: int, path: str, q: dict[str, str]) -> int | None:
        later_page = path == "/api/v3/klines" and int(q.get("startTime", 0)) > first_ms
        return 502 if broken["on"] and later_page else None

    lake = Lakehouse(tmp_path / "data")
    with FakeBinance(CLOCK_MS, fail=fail) as srv:
        p = _provider(srv.url, max_retries=1)
        target = Target("TSTF/USDT", UNI, "24/7")
        with pytest.raises(PartialFetchError) as err:
            p.fetch_ohlcv(UNI, target.symbol, start, CLOCK)  # type: ignore[attr-defined]
        assert len(err.value.bars) == 1000  # type: ignore[arg-type]
        ing = Ingestor(lake, p, CLOCK, {"24/7": 1500}, freshness_hours=12)  # type: ignore[arg-type]
        first = ing.one(target)
        assert first.action == "failed" and "next run resumes" in first.reason
        assert first.bars_fetched == 1000
        assert len(lake.read_ohlcv(p.name, "1d", target.symbol)) == 1000  # type: ignore[attr-defined]
        lake.update_health([first.health])  # type: ignore[list-item]
        broken["on"] = False
        second = Ingestor(lake, p, CLOCK, {"24/7": 1500}, freshness_hours=12).one(target)  # type: ignore[arg-type]
        assert second.action == "fetched"
        stored = lake.read_ohlcv(p.name, "1d", target.symbol)  # type: ignore[attr-defined]
        closed = [int(r[0]) for r in srv.bars["TSTFUSDT"] if first_ms <= int(r[0]) < CLOCK_MS]
        assert [int(t.value // 10**6) for t in stored["timestamp"]] == closed
        resumed = [e for e in srv.klines() if e["status"] == 200][-1]
        assert int(resumed["query"]["startTime"]) > first_ms


def test_keys_come_from_the_environment_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with FakeBinance(CLOCK_MS, fail=lambda n, p, q: 500 if p == "/api/v3/klines" else None) as srv:
        with pytest.raises(ConfigError, match="environment variable PF_TEST_KEY"):
            _provider(srv.url, api_key_env="PF_TEST_KEY")
        monkeypatch.setenv("PF_TEST_KEY", "sekrit-key-123")
        monkeypatch.setenv("PF_TEST_SECRET", "sekrit-secret-456")
        p = _provider(srv.url, api_key_env="PF_TEST_KEY", secret_env="PF_TEST_SECRET",
                      max_retries=0)
        with pytest.raises(RetriesExhaustedError) as err:
            p.fetch_ohlcv(UNI, "TSTA/USDT", CLOCK - pd.Timedelta(days=3), CLOCK)  # type: ignore[attr-defined]
    out = capsys.readouterr()
    for text in (str(err.value), out.out, out.err):
        assert "sekrit" not in text


def test_the_exchange_ids_read_without_importing_ccxt_are_ccxts_own_list() -> None:
    import ccxt

    from portflow.providers.registry import ccxt_exchanges

    assert ccxt_exchanges() == tuple(sorted(ccxt.exchanges))
