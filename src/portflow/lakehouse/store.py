"""The parquet lakehouse (SPEC §4): layout, schemas and the only code that writes it.

Layout under ``<data_dir>/lakehouse``::

    ohlcv/<provider>/<timeframe>/<symbol_key>.parquet           one file per symbol
    quarantine/<provider>/<timeframe>/<symbol_key>/<fetched_at>.parquet
    symbols.parquet                                             metadata with history
    health.parquet                                              one row per (provider, symbol)
    health_history.parquet                                      every verdict change, append-only
    features/technicals/date=YYYY-MM-DD/part-*.parquet          dated ratings snapshots
    features_matrix.parquet                                     long-format ratings history

Rules:
1. `symbol_key` replaces every character outside ``[A-Za-z0-9._-]`` with ``_``; a key made
   only of dots is refused, and every resolved path is checked to stay inside the lakehouse.
2. Every write is atomic (:mod:`portflow.lakehouse.atomic`).
3. Shared tables (health, symbols, features matrix) are read-modify-written under a file lock,
   so parallel writers never lose an update; per-symbol OHLCV files have one writer each.
4. A Phase-1 step holds the writer lock (:meth:`Lakehouse.writer`) for its whole duration; at
   its start it sweeps the temp files a killed writer may have left. Phase-1 runs are therefore
   serialised in wall time, which is what "as of data run D" means below.
5. Never rewrite the past (SPEC §8 "Pinned"): health verdicts are also appended to
   ``health_history.parquet`` with the data run that recorded them (a row per change of a
   symbol's verdict — status, reason, offending bar — so an unchanged verdict adds nothing), and
   every metadata version records when it was written (``recorded_at``). A reader pinned to data
   run D takes the rows recorded by the time D ended (:meth:`Lakehouse.health_as_of`,
   :meth:`Lakehouse.symbol_versions`).
6. A stored file that does not open (torn by a disk fault, truncated by hand, not parquet) is
   a :class:`CorruptTableError` naming the file and its repair, never an unexpected crash and
   never silently replaced: OHLCV, health and symbols hold fetched or audited facts. Derived
   tables (the features matrix, the ratings snapshots) are rebuilt by their writers instead
   (:mod:`portflow.data.features`).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from portflow.errors import CorruptTableError, DataError, UsageError, one_line
from portflow.lakehouse import atomic

OHLCV_COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
BAR_FIELDS = ("open", "high", "low", "close", "volume")
_TS = pa.timestamp("ns", tz="UTC")
HEALTH_COLUMNS = [
    "provider",
    "symbol",
    "status",
    "reason",
    "bar_timestamp",
    "audited_at",
    "last_checked_at",
    "last_bar",
    "checked_for",
]
HEALTH_STATUSES = ("healthy", "toxic", "stale", "gappy", "flat", "unreadable")
SYMBOL_FIELDS = [
    "tick_size",
    "lot_size",
    "min_notional",
    "price_precision",
    "quote",
    "asset_class",
    "exchange",
    "calendar",
]
SYMBOLS_COLUMNS = ["provider", "symbol", *SYMBOL_FIELDS, "valid_from", "valid_to", "recorded_at"]
HISTORY_COLUMNS = [*HEALTH_COLUMNS, "data_run"]
VERDICT = ("status", "reason", "bar_timestamp")
_KEY_RE = re.compile(r"[^A-Za-z0-9._-]")
_TS_COLUMNS_HEALTH = ["bar_timestamp", "audited_at", "last_checked_at", "last_bar", "checked_for"]
REPAIR_OHLCV = "delete it and re-run 'portflow data-ingest --profile <profile>' to fetch it again"
REPAIR_HEALTH = ("restore it from a backup, or delete it and re-run 'portflow data-ingest"
                 " --profile <profile>' for each profile to audit every symbol again")
REPAIR_SYMBOLS = ("restore it from a backup, or delete it and re-run 'portflow meta-ingest"
                  " --profile <profile>' for each profile (the metadata history restarts there)")
REPAIR_MATRIX = "run 'portflow feature-backfill --profile <profile>' to rebuild it"


def symbol_key(symbol: str) -> str:
    """File-name key of a symbol (rule 1). Raises UsageError for keys that could escape."""
    key = _KEY_RE.sub("_", symbol)
    if not key or set(key) <= {"."}:
        raise UsageError(f"symbol '{symbol}' cannot be stored: its file key would be '{key}'")
    return key


def utc_timestamps(values: pd.Series | pd.Index | Iterable[object]) -> pd.Series:
    """Timestamps as ``datetime64[ns, UTC]`` (the one resolution the lakehouse stores);
    a Series keeps its index."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values))
    if str(series.dtype) == "datetime64[ns, UTC]":
        return series
    if series.dtype == object:
        series = series.where(series.notna(), None)
    return pd.to_datetime(series, utc=True).astype("datetime64[ns, UTC]")


#: OHLCV files are small (one per symbol) and read whole by every backfill: daily timestamps
#: delta-encode to a few bytes, prices rarely repeat (dictionary pages cost more than they
#: save), and lz4 decodes ~2x faster than zstd at about the same size for such columns:
#: ~0.3 ms to read a 2,500-bar file instead of ~1 ms (benchmarks/README.md).
OHLCV_PARQUET_OPTIONS: dict[str, object] = {
    "compression": "lz4",
    "use_dictionary": ["symbol"],
    "column_encoding": {"timestamp": "DELTA_BINARY_PACKED"},
}


def ohlcv_arrays(data: pa.Buffer | Path,
                 where: str | Callable[[], str]) -> dict[str, np.ndarray]:
    """Parse a stored OHLCV file (its bytes, or its path) into numpy columns: `timestamp`
    int64 ns UTC and `BAR_FIELDS` float64. `where` names the file in the error; a callable
    is called only then (resolving a path costs more than parsing the file)."""
    try:
        # one small file per symbol: Arrow's own thread pool costs more than it decodes
        table = pq.ParquetFile(pa.BufferReader(data) if isinstance(data, pa.Buffer) else data
                               ).read(columns=["timestamp", *BAR_FIELDS], use_threads=False)
    except (OSError, ValueError, pa.ArrowException) as exc:  # rule 6
        name = where if isinstance(where, str) else where()
        raise CorruptTableError(
            f"{name} is unreadable ({one_line(str(exc), 120)}); {REPAIR_OHLCV}") from exc
    out = {f: table[f].to_numpy() for f in BAR_FIELDS}
    out["timestamp"] = table["timestamp"].cast(_TS).to_numpy().view("int64")
    return out


class Lakehouse:
    """Access to one data dir's lakehouse. Cheap to construct; holds no open files."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "lakehouse"

    # -- paths -------------------------------------------------------------------------

    def _inside(self, path: Path) -> Path:
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise UsageError(f"path '{path}' escapes the lakehouse '{self.root}'")
        return path

    @staticmethod
    def _part(name: str, what: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise UsageError(f"{what} '{name}' is not a safe name")
        return name

    def ohlcv_path(self, provider: str, timeframe: str, symbol: str) -> Path:
        return self._ohlcv_path(provider, timeframe, symbol)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one Lakehouse per data dir, long-lived
    def _ohlcv_path(self, provider: str, timeframe: str, symbol: str) -> Path:
        path = self._ohlcv_dir(provider, timeframe) / f"{symbol_key(symbol)}.parquet"
        # The folder is checked once; the name has no separator and is not dots-only, so
        # only a symlink could lead out of it (one lstat instead of a full resolve: a
        # backfill looks up thousands of paths in a fresh process).
        return self._inside(path) if path.is_symlink() else path

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one Lakehouse per data dir, long-lived
    def _ohlcv_dir(self, provider: str, timeframe: str) -> Path:
        p = self._part(provider, "provider")
        tf = self._part(timeframe, "timeframe")
        return self._inside(self.root / "ohlcv" / p / tf)

    def quarantine_dir(self, provider: str, timeframe: str, symbol: str) -> Path:
        p = self._part(provider, "provider")
        tf = self._part(timeframe, "timeframe")
        return self._inside(self.root / "quarantine" / p / tf / symbol_key(symbol))

    @property
    def health_path(self) -> Path:
        return self.root / "health.parquet"

    @property
    def health_history_path(self) -> Path:
        return self.root / "health_history.parquet"

    @property
    def symbols_path(self) -> Path:
        return self.root / "symbols.parquet"

    @property
    def features_matrix_path(self) -> Path:
        return self.root / "features_matrix.parquet"

    def technicals_dir(self, date: pd.Timestamp) -> Path:
        return self.root / "features" / "technicals" / f"date={date:%Y-%m-%d}"

    def relative(self, path: Path) -> str:
        """A path as recorded in files: relative to the data dir (SPEC §4)."""
        return str(Path(path).resolve().relative_to(self.data_dir.resolve()))

    # -- locking -----------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Rule 4: exclusive Phase-1 writer; sweeps temp files left by a killed writer."""
        atomic.writable_dir(self.root, "lakehouse")
        with atomic.file_lock(self.root / ".writer.lock"):
            atomic.sweep_temp_files(self.root)
            yield

    def _table_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return atomic.file_lock(self.root / f".{name}.lock")

    # -- reading -----------------------------------------------------------------------

    def read_table(self, path: Path, columns: list[str], repair: str) -> pd.DataFrame:
        """Rule 5: a stored parquet file with at least `columns`, or CorruptTableError."""
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError, pa.ArrowException) as exc:  # ArrowInvalid is a ValueError
            raise CorruptTableError(
                f"{self.relative(path)} is unreadable ({one_line(str(exc), 120)}); {repair}"
            ) from exc
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise CorruptTableError(
                f"{self.relative(path)} has no column {missing[0]!r}; {repair}"
            )
        return df

    def features_dataset(self) -> ds.Dataset | None:
        """The features matrix as an Arrow dataset (None before the first backfill)."""
        path = self.features_matrix_path
        if not path.exists():
            return None
        try:
            return ds.dataset(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise CorruptTableError(
                f"{self.relative(path)} is unreadable ({one_line(str(exc), 120)}); {REPAIR_MATRIX}"
            ) from exc

    # -- OHLCV -------------------------------------------------------------------------

    def read_ohlcv(self, provider: str, timeframe: str, symbol: str) -> pd.DataFrame | None:
        path = self.ohlcv_path(provider, timeframe, symbol)
        if not path.exists():
            return None
        df = self.read_table(path, OHLCV_COLUMNS, REPAIR_OHLCV)
        df["timestamp"] = utc_timestamps(df["timestamp"])
        return df

    def read_ohlcv_arrays(self, provider: str, timeframe: str,
                          symbol: str) -> dict[str, np.ndarray] | None:
        """A symbol's stored bars as numpy columns — `timestamp` (int64 ns UTC, sorted) and
        `open`..`volume` (float64) — or None when it has no file. The hot paths (ingest,
        feature-ingest, backfill) use this instead of :meth:`read_ohlcv`: no pandas."""
        path = self.ohlcv_path(provider, timeframe, symbol)
        try:
            return ohlcv_arrays(pa.py_buffer(path.read_bytes()), lambda: self.relative(path))
        except FileNotFoundError:
            return None

    def write_ohlcv(self, provider: str, timeframe: str, symbol: str, bars: pd.DataFrame) -> Path:
        """Store bars sorted by timestamp, unique timestamps, SPEC columns only."""
        ts = utc_timestamps(bars["timestamp"]).to_numpy(dtype="datetime64[ns]").view("int64")
        prices = {c: bars[c].to_numpy(dtype="float64") for c in BAR_FIELDS}
        return self.write_ohlcv_arrays(provider, timeframe, symbol, ts, prices)

    def write_ohlcv_arrays(self, provider: str, timeframe: str, symbol: str,
                           timestamp_ns: np.ndarray, prices: dict[str, np.ndarray]) -> Path:
        """:meth:`write_ohlcv` from numpy columns (timestamps as int64 ns UTC).

        Built straight into an Arrow table: this runs once per symbol on the ingest hot
        path, where pandas copies would hold the GIL for most of the time."""
        order = np.argsort(timestamp_ns, kind="stable")
        ts = np.asarray(timestamp_ns, dtype="int64")[order]
        if len(ts) > 1 and not (np.diff(ts) > 0).all():
            raise DataError(f"{symbol}: refusing to store duplicate timestamps")
        cols: dict[str, pa.Array] = {
            "timestamp": pa.array(ts.view("datetime64[ns]"), type=_TS),
            "symbol": pa.repeat(pa.scalar(symbol, type=pa.string()), len(ts)),
        }
        for c in BAR_FIELDS:
            cols[c] = pa.array(np.asarray(prices[c], dtype="float64")[order])
        path = self.ohlcv_path(provider, timeframe, symbol)
        atomic.write_table(pa.table(cols), path, **OHLCV_PARQUET_OPTIONS)
        return path

    def quarantine(
        self, provider: str, timeframe: str, symbol: str, bars: pd.DataFrame, fetched_at: str
    ) -> Path:
        """Keep refused fetched data for inspection (never merged, never deleted)."""
        folder = self.quarantine_dir(provider, timeframe, symbol)
        path = folder / f"{fetched_at}.parquet"
        n = 2
        while path.exists():
            path = folder / f"{fetched_at}-{n}.parquet"
            n += 1
        df = bars.copy()
        if "timestamp" in df:
            df["timestamp"] = utc_timestamps(df["timestamp"])
        atomic.write_parquet(df, path)
        return path

    # -- ratings snapshots ---------------------------------------------------------------

    def write_snapshot(self, date: pd.Timestamp, rows: pd.DataFrame) -> list[str]:
        """Merge `rows` (one per provider and symbol) into the one snapshot of `date`: rows of
        the same (provider, symbol) are replaced, the rest kept, all in `part-0.parquet`
        written atomically under the table lock (rule 3). Earlier part files of that date
        are folded in and removed. A part that does not open is derived data: it is dropped
        and the snapshot rebuilt; returns those parts (relative paths) for a warning."""
        folder = self.technicals_dir(date)
        target = folder / "part-0.parquet"
        unreadable: list[str] = []
        with self._table_lock("technicals"):
            parts = sorted(folder.glob("part-*.parquet"), key=lambda p: (p != target, p.name))
            frames = []
            for part in parts:
                try:
                    frames.append(pd.read_parquet(part))
                except (OSError, ValueError, pa.ArrowException):
                    unreadable.append(self.relative(part))
            frames.append(rows)
            merged = pd.concat([f for f in frames if len(f)], ignore_index=True)
            merged = merged.drop_duplicates(["provider", "symbol"], keep="last")
            merged = merged.sort_values(["provider", "symbol"], kind="mergesort")
            atomic.write_parquet(merged.reset_index(drop=True), target)
            for part in parts:
                if part != target:
                    part.unlink()
        return unreadable

    # -- health ------------------------------------------------------------------------

    def read_health(self) -> pd.DataFrame:
        if not self.health_path.exists():
            return _empty_health()
        df = self.read_table(self.health_path, HEALTH_COLUMNS, REPAIR_HEALTH)
        for c in _TS_COLUMNS_HEALTH:
            df[c] = utc_timestamps(df[c])
        return df

    def update_health(self, rows: list[dict[str, object]], data_run: str | None = None) -> None:
        """Upsert rows keyed by (provider, symbol) under the table lock (rule 3), and append
        each changed verdict to the history (rule 5) first, so a kill between the two writes
        leaves a history the next run's identical verdict does not repeat."""
        if not rows:
            return
        new = pd.DataFrame(rows)
        for c in HEALTH_COLUMNS:
            if c not in new:
                new[c] = None
        new = new[HEALTH_COLUMNS]
        bad = set(new["status"]) - set(HEALTH_STATUSES)
        if bad:
            raise ValueError(f"unknown health statuses {sorted(bad)}")
        for c in _TS_COLUMNS_HEALTH:
            new[c] = utc_timestamps(new[c])
        new["reason"] = new["reason"].astype("string")
        with self._table_lock("health"):
            self._append_history(new, data_run)
            old = self.read_health()
            keys = set(zip(new["provider"], new["symbol"], strict=True))
            keep = [
                (p, s) not in keys for p, s in zip(old["provider"], old["symbol"], strict=True)
            ]
            parts = [df for df in (old[keep], new) if len(df)]
            merged = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
            merged = merged.sort_values(["provider", "symbol"], kind="mergesort")
            atomic.write_parquet(merged.reset_index(drop=True), self.health_path)

    def read_health_history(self) -> pd.DataFrame:
        if not self.health_history_path.exists():
            df = _empty_health()
            df["data_run"] = pd.Series(dtype="string")
            return df
        df = self.read_table(self.health_history_path, HISTORY_COLUMNS, REPAIR_HEALTH)
        for c in _TS_COLUMNS_HEALTH:
            df[c] = utc_timestamps(df[c])
        return df

    def _append_history(self, new: pd.DataFrame, data_run: str | None) -> None:
        history = self.read_health_history()
        if len(history):
            last = history.drop_duplicates(["provider", "symbol"], keep="last")
            prev = last.set_index(["provider", "symbol"])[list(VERDICT)]
            idx = pd.MultiIndex.from_frame(new[["provider", "symbol"]])
            before = prev.reindex(idx)
            same = np.ones(len(new), dtype=bool)
            for c in VERDICT:
                a, b = new[c].reset_index(drop=True), before[c].reset_index(drop=True)
                same &= ((a == b).fillna(False) | (a.isna() & b.isna())).to_numpy(dtype=bool)
            changed = new[~same]
        else:
            changed = new
        if changed.empty:
            return
        changed = changed.assign(data_run=pd.Series([data_run] * len(changed), dtype="string",
                                                    index=changed.index))
        parts = [df for df in (history, changed) if len(df)]
        out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        atomic.write_parquet(out.reset_index(drop=True), self.health_history_path)

    def health_as_of(self, provider: str, recorded_by: pd.Timestamp | None) -> dict[str, dict[str, object]]:
        """Each symbol's latest verdict recorded at or before `recorded_by` (wall time; None =
        now): from the history (rule 5), or from health.parquet for a lakehouse written before
        the history existed."""
        if not self.health_history_path.exists():
            table = self.read_health()
        else:
            table = self.read_health_history()
        table = table[table["provider"] == provider]
        if recorded_by is not None:
            table = table[table["audited_at"].isna() | (table["audited_at"] <= recorded_by)]
        table = table.drop_duplicates("symbol", keep="last")
        return {str(r["symbol"]): dict(r) for r in table.to_dict("records")}

    def health_of(self, provider: str) -> dict[str, dict[str, object]]:
        h = self.read_health()
        h = h[h["provider"] == provider]
        return {str(r["symbol"]): dict(r) for r in h.to_dict("records")}

    # -- symbols (metadata with history) ------------------------------------------------

    def read_symbols(self) -> pd.DataFrame:
        if not self.symbols_path.exists():
            return pd.DataFrame({c: pd.Series(dtype="object") for c in SYMBOLS_COLUMNS})
        df = self.read_table(self.symbols_path, SYMBOLS_COLUMNS[:-1], REPAIR_SYMBOLS)
        if "recorded_at" not in df:  # written before versions recorded their time
            df["recorded_at"] = pd.NaT
        for c in ("valid_from", "valid_to", "recorded_at"):
            df[c] = utc_timestamps(df[c])
        return df

    def symbol_versions(
        self, provider: str, symbols: Iterable[str], recorded_by: pd.Timestamp | None
    ) -> pd.DataFrame:
        """Every metadata version of `symbols` recorded at or before `recorded_by` (None = all),
        sorted by (symbol, valid_from). `valid_to` is not used: later versions may close an
        earlier one, and a pinned reader must not see that."""
        table = self.read_symbols()
        keep = (table["provider"] == provider) & table["symbol"].isin(list(symbols))
        if recorded_by is not None:
            keep &= table["recorded_at"].isna() | (table["recorded_at"] <= recorded_by)
        return table[keep].sort_values(["symbol", "valid_from"], kind="mergesort")

    def upsert_symbols(
        self, provider: str, meta: pd.DataFrame, valid_from: pd.Timestamp
    ) -> dict[str, int]:
        """Add a version for every symbol whose metadata changed; close the old version.

        Nothing is overwritten: history rows keep their values, only `valid_to` of the version
        being replaced is set. Returns counts of added / changed / unchanged symbols.
        """
        counts = {"added": 0, "changed": 0, "unchanged": 0}
        recorded_at = pd.Timestamp.now(tz="UTC")
        stamp = pd.Timestamp(valid_from).tz_convert("UTC") if pd.Timestamp(
            valid_from
        ).tzinfo else pd.Timestamp(valid_from, tz="UTC")
        with self._table_lock("symbols"):
            table = self.read_symbols()
            is_open = (table["provider"] == provider) & table["valid_to"].isna()
            current = {str(r["symbol"]): (i, r) for i, r in table[is_open].iterrows()}
            new_rows = []
            for rec in meta.to_dict("records"):
                sym = str(rec["symbol"])
                values = {f: _none_if_nan(rec.get(f)) for f in SYMBOL_FIELDS}
                if sym in current:
                    idx, row = current[sym]
                    if all(_same(values[f], row[f]) for f in SYMBOL_FIELDS):
                        counts["unchanged"] += 1
                        continue
                    table.loc[idx, "valid_to"] = stamp
                    counts["changed"] += 1
                else:
                    counts["added"] += 1
                new_rows.append(
                    {"provider": provider, "symbol": sym, **values, "valid_from": stamp,
                     "valid_to": pd.NaT, "recorded_at": recorded_at}
                )
            if new_rows:
                add = pd.DataFrame(new_rows, columns=SYMBOLS_COLUMNS)
                table = pd.concat([table, add], ignore_index=True) if len(table) else add
                for f in ("tick_size", "lot_size", "min_notional", "price_precision"):
                    table[f] = pd.to_numeric(table[f], errors="coerce").astype("float64")
                for f in ("quote", "asset_class", "exchange", "calendar"):
                    table[f] = table[f].astype("string")
                for c in ("valid_from", "valid_to", "recorded_at"):
                    table[c] = utc_timestamps(table[c])
                table = table.sort_values(["provider", "symbol", "valid_from"], kind="mergesort")
                atomic.write_parquet(table.reset_index(drop=True), self.symbols_path)
        return counts


def _none_if_nan(v: object) -> object:
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def _same(a: object, b: object) -> bool:
    a, b = _none_if_nan(a), _none_if_nan(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return str(a) == str(b)


def _empty_health() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="object") for c in HEALTH_COLUMNS})
    for c in _TS_COLUMNS_HEALTH:
        df[c] = pd.Series(dtype="datetime64[ns, UTC]")
    return df
