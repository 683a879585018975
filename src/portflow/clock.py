"""The clock: `--as-of` dates, last closed bars and session calendars (SPEC §5).

The clock is a UTC date. A daily bar is stamped 00:00 UTC of its day (equities: of their
session date). At clock ``as_of`` the bar of ``as_of`` itself is still forming, so the last
closed bar is the previous day for ``24/7`` markets and the previous session for an exchange
calendar such as ``XNYS``.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from portflow.errors import UsageError, short

if TYPE_CHECKING:
    import exchange_calendars as xcals

ALWAYS_OPEN = "24/7"
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY_NS = 86_400 * 10**9


def parse_as_of(value: str | None, today: pd.Timestamp | None = None) -> pd.Timestamp:
    """`YYYY-MM-DD` → UTC midnight; None → today (UTC). A date after `today` (default: today
    UTC) is refused: a clock in the future would ask providers for bars that do not exist
    and store whatever a misbehaving source answers."""
    today = (pd.Timestamp.now(tz="UTC") if today is None else today).normalize()
    if value is None or value == "":
        return today
    if not _DATE_RE.match(value):
        raise UsageError(f"--as-of {short(value)} is not a date; use YYYY-MM-DD, e.g. 2026-06-30")
    try:
        day = pd.Timestamp(value, tz="UTC")
    except ValueError as exc:
        raise UsageError(f"--as-of '{value}' is not a valid date ({exc}); use YYYY-MM-DD") from None
    if day > today:
        raise UsageError(
            f"--as-of {value} is after today ({today:%Y-%m-%d} UTC); the clock cannot be in"
            " the future: use a date up to today, or leave --as-of / PORTFLOW_AS_OF unset"
        )
    return day


@functools.lru_cache(maxsize=8)
def _exchange(calendar: str) -> xcals.ExchangeCalendar:
    import exchange_calendars as xcals  # ~0.6 s: imported by the first exchange calendar

    try:
        return xcals.get_calendar(calendar, start="2000-01-01")
    except xcals.errors.InvalidCalendarName:
        raise UsageError(
            f"unknown calendar '{calendar}'; use '24/7' or an exchange-calendars code like XNYS"
        ) from None


@functools.lru_cache(maxsize=8)
def _session_ns(calendar: str) -> np.ndarray:
    """Every session of an exchange calendar the library knows, as int64 UTC nanoseconds."""
    cal = _exchange(calendar)
    return pd.DatetimeIndex(cal.sessions).tz_localize("UTC").as_unit("ns").asi8


def sessions(calendar: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """Bar timestamps (UTC midnight) of `calendar` from `start` to `end` inclusive."""
    start = pd.Timestamp(start).tz_convert("UTC").normalize()
    end = pd.Timestamp(end).tz_convert("UTC").normalize()
    if end < start:
        return pd.DatetimeIndex([], tz="UTC")
    if calendar == ALWAYS_OPEN:
        return pd.date_range(start, end, freq="D", tz="UTC")
    return pd.DatetimeIndex(session_ns(calendar, start.value, end.value)).tz_localize("UTC")


def session_ns(calendar: str, start_ns: int, end_ns: int) -> np.ndarray:
    """Bar timestamps of `calendar` in [start_ns, end_ns] as int64 UTC nanoseconds (the hot
    path of Strict Health, which asks this for every candidate of every window)."""
    if end_ns < start_ns:
        return np.empty(0, dtype=np.int64)
    if calendar == ALWAYS_OPEN:
        first = start_ns + (-start_ns) % _DAY_NS
        # counted in integers: np.arange sizes its output in float64, which loses the +1 at
        # nanosecond magnitudes and drops the last day
        n = max(0, (end_ns - first) // _DAY_NS + 1)
        return first + _DAY_NS * np.arange(n, dtype=np.int64)
    allns = _session_ns(calendar)
    lo = int(np.searchsorted(allns, start_ns, side="left"))
    hi = int(np.searchsorted(allns, end_ns, side="right"))
    return allns[lo:hi]


def periods_per_year(calendar: str) -> int:
    """Bars a year: 365 for 24/7 markets, 252 sessions for an exchange calendar."""
    return 365 if calendar == ALWAYS_OPEN else 252


def last_closed_bar(calendar: str, as_of: pd.Timestamp) -> pd.Timestamp:
    """The newest bar that is complete at clock `as_of` (strictly before its date)."""
    day = pd.Timestamp(as_of).tz_convert("UTC").normalize()
    if calendar == ALWAYS_OPEN:
        return day - pd.Timedelta(days=1)
    # the newest session of the 15 days before `day` (asked for every window of a
    # walk-forward: one binary search, no index built)
    allns = _session_ns(calendar)
    i = int(np.searchsorted(allns, (day - pd.Timedelta(days=1)).value, side="right"))
    if i == 0 or allns[i - 1] < (day - pd.Timedelta(days=15)).value:
        raise UsageError(f"no {calendar} session in the 15 days before {day:%Y-%m-%d}")
    return pd.Timestamp(int(allns[i - 1]), tz="UTC")


def start_for_bars(calendar: str, end: pd.Timestamp, n_bars: int) -> pd.Timestamp:
    """The timestamp of the bar `n_bars - 1` bars before `end` on `calendar`."""
    if calendar == ALWAYS_OPEN:
        return end - pd.Timedelta(days=n_bars - 1)
    span = pd.Timedelta(days=int(n_bars * 1.6) + 30)
    s = sessions(calendar, end - span, end)
    return s[max(len(s) - n_bars, 0)]
