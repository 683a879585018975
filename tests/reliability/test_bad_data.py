"""Bad market data (SPEC §5, §6.1): the toxic guard, the Phase-1 health audit and Phase 2's
Strict Health each catch their case and say why, on the real ingest and aggregation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portflow.alpha import aggregate
from portflow.alpha.view import Bars
from portflow.data.ingest import IngestReport
from portflow.lakehouse.store import Lakehouse
from portflow.providers.synthetic import SyntheticProvider
from tests.reliability.faults import BAD_DATA, FaultyProvider, ingest

AS_OF = pd.Timestamp("2026-06-30", tz="UTC")


def _ingest(lake: Lakehouse, provider: object, symbols: list[str]) -> IngestReport:
    return ingest(lake, provider, f"{AS_OF:%Y-%m-%d}", symbols)


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_the_toxic_guard_catches_bad_bars_with_reason_and_bar(
    tmp_path: Path, market: SyntheticProvider, clean: list[str], case: str
) -> None:
    fault, reason = BAD_DATA[case]
    lake = Lakehouse(tmp_path)
    victim = clean[0]
    report = _ingest(lake, FaultyProvider(market, {victim: fault}), clean)
    out = {o.symbol: o for o in report.outcomes}
    assert out[victim].action == "toxic" and reason in out[victim].reason
    h = lake.health_of("synthetic")[victim]
    assert h["status"] == "toxic" and reason in h["reason"]
    assert h["bar_timestamp"] == AS_OF - pd.Timedelta(days=1)  # the damaged bar itself
    assert lake.read_ohlcv("synthetic", "1d", victim) is None  # quarantined, not merged
    assert list(lake.quarantine_dir("synthetic", "1d", victim).glob("*.parquet"))
    assert all(out[s].action == "fetched" for s in clean[1:])


def _flat(bars: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    out = bars.copy()
    out.loc[out.index[-8:], ["open", "high", "low", "close"]] = float(out["close"].iloc[-9])
    return out


def test_a_flat_series_is_caught_by_the_audit(
    tmp_path: Path, market: SyntheticProvider, clean: list[str]
) -> None:
    lake = Lakehouse(tmp_path)
    _ingest(lake, FaultyProvider(market, {clean[0]: _flat}), clean[:1])
    h = lake.health_of("synthetic")[clean[0]]
    assert h["status"] == "flat" and "closes identical" in h["reason"]


def test_a_symbol_with_three_bars_is_dropped_by_strict_health_with_its_reason(
    tmp_path: Path, market: SyntheticProvider, clean: list[str]
) -> None:
    lake = Lakehouse(tmp_path)
    young = clean[0]
    _ingest(lake, FaultyProvider(market, {young: lambda b, t: b.iloc[-4:]}), clean)
    bars = {s: lake.read_ohlcv("synthetic", "1d", s) for s in clean}
    young_bars = bars[young]
    assert young_bars is not None and len(young_bars) == 3
    # Phase 1 judges data quality only (README): three clean, current bars are healthy there
    assert lake.health_of("synthetic")[young]["status"] == "healthy"
    cands = [aggregate.CandidateBars(key=s, symbol=s, direction="LONG", calendar="24/7",
                                     source={} if b is None else {s: Bars.from_frame(b)})
             for s, b in bars.items()]
    window = aggregate.build_window(cands, AS_OF, 60, min_healthy_fraction=0.5, min_assets=2)
    health = {h["key"]: h for h in window.health}
    assert not health[young]["healthy"]
    assert any("history starts" in r for r in health[young]["reasons"])
    assert young not in window.returns.columns
    assert np.isfinite(window.returns.to_numpy()).all()
