from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portflow.data.ingest import Ingestor, Target, audit, run_ingest, toxic_check
from portflow.errors import ProviderError
from portflow.lakehouse.store import Lakehouse
from portflow.providers.synthetic import SyntheticProvider

UNIVERSE = "synthetic-crypto"
HISTORY = {"24/7": 400, "XNYS": 300}


def _bars(closes: list[float], start: str = "2026-01-01") -> pd.DataFrame:
    c = np.asarray(closes, dtype=float)
    ts = pd.date_range(start, periods=len(c), freq="D", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "symbol": "X", "open": c, "high": c * 1.01,
                         "low": c * 0.99, "close": c, "volume": 1.0})


@pytest.mark.parametrize(
    ("closes", "prev", "reason"),
    [
        ([10, 60], None, "move +500.0%"),          # a rise of exactly 500 %
        ([10, 1.6], None, "move -84.0%"),          # a fall of more than 83.3 %
        ([60], 10.0, "move +500.0%"),              # against the last stored close
        ([10, -1], None, "non-positive price"),
        ([10, np.nan], None, "NaN price"),
    ],
)
def test_toxic_guard_catches(closes, prev, reason) -> None:  # type: ignore[no-untyped-def]
    bad = toxic_check(_bars(closes), prev)
    assert bad is not None and reason in bad[0]


def test_toxic_guard_passes_large_but_legal_moves_and_flags_bad_bars() -> None:
    assert toxic_check(_bars([10, 59.9, 10.1]), None) is None  # +499 %, -83.1 %
    bars = _bars([10, 11])
    bars.loc[1, "high"] = bars.loc[1, "low"] - 1
    assert toxic_check(bars, None)[0] == "high < low"  # type: ignore[index]
    dup = pd.concat([_bars([10]), _bars([10])], ignore_index=True)
    assert toxic_check(dup, None)[0] == "duplicate timestamp"  # type: ignore[index]


def test_audit_statuses() -> None:
    target = pd.Timestamp("2026-01-10", tz="UTC")
    ok = _bars([1 + i for i in range(10)])
    assert audit(ok, "24/7", target)[0] == "healthy"
    assert audit(ok.iloc[:8], "24/7", target)[0] == "stale"
    flat = _bars([1, 2, 3, 4, 5, 7, 7, 7, 7, 7])
    status, reason, bar = audit(flat, "24/7", target)
    assert status == "flat" and bar == pd.Timestamp("2026-01-06", tz="UTC")
    gappy = ok.drop(index=[3, 4])
    status, reason, bar = audit(gappy, "24/7", target)
    assert status == "gappy" and "2 missing" in reason and bar == pd.Timestamp("2026-01-04", tz="UTC")


@pytest.fixture(scope="module")
def provider() -> SyntheticProvider:
    return SyntheticProvider(sizes={UNIVERSE: 40, "synthetic-equities": 40})


def _ingest(lake: Lakehouse, provider: SyntheticProvider, as_of: str, symbols: list[str],
            jobs: int = 4, now: pd.Timestamp | None = None):  # type: ignore[no-untyped-def]
    ing = Ingestor(lake, provider, pd.Timestamp(as_of, tz="UTC"), HISTORY, 12.0,
                   now=(lambda: now) if now is not None else None)
    cal = provider.calendar(UNIVERSE)
    return run_ingest(ing, [Target(s, UNIVERSE, cal) for s in symbols], jobs)


def test_only_missing_bars_are_fetched_and_the_forming_bar_is_never_stored(
    tmp_path: Path, provider: SyntheticProvider
) -> None:
    lake = Lakehouse(tmp_path)
    sym = provider.symbols(UNIVERSE)[0]
    first = _ingest(lake, provider, "2026-06-30", [sym])
    assert first.counts()["bars_fetched"] == HISTORY["24/7"]
    stored = lake.read_ohlcv("synthetic", "1d", sym)
    assert stored is not None and stored["timestamp"].max() == pd.Timestamp("2026-06-29", tz="UTC")
    # the next day's clock fetches exactly one bar and extends the same history
    second = _ingest(lake, provider, "2026-07-01", [sym])
    assert second.counts()["bars_fetched"] == 1
    after = lake.read_ohlcv("synthetic", "1d", sym)
    assert after is not None and len(after) == len(stored) + 1
    pd.testing.assert_frame_equal(after.iloc[:-1].reset_index(drop=True), stored)
    # the same clock again fetches nothing
    assert _ingest(lake, provider, "2026-07-01", [sym]).counts()["symbols_fresh"] == 1


def test_spike_is_quarantined_not_merged_and_stays_excluded(
    tmp_path: Path, provider: SyntheticProvider
) -> None:
    lake = Lakehouse(tmp_path)
    spike = next(s for s, k in provider.pathologies(UNIVERSE).items() if k == "spike")
    rep = _ingest(lake, provider, "2026-06-30", [spike])
    assert rep.counts()["symbols_toxic"] == 1
    assert lake.read_ohlcv("synthetic", "1d", spike) is None
    q = list(lake.quarantine_dir("synthetic", "1d", spike).glob("*.parquet"))
    assert len(q) == 1 and len(pd.read_parquet(q[0])) > 0
    row = lake.read_health().set_index("symbol").loc[spike]
    assert row["status"] == "toxic" and "ln 6" in row["reason"] and pd.notna(row["bar_timestamp"])
    again = _ingest(lake, provider, "2026-06-30", [spike])
    assert again.outcomes[0].action == "skipped" and "toxic" in again.outcomes[0].reason
    assert len(list(lake.quarantine_dir("synthetic", "1d", spike).glob("*.parquet"))) == 1


def test_delisted_symbol_is_stale_and_fresh_within_freshness_hours(
    tmp_path: Path, provider: SyntheticProvider
) -> None:
    lake = Lakehouse(tmp_path)
    gone = next(s for s, k in provider.pathologies(UNIVERSE).items() if k == "delisting")
    t0 = pd.Timestamp("2026-07-01T08:00", tz="UTC")
    _ingest(lake, provider, "2026-06-30", [gone], now=t0)
    assert lake.read_health().set_index("symbol").loc[gone, "status"] == "stale"
    soon = _ingest(lake, provider, "2026-06-30", [gone], now=t0 + pd.Timedelta(hours=3))
    assert soon.outcomes[0].action == "fresh" and "nothing newer" in soon.outcomes[0].reason
    late = _ingest(lake, provider, "2026-06-30", [gone], now=t0 + pd.Timedelta(hours=13))
    assert late.outcomes[0].action == "fetched" and late.counts()["bars_fetched"] == 0


class _Failing(SyntheticProvider):
    def fetch_ohlcv(self, universe, symbol, start, as_of):  # type: ignore[no-untyped-def]
        if symbol == self.symbols(universe)[1]:  # CRY-0002, no planted pathology
            raise ProviderError("connection reset")
        return super().fetch_ohlcv(universe, symbol, start, as_of)


def test_one_failure_never_stops_the_others(tmp_path: Path) -> None:
    prov = _Failing(sizes={UNIVERSE: 40})
    planted = prov.pathologies(UNIVERSE)
    syms = [s for s in prov.symbols(UNIVERSE) if s not in planted][:4]
    rep = _ingest(Lakehouse(tmp_path), prov, "2026-06-30", syms)
    acts = {o.symbol: o.action for o in rep.outcomes}
    assert acts[syms[1]] == "failed" and "connection reset" in rep.per_symbol()[syms[1]]["reason"]
    assert sum(a == "fetched" for a in acts.values()) == 3


def test_parallel_and_serial_ingestion_store_the_same_bytes(
    tmp_path: Path, provider: SyntheticProvider
) -> None:
    """The producer/consumer threads (jobs > 1) and the inline path (jobs 1) agree, first
    ingestion and top-up alike."""
    symbols = provider.symbols(UNIVERSE)[:24]
    reports = {}
    for jobs in (1, 6):
        lake = Lakehouse(tmp_path / f"jobs{jobs}")
        _ingest(lake, provider, "2026-05-31", symbols, jobs=jobs)
        reports[jobs] = _ingest(lake, provider, "2026-06-30", symbols, jobs=jobs).per_symbol()
    assert reports[1] == reports[6]
    assert sum(r["bars"] for r in reports[1].values()) > 0
    for p in sorted((tmp_path / "jobs1" / "lakehouse" / "ohlcv").rglob("*.parquet")):
        twin = tmp_path / "jobs6" / p.relative_to(tmp_path / "jobs1")
        assert p.read_bytes() == twin.read_bytes(), p.name
def test_a_corrupt_stored_file_fails_its_symbol_only_until_it_is_deleted(
    tmp_path: Path, provider: SyntheticProvider
) -> None:
    lake = Lakehouse(tmp_path)
    planted = provider.pathologies(UNIVERSE)
    syms = [s for s in provider.symbols(UNIVERSE) if s not in planted][:3]
    _ingest(lake, provider, "2026-06-30", syms)
    path = lake.ohlcv_path("synthetic", "1d", syms[0])
    path.write_bytes(path.read_bytes()[:100])
    rep = _ingest(lake, provider, "2026-07-02", syms)
    out = {o.symbol: o for o in rep.outcomes}
    assert out[syms[0]].action == "failed" and "is unreadable" in out[syms[0]].reason
    assert [out[s].action for s in syms[1:]] == ["fetched", "fetched"]
    row = lake.health_of("synthetic")[syms[0]]
    assert row["status"] == "unreadable" and lake.relative(path) in row["reason"]
    assert path.stat().st_size == 100  # left for inspection, never overwritten
    path.unlink()  # the repair the reason names: the next run fetches the symbol again
    again = _ingest(lake, provider, "2026-07-02", syms[:1])
    assert again.outcomes[0].action == "fetched"
    assert lake.health_of("synthetic")[syms[0]]["status"] == "healthy"
