"""The point-in-time view a sleeve is produced from: the one place Phase 2 cuts data at a clock.

A production run is pinned to a data run D (SPEC §8): it reads bars up to D's clock and the
features, health and metadata *as of D*, whatever later data runs did. Walk-forward validation
then needs the same view at earlier clocks. So:

1. :func:`read_view` reads the lakehouse once for one sleeve and one data run: the candidates D
   exported for the sleeve's scanners; each symbol's stored bars up to the last closed bar at
   the clock (and ADX 14 at every bar, from the ratings engine: causal, so a value at bar i
   depends on bars <= i only); the features-matrix rows of those symbols before the clock;
   the health verdicts and metadata versions recorded by the time D ended (the lakehouse keeps
   their history, :mod:`portflow.lakehouse.store` rule 5). Nothing else is read afterwards.
2. :meth:`SleeveView.at` cuts the view at an earlier clock t without copying: bars and ratings
   to the last closed bar at t (sliced lazily, when a symbol's are read), toxic marks to those
   whose offending bar is at or before it.
   Metadata versions are looked up at the window end by :meth:`MetaVersions.at`: the version
   valid then, or — for a date before a symbol's first recorded version — that first version
   (a documented assumption whose uses are counted in selection.json).
3. Everything in a view is immutable: arrays are read-only, records frozen.
4. :class:`Panel`: the same bars laid out once on the sleeve's calendar (sessions × symbols:
   the close where a bar exists, NaN where none; value traded; ADX and ratings *as of* each
   session — the last value at or before it), built when the view is read and shared by every
   cut of it. A window's Strict Health, returns and selection inputs are then slices of it
   (:func:`portflow.alpha.aggregate.window_from_panel`), not a loop over symbols per window;
   walk-forward validation cuts the view at ~100-170 clocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from portflow import clock
from portflow.alpha.settings import SleeveSettings
from portflow.data.candidates import Candidate, Direction, sleeve_candidates
from portflow.errors import CorruptTableError
from portflow.lakehouse.store import Lakehouse
from portflow.ratings.panel import FIELDS, frames_panel, rate

RATING_FIELDS = ("recommend_all", "recommend_ma", "recommend_other")
_NS = "datetime64[ns]"


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    a.flags.writeable = False
    return a


def _ns(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value)


@dataclass(frozen=True)
class Bars:
    """One symbol's stored daily bars, oldest first. ts: int64 UTC nanoseconds; open, high,
    low, close, volume: float64; adx: ADX 14 at each bar (NaN while warming up)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    adx: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.size)

    def upto(self, t_ns: int) -> Bars:
        """The bars stamped at or before t_ns (views, no copy)."""
        n = int(np.searchsorted(self.ts, t_ns, side="right"))
        if n == self.ts.size:
            return self
        return Bars(*(getattr(self, f)[:n] for f in self.__dataclass_fields__))

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.ts.view(_NS)).tz_localize("UTC")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, adx: np.ndarray | None = None) -> Bars:
        """From a frame with the SPEC OHLCV columns, sorted by timestamp (adx NaN unless
        given)."""
        ts = pd.DatetimeIndex(frame["timestamp"]).tz_convert("UTC").as_unit("ns").asi8
        cols = [np.asarray(frame[f], dtype=np.float64) for f in FIELDS]
        a = np.full(ts.size, np.nan) if adx is None else np.asarray(adx, dtype=np.float64)
        o, h, lo, c, v = (_frozen(x) for x in cols)
        return cls(ts=_frozen(ts), open=o, high=h, low=lo, close=c, volume=v, adx=_frozen(a))


@dataclass(frozen=True)
class RatingsHistory:
    """A symbol's rows of the features matrix, oldest first (ts int64 UTC ns)."""

    ts: np.ndarray
    values: Mapping[str, np.ndarray]

    def upto(self, t_ns: int) -> RatingsHistory:
        n = int(np.searchsorted(self.ts, t_ns, side="right"))
        if n == self.ts.size:
            return self
        return RatingsHistory(self.ts[:n], {k: v[:n] for k, v in self.values.items()})

    def last(self, name: str, t_ns: int) -> float:
        """The value of `name` at the last row at or before t_ns (NaN when there is none)."""
        n = int(np.searchsorted(self.ts, t_ns, side="right"))
        return float(self.values[name][n - 1]) if n else math.nan


@dataclass(frozen=True)
class MetaVersions:
    """A symbol's metadata versions recorded by the pinned data run, by valid_from."""

    valid_from: np.ndarray
    tick_size: np.ndarray
    lot_size: np.ndarray

    def at(self, t_ns: int) -> tuple[float, float, bool]:
        """(tick_size, lot_size, before_first): the version valid at t_ns, or the first
        version when t_ns precedes every version (before_first=True)."""
        if self.valid_from.size == 0:
            return math.nan, math.nan, False
        i = int(np.searchsorted(self.valid_from, t_ns, side="right")) - 1
        before = i < 0
        i = max(i, 0)
        return float(self.tick_size[i]), float(self.lot_size[i]), before


@dataclass(frozen=True)
class Exclusion:
    """A Phase-1 verdict that excludes a symbol: `status` toxic (with its offending bar, if
    known) or unreadable (its OHLCV file cannot be read)."""

    status: str
    reason: str
    bar_ns: int | None = None


@dataclass(frozen=True)
class SleeveCandidate:
    """A candidate of the sleeve: `key` = ``<symbol>:<DIRECTION>``, `logic` = the first of the
    sleeve's scanners that found it, `calendar` = its bars' calendar."""

    key: str
    symbol: str
    direction: Direction
    logic: str
    calendar: str


@dataclass(frozen=True)
class Panel:
    """Rule 4. dates: int64 UTC ns sessions of `calendar` from the first stored bar to the
    view's last closed bar; every matrix is (dates, symbols), column `col[symbol]`."""

    calendar: str
    dates: np.ndarray
    col: Mapping[str, int]
    close: np.ndarray
    traded: np.ndarray
    adx: np.ndarray
    ratings: Mapping[str, np.ndarray]
    present: np.ndarray  # cumulative count of bars, shape (dates + 1, symbols)
    aligned: np.ndarray  # (symbols,) every bar of the symbol falls on a session

    @classmethod
    def build(cls, calendar: str, end_ns: int, bars: Mapping[str, Bars],
              ratings: Mapping[str, RatingsHistory]) -> Panel:
        symbols = sorted(bars)
        firsts = [int(bars[s].ts[0]) for s in symbols if len(bars[s])]
        dates = clock.session_ns(calendar, min(firsts), end_ns) if firsts else \
            np.empty(0, dtype=np.int64)
        d, n = dates.size, len(symbols)
        close = np.full((d, n), np.nan)
        traded = np.full((d, n), np.nan)
        adx = np.full((d, n), np.nan)
        rated = {f: np.full((d, n), np.nan) for f in RATING_FIELDS}
        aligned = np.zeros(n, dtype=bool)
        for j, s in enumerate(symbols):
            b = bars[s]
            if not len(b):
                continue
            pos = np.searchsorted(b.ts, dates, side="right") - 1  # last bar at or before
            ok = pos >= 0
            exact = ok & (b.ts[np.maximum(pos, 0)] == dates)
            close[exact, j] = b.close[pos[exact]]
            aligned[j] = int(exact.sum()) == len(b)
            traded[exact, j] = b.close[pos[exact]] * b.volume[pos[exact]]
            adx[ok, j] = b.adx[pos[ok]]
            r = ratings.get(s)
            if r is not None and r.ts.size:
                rpos = np.searchsorted(r.ts, dates, side="right") - 1
                rok = rpos >= 0
                for f, v in r.values.items():
                    rated[f][rok, j] = v[rpos[rok]]
        present = np.zeros((d + 1, n), dtype=np.int64)
        np.cumsum(~np.isnan(close), axis=0, out=present[1:])
        arrays = [close, traded, adx, present, aligned, *rated.values()]
        for a in arrays:
            a.flags.writeable = False
        return cls(calendar, dates, {s: j for j, s in enumerate(symbols)}, close, traded, adx,
                   rated, present, aligned)

    def row(self, t_ns: int) -> int:
        """The index of the last session at or before t_ns (-1 when none)."""
        return int(np.searchsorted(self.dates, t_ns, side="right")) - 1


class _Cut(Mapping[str, Any]):
    """A symbol → bars (or ratings) mapping that slices each at its cut when it is read."""

    def __init__(self, source: Mapping[str, Any], cut: Mapping[str, int]) -> None:
        self._source, self._cut = source, cut

    def __getitem__(self, symbol: str) -> Any:
        return self._source[symbol].upto(self._cut[symbol])

    def __iter__(self) -> Iterator[str]:
        return (s for s in self._source if s in self._cut)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class SleeveView:
    """Everything one sleeve's production may read, as of `as_of` (see module docstring)."""

    as_of: pd.Timestamp
    candidates: tuple[SleeveCandidate, ...]
    bars: Mapping[str, Bars]
    ratings: Mapping[str, RatingsHistory]
    metadata: Mapping[str, MetaVersions]
    exclusions: Mapping[str, Exclusion] = field(default_factory=dict)
    panel: Panel | None = None

    def with_panel(self) -> SleeveView:
        """This view with its :class:`Panel` (rule 4; one calendar for every candidate)."""
        cals = {c.calendar for c in self.candidates}
        if len(cals) != 1:
            raise ValueError(f"a panel needs one calendar; the candidates have {sorted(cals)}")
        (cal,) = cals
        panel = Panel.build(cal, self.last_closed_ns(cal), self.bars, self.ratings)
        return replace(self, panel=panel)

    def last_closed_ns(self, calendar: str) -> int:
        return _ns(clock.last_closed_bar(calendar, self.as_of))

    def at(self, as_of: pd.Timestamp) -> SleeveView:
        """The view at an earlier clock (step 2); `as_of` later than the view's is refused."""
        as_of = pd.Timestamp(as_of)
        if as_of > self.as_of:
            raise ValueError(f"a view as of {self.as_of:%Y-%m-%d} cannot see {as_of:%Y-%m-%d}")
        cut = self._cut(as_of)
        exclusions = {
            s: e for s, e in self.exclusions.items()
            if e.status != "toxic" or e.bar_ns is None or e.bar_ns <= cut[s]
        }
        return SleeveView(as_of, self.candidates, _Cut(self.bars, cut),
                          _Cut(self.ratings, cut), self.metadata, exclusions, self.panel)

    def restrict(self, keys: Iterable[str]) -> SleeveView:
        """The same view with only the candidates whose key is in `keys`."""
        want = set(keys)
        return replace(self, candidates=tuple(c for c in self.candidates if c.key in want))

    def _cut(self, as_of: pd.Timestamp) -> dict[str, int]:
        cals = {c.symbol: c.calendar for c in self.candidates}
        ends = {cal: _ns(clock.last_closed_bar(cal, as_of)) for cal in set(cals.values())}
        return {s: ends[cal] for s, cal in cals.items()}


# -- reading (step 1) -------------------------------------------------------------------------


def _read_ratings(lake: Lakehouse, provider: str, symbols: list[str], before_ns: int
                  ) -> dict[str, RatingsHistory]:
    dataset = lake.features_dataset() if symbols else None
    if dataset is None:
        return {}
    names = set(dataset.schema.names)
    cond = ds.field("symbol").isin(symbols) & (
        ds.field("timestamp") < pa.scalar(before_ns, type=pa.timestamp("ns", tz="UTC"))
    )
    if "provider" in names:
        cond &= ds.field("provider") == provider
    cols = ["timestamp", "symbol", *(f for f in RATING_FIELDS if f in names)]
    table = dataset.to_table(columns=cols, filter=cond).sort_by(
        [("symbol", "ascending"), ("timestamp", "ascending")]
    )
    sym = table["symbol"].to_numpy(zero_copy_only=False)
    ts = table["timestamp"].cast(pa.timestamp("ns", tz="UTC")).to_numpy().view("int64")
    vals = {f: table[f].to_numpy().astype(np.float64) for f in cols[2:]}
    out: dict[str, RatingsHistory] = {}
    if not len(sym):
        return out
    starts = np.flatnonzero(np.r_[True, sym[1:] != sym[:-1]])
    ends = np.r_[starts[1:], len(sym)]
    for a, b in zip(starts, ends, strict=True):
        out[str(sym[a])] = RatingsHistory(
            _frozen(ts[a:b]), {f: _frozen(v[a:b]) for f, v in vals.items()}
        )
    return out


def _read_metadata(lake: Lakehouse, provider: str, symbols: list[str],
                   recorded_by: pd.Timestamp | None) -> dict[str, MetaVersions]:
    table = lake.symbol_versions(provider, symbols, recorded_by)
    out = {}
    for sym, g in table.groupby("symbol", sort=True):
        out[str(sym)] = MetaVersions(
            _frozen(g["valid_from"].to_numpy(dtype=_NS).view("int64")),
            _frozen(pd.to_numeric(g["tick_size"], errors="coerce").to_numpy(np.float64)),
            _frozen(pd.to_numeric(g["lot_size"], errors="coerce").to_numpy(np.float64)),
        )
    return out


def read_view(
    lake: Lakehouse,
    settings: SleeveSettings,
    candidates: Iterable[Candidate],
    as_of: pd.Timestamp,
    recorded_by: pd.Timestamp | None,
) -> SleeveView:
    """Step 1 for the sleeve of `settings` at clock `as_of`; `recorded_by` is the wall time
    the pinned data run ended (None = everything recorded so far)."""
    mine = sorted(sleeve_candidates(candidates, settings.scanners), key=lambda c: c.key)
    cands = tuple(
        SleeveCandidate(c.key, c.symbol, c.direction, c.scanner_in(settings.scanners),
                        settings.calendar)
        for c in mine
    )
    symbols = sorted({c.symbol for c in cands})
    end_ns = _ns(clock.last_closed_bar(settings.calendar, as_of))
    exclusions: dict[str, Exclusion] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    for s in symbols:
        try:
            cols = lake.read_ohlcv_arrays(settings.provider, settings.timeframe, s)
        except CorruptTableError as exc:  # fails this candidate only, with the repair
            exclusions[s] = Exclusion("unreadable", str(exc))
            continue
        if cols is None:
            continue
        n = int(np.searchsorted(cols["timestamp"], end_ns, side="right"))
        if n:
            raw[s] = {"ts": cols["timestamp"][:n], **{f: cols[f][:n] for f in FIELDS}}
    bars: dict[str, Bars] = {}
    if raw:
        names = sorted(raw)
        panel, counts = frames_panel([raw[s] for s in names])
        adx = rate(panel).adx
        for j, s in enumerate(names):
            n = int(counts[j])
            r = {f: _frozen(raw[s][f]) for f in ("ts", *FIELDS)}
            bars[s] = Bars(ts=r["ts"], open=r["open"], high=r["high"], low=r["low"],
                           close=r["close"], volume=r["volume"],
                           adx=_frozen(np.array(adx[:n, j], dtype=np.float64)))
    health = lake.health_as_of(settings.provider, recorded_by)
    for s in symbols:
        h = health.get(s)
        if h is not None and h.get("status") == "toxic":
            bar = h.get("bar_timestamp")
            bar_ns = None if bar is None or pd.isna(bar) else _ns(pd.Timestamp(bar))
            exclusions.setdefault(s, Exclusion("toxic", str(h.get("reason")), bar_ns))
    view = SleeveView(
        as_of=pd.Timestamp(as_of),
        candidates=cands,
        bars=bars,
        ratings=_read_ratings(lake, settings.provider, symbols, _ns(as_of)),
        metadata=_read_metadata(lake, settings.provider, symbols, recorded_by),
        exclusions=exclusions,
    )
    return view.at(as_of).with_panel()
