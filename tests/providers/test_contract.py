"""One contract every bar provider passes (synthetic, files, ccxt on a local fake exchange),
plus the scan part TradingView (a discovery-only provider) passes on recorded answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.providers.fixtures import write_folder
from tests.providers.servers import FakeBinance, FakeScreener

from portflow.lakehouse.store import symbol_key
from portflow.providers import get_provider
from portflow.providers.base import METADATA_COLUMNS, OHLCV_COLUMNS, Provider, ScanQuery
from portflow.providers.fields import BAR_SCAN_FIELDS

CLOCK = pd.Timestamp("2026-06-30", tz="UTC")


@dataclass
class Case:
    provider: Provider
    universe: str
    calendar: str


def _ccxt_urls(base: str) -> dict[str, object]:
    import ccxt

    def point(u: object) -> object:
        if isinstance(u, dict):
            return {k: point(v) for k, v in u.items()}
        return re.sub(r"^https?://[^/]+", base, u) if isinstance(u, str) else u

    return {"api": point(ccxt.binance().urls["api"])}


@pytest.fixture(scope="module", params=["synthetic", "files", "ccxt"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    if request.param == "synthetic":
        yield Case(get_provider("synthetic", {"sizes": {"synthetic-crypto": 12}}),
                   "synthetic-crypto", "24/7")
    elif request.param == "files":
        folder = write_folder(tmp_path_factory.mktemp("files"), CLOCK)
        yield Case(get_provider("files", {"path": str(folder)}), "files", "XNYS")
    else:
        pytest.importorskip("ccxt")
        with FakeBinance(int(CLOCK.value // 10**6)) as srv:
            yield Case(get_provider("ccxt", {"exchange": "binance", "rate_limit_per_s": 200,
                                             "urls": _ccxt_urls(srv.url)}),
                       "binance-spot-usdt", "24/7")


def test_identity_and_calendar(case: Case) -> None:
    assert isinstance(case.provider, Provider)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", case.provider.name)  # a lakehouse key
    assert case.provider.calendar(case.universe) == case.calendar


def test_scan_has_the_canonical_fields_as_of_the_clock(case: Case) -> None:
    scan = case.provider.scan(case.universe, CLOCK, ScanQuery("all", case.universe))
    assert len(scan) >= 5 and scan["symbol"].is_unique
    assert set(BAR_SCAN_FIELDS) <= set(scan.columns)
    assert {"exchange", "asset_class", "market_cap"} <= set(scan.columns)
    row = scan.iloc[0]
    bars = case.provider.fetch_ohlcv(case.universe, row["symbol"], None, CLOCK)
    closed = bars[bars["timestamp"] < CLOCK]
    assert row["close"] == closed["close"].iloc[-1]  # the last closed bar, never the forming one
    assert row["value_traded"] == pytest.approx(row["close"] * row["volume"])
    assert scan["recommend_all"].abs().max() <= 1.0


def test_bars_are_sorted_unique_utc_and_never_after_the_clock(case: Case) -> None:
    symbol = case.provider.scan(case.universe, CLOCK)["symbol"].iloc[0]
    start = CLOCK - pd.Timedelta(days=60)
    bars = case.provider.fetch_ohlcv(case.universe, symbol, start, CLOCK)
    assert list(bars.columns) == OHLCV_COLUMNS
    assert str(bars["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert bars["timestamp"].is_monotonic_increasing and bars["timestamp"].is_unique
    assert bars["timestamp"].min() >= start and bars["timestamp"].max() <= CLOCK
    assert (bars["timestamp"] == bars["timestamp"].dt.normalize()).all()
    assert (bars["symbol"] == symbol).all()
    earlier = case.provider.fetch_ohlcv(case.universe, symbol, start, CLOCK - pd.Timedelta(days=10))
    assert earlier["timestamp"].max() <= CLOCK - pd.Timedelta(days=10)
    symbol_key(symbol)  # storable


def test_metadata_rows_follow_the_symbols(case: Case) -> None:
    symbols = list(case.provider.scan(case.universe, CLOCK)["symbol"].iloc[:3])[::-1]
    meta = case.provider.metadata(case.universe, symbols, CLOCK)
    assert list(meta.columns) == METADATA_COLUMNS
    assert list(meta["symbol"]) == symbols
    assert (meta["calendar"] == case.calendar).all()
    assert np.isnan(meta["tick_size"]).sum() + (meta["tick_size"] > 0).sum() == len(symbols)


def test_own_symbols_resolve_to_themselves(case: Case) -> None:
    symbols = list(case.provider.scan(case.universe, CLOCK)["symbol"].iloc[:3])
    assert case.provider.resolve(case.universe, symbols) == {s: s for s in symbols}
    assert case.provider.resolve(case.universe, ["NO-SUCH-THING"]) == {}


def test_tradingview_passes_the_scan_part_of_the_contract(tmp_path: Path) -> None:
    pytest.importorskip("tradingview_screener")
    from tests.providers.fixtures import ROWS

    with FakeScreener(ROWS) as srv:
        tv = get_provider("tradingview", {"url": srv.url})
        tv.today = lambda: CLOCK  # type: ignore[attr-defined]
        assert isinstance(tv, Provider) and tv.name == "tradingview"
        scan = tv.scan("crypto", CLOCK)
        assert set(BAR_SCAN_FIELDS) <= set(scan.columns) and scan["symbol"].is_unique
        assert tv.resolve("crypto", list(scan["symbol"])) == {}  # no bars: nothing maps to it


def test_the_lakehouse_key_follows_from_the_recorded_config(case: Case) -> None:
    from portflow.providers.registry import lake_key

    opts = getattr(case.provider, "options", None)
    name = case.provider.name.split("-")[0]
    assert lake_key(name, opts if opts is not None else {}) == case.provider.name
