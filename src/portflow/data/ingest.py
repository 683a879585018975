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
7. A paginated fetch that fails midway (`PartialFetchError`, retries exhausted) keeps the
   pages that arrived — guarded and merged like any fetch — and the symbol counts as failed
   without a freshness record, so the next run resumes from its last stored bar.
8. A stored file that does not open fails its symbol only: status `unreadable` with the file
   and the repair as reason; the file is left as it is for inspection.

Parallelism (:func:`run_ingest`): steps 1-4 (`Ingestor.fetch`) run on `jobs` fetch threads
and steps 5-6 (`Ingestor.finish`) on `FINISH_THREADS` writer threads, so `jobs` requests stay
in flight while earlier answers are guarded and written; at most `BACKLOG` answers wait for
a writer. After the provider's answer a symbol's work is numpy/Arrow only (pandas would hold
the GIL and serialise the threads). Through an executor (Ray) each task runs steps 1-6 for
one symbol in a worker (`RemoteIngest`), the one writer of that symbol's file.

The health table has one writer (the calling thread), flushed in batches while workers run,
so a killed run loses at most the last batch of health rows — the next run re-audits every
symbol from its stored bars and completes the table.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import math
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from portflow import clock
from portflow.errors import CorruptTableError, PartialFetchError, ProviderError, one_line
from portflow.executors import Executor, LocalExecutor
from portflow.lakehouse.store import (
    BAR_FIELDS,
    OHLCV_COLUMNS,
    PRICE_COLUMNS,
    Lakehouse,
    utc_timestamps,
)
from portflow.providers.base import Provider

TOXIC_LOG_MOVE = math.log(6.0)
_DAY_NS = 86_400 * 10**9
FLAT_BARS = 5
HEALTH_FLUSH_SECONDS = 2.0
FINISH_THREADS = 8  # guard + merge + write: mostly parquet encoding and fsync (GIL released)
BACKLOG = 4 * FINISH_THREADS  # fetched answers waiting for a writer, at most


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
    return _toxic(_ns(bars["timestamp"]),
                  {c: bars[c].to_numpy(dtype=float) for c in BAR_FIELDS}, prev_close)


def _toxic(ts: np.ndarray, prices: dict[str, np.ndarray],
           prev_close: float | None) -> tuple[str, pd.Timestamp] | None:
    """:func:`toxic_check` on numpy columns (timestamps int64 ns)."""
    if not len(ts):
        return None
    srt = np.sort(ts)
    dup = srt[1:][np.diff(srt) == 0]
    if len(dup):
        return "duplicate timestamp", _stamp(dup[0])
    o, h, lo, close = (prices[c] for c in PRICE_COLUMNS)
    for reason, bad in (
        ("NaN price", np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(close)),
        ("non-positive price", (o <= 0) | (h <= 0) | (lo <= 0) | (close <= 0)),
        ("high < low", h < lo),
        ("negative volume", prices["volume"] < 0),
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
    return _audit(_ns(bars["timestamp"]), bars["close"].to_numpy(float), calendar, target)


def _audit(ts: np.ndarray, close: np.ndarray, calendar: str,
           target: pd.Timestamp) -> tuple[str, str, Any]:
    """:func:`audit` on numpy columns (timestamps int64 ns, sorted)."""
    n = int(np.searchsorted(ts, target.value, side="right"))
    if n == 0:
        return "stale", f"no bar on or before {target:%Y-%m-%d}", None
    ts = ts[:n]
    last = _stamp(ts[-1])
    if last < target:
        return "stale", f"no bar for the last closed bar {target:%Y-%m-%d}; last bar {last:%Y-%m-%d}", last
    close = close[:n]
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


@dataclass(frozen=True)
class Fetched:
    """A provider's answer for one target with what steps 5-6 need from steps 1-4."""

    target: Target
    target_bar: pd.Timestamp
    stored: dict[str, np.ndarray] | None
    last: pd.Timestamp | None
    start: pd.Timestamp
    fetched_at: pd.Timestamp
    raw: pd.DataFrame
    partial: PartialFetchError | None = None  # step 7: the pages that arrived before it


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
        health: dict[str, dict[str, Any]] | None = None,
        data_run: str | None = None,
    ) -> None:
        self.lake = lake
        self.provider = provider
        self.as_of = as_of
        self.history_bars = history_bars
        self.freshness = pd.Timedelta(hours=freshness_hours)
        self.timeframe = timeframe
        self.recheck_toxic = recheck_toxic
        self.now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self._health = lake.health_of(provider.name) if health is None else health
        self.data_run = data_run

    def record_health(self, rows: list[dict[str, Any]]) -> None:
        """Write health rows (and the history of changed verdicts) for this data run."""
        self.lake.update_health(rows, data_run=self.data_run)

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
        """Steps 1-6 for one target, in the calling thread."""
        got = self.fetch(t)
        return got if isinstance(got, Outcome) else self.finish(got)

    def fetch(self, t: Target) -> Outcome | Fetched:
        """Steps 1-4: an Outcome when nothing is fetched, else the provider's answer."""
        target = clock.last_closed_bar(t.calendar, self.as_of)
        prev = self._health.get(t.symbol, {})
        if prev.get("status") == "toxic" and not self.recheck_toxic:
            return Outcome(
                t.symbol, "skipped",
                f"toxic since {pd.Timestamp(prev['audited_at']):%Y-%m-%d}: {prev.get('reason')}"
                " (re-run with --recheck-toxic to fetch it again)",
            )
        try:
            stored = self.lake.read_ohlcv_arrays(self.provider.name, self.timeframe, t.symbol)
        except CorruptTableError as exc:  # step 8: this symbol fails, the others go on; once
            # the file is deleted the next run fetches it at once (no "asked recently" memo)
            return Outcome(t.symbol, "failed", str(exc), 0,
                           self._row(t.symbol, "unreadable", str(exc), None,
                                     last_checked_at=None, checked_for=None))
        if stored is not None and not len(stored["timestamp"]):
            stored = None
        last = None if stored is None else _stamp(stored["timestamp"].max())
        if stored is not None and last is not None and last >= target:
            status, reason, bar = _audit(stored["timestamp"], stored["close"], t.calendar, target)
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
                status, why, bar = _audit(stored["timestamp"], stored["close"], t.calendar, target)
                health = self._row(t.symbol, status, why, bar, last_bar=last)
            return Outcome(t.symbol, "fresh", reason, 0, health)

        if last is None:
            start = clock.start_for_bars(t.calendar, target, self.history_bars[t.calendar])
        else:
            start = _next_bar(t.calendar, last)
        fetched_at = self.now()
        try:
            raw = self.provider.fetch_ohlcv(t.universe, t.symbol, start, self.as_of)
        except PartialFetchError as exc:  # step 7
            bars = checked_bars(exc.bars, self.provider.name, t.symbol)
            return Fetched(t, target, stored, last, start, fetched_at, bars, exc)
        return Fetched(t, target, stored, last, start, fetched_at,
                       checked_bars(raw, self.provider.name, t.symbol))

    def finish(self, f: Fetched) -> Outcome:
        """Steps 5-6 on a fetched answer: guard, merge, write (this symbol's one writer)."""
        t, target, stored, last, start, fetched_at, raw, partial = (
            f.target, f.target_bar, f.stored, f.last, f.start, f.fetched_at, f.raw, f.partial)
        # From here on plain numpy columns: per-symbol pandas work holds the GIL and would
        # serialise the fetch threads (benchmarks/README.md, parallel ingestion).
        ts = _ns(raw["timestamp"])
        if len(ts) < 2 or (np.diff(ts) > 0).all():  # sorted, as providers answer: a slice
            lo = int(np.searchsorted(ts, start.value, side="left"))
            hi = int(np.searchsorted(ts, target.value, side="right"))
            pick: slice | np.ndarray = slice(lo, hi)
        else:
            # unsorted answers are sorted before the guard: close-to-close moves and the
            # audit are only meaningful in time order
            pick = np.flatnonzero((ts <= target.value) & (ts >= start.value))
            pick = pick[np.argsort(ts[pick], kind="stable")]
        new_ts = ts[pick]
        new = {c: raw[c].to_numpy(dtype="float64")[pick] for c in BAR_FIELDS}
        checks = {} if partial else {"last_checked_at": fetched_at, "checked_for": target}
        prev_close = None
        if stored is not None:
            n_old = int(np.searchsorted(stored["timestamp"], start.value, side="left"))
            prev_close = float(stored["close"][n_old - 1]) if n_old else None
        bad = _toxic(new_ts, new, prev_close)
        if bad is not None:
            reason, bar = bad
            stamp = f"{fetched_at:%Y%m%dT%H%M%S%fZ}"
            qpath = self.lake.quarantine(self.provider.name, self.timeframe, t.symbol, raw, stamp)
            return Outcome(
                t.symbol, "toxic", f"{reason} at {pd.Timestamp(bar):%Y-%m-%d}; fetched bars in "
                f"{self.lake.relative(qpath)}", 0,
                self._row(t.symbol, "toxic", reason, bar, last_bar=last, **checks),
            )
        if not len(new_ts) and partial is not None:
            return Outcome(t.symbol, "failed", str(partial))
        if not len(new_ts):
            if stored is None:
                return Outcome(
                    t.symbol, "failed", f"provider has no bars up to {target:%Y-%m-%d}", 0,
                    self._row(t.symbol, "stale", f"provider has no bars up to {target:%Y-%m-%d}",
                              None, **checks),
                )
            status, reason, bar = _audit(stored["timestamp"], stored["close"], t.calendar, target)
            return Outcome(
                t.symbol, "fetched", "provider had nothing newer", 0,
                self._row(t.symbol, status, reason, bar, last_bar=last, **checks),
            )
        merged_ts, merged = new_ts, new
        if stored is not None:  # fetched bars win; stored bars kept where none was fetched
            keep = ~np.isin(stored["timestamp"], new_ts)
            merged_ts = np.concatenate([stored["timestamp"][keep], new_ts])
            order = np.argsort(merged_ts, kind="stable")
            merged_ts = merged_ts[order]
            merged = {c: np.concatenate([stored[c][keep], new[c]])[order] for c in BAR_FIELDS}
        self.lake.write_ohlcv_arrays(self.provider.name, self.timeframe, t.symbol, merged_ts,
                                     merged)
        status, reason, bar = _audit(merged_ts, merged["close"], t.calendar, target)
        if partial is not None:
            kept = _stamp(merged_ts[-1])
            return Outcome(
                t.symbol, "failed", f"{partial}; kept {len(new_ts)} bar(s) up to"
                f" {kept:%Y-%m-%d}, the next run resumes from there", len(new_ts),
                self._row(t.symbol, status, reason, bar, last_bar=kept),
            )
        return Outcome(
            t.symbol, "fetched", f"{len(new_ts)} new bar(s) from {start:%Y-%m-%d}", len(new_ts),
            self._row(t.symbol, status, reason, bar, last_bar=_stamp(merged_ts[-1]), **checks),
        )


@dataclass
class RemoteIngest:
    """Ingestor.one for executor workers in other processes (Ray): built from plain data —
    the provider from its name and options — once per worker process. Each worker writes
    the OHLCV files of the symbols it ingests (one writer per file); health rows go back to
    the driver, the health table's one writer."""

    data_dir: str
    provider: str
    options: dict[str, Any]
    as_of: pd.Timestamp
    history_bars: dict[str, int]
    freshness_hours: float
    timeframe: str
    recheck_toxic: bool
    health: dict[str, dict[str, Any]]
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __call__(self, t: Target) -> Outcome:
        # a worker may unpickle this spec once per task: build its Ingestor once per process
        built = _WORKER_INGESTORS.get(self.key)
        if built is None:
            from portflow.providers import get_provider

            built = Ingestor(
                Lakehouse(self.data_dir), get_provider(self.provider, self.options),
                self.as_of, self.history_bars, self.freshness_hours, self.timeframe,
                self.recheck_toxic, health=self.health,
            )
            _WORKER_INGESTORS.clear()  # one ingestion at a time per worker process
            _WORKER_INGESTORS[self.key] = built
        return built.one(t)


_WORKER_INGESTORS: dict[str, Ingestor] = {}


def remote_ingest(ingestor: Ingestor, provider: tuple[str, dict[str, Any]]) -> RemoteIngest:
    """The picklable twin of `ingestor`, its provider rebuilt in the worker from `provider`
    = (registry name, options) — the config's block, not the lakehouse key."""
    name, options = provider
    return RemoteIngest(
        str(ingestor.lake.data_dir), name, dict(options),
        ingestor.as_of, dict(ingestor.history_bars), ingestor.freshness.total_seconds() / 3600,
        ingestor.timeframe, ingestor.recheck_toxic, ingestor._health,
    )


def _pipeline(ingestor: Ingestor, targets: list[Target],
              jobs: int) -> Iterator[tuple[Target, Outcome | BaseException]]:
    """Producer/consumer: `jobs` threads only fetch (keeping `jobs` requests in flight),
    `FINISH_THREADS` threads guard, merge and write; (target, outcome or error) as each
    symbol completes. At most `BACKLOG` fetched answers wait for a writer, so a provider
    faster than the disk never piles the whole universe up in memory."""
    done: queue.SimpleQueue[tuple[Target, cf.Future[Any]]] = queue.SimpleQueue()
    slots = threading.Semaphore(BACKLOG)
    stopping = threading.Event()
    fetchers = cf.ThreadPoolExecutor(jobs, thread_name_prefix="ingest-fetch")
    # writers wait on fsync most of the time: as many as FINISH_THREADS, whatever `jobs` is
    finishers = cf.ThreadPoolExecutor(FINISH_THREADS, thread_name_prefix="ingest-write")

    def fetch(t: Target) -> Outcome | Fetched:
        slots.acquire()
        try:
            if stopping.is_set():
                raise cf.CancelledError()
            got = ingestor.fetch(t)
        except BaseException:
            slots.release()
            raise
        if isinstance(got, Outcome):
            slots.release()
        return got

    def written(t: Target, fut: cf.Future[Any]) -> None:
        slots.release()
        done.put((t, fut))

    def fetched(t: Target, fut: cf.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None or isinstance(fut.result(), Outcome):
            done.put((t, fut))
            return
        try:
            nxt = finishers.submit(ingestor.finish, fut.result())
        except RuntimeError:  # shut down: the run is being abandoned
            slots.release()
            return
        nxt.add_done_callback(functools.partial(written, t))

    try:
        for t in targets:
            fetchers.submit(fetch, t).add_done_callback(functools.partial(fetched, t))
        for _ in targets:
            t, fut = done.get()
            err = fut.exception()
            yield t, (err if err is not None else fut.result())
    finally:
        # abandoned early (an error, Ctrl-C): wake every fetcher waiting for a slot
        stopping.set()
        fetchers.shutdown(wait=False, cancel_futures=True)
        for _ in range(jobs):
            slots.release()
        finishers.shutdown(wait=True, cancel_futures=True)
        fetchers.shutdown(wait=True)


def run_ingest(
    ingestor: Ingestor,
    targets: list[Target],
    jobs: int,
    on_done: Callable[[Outcome], None] | None = None,
    executor: Executor | None = None,
    provider: tuple[str, dict[str, Any]] | None = None,
) -> IngestReport:
    """Run every target — inline (`jobs` 1), on the producer/consumer threads, or through
    `executor` (e.g. Ray, the provider rebuilt in workers from `provider` = (name, options)); health rows are flushed
    in batches by this thread, the health table's one writer."""
    report = IngestReport()
    pending: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    results: Iterator[tuple[Target, Outcome | BaseException]]
    if executor is not None:
        remote = remote_ingest(ingestor, provider or (ingestor.provider.name, {}))
        results = ((o.item, o.value if o.error is None else o.error)  # type: ignore[misc]
                   for o in executor.map(remote, targets))
    elif jobs > 1:
        results = _pipeline(ingestor, targets, jobs)
    else:
        results = ((o.item, o.value if o.error is None else o.error)  # type: ignore[misc]
                   for o in LocalExecutor(jobs=1).map(ingestor.one, targets))
    # closing(): on Ctrl-C / SIGTERM the queued symbols are cancelled at once (an unclosed
    # generator would let its workers drain the whole queue before the process ends) and the
    # health of the symbols already stored is flushed on the way out
    try:
        with contextlib.closing(results):  # type: ignore[type-var]
            for t, res in results:
                if isinstance(res, Outcome):
                    out = res
                else:
                    out = Outcome(t.symbol, "failed", one_line(f"{type(res).__name__}: {res}"))
                report.outcomes.append(out)
                if out.health is not None:
                    pending.append(out.health)
                if on_done is not None:
                    on_done(out)
                if pending and time.monotonic() - last_flush > HEALTH_FLUSH_SECONDS:
                    ingestor.record_health(pending)
                    pending, last_flush = [], time.monotonic()
    finally:
        ingestor.record_health(pending)
    return report
