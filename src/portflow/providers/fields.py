"""The canonical scanner fields (SPEC §3) computed from daily bars — one module for every bar
provider (synthetic, files, ccxt), so a field means the same thing whatever the source.

Input: a :class:`BarPanel` — rows are the universe's calendar rows (every day for ``24/7``,
every session for an exchange calendar) up to and including the last closed bar at the clock,
columns are symbols, NaN where a symbol has no bar. Nothing after the last closed bar may be
in it: the fields are as of the clock by construction.

1. Listed symbols: those with a bar in the last ``DELISTED_SCAN_DAYS + 1`` calendar days
   before the clock (a delisted symbol keeps its last values for 30 days, as screeners do).
2. ``close``, ``volume`` (base units) of each symbol's last bar; ``value_traded`` =
   close × volume (quote currency per day).
3. ``change_pct`` (%, last bar vs the row before), ``perf_1w`` / ``perf_1m`` / ``perf_3m``
   (%, over 7 / 30 / 90 rows for ``24/7``, 5 / 21 / 63 sessions otherwise), each measured
   back from the symbol's last bar on the calendar rows (a missing row takes the last close
   before it).
4. ``volatility_d`` (%): the standard deviation (ddof 1) of the last 30 daily returns whose
   two bars both exist, NaN with fewer than 2.
5. ``adx`` and ``recommend_all`` / ``recommend_ma`` / ``recommend_other``: the ratings engine
   over each symbol's own bars (a missing day is not a bar), at its last bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from portflow.providers.base import SCAN_FIELDS

DELISTED_SCAN_DAYS = 30
VOL_ROWS = 30
PERF_ROWS_24_7 = (7, 30, 90)
PERF_ROWS_SESSIONS = (5, 21, 63)
BAR_FIELDS = ("open", "high", "low", "close", "volume")
# the fields this module computes; the provider adds the others (exchange, asset_class, ...)
BAR_SCAN_FIELDS = [f for f in SCAN_FIELDS if f not in ("market_cap", "asset_class", "exchange")]


@dataclass(frozen=True)
class BarPanel:
    """(T, N) daily bars on a universe's calendar rows, NaN where a symbol has no bar."""

    dates: pd.DatetimeIndex
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


RATING_BLOCK = 1000  # columns rated at once (memory stays bounded at 10,000 symbols)

def perf_rows(calendar: str) -> tuple[int, int, int]:
    return PERF_ROWS_24_7 if calendar == "24/7" else PERF_ROWS_SESSIONS


def scan_window_rows(calendar: str) -> int:
    """Rows steps 1-4 look at (step 5 wants all the history it can get)."""
    return perf_rows(calendar)[-1] + VOL_ROWS + DELISTED_SCAN_DAYS + 5


def panel_from_frames(
    frames: Mapping[str, pd.DataFrame], rows: pd.DatetimeIndex, last_closed: pd.Timestamp
) -> BarPanel:
    """A BarPanel from per-symbol OHLCV frames (sorted, unique UTC timestamps).

    ``rows`` are the calendar's rows; a bar on a day the calendar does not know (a vendor's
    extra session) is kept as a row of its own rather than dropped. Bars after
    ``last_closed`` are cut here, so a caller cannot leak them into a scan."""
    rows = rows[rows <= last_closed].astype("datetime64[ns, UTC]")
    stamps = [f["timestamp"].to_numpy(dtype="datetime64[ns]") for f in frames.values()]
    extra = np.unique(np.concatenate([rows.to_numpy(dtype="datetime64[ns]"), *stamps]))
    index = pd.DatetimeIndex(extra[extra <= last_closed.tz_convert(None).to_datetime64()])
    index = index.tz_localize("UTC").as_unit("ns")
    arrays = {f: np.full((len(index), len(frames)), np.nan) for f in BAR_FIELDS}
    for j, frame in enumerate(frames.values()):
        keep = frame[frame["timestamp"] <= last_closed]
        pos = index.get_indexer(pd.DatetimeIndex(keep["timestamp"]))
        for f in BAR_FIELDS:
            arrays[f][pos, j] = keep[f].to_numpy(dtype=float)
    return BarPanel(index, tuple(frames), **arrays)


def canonical_fields(
    panel: BarPanel, calendar: str, day: pd.Timestamp
) -> tuple[np.ndarray, pd.DataFrame]:
    """Steps 1-5 at clock ``day``: (columns of the listed symbols, one row per listed symbol
    with ``symbol`` and BAR_SCAN_FIELDS, in panel order)."""
    n_rows = len(panel.dates)
    if n_rows == 0:
        return np.array([], dtype=np.int64), _empty()
    lo = max(0, n_rows - scan_window_rows(calendar))
    close = panel.close[lo:]
    present = ~np.isnan(close)
    last = close.shape[0] - 1 - np.argmax(present[::-1], axis=0)
    has_bar = present.any(axis=0)
    cutoff = day - pd.Timedelta(days=DELISTED_SCAN_DAYS + 1)
    listed = has_bar & (panel.dates[lo + last] >= cutoff)
    cols = np.flatnonzero(listed)
    if cols.size == 0:
        return cols, _empty()
    last = last[cols]
    ffilled = pd.DataFrame(close[:, cols]).ffill().to_numpy()
    vol_now = panel.volume[lo + last, cols]
    c_now = close[last, cols]

    def back(k: int) -> np.ndarray:
        idx = last - k
        out = ffilled[np.maximum(idx, 0), np.arange(cols.size)]
        return np.where(idx >= 0, out, np.nan)

    with np.errstate(invalid="ignore", divide="ignore"):
        change = (c_now / back(1) - 1.0) * 100.0
        perfs = [(c_now / back(k) - 1.0) * 100.0 for k in perf_rows(calendar)]
        rets = ffilled[1:] / ffilled[:-1] - 1.0
        rets = np.where(present[1:, cols] & present[:-1, cols], rets, np.nan)
        idx = last[None, :] - 1 - np.arange(VOL_ROWS)[:, None]  # rows of rets ending at last
        gathered = np.where(idx >= 0, rets[np.maximum(idx, 0), np.arange(cols.size)], np.nan)
        counts = np.sum(~np.isnan(gathered), axis=0)
        vol_d = np.where(
            counts >= 2,
            np.nanstd(np.where(counts >= 2, gathered, 0.0), axis=0, ddof=1) * 100.0,
            np.nan,
        )
    frame = pd.DataFrame(
        {
            "symbol": [panel.symbols[c] for c in cols],
            "close": c_now,
            "volume": vol_now,
            "value_traded": c_now * vol_now,
            "change_pct": change,
            "perf_1w": perfs[0],
            "perf_1m": perfs[1],
            "perf_3m": perfs[2],
            "volatility_d": vol_d,
        }
    )
    # Ratings over each symbol's whole history, a block of columns at a time: at 10,000
    # symbols one panel with its left-aligned copy and outputs would take several GiB.
    ratings = pd.concat(
        [_rating_fields({f: getattr(panel, f)[:, cols[at:at + RATING_BLOCK]] for f in BAR_FIELDS})
         for at in range(0, cols.size, RATING_BLOCK)],
        ignore_index=True,
    )
    for name in ratings.columns:
        frame[name] = ratings[name].to_numpy()
    return cols, frame[["symbol", *BAR_SCAN_FIELDS]]


def _rating_fields(bars: dict[str, np.ndarray]) -> pd.DataFrame:
    """Step 5: adx and recommend_* per column from its own bars, at its last bar."""
    from portflow.ratings.panel import last_values, left_align, rate

    aligned, counts = left_align(bars)
    return last_values(rate(aligned), counts)[
        ["adx", "recommend_all", "recommend_ma", "recommend_other"]
    ].reset_index(drop=True)


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in ["symbol", *BAR_SCAN_FIELDS]})
    frame["symbol"] = frame["symbol"].astype(object)
    return frame


__all__ = ["BarPanel", "canonical_fields", "panel_from_frames", "scan_window_rows"]
