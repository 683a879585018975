"""feature-backfill and feature-ingest on a real Phase-1 data dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from portflow.data.features import MATRIX_SCHEMA, backfill, read_fingerprints
from portflow.lakehouse.store import Lakehouse


def _healthy_sources(lake: Lakehouse) -> list[tuple[str, str, str]]:
    h = lake.read_health()
    return [("synthetic", "1d", s) for s in h.loc[h["status"] == "healthy", "symbol"]]


def test_matrix_covers_exactly_the_healthy_symbols_one_row_per_bar(phase1_data: Path) -> None:
    lake = Lakehouse(phase1_data)
    m = pd.read_parquet(lake.features_matrix_path)
    h = lake.read_health()
    assert set(m["symbol"]) == set(h.loc[h["status"] == "healthy", "symbol"])
    assert not set(m["symbol"]) & set(h.loc[h["status"] == "toxic", "symbol"])
    assert m.equals(m.sort_values(["symbol", "timestamp"]).reset_index(drop=True))
    assert str(m["timestamp"].dtype) == "datetime64[ns, UTC]"
    for symbol in sorted(set(m["symbol"]))[:5]:
        bars = lake.read_ohlcv("synthetic", "1d", symbol)
        rows = m[m["symbol"] == symbol]
        assert bars is not None and list(rows["timestamp"]) == list(bars["timestamp"])
        vals = rows[["recommend_all", "recommend_ma", "recommend_other"]].to_numpy()
        assert np.isfinite(vals[250:]).all() and np.nanmax(np.abs(vals)) <= 1


def test_backfill_twice_changes_nothing_and_only_changed_symbols_recompute(
    phase1_data: Path,
) -> None:
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)
    before = pd.read_parquet(lake.features_matrix_path)
    again = backfill(lake, sources)
    assert again["recomputed"] == 0 and again["kept"] == len(sources)
    pd.testing.assert_frame_equal(pd.read_parquet(lake.features_matrix_path), before)

    # one symbol gains a bar: only it is recomputed, and its existing rows do not move
    symbol = sources[0][2]
    bars = lake.read_ohlcv("synthetic", "1d", symbol)
    assert bars is not None
    nxt = bars.iloc[[-1]].assign(timestamp=bars["timestamp"].iloc[-1] + pd.Timedelta(days=1),
                                 close=bars["close"].iloc[-1] * 1.01)
    lake.write_ohlcv("synthetic", "1d", symbol, pd.concat([bars, nxt], ignore_index=True))
    counts = backfill(lake, sources)
    assert counts["recomputed"] == 1 and counts["kept"] == len(sources) - 1
    after = pd.read_parquet(lake.features_matrix_path)
    old_rows = before[before["symbol"] == symbol].reset_index(drop=True)
    new_rows = after[after["symbol"] == symbol].reset_index(drop=True)
    assert len(new_rows) == len(old_rows) + 1
    pd.testing.assert_frame_equal(new_rows.iloc[:-1], old_rows)
    others = after[after["symbol"] != symbol].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, before[before["symbol"] != symbol].reset_index(drop=True))
    assert len(read_fingerprints(lake.features_matrix_path)) == len(sources)


def test_chunking_does_not_change_the_matrix(phase1_data: Path, tmp_path: Path) -> None:
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)[:12]
    lake.features_matrix_path.unlink()
    backfill(lake, sources, chunk_symbols=5)
    small = pd.read_parquet(lake.features_matrix_path)
    lake.features_matrix_path.unlink()
    backfill(lake, sources, chunk_symbols=500)
    pd.testing.assert_frame_equal(pd.read_parquet(lake.features_matrix_path), small)


def test_snapshot_holds_todays_ratings_from_the_lakehouse(phase1_data: Path) -> None:
    lake = Lakehouse(phase1_data)
    parts = list((lake.root / "features" / "technicals" / "date=2026-06-30").glob("part-*.parquet"))
    assert len(parts) == 1
    snap = pd.read_parquet(parts[0]).set_index("symbol")
    assert (snap["source"] == "computed").all()
    m = pd.read_parquet(lake.features_matrix_path)
    last = m.sort_values("timestamp").groupby("symbol").last()
    common = sorted(set(last.index) & set(snap.index))
    assert len(common) > 50
    np.testing.assert_allclose(snap.loc[common, "recommend_all"], last.loc[common, "recommend_all"])


def test_one_symbol_from_two_providers_never_collides(tmp_path: Path) -> None:
    from portflow.providers import get_provider

    lake = Lakehouse(tmp_path / "data")
    clock = pd.Timestamp("2026-06-30", tz="UTC")
    sym = "CRY-0002/USDT"
    for name, seed in (("synthetic", 7), ("other", 8)):  # same symbol, different markets
        bars = get_provider("synthetic", {"seed": seed, "sizes": {"synthetic-crypto": 3}}) \
            .fetch_ohlcv("synthetic-crypto", sym, clock - pd.Timedelta(days=400), clock)
        lake.write_ohlcv(name, "1d", sym, bars.iloc[: 300 + seed])
    sources = [("synthetic", "1d", sym), ("other", "1d", sym)]
    counts = backfill(lake, sources)
    assert counts == {"symbols": 2, "recomputed": 2, "kept": 0, "rows": 307 + 308,
                      "unreadable": 0}
    m = pd.read_parquet(lake.features_matrix_path)
    assert m.groupby("provider").size().to_dict() == {"other": 308, "synthetic": 307}
    mine = m[m["provider"] == "synthetic"].reset_index(drop=True)
    alone = tmp_path / "alone"
    backfill(Lakehouse(alone), [])  # an empty matrix first: then only this provider's symbol
    solo = Lakehouse(alone)
    solo.write_ohlcv("synthetic", "1d", sym, lake.read_ohlcv("synthetic", "1d", sym))
    backfill(solo, [("synthetic", "1d", sym)])
    pd.testing.assert_frame_equal(mine, pd.read_parquet(solo.features_matrix_path))
    assert backfill(lake, sources)["kept"] == 2  # fingerprints keyed by provider too


def test_a_matrix_without_the_provider_column_is_rebuilt(phase1_data: Path) -> None:
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)
    old = pd.read_parquet(lake.features_matrix_path).drop(columns="provider")
    old.to_parquet(lake.features_matrix_path)
    counts = backfill(lake, sources)
    assert counts["recomputed"] == len(sources) and counts["kept"] == 0
    assert (pd.read_parquet(lake.features_matrix_path)["provider"] == "synthetic").all()


def test_backfill_through_an_executor_writes_the_same_matrix(phase1_data: Path) -> None:
    """Chunks computed by executor workers (here threads; Ray in test_flow_executors) and
    written by the caller give the same file content as the local path."""
    from portflow.executors import LocalExecutor

    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)
    before = pd.read_parquet(lake.features_matrix_path)
    lake.features_matrix_path.unlink()
    counts = backfill(lake, sources, chunk_symbols=7, executor=LocalExecutor(3), in_flight=3)
    assert counts["recomputed"] == len(sources)
    pd.testing.assert_frame_equal(pd.read_parquet(lake.features_matrix_path), before)


def test_a_dropped_symbol_rewrites_the_matrix_without_it(phase1_data: Path) -> None:
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)
    before = pd.read_parquet(lake.features_matrix_path)
    counts = backfill(lake, sources[1:])
    assert counts["recomputed"] == 0 and counts["kept"] == len(sources) - 1
    after = pd.read_parquet(lake.features_matrix_path)
    pd.testing.assert_frame_equal(
        after, before[before["symbol"] != sources[0][2]].reset_index(drop=True))
    assert sources[0][2] not in read_fingerprints(lake.features_matrix_path)


def test_a_rewritten_file_with_the_same_bars_is_kept_not_recomputed(phase1_data: Path) -> None:
    """The stat shortcut never trusts a replaced file: it is re-hashed, and equal bytes
    keep their rows."""
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)
    before = pd.read_parquet(lake.features_matrix_path)
    symbol = sources[3][2]
    bars = lake.read_ohlcv("synthetic", "1d", symbol)
    assert bars is not None
    lake.write_ohlcv("synthetic", "1d", symbol, bars)  # same bars, a new file (new inode)
    counts = backfill(lake, sources)
    assert counts["recomputed"] == 0 and counts["kept"] == len(sources)
    pd.testing.assert_frame_equal(pd.read_parquet(lake.features_matrix_path), before)
    again = backfill(lake, sources)
    assert again["recomputed"] == 0 and again["kept"] == len(sources)
def test_an_unreadable_matrix_is_rebuilt_identically(phase1_data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)[:20]
    backfill(lake, sources)
    built = pd.read_parquet(lake.features_matrix_path)
    lake.features_matrix_path.write_bytes(lake.features_matrix_path.read_bytes()[:200])
    counts = backfill(lake, sources)
    assert counts["recomputed"] == len(sources) and counts["kept"] == 0
    assert "does not open" in capsys.readouterr().err
    pd.testing.assert_frame_equal(pd.read_parquet(lake.features_matrix_path), built)


def test_a_healthy_symbol_whose_bars_do_not_open_is_left_out(phase1_data: Path) -> None:
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)[:6]
    victim = sources[2][2]
    path = lake.ohlcv_path("synthetic", "1d", victim)
    path.write_bytes(path.read_bytes()[:100])
    counts = backfill(lake, sources)
    assert counts["unreadable"] == 1 and counts["symbols"] == 5
    assert victim not in set(pd.read_parquet(lake.features_matrix_path)["symbol"])
    assert victim not in read_fingerprints(lake.features_matrix_path)  # retried once repaired


def test_the_matrix_reads_back_as_matrix_schema_after_full_and_mixed_writes(
    phase1_data: Path,
) -> None:
    # fresh rows reach the writer with dictionary keys, kept rows with strings: either way a
    # reader gets MATRIX_SCHEMA (plain strings), and the keys stay dictionary pages
    lake = Lakehouse(phase1_data)
    sources = _healthy_sources(lake)

    def check() -> None:
        assert pq.read_schema(lake.features_matrix_path).remove_metadata().equals(MATRIX_SCHEMA)
        meta = pq.read_metadata(lake.features_matrix_path)
        for g in range(meta.num_row_groups):
            for name in ("symbol", "provider"):
                i = meta.schema.names.index(name)
                assert meta.row_group(g).column(i).has_dictionary_page

    check()
    symbol = sources[0][2]
    bars = lake.read_ohlcv("synthetic", "1d", symbol)
    assert bars is not None
    lake.write_ohlcv("synthetic", "1d", symbol, bars.iloc[:-1])
    counts = backfill(lake, sources)
    assert counts["recomputed"] == 1 and counts["kept"] == len(sources) - 1
    check()
