"""data-ingest: fetch only the missing daily bars, guard them, merge them (SPEC §5).

Per symbol (in parallel; one symbol's failure never stops the others):

1. Target = the last closed bar at the clock (previous day for 24/7, previous session for an
   exchange calendar).
2. Skip a symbol recorded `toxic` (it stays excluded until `--recheck-toxic`; a guard never
   flips back on its own).
3. Fresh — not fetched — when its last stored bar is the target, or when the provider was
   asked less than `freshness_hours` ago for this same target and had nothing newer
   (delisted, stale). The check uses recorded bar timestamps and check times, never file
   modification times.
4. Otherwise fetch from the bar after the last stored one (or `history_bars` bars back for a
   new symbol). Bars after the target — the forming bar of the clock's own day — are dropped.
5. The provider's answer is checked on entry: a frame with the OHLCV columns, timestamps that
   parse (timezone-naive ones are read as UTC) at 00:00 UTC, numeric prices and volumes;
   anything else fails the symbol with a clear reason and stores nothing. Bars may come
   unsorted (they are sorted) and may reach past the clock (they are dropped). Then the toxic
   guard on the fetched bars, with the last stored close as the first reference: a
   close-to-close move with |ln(1 + r)| >= ln 6, a non-positive price, high < low, a NaN
   price, a negative volume or a duplicate timestamp → status `toxic` with reason and bar;
   the fetched data goes to quarantine, unmerged and undeleted.
6. Merge by timestamp (fetched bars win), write atomically, and audit the stored history:
   `stale` (no bar for the target), `flat` (last 5 closes identical), `gappy` (missing bars of
   the symbol's own calendar inside its history), else `healthy`.
7. A stored file that does not open fails its symbol only: status `unreadable` with the file
   and the repair as reason; the file is left as it is for inspection.

The health table has one writer (the calling thread), flushed in batches while workers run,
so a killed run loses at most the last batch of health rows — the next run re-audits every
symbol from its stored bars and completes the table.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from portflow import clock
from portflow.errors import CorruptTableError, ProviderError, one_line
from portflow.executors import LocalExecutor
from portflow.lakehouse.store import OHLCV_COLUMNS, PRICE_COLUMNS, Lakehouse, utc_timestamps
from portflow.providers.base import Provider

TOXIC_LOG_MOVE = math.log(6.0)
_DAY_NS = 86_400 * 10**9
FLAT_BARS = 5
HEALTH_FLUSH_SECONDS = 2.0


@dataclass(frozen=True)
class Target:
    """One symbol to ingest, with the calendar its bars follow."""

    symbol: str
    universe: str
    calendar: str


@dataclass
class Outcome:
    symbol: str
    action: str  # fetched | fresh | skipped | toxic | failed
    reason: str
    bars_fetched: int = 0
    health: dict[str, Any] | None = None


@dataclass
class IngestReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        acts = [o.action for o in self.outcomes]
        return {
            "symbols_total": len(acts),
            "symbols_fetched": acts.count("fetched"),
            "symbols_fresh": acts.count("fresh"),
            "symbols_skipped": acts.count("skipped"),
            "bars_fetched": int(sum(o.bars_fetched for o in self.outcomes)),
            "symbols_failed": acts.count("failed"),
            "symbols_toxic": acts.count("toxic"),
        }

    def per_symbol(self) -> dict[str, dict[str, Any]]:
        return {
            o.symbol: {"action": o.action, "reason": o.reason, "bars": o.bars_fetched}
            for o in sorted(self.outcomes, key=lambda o: o.symbol)
        }


def _ns(ts: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds (the ingest hot path works on plain arrays)."""
    if str(ts.dtype) != "datetime64[ns, UTC]":
        ts = utc_timestamps(ts)
    return ts.to_numpy(dtype="datetime64[ns]").view("int64")


def _stamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def toxic_check(bars: pd.DataFrame, prev_close: float | None) -> tuple[str, pd.Timestamp] | None:
    """Step 5: the first guard violation in `bars` as (reason, bar timestamp), or None."""
    if bars.empty:
        return None
    ts = _ns(bars["timestamp"])
    srt = np.sort(ts)
    dup = srt[1:][np.diff(srt) == 0]
    if len(dup):
        return "duplicate timestamp", _stamp(dup[0])
    o, h, lo, close = (bars[c].to_numpy(dtype=float) for c in PRICE_COLUMNS)
    for reason, bad in (
        ("NaN price", np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(close)),
        ("non-positive price", (o <= 0) | (h <= 0) | (lo <= 0) | (close <= 0)),
        ("high < low", h < lo),
        ("negative volume", bars["volume"].to_numpy(dtype=float) < 0),
    ):
        if bad.any():
            return reason, _stamp(ts[np.argmax(bad)])
    ref = np.concatenate([[prev_close if prev_close else np.nan], close[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.abs(np.log(close / ref))
    spike = move >= TOXIC_LOG_MOVE - 1e-12
    if spike.any():
        i = int(np.argmax(spike))
        r = close[i] / ref[i] - 1.0
        return f"close-to-close move {r:+.1%} (|ln(1+r)| >= ln 6)", _stamp(ts[i])
    return None


def audit(bars: pd.DataFrame, calendar: str, target: pd.Timestamp) -> tuple[str, str, Any]:
    """Step 6: (status, reason, offending bar) of a stored history, judged at `target`.
    `bars` is sorted by timestamp (as stored)."""
    ts = _ns(bars["timestamp"])
    n = int(np.searchsorted(ts, target.value, side="right"))
    if n == 0:
        return "stale", f"no bar on or before {target:%Y-%m-%d}", None
    ts = ts[:n]
    last = _stamp(ts[-1])
    if last < target:
        return "stale", f"no bar for the last closed bar {target:%Y-%m-%d}; last bar {last:%Y-%m-%d}", last
    close = bars["close"].to_numpy(float)[:n]
    if n >= FLAT_BARS and np.all(close[-FLAT_BARS:] == close[-1]):
        run = n - 1
        while run > 0 and close[run - 1] == close[-1]:
            run -= 1
        return "flat", f"last {n - run} closes identical at {close[-1]:g}", _stamp(ts[run])
    if calendar == clock.ALWAYS_OPEN:
        day = _DAY_NS
        expected_n = int((ts[-1] - ts[0]) // day) + 1
        if expected_n == n:
            return "healthy", "", None
        expected = np.arange(ts[0], ts[-1] + 1, day)
    else:
        expected = clock.sessions(calendar, _stamp(ts[0]), last).asi8
        expected_n = len(expected)
    missing = np.setdiff1d(expected, ts, assume_unique=True)
    if len(missing):
        return (
            "gappy",
            f"{len(missing)} missing bar(s) of {expected_n} on the {calendar} calendar,"
            f" first {_stamp(missing[0]):%Y-%m-%d}",
            _stamp(missing[0]),
        )
    return "healthy", "", None


def checked_bars(raw: Any, provider: str, symbol: str) -> pd.DataFrame:
    """Step 5's entry check of a provider answer: the frame, with UTC timestamps and float
    columns, or ProviderError saying what is wrong. Cheap when the provider already answers
    in the stored types (the usual case: no copy)."""
    where = f"provider '{provider}' answered {symbol!r} with"
    if not isinstance(raw, pd.DataFrame):
        raise ProviderError(f"{where} a {type(raw).__name__}, not a frame of bars")
    missing = [c for c in OHLCV_COLUMNS if c not in raw.columns]
    if missing:
        raise ProviderError(f"{where} bars lacking column(s) {missing}")
    fixed: dict[str, pd.Series] = {}
    if str(raw["timestamp"].dtype) != "datetime64[ns, UTC]":
        try:
            with warnings.catch_warnings():  # pandas warns while it guesses a text format
                warnings.simplefilter("ignore", UserWarning)
                fixed["timestamp"] = utc_timestamps(raw["timestamp"])
        except (ValueError, TypeError, OverflowError) as exc:
            raise ProviderError(
                f"{where} timestamps that do not parse ({one_line(str(exc), 80)})"
            ) from None
    for c in ("open", "high", "low", "close", "volume"):
        if raw[c].dtype.kind not in "fiu":
            try:
                fixed[c] = pd.to_numeric(raw[c], errors="raise").astype("float64")
            except (ValueError, TypeError):
                raise ProviderError(f"{where} non-numeric values in '{c}'") from None
    bars = raw.assign(**fixed) if fixed else raw
    ns = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    if (ns == np.iinfo(np.int64).min).any():
        raise ProviderError(f"{where} missing timestamps")
    off = ns % _DAY_NS != 0
    if off.any():
        raise ProviderError(f"{where} a daily bar stamped {_stamp(ns[np.argmax(off)])}, not at"
                            " 00:00 UTC of its day")
    return bars


def _next_bar(calendar: str, last: pd.Timestamp) -> pd.Timestamp:
    if calendar == clock.ALWAYS_OPEN:
        return last + pd.Timedelta(days=1)
    nxt = clock.sessions(calendar, last + pd.Timedelta(days=1), last + pd.Timedelta(days=15))
    return nxt[0] if len(nxt) else last + pd.Timedelta(days=1)


class Ingestor:
    """Steps 1-6 for a list of targets against one provider and one lakehouse."""

    def __init__(
        self,
        lake: Lakehouse,
        provider: Provider,
        as_of: pd.Timestamp,
        history_bars: dict[str, int],
        freshness_hours: float,
        timeframe: str = "1d",
        recheck_toxic: bool = False,
        now: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        self.lake = lake
        self.provider = provider
        self.as_of = as_of
        self.history_bars = history_bars
        self.freshness = pd.Timedelta(hours=freshness_hours)
        self.timeframe = timeframe
        self.recheck_toxic = recheck_toxic
        self.now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self._health = lake.health_of(provider.name)

    def _row(self, symbol: str, status: str, reason: str, bar: Any, **extra: Any) -> dict[str, Any]:
        prev = self._health.get(symbol, {})
        return {
            "provider": self.provider.name,
            "symbol": symbol,
            "status": status,
            "reason": reason,
            "bar_timestamp": bar,
            "audited_at": self.now(),
            "last_checked_at": extra.get("last_checked_at", prev.get("last_checked_at")),
            "last_bar": extra.get("last_bar"),
            "checked_for": extra.get("checked_for", prev.get("checked_for")),
        }

    def one(self, t: Target) -> Outcome:
        target = clock.last_closed_bar(t.calendar, self.as_of)
        prev = self._health.get(t.symbol, {})
        if prev.get("status") == "toxic" and not self.recheck_toxic:
            return Outcome(
                t.symbol, "skipped",
                f"toxic since {pd.Timestamp(prev['audited_at']):%Y-%m-%d}: {prev.get('reason')}"
                " (re-run with --recheck-toxic to fetch it again)",
            )
        try:
            stored = self.lake.read_ohlcv(self.provider.name, self.timeframe, t.symbol)
        except CorruptTableError as exc:  # this symbol fails, the others go on; once the
            # file is deleted the next run fetches it at once (no "asked recently" memo)
            return Outcome(t.symbol, "failed", str(exc), 0,
                           self._row(t.symbol, "unreadable", str(exc), None,
                                     last_checked_at=None, checked_for=None))
        last = None if stored is None or stored.empty else stored["timestamp"].max()
        if last is not None and last >= target:
            status, reason, bar = audit(stored, t.calendar, target)
            return Outcome(
                t.symbol, "fresh", f"up to date (last bar {target:%Y-%m-%d})", 0,
                self._row(t.symbol, status, reason, bar, last_bar=last),
            )
        checked, checked_for = prev.get("last_checked_at"), prev.get("checked_for")
        if (
            checked is not None and not pd.isna(checked) and checked_for is not None
            and not pd.isna(checked_for) and self.now() - pd.Timestamp(checked) < self.freshness
            and pd.Timestamp(checked_for) >= target
        ):
            hours = (self.now() - pd.Timestamp(checked)).total_seconds() / 3600
            reason = f"asked {hours:.1f}h ago for {target:%Y-%m-%d}; provider had nothing newer"
            health = None
            if stored is not None:
                status, why, bar = audit(stored, t.calendar, target)
                health = self._row(t.symbol, status, why, bar, last_bar=last)
            return Outcome(t.symbol, "fresh", reason, 0, health)

        if last is None:
            start = clock.start_for_bars(t.calendar, target, self.history_bars[t.calendar])
        else:
            start = _next_bar(t.calendar, last)
        fetched_at = self.now()
        raw = checked_bars(self.provider.fetch_ohlcv(t.universe, t.symbol, start, self.as_of),
                           self.provider.name, t.symbol)
        ts = _ns(raw["timestamp"])
        if len(ts) < 2 or (np.diff(ts) > 0).all():  # sorted, as providers answer: a slice
            lo = int(np.searchsorted(ts, start.value, side="left"))
            hi = int(np.searchsorted(ts, target.value, side="right"))
            new = raw.iloc[lo:hi][OHLCV_COLUMNS]
        else:
            # unsorted answers are sorted before the guard: close-to-close moves and the
            # audit are only meaningful in time order
            new = raw.loc[(ts <= target.value) & (ts >= start.value), OHLCV_COLUMNS]
            new = new.sort_values("timestamp", kind="stable")
        if str(new["timestamp"].dtype) != "datetime64[ns, UTC]" or (new["symbol"] != t.symbol).any():
            new = new.assign(timestamp=utc_timestamps(new["timestamp"]), symbol=t.symbol)
        checks = {"last_checked_at": fetched_at, "checked_for": target}
        prev_close = None
        if stored is not None and not stored.empty:
            n_old = int(np.searchsorted(_ns(stored["timestamp"]), start.value, side="left"))
            prev_close = float(stored["close"].iloc[n_old - 1]) if n_old else None
        bad = toxic_check(new, prev_close)
        if bad is not None:
            reason, bar = bad
            stamp = f"{fetched_at:%Y%m%dT%H%M%S%fZ}"
            qpath = self.lake.quarantine(self.provider.name, self.timeframe, t.symbol, raw, stamp)
            return Outcome(
                t.symbol, "toxic", f"{reason} at {pd.Timestamp(bar):%Y-%m-%d}; fetched bars in "
                f"{self.lake.relative(qpath)}", 0,
                self._row(t.symbol, "toxic", reason, bar, last_bar=last, **checks),
            )
        if new.empty:
            if stored is None:
                return Outcome(
                    t.symbol, "failed", f"provider has no bars up to {target:%Y-%m-%d}", 0,
                    self._row(t.symbol, "stale", f"provider has no bars up to {target:%Y-%m-%d}",
                              None, **checks),
                )
            status, reason, bar = audit(stored, t.calendar, target)
            return Outcome(
                t.symbol, "fetched", "provider had nothing newer", 0,
                self._row(t.symbol, status, reason, bar, last_bar=last, **checks),
            )
        if stored is not None and not stored.empty:
            keep = stored[~stored["timestamp"].isin(new["timestamp"])]
            merged = pd.concat([keep[OHLCV_COLUMNS], new], ignore_index=True)
        else:
            merged = new
        self.lake.write_ohlcv(self.provider.name, self.timeframe, t.symbol, merged)
        if stored is not None and not stored.empty:
            merged = merged.sort_values("timestamp", kind="stable")
        status, reason, bar = audit(merged, t.calendar, target)
        return Outcome(
            t.symbol, "fetched", f"{len(new)} new bar(s) from {start:%Y-%m-%d}", len(new),
            self._row(t.symbol, status, reason, bar, last_bar=merged["timestamp"].iloc[-1],
                      **checks),
        )


def run_ingest(
    ingestor: Ingestor,
    targets: list[Target],
    jobs: int,
    on_done: Callable[[Outcome], None] | None = None,
) -> IngestReport:
    """Run every target on `jobs` threads; health rows flushed in batches by this thread."""
    report = IngestReport()
    pending: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    # closing(): on Ctrl-C / SIGTERM the pool's queued symbols are cancelled at once (an
    # unclosed generator would let its workers drain the whole queue before the process ends)
    # and the health of the symbols already stored is flushed on the way out
    results = LocalExecutor(jobs=jobs, kind="thread").map(ingestor.one, targets)
    try:
        with contextlib.closing(results):
            for res in results:
                if res.ok:
                    assert res.value is not None
                    out = res.value
                else:
                    err = res.error
                    out = Outcome(res.item.symbol, "failed", one_line(f"{type(err).__name__}: {err}"))
                report.outcomes.append(out)
                if out.health is not None:
                    pending.append(out.health)
                if on_done is not None:
                    on_done(out)
                if pending and time.monotonic() - last_flush > HEALTH_FLUSH_SECONDS:
                    ingestor.lake.update_health(pending)
                    pending, last_flush = [], time.monotonic()
    finally:
        ingestor.lake.update_health(pending)
    return report
