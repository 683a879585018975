from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portflow.errors import UsageError
from portflow.lakehouse import atomic
from portflow.lakehouse.store import Lakehouse, symbol_key


def _bars(n: int, start: str = "2026-01-01") -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq="D", tz="UTC")
    close = 100 + np.arange(n, dtype=float)
    return pd.DataFrame({"timestamp": ts, "symbol": "X", "open": close, "high": close + 1,
                         "low": close - 1, "close": close, "volume": np.full(n, 10.0)})


def test_symbol_key_replaces_unsafe_characters_and_refuses_escapes(tmp_path: Path) -> None:
    assert symbol_key("BTC/USDT:USDT") == "BTC_USDT_USDT"
    assert symbol_key("../../etc/passwd") == ".._.._etc_passwd"
    for bad in ("..", ".", ""):
        with pytest.raises(UsageError):
            symbol_key(bad)
    lake = Lakehouse(tmp_path)
    path = lake.ohlcv_path("synthetic", "1d", "../../x")
    assert lake.root.resolve() in path.resolve().parents
    with pytest.raises(UsageError):
        lake.ohlcv_path("../p", "1d", "X")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 50), shuffle=st.randoms(use_true_random=False))
def test_read_of_write_is_identity_sorted(n, shuffle, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    lake = Lakehouse(tmp_path_factory.mktemp("lake"))
    bars = _bars(n)
    idx = list(range(n))
    shuffle.shuffle(idx)
    lake.write_ohlcv("synthetic", "1d", "A/B", bars.iloc[idx])
    back = lake.read_ohlcv("synthetic", "1d", "A/B")
    assert back is not None
    expected = bars.assign(symbol="A/B")
    pd.testing.assert_frame_equal(back.reset_index(drop=True), expected, check_dtype=False)
    assert str(back["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_a_failed_write_keeps_the_previous_version_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    atomic.write_json({"v": 1}, target)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise Boom
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_parallel_health_updates_lose_nothing(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)

    def write(i: int) -> None:
        lake.update_health([{"provider": "p", "symbol": f"S{i:02d}", "status": "healthy",
                             "reason": "", "audited_at": pd.Timestamp.now(tz="UTC")}])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h = lake.read_health()
    assert sorted(h["symbol"]) == [f"S{i:02d}" for i in range(24)]


def test_symbols_keep_history(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)
    t1, t2 = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-02-01", tz="UTC")
    meta = pd.DataFrame([{"symbol": "A", "tick_size": 0.01, "lot_size": None, "calendar": "24/7"}])
    assert lake.upsert_symbols("p", meta, t1)["added"] == 1
    assert lake.upsert_symbols("p", meta, t2)["unchanged"] == 1
    assert lake.upsert_symbols("p", meta.assign(tick_size=0.001), t2)["changed"] == 1
    table = lake.read_symbols()
    assert list(table["tick_size"]) == [0.01, 0.001]
    assert table["valid_to"].iloc[0] == t2 and pd.isna(table["valid_to"].iloc[1])
    assert pd.isna(table["lot_size"]).all()  # unknown stays null


def test_health_history_appends_changed_verdicts_and_answers_as_of(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)

    def row(sym: str, status: str, at: str, bar: str | None = None) -> dict[str, object]:
        return {"provider": "p", "symbol": sym, "status": status, "reason": status,
                "bar_timestamp": None if bar is None else pd.Timestamp(bar, tz="UTC"),
                "audited_at": pd.Timestamp(at, tz="UTC")}

    lake.update_health([row("A", "healthy", "2026-01-01"), row("B", "healthy", "2026-01-01")],
                       data_run="d1")
    lake.update_health([row("A", "healthy", "2026-02-01"), row("B", "toxic", "2026-02-01",
                                                               "2026-01-20")], data_run="d2")
    hist = lake.read_health_history()
    # the unchanged verdict of A adds no row; B's change does, with the run that recorded it
    assert list(zip(hist["symbol"], hist["status"], hist["data_run"], strict=True)) == [
        ("A", "healthy", "d1"), ("B", "healthy", "d1"), ("B", "toxic", "d2")]
    then = lake.health_as_of("p", pd.Timestamp("2026-01-15", tz="UTC"))
    now = lake.health_as_of("p", None)
    assert then["B"]["status"] == "healthy" and now["B"]["status"] == "toxic"
    assert lake.read_health().set_index("symbol").loc["B", "status"] == "toxic"


def test_symbol_versions_as_of_a_recording_time(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)
    meta = pd.DataFrame({"symbol": ["A"], "tick_size": [0.01], "lot_size": [1.0]})
    lake.upsert_symbols("p", meta, pd.Timestamp("2026-06-30", tz="UTC"))
    cut = pd.Timestamp.now(tz="UTC")
    lake.upsert_symbols("p", meta.assign(tick_size=0.1), pd.Timestamp("2026-01-01", tz="UTC"))
    assert list(lake.symbol_versions("p", ["A"], cut)["tick_size"]) == [0.01]
    assert sorted(lake.symbol_versions("p", ["A"], None)["tick_size"]) == [0.01, 0.1]
