"""feature-ingest and feature-backfill (SPEC §5): technical ratings into the lakehouse.

feature-ingest — today's ratings per candidate symbol:
1. Ask the provider (`technicals`); TradingView has them, the synthetic market has none.
2. Otherwise compute them from the symbol's stored bars (the value at its last stored bar).
3. Store one dated snapshot `features/technicals/date=<clock>/part-<run>.parquet`.

feature-backfill — the ratings history of every healthy symbol, `features_matrix.parquet`:
1. The set: (provider, symbol) pairs whose Phase-1 health is `healthy` (toxic, stale, flat and
   gappy symbols stay out; quarantined data is never in the OHLCV files to begin with). Rows
   carry a `provider` column (the lakehouse key), so one symbol from two providers never
   collides.
2. Incremental: each symbol's OHLCV file is fingerprinted (sha256 of its bytes); the
   fingerprints of the last build are kept in the matrix file's own metadata, keyed
   `provider:symbol`, so a symbol whose bars did not change keeps its old rows and only
   changed or new symbols are recomputed (a matrix written before the `provider` column
   existed is rebuilt whole). Ratings at t use bars <= t only, so appending bars never
   changes old rows of a recomputed symbol either (tested).
3. Bounded memory: symbols are processed in sorted chunks of `CHUNK_SYMBOLS`, each chunk's
   rows written as one row group of a streaming parquet writer into a temp file, renamed
   over the old matrix at the end (atomic). Peak memory ~ one chunk, not the whole matrix.
4. Long format, sorted by (symbol, provider, timestamp), one row per stored bar: `timestamp`,
   `symbol`, `recommend_all`, `recommend_ma`, `recommend_other` (float64, NaN = no value
   yet), `provider`.
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

from portflow.errors import DataError
from portflow.lakehouse.atomic import atomic_path, fingerprint, write_parquet
from portflow.lakehouse.store import Lakehouse
from portflow.ratings.panel import FIELDS, frames_panel, last_values, rate

CHUNK_SYMBOLS = 250
RATING_COLUMNS = ["recommend_all", "recommend_ma", "recommend_other"]
MATRIX_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("ns", tz="UTC")),
        ("symbol", pa.string()),
        *((c, pa.float64()) for c in RATING_COLUMNS),
        ("provider", pa.string()),
    ]
)
_META_KEY = b"portflow.fingerprints"


def _rows(provider: str, symbol: str, ts: np.ndarray, ratings: Any, j: int) -> pa.Table:
    n = len(ts)
    cols = {
        "timestamp": pa.array(ts, type=pa.timestamp("ns", tz="UTC")),
        "symbol": pa.repeat(pa.scalar(symbol, type=pa.string()), n),
    }
    for c in RATING_COLUMNS:
        cols[c] = pa.array(getattr(ratings, c)[:n, j].astype(np.float64))
    cols["provider"] = pa.repeat(pa.scalar(provider, type=pa.string()), n)
    return pa.table(cols, schema=MATRIX_SCHEMA)


def _read_bars(path: Path) -> dict[str, np.ndarray]:
    """A stored OHLCV file as numpy columns (timestamp as datetime64[ns] UTC), no pandas."""
    table = pq.read_table(path, columns=["timestamp", *FIELDS])
    out = {f: table[f].to_numpy() for f in FIELDS}
    out["timestamp"] = table["timestamp"].cast(pa.timestamp("ns", tz="UTC")).to_numpy()
    return out


def _by_key(table: pa.Table) -> dict[tuple[str, str], pa.Table]:
    """Zero-copy slices of a table whose rows are grouped by (symbol, provider), the
    matrix's order, keyed (symbol, provider)."""
    if table.num_rows == 0:
        return {}
    groups = table.group_by(["symbol", "provider"], use_threads=False).aggregate(
        [("symbol", "count")])
    keys = list(zip(groups["symbol"].to_pylist(), groups["provider"].to_pylist(), strict=True))
    sizes = groups["symbol_count"].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = {}
    for i, key in enumerate(keys):
        part = table.slice(int(offsets[i]), int(sizes[i]))
        ends = {(part["symbol"][k].as_py(), part["provider"][k].as_py()) for k in (0, -1)}
        if ends != {key}:
            raise DataError(f"{key[0]}: features matrix rows are not grouped by symbol; delete"
                            " lakehouse/features_matrix.parquet and run feature-backfill")
        out[key] = part
    return out


def _fp_key(provider: str, symbol: str) -> str:
    return f"{provider}:{symbol}"  # provider names hold no ':' (lakehouse key rule)


def matrix_keys(path: Path) -> set[tuple[str, str]]:
    """The (provider, symbol) pairs the matrix at `path` holds rows of (from its fingerprints;
    a provider key never contains ':', a symbol may)."""
    return {tuple(k.split(":", 1)) for k in read_fingerprints(path)}  # type: ignore[misc]


def read_fingerprints(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    meta = pq.read_metadata(path).metadata or {}
    raw = meta.get(_META_KEY)
    return json.loads(raw) if raw else {}


def backfill(lake: Lakehouse, sources: list[tuple[str, str, str]],
             chunk_symbols: int = CHUNK_SYMBOLS) -> dict[str, int]:
    """Steps 1-4 for `sources` = [(provider, timeframe, symbol)] of healthy symbols."""
    target = lake.features_matrix_path
    old = read_fingerprints(target)
    old_ds = ds.dataset(target) if target.exists() else None
    if old_ds is not None and "provider" not in old_ds.schema.names:
        old, old_ds = {}, None  # written before rows carried their provider: rebuild
    todo = sorted(set(sources), key=lambda s: (s[2], s[0]))
    fps: dict[str, str] = {}
    counts = {"symbols": 0, "recomputed": 0, "kept": 0, "rows": 0}
    with atomic_path(target) as tmp:
        writer: pq.ParquetWriter | None = None
        for start in range(0, len(todo), chunk_symbols):
            chunk = todo[start:start + chunk_symbols]
            fresh: list[tuple[tuple[str, str], dict[str, np.ndarray]]] = []
            keep: list[tuple[str, str]] = []
            for provider, tf, symbol in chunk:
                path = lake.ohlcv_path(provider, tf, symbol)
                if not path.exists():
                    continue
                fp = fingerprint(path, digits=20)
                fps[_fp_key(provider, symbol)] = fp
                if old_ds is not None and old.get(_fp_key(provider, symbol)) == fp:
                    keep.append((symbol, provider))
                else:
                    fresh.append(((symbol, provider), _read_bars(path)))
            parts: dict[tuple[str, str], pa.Table] = {}
            if keep and old_ds is not None:
                # the old matrix is sorted by symbol and written one row group per chunk, so
                # the range bounds let parquet statistics skip the row groups of other chunks
                names = sorted({s for s, _ in keep})
                where = ((ds.field("symbol") >= names[0]) & (ds.field("symbol") <= names[-1])
                         & ds.field("symbol").isin(names))
                old_parts = _by_key(old_ds.to_table(filter=where).cast(MATRIX_SCHEMA))
                parts.update({k: old_parts[k] for k in keep if k in old_parts})
            if fresh:
                panel, _ = frames_panel([b for _, b in fresh])
                ratings = rate(panel)
                for j, ((symbol, provider), bars) in enumerate(fresh):
                    parts[(symbol, provider)] = _rows(provider, symbol, bars["timestamp"],
                                                      ratings, j)
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


def snapshot(lake: Lakehouse, provider: Any, timeframe: str,
             symbols_by_universe: dict[str, list[str]], as_of: pd.Timestamp,
             run_id: str) -> dict[str, int]:
    """feature-ingest steps 1-3. Returns counts by source."""
    frames = []
    counts = {"symbols": 0, "from_provider": 0, "computed": 0, "no_bars": 0}
    for universe, symbols in sorted(symbols_by_universe.items()):
        got = provider.technicals(universe, sorted(symbols), as_of)
        if got is not None and len(got):
            got = got.assign(source="provider")
            frames.append(got)
            counts["from_provider"] += len(got)
            symbols = sorted(set(symbols) - set(got["symbol"]))
        stored = [(s, lake.read_ohlcv(provider.name, timeframe, s)) for s in sorted(symbols)]
        have = [(s, b) for s, b in stored if b is not None and len(b)]
        counts["no_bars"] += len(stored) - len(have)
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
        path = lake.technicals_dir(as_of) / f"part-{run_id}.parquet"
        write_parquet(out.sort_values("symbol").reset_index(drop=True), path)
    counts["symbols"] = sum(len(v) for v in symbols_by_universe.values())
    return counts
