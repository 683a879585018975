"""The ``files`` provider: a folder of the user's daily OHLCV files (SPEC §5).

One file per symbol, ``<SYMBOL>.csv`` or ``<SYMBOL>.parquet``; the file's stem is the symbol,
kept as it is (``BF.B.csv`` is ``BF.B``). One universe, ``files``, on one calendar (option
``calendar``: ``XNYS`` by default, ``24/7``, or any exchange-calendars code).

Reading a file:

1. Columns are matched to ``timestamp open high low close volume``: first through the
   ``columns`` option (file name -> canonical name, e.g. ``{Date: timestamp}``), then by the
   canonical name itself, then ``date`` / ``datetime`` / ``time`` for the timestamp — all
   case-insensitively unless ``case_sensitive: true``. A missing column is an error naming
   the file, the columns it has and the option that fixes it.
2. Timestamps become 00:00 UTC of the bar's own date (an aware timestamp keeps the date of its
   own time zone: a session date stays a session date). Two rows on one date mean the file is
   not daily bars: an error, never a silent merge.
3. Rows dated on or after the clock's day are dropped as the file is parsed, so no step ever
   sees a bar after the clock (the bar of the clock's own day would still be forming).
4. Rows are sorted by time (vendors often write newest first). Prices that do not parse become
   NaN, which the ingest's toxic guard then refuses with its reason.
5. Parsed files are cached per (path, size, modification time) for the provider's life, so
   scan, ingest and feature steps of one run read each file once.

Scanning computes the canonical fields from every file's bars up to the last closed bar
(:mod:`portflow.providers.fields`); ``exchange`` and ``asset_class`` come from the metadata
file when it has them. Metadata (option ``metadata``: a CSV with ``symbol`` and any of the
SPEC §4 metadata columns) is the only source of tick and lot sizes besides the ``tick_size``
and ``lot_size`` options, which apply to every symbol the file does not give one for; nothing
is invented, and a symbol absent from the file still gets its row, with nulls.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from portflow import clock
from portflow.errors import ConfigError, ProviderResponseError, suggest
from portflow.providers.base import METADATA_COLUMNS, OHLCV_COLUMNS, ScanQuery, utc_day
from portflow.providers.fields import canonical_fields, panel_from_frames
from portflow.providers.registry import FilesOptions, lake_key

UNIVERSE = "files"
SUFFIXES = (".csv", ".parquet")
TIMESTAMP_ALIASES = ("date", "datetime", "time")
META_FIELDS = [c for c in METADATA_COLUMNS if c != "symbol"]
_NUMERIC_META = ("tick_size", "lot_size", "min_notional", "price_precision")


class FilesProvider:
    """Per-symbol OHLCV files in one folder (module docstring)."""

    def __init__(self, options: FilesOptions) -> None:
        self.options = options
        self.folder = Path(options.path)
        self.name = lake_key("files", options)
        if not self.folder.is_dir():
            raise ConfigError(
                f"files provider: folder '{self.folder}' does not exist; set provider.path to"
                " a folder of <SYMBOL>.csv or <SYMBOL>.parquet files (absolute, or relative to"
                " the config dir)"
            )
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, int], pd.DataFrame] = {}
        self._index_key: int | None = None
        self._index: dict[str, Path] = {}
        self._meta = self._read_metadata(options.metadata)

    # -- protocol ---------------------------------------------------------------------------

    def universes(self) -> list[str]:
        return [UNIVERSE]

    def calendar(self, universe: str) -> str:
        self._check(universe)
        return self.options.calendar

    def scan(
        self, universe: str, as_of: pd.Timestamp, query: ScanQuery | None = None
    ) -> pd.DataFrame:
        """Canonical fields of every file's symbol from its bars before the clock's day."""
        self._check(universe)
        day = utc_day(as_of)
        cal = self.options.calendar
        frames = {s: self._bars(s, day) for s in sorted(self._files())}
        frames = {s: f for s, f in frames.items() if len(f)}
        if not frames:
            return pd.DataFrame(columns=["symbol", "exchange", "asset_class"])
        last_closed = clock.last_closed_bar(cal, day)
        first = min(f["timestamp"].iloc[0] for f in frames.values())
        rows = clock.sessions(cal, first, last_closed).astype("datetime64[ns, UTC]")
        _, out = canonical_fields(panel_from_frames(frames, rows, last_closed), cal, day)
        meta = self._meta.reindex(out["symbol"])
        out.insert(1, "exchange", meta["exchange"].to_numpy() if "exchange" in meta else None)
        out.insert(2, "asset_class",
                   meta["asset_class"].to_numpy() if "asset_class" in meta else None)
        out["market_cap"] = np.nan
        return out.reset_index(drop=True)

    def fetch_ohlcv(
        self, universe: str, symbol: str, start: pd.Timestamp | None, as_of: pd.Timestamp
    ) -> pd.DataFrame:
        """The file's bars with timestamp >= start and before the clock's day."""
        self._check(universe)
        bars = self._bars(symbol, utc_day(as_of))
        if start is not None:
            bars = bars[bars["timestamp"] >= pd.Timestamp(start)]
        return bars.reset_index(drop=True)

    def metadata(self, universe: str, symbols: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        """METADATA_COLUMNS for ``symbols``: the metadata file's values, else the stated
        tick_size / lot_size, else null; calendar is the provider's."""
        self._check(universe)
        rows = self._meta.reindex(symbols)
        out = pd.DataFrame({"symbol": list(symbols)})
        for f in META_FIELDS:
            col = rows[f].to_numpy() if f in rows else np.full(len(symbols), None)
            out[f] = col
        for f, stated in (("tick_size", self.options.tick_size),
                          ("lot_size", self.options.lot_size)):
            out[f] = pd.to_numeric(out[f], errors="coerce").astype("float64")
            if stated is not None:
                out[f] = out[f].fillna(stated)
        for f in ("min_notional", "price_precision"):
            out[f] = pd.to_numeric(out[f], errors="coerce").astype("float64")
        out["calendar"] = self.options.calendar
        return out[METADATA_COLUMNS]

    def technicals(
        self, universe: str, symbols: list[str], as_of: pd.Timestamp
    ) -> pd.DataFrame | None:
        """Files publish no ratings: portflow computes them from the bars."""
        self._check(universe)
        return None

    def resolve(self, universe: str, tickers: list[str]) -> dict[str, str]:
        """A ticker names the file with that stem: exactly, else case-insensitively, else with
        '.' and '-' swapped (BRK.B vs BRK-B); ambiguous matches are left out."""
        self._check(universe)
        files = self._files()
        folded: dict[str, list[str]] = {}
        for s in files:
            for key in {s.lower(), s.lower().replace("-", "."), s.lower().replace(".", "-")}:
                folded.setdefault(key, []).append(s)
        out = {}
        for t in tickers:
            if t in files:
                out[t] = t
                continue
            hits = folded.get(t.lower(), []) or folded.get(t.lower().replace("-", "."), [])
            if len(set(hits)) == 1:
                out[t] = hits[0]
        return out

    # -- files ------------------------------------------------------------------------------

    def _check(self, universe: str) -> None:
        if universe != UNIVERSE:
            raise ProviderResponseError(
                f"{self.name}: unknown universe '{universe}'; the files provider has one, 'files'"
            )

    def _files(self) -> dict[str, Path]:
        """Symbol -> file, re-listed when the folder changes."""
        key = self.folder.stat().st_mtime_ns
        with self._lock:
            if key != self._index_key:
                index: dict[str, Path] = {}
                for path in sorted(self.folder.iterdir()):
                    if path.suffix.lower() not in SUFFIXES or path.name.startswith("."):
                        continue
                    if path.stem in index:
                        raise ProviderResponseError(
                            f"{self.name}: both {index[path.stem].name} and {path.name} hold"
                            f" symbol '{path.stem}' in {self.folder}; keep one of them"
                        )
                    index[path.stem] = path
                self._index, self._index_key = index, key
            return self._index

    def _bars(self, symbol: str, day: pd.Timestamp) -> pd.DataFrame:
        files = self._files()
        path = files.get(symbol)
        if path is None:
            raise ProviderResponseError(
                f"{self.name}: no file for symbol '{symbol}' in {self.folder}"
                f"{suggest(symbol, files)} (expected {symbol}.csv or {symbol}.parquet)"
            )
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            bars = self._cache.get(key)
        if bars is None:
            bars = self._parse(path, symbol)
            with self._lock:
                self._cache[key] = bars
        return bars[bars["timestamp"] < day]

    def _parse(self, path: Path, symbol: str) -> pd.DataFrame:
        """Steps 1, 2 and 4 for one file (step 3 cuts per clock in _bars). Read with Arrow:
        a folder of a few hundred long histories is parsed in seconds, not minutes."""
        try:
            table = pacsv.read_csv(path) if path.suffix.lower() == ".csv" \
                else pq.read_table(path)
        except Exception as exc:  # any parser failure is the file's problem: say which file
            raise ProviderResponseError(
                f"{self.name}: cannot read {path} ({type(exc).__name__}: {exc}); fix or remove"
                " the file"
            ) from None
        mapping = self._column_map([str(c) for c in table.column_names], path)
        stamp = next(src for src, dst in mapping.items() if dst == "timestamp")
        if pa.types.is_date(table[stamp].type):  # Arrow typed it: keep it vectorised
            table = table.set_column(table.column_names.index(stamp), stamp,
                                     table[stamp].cast(pa.timestamp("s")))
        cols = {dst: table[src].to_pandas() for src, dst in mapping.items()}
        ts = _dates(cols["timestamp"], path).asi8
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        dup = ts[1:][np.diff(ts) == 0]
        if len(dup):
            raise ProviderResponseError(
                f"{self.name}: {path.name} has more than one row on"
                f" {pd.Timestamp(dup[0], tz='UTC'):%Y-%m-%d}; the files provider reads daily"
                " bars, one row per date"
            )
        out = pd.DataFrame({"timestamp": pd.DatetimeIndex(ts, tz="UTC").as_unit("ns"),
                            "symbol": symbol})
        for c in ("open", "high", "low", "close", "volume"):
            values = pd.to_numeric(cols[c], errors="coerce").to_numpy(dtype="float64")
            out[c] = values[order]
        return out[OHLCV_COLUMNS]

    def _column_map(self, names: list[str], path: Path) -> dict[str, str]:
        """Step 1: file column -> canonical name for the six OHLCV fields."""
        fold = (lambda s: s) if self.options.case_sensitive else str.lower
        by_name = {fold(n): n for n in names}
        out: dict[str, str] = {}
        for src, dst in self.options.columns.items():
            if fold(src) in by_name:
                out[by_name[fold(src)]] = dst
        wanted = [f for f in ("timestamp", "open", "high", "low", "close", "volume")
                  if f not in out.values()]
        for f in wanted:
            for alias in (f, *(TIMESTAMP_ALIASES if f == "timestamp" else ())):
                n = by_name.get(fold(alias))
                if n is not None and n not in out:
                    out[n] = f
                    break
        missing = [f for f in ("timestamp", "open", "high", "low", "close", "volume")
                   if f not in out.values()]
        if missing:
            raise ProviderResponseError(
                f"{self.name}: {path.name} has no column for {', '.join(missing)} (its columns:"
                f" {', '.join(names[:12])}); map them with provider.columns, e.g."
                f" {{{names[0] if names else 'Date'}: {missing[0]}}}"
            )
        return out

    def _read_metadata(self, path: str | None) -> pd.DataFrame:
        """The metadata CSV indexed by symbol (empty without one); checked up front."""
        if path is None:
            return pd.DataFrame(index=pd.Index([], name="symbol"))
        where = Path(path)
        if not where.is_file():
            raise ConfigError(
                f"files provider: metadata file '{where}' does not exist; fix provider.metadata"
                " (absolute, or relative to the config dir) or remove it"
            )
        try:
            meta = pd.read_csv(where, dtype={"symbol": str})
        except Exception as exc:  # a broken CSV: name it
            raise ConfigError(f"files provider: cannot read metadata {where} ({exc})") from None
        if "symbol" not in meta.columns:
            raise ConfigError(f"files provider: {where} has no 'symbol' column; its columns:"
                              f" {', '.join(map(str, meta.columns))}")
        unknown = [c for c in meta.columns if c != "symbol" and c not in META_FIELDS]
        if unknown:
            raise ConfigError(
                f"files provider: {where}: unknown column '{unknown[0]}'"
                f"{suggest(str(unknown[0]), META_FIELDS)}; known: symbol, {', '.join(META_FIELDS)}"
            )
        dup = meta["symbol"][meta["symbol"].duplicated()]
        if len(dup):
            raise ConfigError(f"files provider: {where}: symbol '{dup.iloc[0]}' appears twice")
        for c in _NUMERIC_META:
            if c in meta:
                meta[c] = pd.to_numeric(meta[c], errors="coerce")
        return meta.set_index("symbol")


def _dates(values: pd.Series, path: Path) -> pd.DatetimeIndex:
    """Step 2: 00:00 UTC of each row's own date. Whole numbers are YYYYMMDD dates when they
    look like one, else epoch seconds (or milliseconds when that large)."""
    try:
        if pd.api.types.is_datetime64_any_dtype(values):
            parsed = pd.to_datetime(values)
        elif pd.api.types.is_integer_dtype(values) and len(values):
            v = values.astype("int64")
            if v.between(19_000_101, 21_001_231).all():
                parsed = pd.to_datetime(v.astype(str), format="%Y%m%d")
            else:
                parsed = pd.to_datetime(v, unit="ms" if v.abs().max() > 10**11 else "s")
        else:  # dates as text (Arrow types real dates itself): ISO fast, else row by row
            text = values.astype(str)
            try:
                parsed = pd.to_datetime(text, format="ISO8601")
            except ValueError:
                parsed = pd.to_datetime(text, format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProviderResponseError(f"{path.name}: timestamps do not parse ({exc})") from None
    if parsed.isna().any():
        raise ProviderResponseError(
            f"{path.name}: row {int(np.argmax(parsed.isna().to_numpy())) + 2} has no timestamp"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # keep the wall-clock date of its own zone
    return pd.DatetimeIndex(parsed.dt.normalize()).tz_localize("UTC").as_unit("ns")


def from_options(options: FilesOptions) -> FilesProvider:
    """The registry's constructor."""
    return FilesProvider(options)


__all__ = ["FilesProvider", "from_options"]
