from __future__ import annotations

import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portflow.errors import CorruptTableError, UsageError
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
# -- corrupt files (rule 5) and the ratings snapshot ------------------------------------------


def _health_row(symbol: str, status: str = "healthy") -> dict[str, object]:
    return {"provider": "synthetic", "symbol": symbol, "status": status, "reason": "",
            "audited_at": pd.Timestamp("2026-06-30", tz="UTC")}


@pytest.mark.parametrize("table", ["health", "symbols", "ohlcv"])
def test_a_truncated_table_is_a_corrupt_table_error_naming_file_and_repair(
    tmp_path: Path, table: str
) -> None:
    lake = Lakehouse(tmp_path)
    lake.update_health([_health_row("X")])
    lake.upsert_symbols("synthetic", pd.DataFrame({"symbol": ["X"], "tick_size": [0.01]}),
                        pd.Timestamp("2026-06-30", tz="UTC"))
    lake.write_ohlcv("synthetic", "1d", "X", _bars(5))
    path, read, repair = {
        "health": (lake.health_path, lake.read_health, "data-ingest"),
        "symbols": (lake.symbols_path, lake.read_symbols, "meta-ingest"),
        "ohlcv": (lake.ohlcv_path("synthetic", "1d", "X"),
                  lambda: lake.read_ohlcv("synthetic", "1d", "X"), "data-ingest"),
    }[table]
    before = path.read_bytes()
    with open(path, "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(CorruptTableError) as err:
        read()
    msg = str(err.value)
    assert err.value.exit_code == 3 and "\n" not in msg
    assert lake.relative(path) in msg and repair in msg and "unreadable" in msg
    if table == "health":  # a writer never replaces a table it cannot read: nothing is lost
        with pytest.raises(CorruptTableError):
            lake.update_health([_health_row("Y")])
        assert path.stat().st_size == 100 and len(before) > 100


def test_a_table_without_its_columns_is_corrupt(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)
    atomic.write_parquet(pd.DataFrame({"provider": ["synthetic"]}), lake.health_path)
    with pytest.raises(CorruptTableError, match=r"health\.parquet has no column 'symbol'"):
        lake.read_health()


def test_a_truncated_features_matrix_names_the_rebuild(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)
    assert lake.features_dataset() is None
    lake.root.mkdir(parents=True)
    lake.features_matrix_path.write_bytes(b"PAR1 torn")
    with pytest.raises(CorruptTableError, match="feature-backfill"):
        lake.features_dataset()


def _snap(symbols: list[str], value: float, provider: str = "synthetic") -> pd.DataFrame:
    return pd.DataFrame({"symbol": symbols, "recommend_all": value, "provider": provider})


def test_one_snapshot_per_date_rows_replaced_others_kept(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)
    day = pd.Timestamp("2026-06-30", tz="UTC")
    folder = lake.technicals_dir(day)
    folder.mkdir(parents=True)
    # a part written by an earlier version (one file per run) is folded in
    atomic.write_parquet(_snap(["OLD"], 0.5), folder / "part-somerun.parquet")
    assert lake.write_snapshot(day, _snap(["A", "B"], 0.1)) == []
    assert lake.write_snapshot(day, _snap(["B", "C"], 0.2)) == []
    assert lake.write_snapshot(day, _snap(["B"], 0.3, provider="files")) == []
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == ["part-0.parquet"]
    snap = pd.read_parquet(folder / "part-0.parquet")
    got = {(p, s): v for p, s, v in snap[["provider", "symbol", "recommend_all"]].itertuples(index=False)}
    assert got == {("files", "B"): 0.3, ("synthetic", "A"): 0.1, ("synthetic", "B"): 0.2,
                   ("synthetic", "C"): 0.2, ("synthetic", "OLD"): 0.5}


def test_an_unreadable_snapshot_is_rebuilt_and_reported(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path)
    day = pd.Timestamp("2026-06-30", tz="UTC")
    lake.write_snapshot(day, _snap(["A"], 0.1))
    part = lake.technicals_dir(day) / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:50])
    assert lake.write_snapshot(day, _snap(["B"], 0.2)) == [lake.relative(part)]
    assert list(pd.read_parquet(part)["symbol"]) == ["B"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    # the umask is read once at import, so each case runs in a fresh interpreter
    code = (f"import os; os.umask({umask}); from pathlib import Path; "
            "from portflow.lakehouse import atomic; import pandas as pd; "
            f"atomic.write_text('x', Path({str(tmp_path / 'a.txt')!r})); "
            f"atomic.write_parquet(pd.DataFrame({{'a': [1]}}), Path({str(tmp_path / 'b.parquet')!r}))")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("a.txt", "b.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
