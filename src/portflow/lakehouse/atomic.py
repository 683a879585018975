"""Atomic file writes and an inter-process lock.

Every file portflow stores is written to a temp file in the same folder, flushed and fsynced,
then `os.replace`d over the target: a crash or SIGKILL at any moment leaves either the old or
the new version, never a torn file. Temp files carry a `.tmp-` prefix so a later run can sweep
the leftovers of a killed one (:func:`sweep_temp_files`).

`tempfile.mkstemp` creates its file with mode 0600 whatever the umask; the temp file is given
the mode a plain ``open()`` would have (0666 minus the process umask) before it replaces the
target, so a data dir shared by a group stays shared.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from portflow.errors import UsageError

TEMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any writer thread
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success it is fsynced and renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + target.name + ".", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # The file is durable before it replaces the target; the rename itself is atomic,
        # so a crash at any point leaves the old or the new version, never a torn file.
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pd.DataFrame, target: Path, index: bool = False) -> None:
    """Write `df` to `target` atomically (its index kept only when `index`)."""
    write_table(pa.Table.from_pandas(df, preserve_index=index), target)


def write_table(table: pa.Table, target: Path, **options: Any) -> None:
    """Write an Arrow table to `target` atomically (zstd unless `options` say otherwise;
    they are ``pyarrow.parquet.write_table``'s)."""
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **{"compression": "zstd", **options})


def write_text(text: str, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(data: bytes, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def jsonable(obj: Any) -> Any:
    """`obj` with numpy scalars as Python numbers, NaN/inf and NA as None, timestamps as ISO
    strings — recursively — so every JSON file portflow writes is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return obj


def write_json(obj: Any, target: Path) -> None:
    """Strict JSON (see :func:`jsonable`), indented, written atomically."""
    write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n", target)


def fingerprint_bytes(data: bytes | memoryview, digits: int = 16) -> str:
    """:func:`fingerprint` of a file's bytes already in memory (the same digest)."""
    return hashlib.sha256(data).hexdigest()[:digits]


def fingerprint(path: Path, digits: int = 16) -> str:
    """Content fingerprint of a file: the first `digits` hex digits of its sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:digits]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (flock) for read-modify-write of a shared table, held across
    processes and threads (each acquisition opens its own descriptor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def try_lock(path: Path) -> IO[str] | None:
    """Non-blocking exclusive flock on `path`: the open handle that holds it (close it to
    release; the lock also dies with the process), or None when another process holds it."""
    fh = open(path, "a+")  # noqa: SIM115 - the handle *is* the lock, returned to the caller
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def writable_dir(folder: Path, what: str) -> Path:
    """`folder`, created if missing; a UsageError (one line, exit 2) when it cannot be: the
    data dir is a file, read-only, or on a read-only file system."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    except OSError as exc:
        raise UsageError(
            f"{what} '{folder}' is not a writable folder ({exc.strerror or exc});"
            " fix its permissions or pass another --data-dir / PORTFLOW_DATA_DIR"
        ) from None
    return folder


def sweep_temp_files(root: Path) -> int:
    """Delete temp files left by a killed writer under `root`; returns how many."""
    n = 0
    if not root.is_dir():
        return 0
    for p in root.rglob(TEMP_PREFIX + "*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n
