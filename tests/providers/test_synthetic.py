"""The synthetic market: deterministic, live-like, non-toy, with its planted pathologies."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portflow.errors import ProviderError
from portflow.providers.base import METADATA_COLUMNS, OHLCV_COLUMNS, SCAN_FIELDS, Provider
from portflow.providers.synthetic import (
    CRYPTO,
    EQUITIES,
    SCAN_COLUMNS,
    PlantedPathology,
    SyntheticProvider,
    _clear_cache,
    _default_pathologies,
    _generate,
    _xnys_sessions,
)

CLOCK = pd.Timestamp("2026-06-30", tz="UTC")  # the acceptance checks' PORTFLOW_AS_OF
LATE_CLOCK = pd.Timestamp("2026-12-01", tz="UTC")
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def provider() -> SyntheticProvider:
    return SyntheticProvider()


def closed(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Drop the forming bar, as the ingest step does."""
    return frame[frame["timestamp"] < as_of].reset_index(drop=True)


def planted(p: SyntheticProvider, universe: str, kind: str) -> list[PlantedPathology]:
    return [x for x in p.planted(universe) if x.kind == kind]


def test_is_a_provider(provider: SyntheticProvider) -> None:
    assert isinstance(provider, Provider)
    assert provider.name == "synthetic"
    assert provider.universes() == [CRYPTO, EQUITIES]
    assert provider.calendar(CRYPTO) == "24/7"
    assert provider.calendar(EQUITIES) == "XNYS"
    assert provider.technicals(CRYPTO, ["CRY-0001/USDT"], CLOCK) is None


def test_symbols_are_plainly_synthetic(provider: SyntheticProvider) -> None:
    crypto, equities = provider.symbols(CRYPTO), provider.symbols(EQUITIES)
    assert len(crypto) == 150 and len(equities) == 250
    assert all(s.startswith("CRY-") and s.endswith("/USDT") for s in crypto)
    assert all(s.startswith("EQ") and s[2:].isdigit() for s in equities)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_generation_is_prefix_stable_bit_for_bit(universe: str) -> None:
    """Generating further (later clock), or more symbols, never changes an existing bar."""
    start = pd.Timestamp("2019-01-01", tz="UTC")
    end = pd.Timestamp("2026-06-29", tz="UTC")
    events = _default_pathologies(universe)
    short = _generate(universe, 7, 12, start, end, events)
    longer = _generate(universe, 7, 12, start, end + DAY, events)
    much_longer = _generate(universe, 7, 20, start, end + 400 * DAY, events)
    n = len(short.dates)
    assert len(longer.dates) >= n and (longer.dates[:n] == short.dates).all()
    for name in ("open", "high", "low", "close", "volume"):
        a = getattr(short, name)
        np.testing.assert_array_equal(getattr(longer, name)[:n], a, strict=True)
        np.testing.assert_array_equal(getattr(much_longer, name)[:n, :12], a, strict=True)


def test_later_clock_extends_the_same_history_by_one_bar(provider: SyntheticProvider) -> None:
    _clear_cache()  # the two clocks below straddle a year end: two different generations
    t0 = pd.Timestamp("2026-12-31", tz="UTC")
    today = closed(provider.fetch_ohlcv(CRYPTO, "CRY-0002/USDT", None, t0), t0)
    _clear_cache()
    tomorrow = closed(provider.fetch_ohlcv(CRYPTO, "CRY-0002/USDT", None, t0 + DAY), t0 + DAY)
    assert len(tomorrow) == len(today) + 1
    pd.testing.assert_frame_equal(tomorrow.iloc[:-1], today, check_exact=True)
    assert tomorrow["timestamp"].iloc[-1] == t0


def test_same_seed_same_market_other_seed_other_market() -> None:
    a = SyntheticProvider(seed=11, sizes={CRYPTO: 5}).fetch_ohlcv(
        CRYPTO, "CRY-0001/USDT", None, CLOCK
    )
    b = SyntheticProvider(seed=11, sizes={CRYPTO: 40}).fetch_ohlcv(
        CRYPTO, "CRY-0001/USDT", None, CLOCK
    )
    c = SyntheticProvider(seed=12, sizes={CRYPTO: 5}).fetch_ohlcv(
        CRYPTO, "CRY-0001/USDT", None, CLOCK
    )
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # independent of universe size
    assert not np.array_equal(a["close"].to_numpy(), c["close"].to_numpy())


# ----------------------------------------------------------------------------- the clock


def test_bars_stop_at_the_clock_with_a_forming_bar(provider: SyntheticProvider) -> None:
    sym = "CRY-0002/USDT"
    now = provider.fetch_ohlcv(CRYPTO, sym, None, CLOCK)
    assert list(now.columns) == OHLCV_COLUMNS
    assert str(now["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert now["timestamp"].is_monotonic_increasing and now["timestamp"].is_unique
    assert now["timestamp"].iloc[0] == pd.Timestamp("2019-01-01", tz="UTC")
    assert now["timestamp"].iloc[-1] == CLOCK  # the still-forming bar of the clock's day
    assert (now["symbol"] == sym).all()
    later = provider.fetch_ohlcv(CRYPTO, sym, None, CLOCK + DAY).set_index("timestamp")
    forming, final = now.iloc[-1], later.loc[CLOCK]
    assert forming["open"] == final["open"]
    assert forming["close"] != final["close"]
    assert 0 < forming["volume"] < final["volume"]
    assert forming["high"] >= max(forming["open"], forming["close"])
    assert forming["low"] <= min(forming["open"], forming["close"])
    # the forming bar is itself deterministic in (seed, symbol, date)
    pd.testing.assert_frame_equal(now, provider.fetch_ohlcv(CRYPTO, sym, None, CLOCK))
    # a clock given with a time of day or without a timezone means the same UTC day
    noon = provider.fetch_ohlcv(CRYPTO, sym, None, pd.Timestamp("2026-06-30 13:45"))
    pd.testing.assert_frame_equal(now, noon)


def test_start_filters_and_early_clock_is_empty(provider: SyntheticProvider) -> None:
    start = pd.Timestamp("2026-06-01", tz="UTC")
    bars = provider.fetch_ohlcv(CRYPTO, "CRY-0002/USDT", start, CLOCK)
    assert bars["timestamp"].iloc[0] == start and len(bars) == 30
    empty = provider.fetch_ohlcv(CRYPTO, "CRY-0002/USDT", None, pd.Timestamp("2018-06-01"))
    assert empty.empty and list(empty.columns) == OHLCV_COLUMNS
    assert str(empty["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_equities_trade_on_xnys_sessions_only(provider: SyntheticProvider) -> None:
    sessions = _xnys_sessions(pd.Timestamp("2019-01-01", tz="UTC"), CLOCK)
    bars = provider.fetch_ohlcv(EQUITIES, "EQ0002", None, CLOCK)
    assert bars["timestamp"].isin(sessions).all()
    assert len(bars) == len(sessions)  # a healthy symbol has every session, forming one included
    assert bars["timestamp"].iloc[-1] == CLOCK  # 2026-06-30 is a session: it is forming
    saturday = pd.Timestamp("2026-06-27", tz="UTC")
    weekend = provider.fetch_ohlcv(EQUITIES, "EQ0002", None, saturday)
    assert weekend["timestamp"].iloc[-1] == pd.Timestamp("2026-06-26", tz="UTC")
    closed_friday = bars.set_index("timestamp").loc[pd.Timestamp("2026-06-26", tz="UTC")]
    assert weekend.iloc[-1]["close"] == closed_friday["close"]  # no forming bar off-session
    assert pd.Timestamp("2026-06-19", tz="UTC") not in set(bars["timestamp"])  # Juneteenth


@settings(max_examples=25, deadline=None)
@given(
    universe=st.sampled_from([CRYPTO, EQUITIES]),
    number=st.integers(1, 40),
    days=st.integers(0, 2900),
)
def test_no_bar_after_the_clock_and_sane_ohlc(universe: str, number: int, days: int) -> None:
    p = SyntheticProvider()
    as_of = pd.Timestamp("2019-01-01", tz="UTC") + days * DAY
    sym = p.symbols(universe)[number - 1]
    bars = p.fetch_ohlcv(universe, sym, None, as_of)
    assert (bars["timestamp"] <= as_of).all()
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert (lo > 0).all() and (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
    assert (bars["volume"] > 0).all()


# ----------------------------------------------------------------------------- bars


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_ohlc_invariants_and_tick_rounding(provider: SyntheticProvider, universe: str) -> None:
    panel = provider._panel(universe, CLOCK)
    o, h, lo, c, v = panel.open, panel.high, panel.low, panel.close, panel.volume
    ok = ~np.isnan(c)
    assert (np.isnan(o) == ~ok).all() and (np.isnan(v) == ~ok).all()
    with np.errstate(invalid="ignore"):
        assert (lo[ok] > 0).all() and (v[ok] > 0).all()
        assert (h[ok] >= np.maximum(o, c)[ok]).all() and (lo[ok] <= np.minimum(o, c)[ok]).all()
    for arr in (o, h, lo, c):
        steps = arr / panel.tick
        assert np.nanmax(np.abs(steps - np.round(steps))) < 1e-6
    # the tick is a power of ten, never coarser than 0.2% of the price (no fake flat closes)
    rel = panel.tick / np.nanmedian(c, axis=0)
    assert (np.log10(panel.tick) == np.round(np.log10(panel.tick))).all()
    assert (rel > 1e-9).all() and (np.nanmax(panel.tick / c, axis=0) < 2e-3).all()
    # open is near the previous close (except around planted bars)
    healthy = [j for j, s in enumerate(panel.symbols) if s not in provider.pathologies(universe)]
    gap = np.abs(np.log(o[1:, healthy] / c[:-1, healthy]))
    assert np.nanmedian(gap) < (0.01 if universe == CRYPTO else 0.005)


def test_daily_vol_levels(provider: SyntheticProvider) -> None:
    for universe, (lo, hi) in ((CRYPTO, (0.02, 0.08)), (EQUITIES, (0.006, 0.035))):
        c = provider._panel(universe, CLOCK).close
        r = np.diff(np.log(c[:2700]), axis=0)
        listed = np.isfinite(r).sum(axis=0) >= 2  # a symbol listed after row 2700 has no vol
        vol = np.full(r.shape[1], np.nan)
        vol[listed] = np.nanstd(r[:, listed], axis=0)
        healthy = [
            j
            for j, s in enumerate(provider.symbols(universe))
            if s not in provider.pathologies(universe)
        ]
        assert lo < np.median(vol[healthy]) < hi
        assert (vol[healthy] > lo * 0.6).all() and (vol[healthy] < hi * 1.5).all()


# ----------------------------------------------------------------------------- pathologies


def test_pathologies_are_documented_in_both_universes(provider: SyntheticProvider) -> None:
    kinds = {"spike", "missing_bars", "flat", "late_listing", "delisting"}
    assert set(provider.pathologies(CRYPTO).values()) == kinds | {"no_lot_size"}
    assert set(provider.pathologies(EQUITIES).values()) == kinds
    assert provider.pathologies(CRYPTO)["CRY-0003/USDT"] == "spike"
    assert provider.pathologies(EQUITIES)["EQ0007"] == "flat"
    small = SyntheticProvider(sizes={CRYPTO: 6})
    assert small.pathologies(CRYPTO) == {"CRY-0003/USDT": "spike", "CRY-0005/USDT": "missing_bars"}


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_spike_of_more_than_500_percent_reverts(provider: SyntheticProvider, universe: str) -> None:
    for event, as_of in zip(planted(provider, universe, "spike"), (CLOCK, LATE_CLOCK), strict=True):
        day = pd.Timestamp(event.dates[0], tz="UTC")
        bars = closed(provider.fetch_ohlcv(universe, event.symbol, None, as_of), as_of)
        close = bars.set_index("timestamp")["close"]
        k = close.index.get_loc(day)
        assert close.iloc[k] / close.iloc[k - 1] >= 7.0
        assert close.iloc[k + 1] / close.iloc[k] <= 1 / 6  # reverts the next bar
        assert np.log(close.iloc[k + 1] / close.iloc[k - 1]) ** 2 < 0.05
        assert len(close) - 1 - k <= 60  # within the last ~60 bars at its demo clock
        assert len(close) - 1 - k >= 5
        ratios = close.iloc[1:].to_numpy() / close.iloc[:-1].to_numpy()
        assert (np.abs(np.log(ratios)) >= np.log(6)).sum() == 2  # the spike and its reversal


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_missing_bars_are_absent(provider: SyntheticProvider, universe: str) -> None:
    (event,) = planted(provider, universe, "missing_bars")
    stamps = set(provider.fetch_ohlcv(universe, event.symbol, None, CLOCK)["timestamp"])
    missing = [pd.Timestamp(d, tz="UTC") for d in event.dates]
    assert len(missing) >= 3 and all(CLOCK - 365 * DAY < d < CLOCK for d in missing)
    assert not stamps & set(missing)
    neighbours = {d - DAY for d in missing} | {d + DAY for d in missing}
    if universe == CRYPTO:
        assert neighbours - set(missing) <= stamps


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_flat_series_at_the_clock(provider: SyntheticProvider, universe: str) -> None:
    (event,) = planted(provider, universe, "flat")
    bars = closed(provider.fetch_ohlcv(universe, event.symbol, None, CLOCK), CLOCK)
    tail = bars[bars["timestamp"] >= pd.Timestamp(event.dates[0], tz="UTC")]
    assert len(tail) >= 8
    level = tail["close"].iloc[0]
    assert (tail[["open", "high", "low", "close"]] == level).all().all()
    assert level == bars["close"].iloc[-len(tail) - 1]  # frozen at the last live close
    live = bars["volume"].iloc[-len(tail) - 30 : -len(tail)].median()
    assert tail["volume"].median() < 0.5 * live


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_late_listings_start_recently(provider: SyntheticProvider, universe: str) -> None:
    events = planted(provider, universe, "late_listing")
    assert len(events) == 2
    for event in events:
        first = pd.Timestamp(event.dates[0], tz="UTC")
        clock = first + pd.Timedelta(days=200)
        bars = closed(provider.fetch_ohlcv(universe, event.symbol, None, clock), clock)
        assert bars["timestamp"].iloc[0] == first
        assert 130 <= len(bars) <= 200
        before = provider.fetch_ohlcv(universe, event.symbol, None, first - DAY)
        assert before.empty
        assert event.symbol not in set(provider.scan(universe, first - DAY)["symbol"])


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_delisting_stops_bars_and_scan_keeps_it_30_days(
    provider: SyntheticProvider, universe: str
) -> None:
    event = planted(provider, universe, "delisting")[0]
    last = pd.Timestamp(event.dates[0], tz="UTC")
    bars = provider.fetch_ohlcv(universe, event.symbol, None, CLOCK)
    assert bars["timestamp"].iloc[-1] == last < CLOCK  # stale at the clock: nothing newer
    scan = provider.scan(universe, CLOCK).set_index("symbol")
    assert scan.loc[event.symbol, "close"] == bars["close"].iloc[-1]
    assert event.symbol not in set(provider.scan(universe, last + 32 * DAY)["symbol"])


def test_one_liquid_crypto_symbol_lacks_lot_size(provider: SyntheticProvider) -> None:
    (event,) = planted(provider, CRYPTO, "no_lot_size")
    meta = provider.metadata(CRYPTO, provider.symbols(CRYPTO), CLOCK).set_index("symbol")
    assert meta["lot_size"].isna().sum() == 1 and pd.isna(meta.loc[event.symbol, "lot_size"])
    assert meta["tick_size"].notna().all()


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
@pytest.mark.parametrize("as_of", [CLOCK, LATE_CLOCK])
def test_planted_symbols_stay_liquid(
    provider: SyntheticProvider, universe: str, as_of: pd.Timestamp
) -> None:
    scan = provider.scan(universe, as_of).sort_values("value_traded", ascending=False)
    top = set(scan["symbol"].head(30))
    for event in provider.planted(universe):
        day = pd.Timestamp(event.dates[0], tz="UTC") if event.dates else None
        gone = event.kind == "delisting" and day is not None and day < as_of - 30 * DAY
        unborn = event.kind == "late_listing" and day is not None and day >= as_of
        if not (gone or unborn):
            assert event.symbol in top, (event, as_of)


# ----------------------------------------------------------------------------- statistics


def top_closes(p: SyntheticProvider, universe: str, as_of: pd.Timestamp, n: int) -> pd.DataFrame:
    """Closed daily closes of the n most traded symbols that are not planted pathologies."""
    scan = p.scan(universe, as_of)
    scan = scan[~scan["symbol"].isin(p.pathologies(universe))]
    symbols = scan.sort_values("value_traded", ascending=False)["symbol"].head(n)
    series = {
        s: closed(p.fetch_ohlcv(universe, s, None, as_of), as_of).set_index("timestamp")["close"]
        for s in symbols
    }
    return pd.DataFrame(series).sort_index()


def test_market_is_not_a_toy(provider: SyntheticProvider) -> None:
    """PC1 >= 20% and pooled excess kurtosis > 3 over the last 730 bars of the top 50 crypto."""
    panel = top_closes(provider, CRYPTO, CLOCK, 50).iloc[-730:]
    r = np.log(panel).diff().dropna(how="all").dropna(axis=1)
    assert r.shape == (729, 50)
    ev = np.linalg.eigvalsh(np.cov(r.to_numpy().T))
    pc1 = ev[-1] / ev.sum()
    z = ((r - r.mean()) / r.std()).to_numpy().ravel()
    kurt = float((z**4).mean() - 3)
    assert 0.25 <= pc1 <= 0.5, pc1
    assert 4 < kurt < 12, kurt


def test_trends_give_shorts_and_longs_signal(provider: SyntheticProvider) -> None:
    panel = top_closes(provider, CRYPTO, CLOCK, 50)
    year = panel.iloc[-1] / panel.iloc[-366] - 1
    assert (year < -0.5).sum() >= 5  # some symbols fall a lot over the last year
    assert (year > 0.5).sum() >= 3
    eq = top_closes(provider, EQUITIES, CLOCK, 50)
    eq_year = eq.iloc[-1] / eq.iloc[-253] - 1
    assert (eq_year < -0.2).sum() >= 3
    # persistence: trends last months, so the past year's winners tend to keep winning
    # (cross-sectional rank IC of 1-year momentum against the next 30 days)
    c = provider._panel(CRYPTO, CLOCK).close[:2700]
    healthy = [
        j for j, s in enumerate(provider.symbols(CRYPTO)) if s not in provider.pathologies(CRYPTO)
    ]
    logc = pd.DataFrame(np.log(c[:, healthy]))
    ics = [
        (logc.iloc[t] - logc.iloc[t - 365]).corr(logc.iloc[t + 30] - logc.iloc[t], "spearman")
        for t in range(365, len(logc) - 30, 30)
    ]
    assert np.mean(ics) > 0.05 and np.mean(np.array(ics) > 0) > 0.65


def test_crisis_spells_raise_vol_and_correlation(provider: SyntheticProvider) -> None:
    c = provider._panel(CRYPTO, CLOCK).close[:2700, 20:120]
    r = np.diff(np.log(c), axis=0)
    market = np.nanmean(r, axis=1)
    vol = pd.Series(market).rolling(60).std().to_numpy()
    calm, storm = np.nanquantile(vol, 0.2), np.nanquantile(vol, 0.95)
    assert storm / calm > 2.0


# ----------------------------------------------------------------------------- scan, metadata


@pytest.mark.parametrize("universe", [CRYPTO, EQUITIES])
def test_scan_fields_are_sane(provider: SyntheticProvider, universe: str) -> None:
    scan = provider.scan(universe, CLOCK)
    assert list(scan.columns) == SCAN_COLUMNS
    assert set(SCAN_FIELDS) <= set(scan.columns)
    unborn = {e.symbol for e in provider.planted(universe)
              if e.kind == "late_listing" and pd.Timestamp(e.dates[0], tz="UTC") >= CLOCK}
    assert scan["symbol"].is_unique
    assert set(scan["symbol"]) == set(provider.symbols(universe)) - unborn
    assert (scan["exchange"] == ("SYNTHX" if universe == CRYPTO else "SYNTHNYSE")).all()
    assert (scan["asset_class"] == ("crypto" if universe == CRYPTO else "equity")).all()
    assert 6 <= scan["sector"].nunique() <= 10
    vt = scan["value_traded"]
    assert np.allclose(vt, scan["close"] * scan["volume"])
    assert vt.quantile(0.02) > 1e5 and vt.quantile(0.98) < 1.2e10
    assert vt.min() > 1e4 and vt.max() < 1e11
    for col in ("change_pct", "perf_1w", "perf_1m", "perf_3m", "volatility_d", "market_cap"):
        assert scan[col].notna().all(), col
    assert (scan["market_cap"] > vt).all() and 10 < (scan["market_cap"] / vt).median() < 5000
    ratings = scan[["recommend_all", "recommend_ma", "recommend_other"]]
    assert ratings.notna().all().all() and ratings.abs().max().max() <= 1.0
    assert scan["adx"].between(0, 100).all()
    vol_range = (1.0, 10.0) if universe == CRYPTO else (0.4, 4.0)
    assert vol_range[0] < scan["volatility_d"].median() < vol_range[1]


def test_scan_matches_the_bars(provider: SyntheticProvider) -> None:
    sym = "CRY-0002/USDT"
    row = provider.scan(CRYPTO, CLOCK).set_index("symbol").loc[sym]
    bars = closed(provider.fetch_ohlcv(CRYPTO, sym, None, CLOCK), CLOCK)
    close = bars["close"]
    assert row["close"] == close.iloc[-1] and row["volume"] == bars["volume"].iloc[-1]
    assert row["change_pct"] == pytest.approx((close.iloc[-1] / close.iloc[-2] - 1) * 100)
    assert row["perf_1w"] == pytest.approx((close.iloc[-1] / close.iloc[-8] - 1) * 100)
    assert row["perf_3m"] == pytest.approx((close.iloc[-1] / close.iloc[-91] - 1) * 100)
    vol = close.pct_change().iloc[-30:].std() * 100
    assert row["volatility_d"] == pytest.approx(vol)
    assert provider.scan(CRYPTO, pd.Timestamp("2018-01-01")).empty


def test_metadata(provider: SyntheticProvider) -> None:
    crypto = provider.metadata(CRYPTO, ["CRY-0002/USDT", "CRY-0001/USDT"], CLOCK)
    assert list(crypto.columns) == METADATA_COLUMNS
    assert list(crypto["symbol"]) == ["CRY-0002/USDT", "CRY-0001/USDT"]
    assert (crypto["quote"] == "USDT").all() and (crypto["calendar"] == "24/7").all()
    assert crypto["min_notional"].isin([5.0, 10.0]).all()
    assert (crypto["price_precision"] == np.round(-np.log10(crypto["tick_size"]))).all()
    assert crypto["lot_size"].between(1e-8, 1).all()
    eq = provider.metadata(EQUITIES, provider.symbols(EQUITIES), CLOCK)
    assert (eq["lot_size"] == 1).all() and eq["min_notional"].isna().all()
    assert (eq["calendar"] == "XNYS").all() and (eq["exchange"] == "SYNTHNYSE").all()


# ----------------------------------------------------------------------------- errors, threads


def test_unknown_names_fail_clearly(provider: SyntheticProvider) -> None:
    with pytest.raises(ProviderError, match=r"unknown symbol 'CRY-0001/USD'.*CRY-0001/USDT"):
        provider.fetch_ohlcv(CRYPTO, "CRY-0001/USD", None, CLOCK)
    with pytest.raises(ProviderError, match="unknown symbol 'EQ9999'"):
        provider.metadata(EQUITIES, ["EQ0001", "EQ9999"], CLOCK)
    with pytest.raises(ProviderError, match="did you mean 'synthetic-crypto'"):
        provider.scan("synthetic-cryto", CLOCK)
    with pytest.raises(ValueError, match="unknown universe"):
        SyntheticProvider(sizes={"crypto": 10})
    with pytest.raises(ValueError, match="not XNYS sessions"):
        SyntheticProvider(
            pathologies={EQUITIES: [PlantedPathology("EQ0003", "spike", ("2026-06-19",))]}
        )


def test_pathology_dates_are_configurable() -> None:
    moved = [PlantedPathology("CRY-0004/USDT", "spike", ("2025-03-03",))]
    p = SyntheticProvider(sizes={CRYPTO: 10}, pathologies={CRYPTO: moved})
    assert p.pathologies(CRYPTO) == {"CRY-0004/USDT": "spike"}
    close = p.fetch_ohlcv(CRYPTO, "CRY-0004/USDT", None, CLOCK).set_index("timestamp")["close"]
    k = close.index.get_loc(pd.Timestamp("2025-03-03", tz="UTC"))
    assert close.iloc[k] / close.iloc[k - 1] >= 7
    assert len(p.fetch_ohlcv(CRYPTO, "CRY-0003/USDT", None, CLOCK)) == len(close)


def test_latency_and_thread_safety() -> None:
    _clear_cache()
    p = SyntheticProvider(sizes={CRYPTO: 30}, latency_ms=100)
    symbols = p.symbols(CRYPTO)[:16]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        frames = list(pool.map(lambda s: p.fetch_ohlcv(CRYPTO, s, None, CLOCK), symbols))
    elapsed = time.perf_counter() - t0
    assert elapsed < 16 * 0.1  # the sleeps overlap: threads speed a slow provider up
    one = time.perf_counter()
    p.metadata(CRYPTO, symbols[:1], CLOCK)
    assert time.perf_counter() - one >= 0.1
    quick = SyntheticProvider(sizes={CRYPTO: 30})
    for s, f in zip(symbols, frames, strict=True):
        pd.testing.assert_frame_equal(f, quick.fetch_ohlcv(CRYPTO, s, None, CLOCK))
