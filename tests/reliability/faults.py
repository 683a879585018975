"""A test-side wrapper around the real synthetic provider that injects faults into the
answers for chosen symbols: exceptions (timeouts, 429/5xx-like errors) and damaged frames
(truncated, malformed, duplicated, unsorted, future, timezone-naive bars) or bad data (NaN and
zero prices, negative volume, spikes, crashes, flat and very short series)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from portflow.data.ingest import Ingestor, IngestReport, Target, run_ingest
from portflow.errors import ProviderError
from portflow.lakehouse.store import Lakehouse
from portflow.providers.synthetic import SyntheticProvider

Fault = Callable[[pd.DataFrame, pd.Timestamp], Any]
UNIVERSE = "synthetic-crypto"


def _raise(exc: BaseException) -> Fault:
    def fault(bars: pd.DataFrame, as_of: pd.Timestamp) -> Any:
        raise exc

    return fault


def _last(bars: pd.DataFrame, **values: float) -> pd.DataFrame:
    """`bars` with the given columns set on the last bar before the forming one."""
    out = bars.copy()
    i = out.index[-2]
    for col, v in values.items():
        out.loc[i, col] = v
    return out


#: faults a provider can answer with; each either stores correct data or fails its symbol
PROVIDER_FAULTS: dict[str, Fault] = {
    "timeout": _raise(TimeoutError("read timed out after 10 s")),
    "http_429": _raise(ProviderError("HTTP 429 Too Many Requests")),
    "http_503": _raise(ProviderError("HTTP 503 Service Unavailable")),
    "missing_columns": lambda b, t: b.drop(columns=["close", "volume"]),
    "not_a_frame": lambda b, t: b.to_dict("list"),
    "text_prices": lambda b, t: b.assign(close=b["close"].astype(str).where(b.index % 7 > 0, "n/a")),
    "garbage_timestamps": lambda b, t: b.assign(timestamp=["not a date"] * len(b)),
    "missing_timestamps": lambda b, t: b.assign(timestamp=b["timestamp"].where(b.index % 9 > 0)),
    "session_stamps": lambda b, t: b.assign(timestamp=b["timestamp"] + pd.Timedelta(hours=4)),
    "truncated_rows": lambda b, t: b.iloc[: len(b) // 2],
    "empty": lambda b, t: b.iloc[:0],
    "duplicate_bars": lambda b, t: pd.concat([b, b.iloc[[-3]]], ignore_index=True),
    "unsorted_bars": lambda b, t: b.sample(frac=1.0, random_state=3).reset_index(drop=True),
    "future_bars": lambda b, t: pd.concat(
        [b, b.iloc[[-1] * 5].assign(timestamp=[t + pd.Timedelta(days=k) for k in range(1, 6)])],
        ignore_index=True),
    "naive_timestamps": lambda b, t: b.assign(timestamp=b["timestamp"].dt.tz_localize(None)),
    "other_timezone": lambda b, t: b.assign(timestamp=b["timestamp"].dt.tz_convert("Asia/Tokyo")),
}

#: bad market data the toxic guard must catch (the reason it gives)
BAD_DATA: dict[str, tuple[Fault, str]] = {
    "nan_price": (lambda b, t: _last(b, close=np.nan), "NaN price"),
    "zero_price": (lambda b, t: _last(b, low=0.0), "non-positive price"),
    "negative_volume": (lambda b, t: _last(b, volume=-5.0), "negative volume"),
    "spike_500pct": (lambda b, t: _last(b, close=b["close"].iloc[-3] * 6.0,
                                        high=b["close"].iloc[-3] * 6.0), "move +500.0%"),
    "crash_90pct": (lambda b, t: _last(b, close=b["close"].iloc[-3] * 0.1,
                                       low=b["close"].iloc[-3] * 0.1), "move -90.0%"),
    "high_below_low": (lambda b, t: _last(b, high=b["low"].iloc[-2] * 0.5), "high < low"),
}


class FaultyProvider:
    """The synthetic provider with `faults[symbol]` applied to that symbol's OHLCV answers
    (every other call is the real provider's)."""

    def __init__(self, inner: SyntheticProvider, faults: dict[str, Fault]) -> None:
        self.inner = inner
        self.faults = faults
        self.name = inner.name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def fetch_ohlcv(self, universe: str, symbol: str, start: pd.Timestamp | None,
                    as_of: pd.Timestamp) -> Any:
        bars = self.inner.fetch_ohlcv(universe, symbol, start, as_of)
        fault = self.faults.get(symbol)
        return bars if fault is None else fault(bars, as_of)


def ingest(lake: Lakehouse, provider: object, as_of: str, symbols: list[str],
           freshness_hours: float = 12.0) -> IngestReport:
    """The real ingest of `symbols` (400 bars of history) at clock `as_of`."""
    ing = Ingestor(lake, provider, pd.Timestamp(as_of, tz="UTC"), {"24/7": 400},  # type: ignore[arg-type]
                   freshness_hours)
    return run_ingest(ing, [Target(s, UNIVERSE, "24/7") for s in symbols], jobs=2)
