"""Provider faults through the real ingest (SPEC §5): every fault ends in correct stored data or
a clear per-symbol failure that leaves the stored data and the other symbols untouched.

The faults are injected by a wrapper around the real synthetic provider (tests/reliability/
faults.py), either on a symbol's first fetch (its whole history) or on an update."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from portflow.lakehouse.store import Lakehouse
from portflow.providers.synthetic import SyntheticProvider
from tests.reliability.faults import PROVIDER_FAULTS, FaultyProvider, ingest

T1, T2 = "2026-06-30", "2026-07-10"

STORED_AS_REFERENCE = {"unsorted_bars", "future_bars", "naive_timestamps", "other_timezone"}
FAILS = {
    "timeout": "TimeoutError: read timed out",
    "http_429": "HTTP 429",
    "http_503": "HTTP 503",
    "missing_columns": "bars lacking column(s) ['close', 'volume']",
    "not_a_frame": "a dict, not a frame of bars",
    "text_prices": "non-numeric values in 'close'",
    "garbage_timestamps": "timestamps that do not parse",
    "missing_timestamps": "missing timestamps",
    "session_stamps": "not at 00:00 UTC",
}


def _stored(lake: Lakehouse, symbols: list[str]) -> dict[str, pd.DataFrame | None]:
    return {s: lake.read_ohlcv("synthetic", "1d", s) for s in symbols}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, market: SyntheticProvider,
              clean: list[str]) -> dict[str, dict[str, pd.DataFrame | None]]:
    """The stored bars of undisturbed ingests: at T2 alone, and at T1 then T2."""
    fresh = Lakehouse(tmp_path_factory.mktemp("fresh"))
    ingest(fresh, market, T2, clean)
    lake = Lakehouse(tmp_path_factory.mktemp("update"))
    ingest(lake, market, T1, clean)
    ingest(lake, market, T2, clean)
    return {"first_fetch": _stored(fresh, clean), "update": _stored(lake, clean)}


def _same(a: pd.DataFrame | None, b: pd.DataFrame | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.reset_index(drop=True).equals(b.reset_index(drop=True))


@pytest.mark.parametrize("when", ["first_fetch", "update"])
@pytest.mark.parametrize("fault", sorted(PROVIDER_FAULTS))
def test_a_provider_fault_stores_correct_data_or_fails_its_symbol_only(
    tmp_path: Path, market: SyntheticProvider, clean: list[str],
    reference: dict[str, dict[str, pd.DataFrame | None]], fault: str, when: str,
) -> None:
    lake = Lakehouse(tmp_path)
    victim, others = clean[0], clean[1:]
    faulty = FaultyProvider(market, {victim: PROVIDER_FAULTS[fault]})
    if when == "update":
        ingest(lake, market, T1, clean)
    before = _stored(lake, clean)
    health_before = lake.health_of("synthetic").get(victim)
    report = ingest(lake, faulty, T2, clean)
    out = {o.symbol: o for o in report.outcomes}
    after = _stored(lake, clean)

    for s in others:  # the fault never touches another symbol
        assert out[s].action == "fetched" and _same(after[s], reference[when][s])
    v = out[victim]
    if fault in STORED_AS_REFERENCE:
        assert v.action == "fetched" and _same(after[victim], reference[when][victim])
        assert lake.health_of("synthetic")[victim]["status"] == "healthy"
    elif fault in FAILS:
        assert v.action == "failed" and FAILS[fault] in v.reason, v.reason
        assert "\n" not in v.reason and len(v.reason) < 300
        assert _same(after[victim], before[victim])  # nothing stored changed
        assert lake.health_of("synthetic").get(victim, {}).get("audited_at") == (
            None if health_before is None else health_before["audited_at"])
    elif fault == "duplicate_bars":
        assert v.action == "toxic" and "duplicate timestamp" in v.reason
        assert _same(after[victim], before[victim])
        assert list(lake.quarantine_dir("synthetic", "1d", victim).glob("*.parquet"))
    elif fault == "truncated_rows":
        got, want = after[victim], reference[when][victim]
        assert got is not None and want is not None and 0 < len(got) < len(want)
        assert _same(got, want.iloc[: len(got)])  # a correct prefix, judged stale
        h = lake.health_of("synthetic")[victim]
        assert h["status"] == "stale" and "no bar for the last closed bar" in h["reason"]
        # a later ingest (past the freshness window) completes it exactly
        ingest(lake, market, T2, [victim], freshness_hours=0)
        assert _same(_stored(lake, [victim])[victim], want)
    else:
        assert fault == "empty"
        assert _same(after[victim], before[victim])
        if when == "first_fetch":
            assert v.action == "failed" and "provider has no bars" in v.reason
        else:
            assert lake.health_of("synthetic")[victim]["status"] == "stale"


def test_a_storm_of_errors_fails_every_symbol_and_stores_nothing(
    tmp_path: Path, market: SyntheticProvider, clean: list[str]
) -> None:
    lake = Lakehouse(tmp_path)
    ingest(lake, market, T1, clean)
    before = _stored(lake, clean)
    storm = FaultyProvider(market, dict.fromkeys(clean, PROVIDER_FAULTS["http_503"]))
    report = ingest(lake, storm, T2, clean)
    assert report.counts()["symbols_failed"] == len(clean)
    assert all(_same(a, before[s]) for s, a in _stored(lake, clean).items())
