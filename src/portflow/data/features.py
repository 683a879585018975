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
1. The set: (provider, symbol) pairs whose Phase-1 health is `healthy` (toxic, stale, flat and
   gappy symbols stay out; quarantined data is never in the OHLCV files to begin with), plus
   those already in the matrix (the caller's choice: the past is never rewritten). Rows carry
   a `provider` column (the lakehouse key), so one symbol from two providers never collides;
   a matrix written before that column existed is rebuilt whole.
2. Incremental: each symbol's OHLCV file is fingerprinted (sha256 of its bytes); the
   fingerprints of the last build are kept in the matrix file's own metadata, keyed
   `provider:symbol`, so a symbol whose bars did not change keeps its old rows and only
   changed or new symbols are recomputed. Ratings at t use bars <= t only, so appending bars
   never changes old rows of a recomputed symbol either (tested). When every fingerprint and
   the symbol set are those of the last build, the matrix is already right and is not
   rewritten. Like git's index, the matrix also keeps each file's (inode, size, mtime_ns): a
   file whose stat is unchanged keeps its recorded fingerprint without being read. Every
   lakehouse write replaces the file by a rename (a new inode), so a rewritten file never
   matches; any mismatch only costs a re-hash.
3. Bounded memory: symbols are processed in sorted chunks of `CHUNK_SYMBOLS`. A chunk is
   computed by :func:`compute_chunk` — each file whose stat changed is read once into
   Arrow's memory pool (its bytes are both hashed and parsed, on `READ_THREADS` threads
   that each take a run of the chunk's files: hashing and parquet decoding release the
   GIL), the changed symbols rated as one panel, their rows laid out column-wise straight
   from the panel. At most `in_flight` chunks are computed at a time: locally as a
   pipeline (one thread reads chunk k+1 while another rates chunk k and the writer encodes
   chunk k-1, so the GIL-bound reading overlaps the GIL-free kernel and encoder) or
   through an executor (Ray: workers read and compute). The caller alone writes: each
   chunk, in symbol order, with the kept rows of the old matrix, becomes one row group of a
   streaming parquet writer (encoding on a background thread; symbol and provider handed
   over as dictionaries, stored as plain string columns) into a temp file, renamed over the
   old matrix at the end (atomic). Peak memory ~ a few chunks, not the whole matrix.
4. Long format, sorted by (symbol, provider, timestamp), one row per stored bar: `timestamp`,
   `symbol`, `recommend_all`, `recommend_ma`, `recommend_other` (float64, NaN = no value
   yet), `provider`.
5. The matrix is derived data: when the old one does not open it is rebuilt from the bars, and
   when a kept chunk's old rows do not read they are recomputed, each with a warning. A
   symbol whose OHLCV file does not open is left out (counted `unreadable`, warned about).
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from portflow.errors import CorruptTableError, DataError, one_line
from portflow.executors import Executor
from portflow.lakehouse.atomic import atomic_path, fingerprint_bytes
from portflow.lakehouse.store import Lakehouse, ohlcv_arrays
from portflow.ratings.panel import frames_panel, last_values, rate
from portflow.ui import log

CHUNK_SYMBOLS = 250
#: Readers per chunk: one per core of a 2-core machine. More only fight for the GIL between
#: the GIL-free parts (the full backfill of 5,000 x 2,500, medians of 5 alternating runs:
#: 4 threads 3.83 s wall / 6.7 s CPU, 2 threads 3.37 s / 6.0 s; benchmarks/README.md).
READ_THREADS = 2
FINGERPRINT_DIGITS = 20
RATING_COLUMNS = ["recommend_all", "recommend_ma", "recommend_other"]
MATRIX_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("ns", tz="UTC")),
        ("symbol", pa.string()),
        *((c, pa.float64()) for c in RATING_COLUMNS),
        ("provider", pa.string()),
    ]
)
_KEYS = ("symbol", "provider")
_KEY_DICT = pa.dictionary(pa.int32(), pa.string())
#: What the writer is handed: MATRIX_SCHEMA with symbol and provider as dictionaries, whose
#: few distinct values parquet then encodes once per row group instead of hashing each of
#: the ~600k strings of a chunk. The file does not store this Arrow schema
#: (``store_schema=False``): its columns are plain UTF-8 parquet columns, so every reader
#: gets MATRIX_SCHEMA back, exactly as from a matrix written with strings.
_WRITE_SCHEMA = pa.schema(
    [pa.field(f.name, _KEY_DICT) if f.name in _KEYS else f for f in MATRIX_SCHEMA]
)
_META_KEY = b"portflow.fingerprints"
_STAT_KEY = b"portflow.file_stats"  # provider:symbol -> [inode, size, mtime_ns] of the file
_TS = pa.timestamp("ns", tz="UTC")

Source = tuple[str, str, str]  # (provider, timeframe, symbol)
Key = tuple[str, str]  # (symbol, provider): the matrix's row order


def _stat(path: Path) -> list[int]:
    """[inode, size, mtime_ns] of a file, [] when it is missing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _load(lake: Lakehouse, path: Path,
          old_fp: str | None) -> tuple[str, dict[str, np.ndarray] | None]:
    """(fingerprint, bars): one read of the file serves both; bars None when its bytes are
    unchanged. A missing file gives ("", None), one that does not parse ("", None) with a
    warning (step 5: left out; a repaired file is picked up by the next run)."""
    try:
        # read into Arrow's pool (mimalloc keeps freed pages per thread; glibc hands a worker
        # thread's freed buffer back to the kernel, so every read page-faulted it in anew)
        with pa.OSFile(str(path)) as fh:
            data = fh.read_buffer()
    except FileNotFoundError:
        return "", None
    fp = fingerprint_bytes(memoryview(data), FINGERPRINT_DIGITS)
    if fp == old_fp:
        return fp, None
    try:
        return fp, ohlcv_arrays(data, lambda: lake.relative(path))
    except CorruptTableError as exc:
        log(f"warning: {exc}; left out of the features matrix")
        return "", None


def _fp_key(provider: str, symbol: str) -> str:
    return f"{provider}:{symbol}"  # provider keys hold no ':' (lakehouse key rule)


@dataclass(frozen=True)
class ChunkResult:
    """One chunk: fingerprints of its present symbols (by `provider:symbol`), the keys whose
    old rows stay (sorted), and the rows of the recomputed ones (key-major, time-ordered)."""

    fingerprints: dict[str, str]
    stats: dict[str, list[int]]
    kept: list[Key]
    fresh: pa.Table
    sources: list[Source]
    unreadable: int = 0


def _key_column(values: list[str], counts: np.ndarray) -> pa.DictionaryArray:
    """`values[i]` repeated `counts[i]` times, as indices into the sorted distinct values (a
    symbol can occur twice, from two providers: a parquet dictionary holds each once)."""
    distinct = sorted(set(values))
    code = {v: i for i, v in enumerate(distinct)}
    indices = np.repeat(np.array([code[v] for v in values], dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(indices, pa.array(distinct, type=pa.string()))


def _fresh_table(keys: list[Key], bars: list[dict[str, np.ndarray]]) -> pa.Table:
    """Step 3: rows of `keys` laid out column-wise from one ratings panel (`_WRITE_SCHEMA`)."""
    if not keys:
        return _WRITE_SCHEMA.empty_table()
    panel, counts = frames_panel(bars)
    ratings = rate(panel)
    # (T, N) -> symbol-major: boolean indexing walks the transposed view row by row
    present = (np.arange(panel["close"].shape[0])[None, :] < counts[:, None])
    cols: dict[str, pa.Array] = {
        "timestamp": pa.array(np.concatenate([b["timestamp"] for b in bars]).view(
            "datetime64[ns]"), type=_TS),
        "symbol": _key_column([s for s, _ in keys], counts),
    }
    for c in RATING_COLUMNS:
        cols[c] = pa.array(getattr(ratings, c).T[present])
    cols["provider"] = _key_column([p for _, p in keys], counts)
    return pa.table(cols, schema=_WRITE_SCHEMA)


@dataclass(frozen=True)
class Previous:
    """What the stored matrix records of its build: fingerprints and file stats by
    `provider:symbol`."""

    fingerprints: dict[str, str]
    stats: dict[str, list[int]]


@dataclass(frozen=True)
class _ChunkRead:
    """A chunk's files read (step 3's first half): the ChunkResult less the rating, with
    the bars of the keys to recompute instead of their rows."""

    fingerprints: dict[str, str]
    stats: dict[str, list[int]]
    kept: list[Key]
    fresh: list[tuple[Key, dict[str, np.ndarray]]]
    sources: list[Source]
    unreadable: int

    def rated(self) -> ChunkResult:
        return ChunkResult(self.fingerprints, self.stats, self.kept,
                           _fresh_table([k for k, _ in self.fresh], [b for _, b in self.fresh]),
                           self.sources, self.unreadable)


def compute_chunk(lake: Lakehouse, chunk: list[Source], old: Previous) -> ChunkResult:
    """Step 3 for one chunk of sources (sorted by symbol); pure apart from reading files, so
    any worker that sees the data dir can run it."""
    return _read_chunk(lake, chunk, old).rated()


def _read_chunk(lake: Lakehouse, chunk: list[Source], old: Previous) -> _ChunkRead:
    fps: dict[str, str] = {}
    stats: dict[str, list[int]] = {}
    kept: list[Key] = []
    todo: list[tuple[Key, Path]] = []
    unreadable = 0
    for provider, tf, symbol in chunk:
        path = lake.ohlcv_path(provider, tf, symbol)
        stat = _stat(path)
        if not stat:
            continue
        fk = _fp_key(provider, symbol)
        stats[fk] = stat
        if old.stats.get(fk) == stat and fk in old.fingerprints:
            fps[fk] = old.fingerprints[fk]  # the very file hashed last time
            kept.append((symbol, provider))
        else:
            todo.append(((symbol, provider), path))
    fresh: list[tuple[Key, dict[str, np.ndarray]]] = []
    if todo:
        def load(part: list[tuple[Key, Path]]) -> list[tuple[str, dict[str, np.ndarray] | None]]:
            return [_load(lake, path, old.fingerprints.get(_fp_key(p, s))) for (s, p), path in part]

        # one run of files per thread, not one task per file: a waiter woken per file fights
        # the readers for the GIL (thousands of context switches per chunk)
        size = -(-len(todo) // READ_THREADS)
        with ThreadPoolExecutor(READ_THREADS) as pool:
            loaded = [r for part in pool.map(load, [todo[i:i + size] for i in
                                                   range(0, len(todo), size)]) for r in part]
        for (key, path), (fp, bars) in zip(todo, loaded, strict=True):
            fk = _fp_key(key[1], key[0])
            if not fp:  # vanished since its stat, or unreadable: nothing to rate
                stats.pop(fk)
                unreadable += path.exists()
                continue
            fps[fk] = fp
            if bars is None:
                kept.append(key)
            else:
                fresh.append((key, bars))
    kept.sort()
    return _ChunkRead(fps, stats, kept, fresh, chunk, unreadable)


def _by_key(table: pa.Table) -> dict[Key, pa.Table]:
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


def matrix_keys(path: Path) -> set[tuple[str, str]]:
    """The (provider, symbol) pairs the matrix at `path` holds rows of (from its fingerprints;
    a provider key never contains ':', a symbol may); none for a matrix that does not open:
    the backfill rebuilds it (step 5) and says so."""
    try:
        fps = read_fingerprints(path)
    except (OSError, ValueError, pa.ArrowException):  # ArrowInvalid is a ValueError
        return set()
    return {tuple(k.split(":", 1)) for k in fps}  # type: ignore[misc]


def read_fingerprints(path: Path) -> dict[str, str]:
    return _previous(path).fingerprints


def _previous(path: Path) -> Previous:
    if not path.exists():
        return Previous({}, {})
    meta = pq.read_metadata(path).metadata or {}
    fps, stats = meta.get(_META_KEY), meta.get(_STAT_KEY)
    return Previous(json.loads(fps) if fps else {}, json.loads(stats) if stats else {})


def _chunk_results(lake: Lakehouse, chunks: list[list[Source]], old: Previous,
                   executor: Executor | None, in_flight: int) -> Iterator[ChunkResult]:
    """Results in chunk order, at most `in_flight` chunks computed at a time: through
    `executor`, or locally as a pipeline — one thread reads chunks in order while another
    rates the chunk read before, so the GIL-bound reading always overlaps the GIL-free
    ratings kernel (two chunks run side by side would read at the same time, then rate)."""
    if executor is None:
        with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as rater:
            it = iter(chunks)
            ahead: deque[Future[ChunkResult]] = deque()

            def submit(chunk: list[Source]) -> None:
                read = reader.submit(_read_chunk, lake, chunk, old)
                ahead.append(rater.submit(lambda: read.result().rated()))

            for chunk in islice(it, in_flight):
                submit(chunk)
            while ahead:
                res = ahead.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    submit(nxt)
                yield res
        return
    for start in range(0, len(chunks), in_flight):
        window = list(enumerate(chunks[start:start + in_flight]))
        done: dict[int, ChunkResult] = {}
        for out in executor.map(lambda ic: compute_chunk(lake, ic[1], old), window):
            if out.error is not None:
                raise out.error
            assert out.value is not None
            done[out.item[0]] = out.value
        yield from (done[i] for i in range(len(window)))


class _Writer:
    """The matrix's one writer: row groups encoded on a background thread (parquet encoding
    releases the GIL), one group in flight, so writing overlaps the next chunk's work.
    Daily timestamps delta-encode to almost nothing; ratings take few distinct values, so
    they (and symbol) stay dictionary-encoded. Tables come in `_WRITE_SCHEMA` (fresh rows)
    or MATRIX_SCHEMA (kept rows, dictionary-encoded here)."""

    def __init__(self, path: Path) -> None:
        self._file = pq.ParquetWriter(
            path, _WRITE_SCHEMA, compression="zstd", store_schema=False,
            use_dictionary=["symbol", "provider", *RATING_COLUMNS],
            column_encoding={"timestamp": "DELTA_BINARY_PACKED"},
        )
        self._pool = ThreadPoolExecutor(1)
        self._last: Future[None] | None = None

    def write(self, table: pa.Table) -> None:
        if self._last is not None:
            self._last.result()
        self._last = self._pool.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        for name in _KEYS:
            i = table.schema.get_field_index(name)
            if table.schema.field(i).type != _KEY_DICT:
                # kept rows come as strings; the encoded chunks share one dictionary, which
                # parquet then writes once (chunks with differing ones would be re-hashed)
                table = table.set_column(i, name, pc.dictionary_encode(table.column(i)))
        self._file.write_table(table)

    def close(self, metadata: dict[bytes, bytes]) -> None:
        if self._last is not None:
            self._last.result()
        self._pool.shutdown()
        self._file.add_key_value_metadata(metadata)
        self._file.close()


def backfill(lake: Lakehouse, sources: list[Source], chunk_symbols: int = CHUNK_SYMBOLS,
             executor: Executor | None = None, in_flight: int = 2) -> dict[str, int]:
    """Steps 1-4 for `sources` = [(provider, timeframe, symbol)] of healthy symbols.
    `executor` (e.g. Ray) computes chunks; this process alone writes the matrix."""
    target = lake.features_matrix_path
    old, old_ds = _previous_matrix(lake)
    todo = sorted(set(sources), key=lambda s: (s[2], s[0]))
    chunks = [todo[i:i + chunk_symbols] for i in range(0, len(todo), chunk_symbols)]
    fps: dict[str, str] = {}
    stats: dict[str, list[int]] = {}
    counts = {"symbols": 0, "recomputed": 0, "kept": 0, "rows": 0, "unreadable": 0}
    held: list[ChunkResult] = []  # unchanged chunks, until some chunk needs writing
    with contextlib.ExitStack() as stack:
        writer: _Writer | None = None
        for res in _chunk_results(lake, chunks, old, executor, in_flight):
            fps.update(res.fingerprints)
            stats.update(res.stats)
            counts["recomputed"] += len(res.fingerprints) - len(res.kept)
            counts["kept"] += len(res.kept)
            counts["unreadable"] += res.unreadable
            held.append(res)
            if writer is None and len(res.kept) == len(res.fingerprints):
                continue
            if writer is None:
                writer = _Writer(stack.enter_context(atomic_path(target)))
            for pending in held:
                counts["rows"] += _write_chunk(lake, writer, pending, old_ds)
            held = []
        unchanged = (fps, stats) == (old.fingerprints, old.stats)
        if writer is None and unchanged and old_ds is not None:
            # step 2: the stored matrix is exactly this build's; leave it as it is
            counts.update(symbols=len(fps), rows=old_ds.count_rows())
            return counts
        if writer is None:  # symbols dropped, files re-stamped, a first empty build: rewrite
            writer = _Writer(stack.enter_context(atomic_path(target)))
            for pending in held:
                counts["rows"] += _write_chunk(lake, writer, pending, old_ds)
        writer.close({_META_KEY: json.dumps(fps, sort_keys=True).encode(),
                      _STAT_KEY: json.dumps(stats, sort_keys=True).encode()})
    counts["symbols"] = len(fps)
    return counts


def _previous_matrix(lake: Lakehouse) -> tuple[Previous, ds.Dataset | None]:
    """The last build's record and rows; none (a full rebuild) before the first build, for a
    matrix written before rows carried their provider, and (step 5) for one that does not
    open."""
    try:
        old_ds = lake.features_dataset()
    except CorruptTableError as exc:
        log(f"warning: {lake.relative(lake.features_matrix_path)} does not open"
            f" ({one_line(str(exc.__cause__ or exc), 120)}); rebuilding it from the OHLCV files")
        return Previous({}, {}), None
    if old_ds is None or "provider" not in old_ds.schema.names:
        return Previous({}, {}), None
    return _previous(lake.features_matrix_path), old_ds


def _kept_rows(old_ds: ds.Dataset, kept: list[Key]) -> dict[Key, pa.Table] | None:
    """The old matrix's rows of `kept`, or None (warned about) when they do not read."""
    # the old matrix is sorted by symbol and written one row group per chunk, so the range
    # bounds let parquet statistics skip the row groups of other chunks
    names = sorted({s for s, _ in kept})
    where = ((ds.field("symbol") >= names[0]) & (ds.field("symbol") <= names[-1])
             & ds.field("symbol").isin(names))
    try:
        return _by_key(old_ds.to_table(filter=where).cast(MATRIX_SCHEMA))
    except (OSError, ValueError, pa.ArrowException) as exc:
        log(f"warning: the old features matrix does not read ({one_line(str(exc), 120)});"
            f" recomputing {len(kept)} symbol(s) from their bars")
        return None


def _write_chunk(lake: Lakehouse, writer: _Writer, res: ChunkResult,
                 old_ds: ds.Dataset | None) -> int:
    """One row group: the chunk's kept old rows and fresh rows, in symbol order (step 5: kept
    rows that no longer read are recomputed)."""
    parts: dict[Key, pa.Table] = {}
    if res.kept and old_ds is not None:
        old_parts = _kept_rows(old_ds, res.kept)
        if old_parts is None:
            res = compute_chunk(lake, res.sources, Previous({}, {}))
        else:
            parts.update({k: old_parts[k] for k in res.kept if k in old_parts})
    if not parts:
        table = res.fresh
    else:
        parts.update(_by_key(res.fresh.cast(MATRIX_SCHEMA)))
        table = pa.concat_tables([parts[k] for k in sorted(parts)])
    if table.num_rows:
        writer.write(table)
    return table.num_rows


def snapshot(lake: Lakehouse, provider: Any, timeframe: str,
             symbols_by_universe: dict[str, list[str]], as_of: pd.Timestamp) -> dict[str, int]:
    """feature-ingest steps 1-3. Returns counts by source. Stored bars are read and rated
    `CHUNK_SYMBOLS` at a time (threaded Arrow reads), so memory stays bounded by a chunk."""
    frames = []
    counts = {"symbols": 0, "from_provider": 0, "computed": 0, "no_bars": 0, "unreadable": 0}
    for universe, symbols in sorted(symbols_by_universe.items()):
        got = provider.technicals(universe, sorted(symbols), as_of)
        if got is not None and len(got):
            got = got.assign(source="provider")
            frames.append(got)
            counts["from_provider"] += len(got)
            symbols = sorted(set(symbols) - set(got["symbol"]))
        todo = sorted(symbols)
        for start in range(0, len(todo), CHUNK_SYMBOLS):
            chunk = todo[start:start + CHUNK_SYMBOLS]
            unreadable = counts["unreadable"]
            vals = _last_ratings(lake, provider.name, timeframe, chunk, counts)
            counts["no_bars"] += len(chunk) - len(vals) - (counts["unreadable"] - unreadable)
            if len(vals):
                frames.append(vals)
                counts["computed"] += len(vals)
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


def _last_ratings(lake: Lakehouse, provider: str, timeframe: str, symbols: list[str],
                  counts: dict[str, int]) -> pd.DataFrame:
    """symbol, timestamp (its last stored bar), adx and recommend_* there, for the symbols
    of `symbols` that have stored, readable bars (an unreadable file is counted and warned
    about)."""

    def read(symbol: str) -> dict[str, np.ndarray] | None:
        try:
            return lake.read_ohlcv_arrays(provider, timeframe, symbol)
        except CorruptTableError as exc:
            counts["unreadable"] += 1
            log(f"warning: {exc}")
            return None

    with ThreadPoolExecutor(READ_THREADS) as pool:
        bars = list(pool.map(read, symbols))
    have = [(s, b) for s, b in zip(symbols, bars, strict=True) if b is not None and len(b["close"])]
    if not have:
        return pd.DataFrame()
    panel, n = frames_panel([b for _, b in have])
    vals = last_values(rate(panel), n)
    last = np.array([b["timestamp"][-1] for _, b in have], dtype="int64").view("datetime64[ns]")
    vals.insert(0, "symbol", [s for s, _ in have])
    vals.insert(1, "timestamp", pd.DatetimeIndex(last).tz_localize("UTC"))
    vals["source"] = "computed"
    return vals
