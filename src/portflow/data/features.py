"""feature-ingest and feature-backfill (SPEC §5): technical ratings into the lakehouse.

feature-ingest — today's ratings per candidate symbol:
1. Ask the provider (`technicals`); TradingView has them, the synthetic market has none.
2. Otherwise compute them from the symbol's stored bars (the value at its last stored bar);
   a symbol whose OHLCV file does not open is left out and counted `unreadable`.
3. Merge them into the one snapshot of the clock's date,
   `features/technicals/date=<clock>/part-0.parquet`: rows of the same (provider, symbol) are
   replaced, the others kept, the file rewritten atomically. A snapshot that does not open is
   derived data: it is rebuilt from this run's rows, with a warning.

feature-backfill — the ratings history of every healthy symbol, `features_matrix.parquet`:
1. The set: symbols whose Phase-1 health is `healthy` (toxic, stale, flat and gappy symbols
   stay out; quarantined data is never in the OHLCV files to begin with).
2. Incremental: each symbol's OHLCV file is fingerprinted (sha256 of its bytes); the
   fingerprints of the last build are kept in the matrix file's own metadata, so a symbol
   whose bars did not change keeps its old rows and only changed or new symbols are
   recomputed. Ratings at t use bars <= t only, so appending bars never changes old rows
   of a recomputed symbol either (tested).
3. Bounded memory: symbols are processed in sorted chunks of `CHUNK_SYMBOLS`, each chunk's
   rows written as one row group of a streaming parquet writer into a temp file, renamed
   over the old matrix at the end (atomic). Peak memory ~ one chunk, not the whole matrix.
4. Long format, sorted by (symbol, timestamp), one row per stored bar: `timestamp`, `symbol`,
   `recommend_all`, `recommend_ma`, `recommend_other` (float64, NaN = no value yet).
5. The matrix is derived data: when the old one does not open (or a row group of it fails to
   read), the affected symbols are recomputed from their bars, with a warning. A healthy
   symbol whose OHLCV file does not open is left out (counted `unreadable`, warned about).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from portflow.errors import CorruptTableError, DataError, one_line
from portflow.lakehouse.atomic import atomic_path, fingerprint
from portflow.lakehouse.store import REPAIR_OHLCV, Lakehouse
from portflow.ratings.panel import FIELDS, frames_panel, last_values, rate
from portflow.ui import log

CHUNK_SYMBOLS = 250
RATING_COLUMNS = ["recommend_all", "recommend_ma", "recommend_other"]
MATRIX_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("ns", tz="UTC")),
        ("symbol", pa.string()),
        *((c, pa.float64()) for c in RATING_COLUMNS),
    ]
)
_META_KEY = b"portflow.fingerprints"


def _rows(symbol: str, ts: np.ndarray, ratings: Any, j: int) -> pa.Table:
    n = len(ts)
    cols = {
        "timestamp": pa.array(ts, type=pa.timestamp("ns", tz="UTC")),
        "symbol": pa.repeat(pa.scalar(symbol, type=pa.string()), n),
    }
    for c in RATING_COLUMNS:
        cols[c] = pa.array(getattr(ratings, c)[:n, j].astype(np.float64))
    return pa.table(cols, schema=MATRIX_SCHEMA)


def _read_bars(path: Path) -> dict[str, np.ndarray]:
    """A stored OHLCV file as numpy columns (timestamp as datetime64[ns] UTC), no pandas."""
    table = pq.read_table(path, columns=["timestamp", *FIELDS])
    out = {f: table[f].to_numpy() for f in FIELDS}
    out["timestamp"] = table["timestamp"].cast(pa.timestamp("ns", tz="UTC")).to_numpy()
    return out


def _by_symbol(table: pa.Table) -> dict[str, pa.Table]:
    """Zero-copy slices of a table whose rows are grouped by symbol (the matrix's order)."""
    if table.num_rows == 0:
        return {}
    groups = table.group_by("symbol", use_threads=False).aggregate([("symbol", "count")])
    names = groups["symbol"].to_pylist()
    sizes = groups["symbol_count"].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = {}
    for i, name in enumerate(names):
        part = table.slice(int(offsets[i]), int(sizes[i]))
        if part["symbol"][0].as_py() != name or part["symbol"][-1].as_py() != name:
            raise DataError(f"{name}: features matrix rows are not grouped by symbol; delete"
                            " lakehouse/features_matrix.parquet and run feature-backfill")
        out[name] = part
    return out


def read_fingerprints(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    meta = pq.read_metadata(path).metadata or {}
    raw = meta.get(_META_KEY)
    return json.loads(raw) if raw else {}


def _previous_matrix(lake: Lakehouse) -> tuple[dict[str, str], ds.Dataset | None]:
    """The last build's fingerprints and rows; none (a full rebuild) when it does not open."""
    try:
        old_ds = lake.features_dataset()
        return (read_fingerprints(lake.features_matrix_path), old_ds) if old_ds else ({}, None)
    except (CorruptTableError, OSError, ValueError, pa.ArrowException) as exc:
        log(f"warning: {lake.relative(lake.features_matrix_path)} does not open"
            f" ({one_line(str(exc), 120)}); rebuilding it from the OHLCV files")
        return {}, None


def _kept_rows(old_ds: ds.Dataset, keep: list[str]) -> dict[str, pa.Table] | None:
    """The old matrix's rows of `keep`, or None when they do not read (then recompute)."""
    # the old matrix is sorted by symbol and written one row group per chunk, so the range
    # bounds let parquet statistics skip the row groups of other chunks
    where = ((ds.field("symbol") >= keep[0]) & (ds.field("symbol") <= keep[-1])
             & ds.field("symbol").isin(keep))
    try:
        return _by_symbol(old_ds.to_table(filter=where).cast(MATRIX_SCHEMA))
    except (OSError, ValueError, pa.ArrowException) as exc:
        log(f"warning: the old features matrix does not read ({one_line(str(exc), 120)});"
            f" recomputing {len(keep)} symbol(s) from their bars")
        return None


def backfill(lake: Lakehouse, sources: list[tuple[str, str, str]],
             chunk_symbols: int = CHUNK_SYMBOLS) -> dict[str, int]:
    """Steps 1-5 for `sources` = [(provider, timeframe, symbol)] of healthy symbols."""
    target = lake.features_matrix_path
    old, old_ds = _previous_matrix(lake)
    todo = sorted(set(sources), key=lambda s: s[2])
    fps: dict[str, str] = {}
    counts = {"symbols": 0, "recomputed": 0, "kept": 0, "rows": 0, "unreadable": 0}
    with atomic_path(target) as tmp:
        writer: pq.ParquetWriter | None = None
        for start in range(0, len(todo), chunk_symbols):
            chunk = todo[start:start + chunk_symbols]
            paths: dict[str, Path] = {}
            keep: list[str] = []
            for provider, tf, symbol in chunk:
                path = lake.ohlcv_path(provider, tf, symbol)
                if not path.exists():
                    continue
                paths[symbol] = path
                fps[symbol] = fingerprint(path, digits=20)
                if old_ds is not None and old.get(symbol) == fps[symbol]:
                    keep.append(symbol)
            parts: dict[str, pa.Table] = {}
            if keep and old_ds is not None:
                kept = _kept_rows(old_ds, keep)
                parts.update(kept or {})
                keep = keep if kept is not None else []
            fresh: list[tuple[str, dict[str, np.ndarray]]] = []
            for symbol in sorted(set(paths) - set(keep)):
                bars = _bars_or_none(lake, paths[symbol])
                if bars is None:  # left out; a repaired file is picked up by the next run
                    del fps[symbol]
                    counts["unreadable"] += 1
                else:
                    fresh.append((symbol, bars))
            if fresh:
                panel, _ = frames_panel([b for _, b in fresh])
                ratings = rate(panel)
                for j, (symbol, bars) in enumerate(fresh):
                    parts[symbol] = _rows(symbol, bars["timestamp"], ratings, j)
            if not parts:
                continue
            table = pa.concat_tables([parts[s] for s in sorted(parts)])
            if writer is None:
                writer = pq.ParquetWriter(tmp, MATRIX_SCHEMA, compression="zstd")
            writer.write_table(table)
            counts["recomputed"] += len(fresh)
            counts["kept"] += len(keep)
            counts["rows"] += table.num_rows
        if writer is None:
            writer = pq.ParquetWriter(tmp, MATRIX_SCHEMA, compression="zstd")
        writer.add_key_value_metadata({_META_KEY: json.dumps(fps, sort_keys=True).encode()})
        writer.close()
    counts["symbols"] = len(fps)
    return counts


def _bars_or_none(lake: Lakehouse, path: Path) -> dict[str, np.ndarray] | None:
    """A symbol's bars, or None (warned about) when its file does not open."""
    try:
        return _read_bars(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        log(f"warning: {lake.relative(path)} does not open ({one_line(str(exc), 120)});"
            f" left out of the features matrix: {REPAIR_OHLCV}")
        return None


def snapshot(lake: Lakehouse, provider: Any, timeframe: str,
             symbols_by_universe: dict[str, list[str]], as_of: pd.Timestamp) -> dict[str, int]:
    """feature-ingest steps 1-3. Returns counts by source."""
    frames = []
    counts = {"symbols": 0, "from_provider": 0, "computed": 0, "no_bars": 0, "unreadable": 0}
    for universe, symbols in sorted(symbols_by_universe.items()):
        got = provider.technicals(universe, sorted(symbols), as_of)
        if got is not None and len(got):
            got = got.assign(source="provider")
            frames.append(got)
            counts["from_provider"] += len(got)
            symbols = sorted(set(symbols) - set(got["symbol"]))
        unreadable = counts["unreadable"]
        stored = [(s, _stored_bars(lake, provider.name, timeframe, s, counts))
                  for s in sorted(symbols)]
        have = [(s, b) for s, b in stored if b is not None and len(b)]
        counts["no_bars"] += len(stored) - len(have) - (counts["unreadable"] - unreadable)
        if have:
            panel, n = frames_panel([b for _, b in have])
            vals = last_values(rate(panel), n)
            vals.insert(0, "symbol", [s for s, _ in have])
            vals.insert(1, "timestamp", [b["timestamp"].iloc[-1] for _, b in have])
            vals["source"] = "computed"
            frames.append(vals)
            counts["computed"] += len(have)
    if frames:
        out = pd.concat(frames, ignore_index=True)
        out["provider"] = provider.name
        out["as_of"] = as_of
        for part in lake.write_snapshot(as_of, out):
            log(f"warning: {part} does not open; the snapshot of {as_of:%Y-%m-%d} is rebuilt"
                " from this run's ratings (the next feature-ingest of the other profiles"
                " restores theirs)")
    counts["symbols"] = sum(len(v) for v in symbols_by_universe.values())
    return counts


def _stored_bars(lake: Lakehouse, provider: str, timeframe: str, symbol: str,
                 counts: dict[str, int]) -> pd.DataFrame | None:
    try:
        return lake.read_ohlcv(provider, timeframe, symbol)
    except CorruptTableError as exc:
        counts["unreadable"] += 1
        log(f"warning: {exc}")
        return None
