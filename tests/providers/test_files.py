"""The files provider: column mapping, dotted symbols, metadata, and nothing after the clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.providers.fixtures import write_folder

from portflow.errors import ConfigError, ProviderResponseError
from portflow.providers import get_provider

CLOCK = pd.Timestamp("2026-06-30", tz="UTC")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("files"), CLOCK)


def test_names_are_matched_case_insensitively_and_dotted_symbols_kept(folder: Path) -> None:
    p = get_provider("files", {"path": str(folder)})
    odd = p.fetch_ohlcv("files", "ODD", None, CLOCK)
    raw = pd.read_csv(folder / "ODD.csv").iloc[::-1].reset_index(drop=True)
    kept = raw[pd.to_datetime(raw["Date"]) < CLOCK.tz_localize(None)]
    assert len(odd) == len(kept) and odd["timestamp"].is_monotonic_increasing
    np.testing.assert_array_equal(odd["close"].to_numpy(), kept["Close"].to_numpy(float))
    assert "BF.B" in set(p.scan("files", CLOCK)["symbol"])
    assert p.fetch_ohlcv("files", "BF.B", None, CLOCK)["symbol"].eq("BF.B").all()
    assert p.resolve("files", ["bf-b", "F001", "NYSE:F001"]) == {"bf-b": "BF.B", "F001": "F001"}


def test_rows_on_or_after_the_clock_are_never_seen(folder: Path) -> None:
    p = get_provider("files", {"path": str(folder)})
    whole = pd.read_csv(folder / "F001.csv")
    assert pd.Timestamp(whole["date"].iloc[-1], tz="UTC") > CLOCK  # the file goes past it
    bars = p.fetch_ohlcv("files", "F001", None, CLOCK)
    assert bars["timestamp"].max() < CLOCK
    scan = p.scan("files", CLOCK).set_index("symbol")
    assert scan.loc["F001", "close"] == bars["close"].iloc[-1]
    later = p.scan("files", CLOCK + pd.Timedelta(days=3)).set_index("symbol")
    assert later.loc["F001", "close"] != scan.loc["F001", "close"]  # the scan moves with it


def test_column_mapping_option_and_a_helpful_error(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    stamps = pd.bdate_range("2026-01-05", periods=30)
    pd.DataFrame({"Day": stamps.strftime("%Y%m%d"), "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5,
                  "v": 100}).to_csv(folder / "X.csv", index=False)
    bad = get_provider("files", {"path": str(folder)})
    with pytest.raises(ProviderResponseError, match=r"X.csv has no column for timestamp.*provider.columns"):
        bad.fetch_ohlcv("files", "X", None, CLOCK)
    ok = get_provider("files", {"path": str(folder), "calendar": "24/7", "columns": {
        "DAY": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}})
    assert len(ok.fetch_ohlcv("files", "X", None, CLOCK)) == 30
    with pytest.raises(ProviderResponseError, match="no file for symbol 'Y'"):
        ok.fetch_ohlcv("files", "Y", None, CLOCK)


def test_metadata_from_the_file_or_stated_never_invented(folder: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"symbol": ["F001", "BF.B"], "tick_size": [0.01, 0.05],
                  "exchange": ["NYSE", "NYSE"]}).to_csv(meta, index=False)
    p = get_provider("files", {"path": str(folder), "metadata": str(meta)})
    out = p.metadata("files", ["BF.B", "F002"], CLOCK).set_index("symbol")
    assert out.loc["BF.B", "tick_size"] == 0.05 and out.loc["BF.B", "exchange"] == "NYSE"
    assert pd.isna(out.loc["F002", "tick_size"]) and pd.isna(out.loc["BF.B", "lot_size"])
    assert (out["calendar"] == "XNYS").all()
    stated = get_provider("files", {"path": str(folder), "metadata": str(meta), "lot_size": 1})
    assert (stated.metadata("files", ["BF.B", "F002"], CLOCK)["lot_size"] == 1).all()
    assert p.scan("files", CLOCK).set_index("symbol").loc["F001", "exchange"] == "NYSE"


def test_bad_folder_or_metadata_is_a_config_error(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        get_provider("files", {"path": str(tmp_path / "nope")})
    meta = tmp_path / "m.csv"
    pd.DataFrame({"symbol": ["A"], "tick": [0.01]}).to_csv(meta, index=False)
    with pytest.raises(ConfigError, match=r"unknown column 'tick'.*did you mean 'tick_size'"):
        get_provider("files", {"path": str(folder), "metadata": str(meta)})


def test_two_rows_on_one_date_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    pd.DataFrame({"timestamp": ["2026-01-05 10:00", "2026-01-05 15:00"], "open": 1, "high": 1,
                  "low": 1, "close": 1, "volume": 1}).to_csv(folder / "Z.csv", index=False)
    p = get_provider("files", {"path": str(folder)})
    with pytest.raises(ProviderResponseError, match="more than one row on 2026-01-05"):
        p.fetch_ohlcv("files", "Z", None, CLOCK)
