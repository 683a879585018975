"""A profile scanning on TradingView with bars from ccxt, end to end through the real CLI
against two local servers (a recorded screener and a fake Binance)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.conftest import portflow
from tests.providers.fixtures import ROWS
from tests.providers.servers import FakeBinance, FakeScreener
from tests.providers.test_contract import _ccxt_urls

pytest.importorskip("ccxt")
pytest.importorskip("tradingview_screener")


def test_tradingview_scan_ccxt_bars(config_dir: Path, tmp_path: Path) -> None:
    today = pd.Timestamp.now(tz="UTC").normalize()  # the screener only knows today
    with FakeBinance(int(today.value // 10**6)) as exchange, FakeScreener(ROWS) as screener:
        manifest = yaml.safe_load((config_dir / "manifest.yaml").read_text())
        manifest["profiles"]["tvx"] = {
            "provider": {"name": "ccxt", "exchange": "binance", "rate_limit_per_s": 100,
                         "backoff_s": 0.01, "urls": _ccxt_urls(exchange.url)},
            "scan_provider": {"name": "tradingview", "url": screener.url,
                              "bars_universe": "binance-spot-usdt",
                              "symbol_map": {"BINANCE:TSTEUSDT": "TSTF/USDT"}},
            "scanners": ["tvx"],
        }
        (config_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        (config_dir / "scanners" / "tvx.yaml").write_text(yaml.safe_dump({
            "universe": "crypto", "filters": [{"field": "volume", "op": ">", "value": 0}],
            "sort": {"field": "value_traded", "order": "desc"}, "limit": 10}))
        data = tmp_path / "data"
        portflow("flow-data", "--profile", "tvx", "--run-id", "t1", data_dir=data,
                 config_dir=config_dir, as_of=f"{today:%Y-%m-%d}", check=True)
    cands = json.loads((data / "export" / "t1" / "candidates.json").read_text())
    got = {c["symbol"]: c["fields"]["scan_symbol"] for c in cands}
    assert got == {"TSTA/USDT": "BINANCE:TSTAUSDT", "TSTB/USDT": "BINANCE:TSTBUSDT",
                   "TSTC/USDT": "BINANCE:TSTCUSDT", "TSTD/USDT": "BINANCE:TSTDUSDT",
                   "TSTF/USDT": "BINANCE:TSTEUSDT"}  # NOBAR has no market: dropped
    assert {c["provider"] for c in cands} == {"ccxt-binance"}
    run = json.loads((data / "runs" / "t1" / "run.json").read_text())
    assert run["steps"]["scan-run"]["counts"]["unmapped"] == 1
    assert run["steps"]["data-ingest"]["counts"]["symbols_fetched"] == 5
    assert (data / "lakehouse" / "ohlcv" / "ccxt-binance" / "1d" / "TSTA_USDT.parquet").exists()
    snap = pd.concat(pd.read_parquet(p) for p in (data / "lakehouse" / "features").rglob("*.parquet"))
    snap = snap.set_index("symbol")
    assert (snap["source"] == "provider").all()  # today's ratings from the screener
    assert snap.loc["TSTB/USDT", "recommend_all"] == -0.3
    assert snap.loc["TSTF/USDT", "recommend_all"] == -0.1  # asked under its scanned symbol
