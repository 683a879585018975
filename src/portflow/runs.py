"""Run workspaces: ``runs/<RUN_ID>/`` and its ``run.json`` (SPEC §4).

1. A run id matches ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`` and is not made of dots only, so
   it can never escape ``runs/``. The default id is ``YYYYMMDDTHHMMSSZ-<profile>`` (UTC) with
   ``-2``, ``-3``, ... appended when taken; the folder is created with ``mkdir`` (atomic), so
   two runs can never claim the same id.
2. ``run.json`` is rewritten atomically after every change: status ``running`` →
   ``succeeded`` / ``failed``, and each step's ``{status, seconds, counts}``.
3. Every path recorded in a run file is relative to the data dir.
4. The files a run holds are declared once, in :data:`ARTIFACTS` (name → file, format, the
   step that writes it); steps read and write them only through :meth:`Run.load` and
   :meth:`Run.save`, never through path literals (Kedro's DataCatalog).
5. A process writing a run holds its lock (``runs/<RUN_ID>/.run.lock``, an flock that dies
   with the process) from creation, or from the start of a step re-run, to the end of its
   lifecycle; a second writer of the same run is refused instead of interleaving.
6. Creating a run sweeps the temp files that killed runs left in their workspaces (and in
   their ``export/`` folders): a run whose lock can be taken has no live writer, so its
   ``.tmp-*`` files are debris of an interrupted atomic write.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pandas as pd

from portflow.errors import CorruptTableError, PortflowError, RunError, UsageError, one_line
from portflow.lakehouse import atomic
from portflow.resources import PeakRss
from portflow.signals import Signalled


@dataclass(frozen=True)
class Artifact:
    """One file of a run workspace.

    format: ``json`` (any JSON value), ``frame`` (parquet DataFrame with a UTC ``timestamp``
    index), ``table`` (parquet DataFrame, no index), ``csv`` (DataFrame, floats as ``%.12g``,
    ``\\n`` line ends, no index), ``text`` (str), ``png`` (bytes).
    step: the command that writes it (named in the error when it is missing).
    """

    file: str
    format: str
    step: str


ARTIFACTS: dict[str, Artifact] = {
    # production (SPEC §4)
    "health": Artifact("health.json", "json", "port-select"),
    "candidates": Artifact("candidates.parquet", "table", "port-select"),
    "returns": Artifact("returns.parquet", "frame", "port-select"),
    "selection": Artifact("selection.json", "json", "port-select"),
    "atoms": Artifact("atoms.json", "json", "port-pre-opt"),
    "synthetic_returns": Artifact("synthetic_returns.parquet", "frame", "port-pre-opt"),
    "clusters": Artifact("clusters.json", "json", "port-pre-opt"),
    "antifragility": Artifact("antifragility.json", "json", "port-pre-opt"),
    "regime": Artifact("regime.json", "json", "port-pre-opt"),
    "weights": Artifact("weights.csv", "csv", "port-optimize"),
    "validation_returns": Artifact("validation/returns.parquet", "frame", "port-test"),
    "validation_metrics": Artifact("validation/metrics.csv", "csv", "port-test"),
    "validation_windows": Artifact("validation/windows.parquet", "table", "port-test"),
    "validation_drift": Artifact("validation/drift.parquet", "table", "port-test"),
    "validation_vectorbt": Artifact("validation/returns_vectorbt.parquet", "frame",
                                    "port-test --engine vectorbt"),
    "post_analysis": Artifact("post_analysis.json", "json", "port-post-analysis"),
    "plot_cluster_map": Artifact("plots/cluster_map.png", "png", "port-post-analysis"),
    "plot_factor_map": Artifact("plots/factor_map.png", "png", "port-post-analysis"),
    "plot_drift_monitor": Artifact("plots/drift_monitor.png", "png", "port-post-analysis"),
    "plot_cluster_stability": Artifact("plots/cluster_stability.png", "png",
                                       "port-post-analysis"),
    "report": Artifact("report.html", "text", "port-report"),
    # meta (SPEC §4, §7)
    "sleeve_weights": Artifact("sleeve_weights.csv", "csv", "flow-meta-production"),
    "meta_returns": Artifact("meta_returns.parquet", "frame", "flow-meta-production"),
}

def csv_text(frame: pd.DataFrame) -> str:
    """The text of a `csv` artifact: no index, floats as %.12g, \\n line ends."""
    return frame.to_csv(index=False, float_format="%.12g", lineterminator="\n")


RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
KINDS = ("data", "production", "meta")
NOT_AVAILABLE = "not available yet"
UNREADABLE = "unreadable"
LOCK_NAME = ".run.lock"


def validate_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id) or set(run_id) <= {"."} or ".." in run_id:
        raise UsageError(
            f"run id '{run_id}' is not allowed; use letters, digits, '_', '.', '-'"
            " (start with a letter or digit, at most 128 characters)"
        )
    return run_id


def now_utc() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else pd.Timestamp(ts).isoformat()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("portflow", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "numba"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


@dataclass
class Run:
    """One run workspace. Create with :meth:`create`, reopen with :meth:`open`."""

    data_dir: Path
    run_id: str
    record: dict[str, Any] = field(default_factory=dict)
    _lock: IO[str] | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.data_dir / "runs" / self.run_id

    @property
    def json_path(self) -> Path:
        return self.path / "run.json"

    def file(self, name: str) -> Path:
        """Path of a file in the workspace: an artifact name of ARTIFACTS or a relative path."""
        art = ARTIFACTS.get(name)
        return self.path / (art.file if art is not None else name)

    def has(self, name: str) -> bool:
        return self.file(name).exists()

    def save(self, name: str | None = None, obj: Any = None) -> Path:
        """Write artifact `name` atomically in its declared format (rule 4); with no
        arguments, rewrite run.json."""
        if name is None:
            atomic.write_json(self.record, self.json_path)
            return self.json_path
        art = ARTIFACTS[name]
        path = self.path / art.file
        if art.format == "json":
            atomic.write_json(obj, path)
        elif art.format == "frame":
            atomic.write_parquet(obj.rename_axis("timestamp"), path, index=True)
        elif art.format == "table":
            atomic.write_parquet(obj.reset_index(drop=True), path)
        elif art.format == "csv":
            atomic.write_text(csv_text(obj), path)
        elif art.format == "text":
            atomic.write_text(str(obj), path)
        elif art.format == "png":
            atomic.write_bytes(bytes(obj), path)
        else:  # pragma: no cover - the table above is the only source of formats
            raise ValueError(f"unknown artifact format {art.format}")
        return path

    def load(self, name: str) -> Any:
        """Read artifact `name`; a missing one is a RunError naming the step that writes it."""
        art = ARTIFACTS[name]
        path = self.path / art.file
        if not path.exists():
            raise RunError(
                f"run '{self.run_id}' has no {art.file}; run {art.step} --run-id {self.run_id}"
                " first"
            )
        if art.format == "json":
            return json.loads(path.read_text())
        if art.format in ("frame", "table"):
            return pd.read_parquet(path)
        if art.format == "csv":
            return pd.read_csv(path)
        if art.format == "png":
            return path.read_bytes()
        return path.read_text(encoding="utf-8")

    def relative(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.data_dir.resolve()))

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        data_dir: Path,
        kind: str,
        profile: str,
        as_of: pd.Timestamp,
        config: dict[str, Any],
        config_hash: str,
        run_id: str | None = None,
        extra: dict[str, Any] | None = None,
        parent: Path | None = None,
    ) -> Run:
        """Claim a new run folder (rule 1) under `parent` (default: data_dir/runs)."""
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind}")
        runs_dir = atomic.writable_dir(parent if parent is not None else data_dir / "runs",
                                       "runs folder")
        if parent is None:
            sweep_abandoned(data_dir)
        started = now_utc()
        if run_id is not None:
            validate_run_id(run_id)
            try:
                (runs_dir / run_id).mkdir()
            except FileExistsError:
                raise RunError(
                    f"run id '{run_id}' already exists in {runs_dir}; choose another --run-id"
                    " or leave it out for a fresh one"
                ) from None
            chosen = run_id
        else:
            base = f"{started:%Y%m%dT%H%M%SZ}-{profile}"
            validate_run_id(base)
            chosen, n = base, 1
            while True:
                try:
                    (runs_dir / chosen).mkdir()
                    break
                except FileExistsError:
                    n += 1
                    chosen = f"{base}-{n}"
        run = cls(data_dir=data_dir, run_id=chosen)
        if parent is not None:
            run.run_id = str((runs_dir / chosen).relative_to(data_dir / "runs"))
        run.hold()
        run.record = {
            "run_id": run.run_id,
            "kind": kind,
            "profile": profile,
            "status": "running",
            "failure_reason": None,
            "started_at": iso(started),
            "ended_at": None,
            "as_of": f"{as_of:%Y-%m-%d}",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **({"data_run": None} if kind == "production" else {}),
            **(extra or {}),
            "steps": {},
            "config": config,
            "config_hash": config_hash,
            "inputs": {},
            "versions": _versions(),
        }
        run.save()
        return run

    @classmethod
    def open(cls, data_dir: Path, run_id: str) -> Run:
        for part in run_id.split("/"):
            validate_run_id(part)
        run = cls(data_dir=data_dir, run_id=run_id)
        if not run.json_path.is_file():
            raise RunError(
                f"run '{run_id}' not found under {data_dir / 'runs'}; see 'portflow runs list'"
            )
        run.record = read_record(run.json_path)
        return run

    # -- steps ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Record a step: yields its `counts` dict to fill; failures mark the step failed.
        Wall `seconds` and `peak_rss_gib` (this process's peak memory during the step,
        :mod:`portflow.resources`) are recorded either way."""
        counts: dict[str, Any] = {}
        entry: dict[str, Any] = {"status": "running", "seconds": None, "counts": counts}
        self.record["steps"][name] = entry
        self.save()
        peak = PeakRss()
        t0 = time.perf_counter()
        try:
            with peak:
                yield counts
        except BaseException as exc:
            entry["status"] = "failed"
            entry["error"] = _one_line(exc)
            raise
        else:
            entry["status"] = "succeeded"
        finally:
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            entry["peak_rss_gib"] = round(peak.gib, 3)
            self.save()

    def not_available(self, name: str) -> None:
        self.record["steps"][name] = {"status": NOT_AVAILABLE, "seconds": 0.0, "counts": {}}
        self.save()

    def add_inputs(self, paths: list[Path]) -> None:
        for p in paths:
            if p.exists():
                self.record["inputs"][self.relative(p)] = atomic.fingerprint(p)
        self.save()

    def finish(self, exc: BaseException | None = None) -> None:
        self.record["status"] = "failed" if exc is not None else "succeeded"
        self.record["failure_reason"] = None if exc is None else _one_line(exc)
        self.record["ended_at"] = iso(now_utc())
        self.save()

    def hold(self) -> None:
        """Take the run's lock (rule 4); RunError when another live process holds it."""
        if self._lock is None:
            self._lock = atomic.try_lock(self.path / LOCK_NAME)
            if self._lock is None:
                raise RunError(f"run '{self.run_id}' is being written by another process;"
                               " wait for it to end (see 'portflow runs list')")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @contextlib.contextmanager
    def lifecycle(self) -> Iterator[Run]:
        """Hold the run (rule 4); mark it succeeded on exit, failed (with the reason) on any
        error, Ctrl-C and SIGTERM included."""
        self.hold()
        try:
            yield self
        except BaseException as exc:
            self.finish(exc)
            raise
        else:
            self.finish()
        finally:
            self.release()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, Signalled):
        return exc.reason
    if isinstance(exc, PortflowError):
        return one_line(str(exc))
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return one_line(f"{type(exc).__name__}: {exc}")


def sweep_abandoned(data_dir: Path) -> int:
    """Rule 5: delete the temp files of runs no live process holds; returns how many."""
    runs_dir, export = data_dir / "runs", data_dir / "export"
    dirty = {p.relative_to(runs_dir).parts[0] for p in runs_dir.glob(f"*/**/{atomic.TEMP_PREFIX}*")}
    dirty |= {p.parent.name for p in export.glob(f"*/{atomic.TEMP_PREFIX}*")}
    swept = 0
    for run_id in sorted(dirty):
        if not (runs_dir / run_id).is_dir():
            continue
        lock = atomic.try_lock(runs_dir / run_id / LOCK_NAME)
        if lock is None:  # a live writer: its temp files are in flight
            continue
        with lock:
            swept += atomic.sweep_temp_files(runs_dir / run_id)
            swept += atomic.sweep_temp_files(export / run_id)
    return swept


def is_orphaned(rec: dict[str, Any]) -> bool:
    """A run recorded `running` whose process on this host is gone (killed before it could
    record its end)."""
    if rec.get("status") != "running" or rec.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(rec.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OSError):
        return False
    return False


def read_record(path: Path) -> dict[str, Any]:
    """A run.json as a dict; CorruptTableError (exit 3) naming it when it does not parse."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rec, dict) or not isinstance(rec.get("run_id"), str):
            raise ValueError("not a run record")
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        folder = path.parent
        raise CorruptTableError(
            f"runs/{folder.name}/run.json is unreadable ({one_line(str(exc), 80)}); the run's"
            f" other files are still in runs/{folder.name}/ - restore run.json from a backup,"
            " or delete the folder if the run is not needed"
        ) from None
    return rec


def list_runs(data_dir: Path) -> list[dict[str, Any]]:
    """Every top-level run's record, newest first by recorded start time. A run whose
    run.json does not parse is listed with status `unreadable` and the reason."""
    out = []
    runs_dir = data_dir / "runs"
    for p in sorted(runs_dir.glob("*/run.json")) if runs_dir.is_dir() else []:
        try:
            out.append(read_record(p))
        except CorruptTableError as exc:
            out.append({"run_id": p.parent.name, "kind": None, "profile": None,
                        "status": UNREADABLE, "failure_reason": str(exc), "steps": {}})
    out.sort(key=lambda r: str(r.get("started_at") or ""), reverse=True)
    return out


def newest_data_run(data_dir: Path, profiles: list[str], require_step: str,
                    clock: pd.Timestamp) -> str | None:
    """The default data run at `clock` (SPEC §2): among the succeeded data runs of any of
    `profiles` (a sleeve and the metas containing it) whose `require_step` succeeded, the one
    with the latest `as_of` not after the clock; ties go to the latest recorded start time
    (never file times, never run ids). None when there is none."""
    day = f"{pd.Timestamp(clock):%Y-%m-%d}"
    best: tuple[str, str] | None = None
    found = None
    for rec in list_runs(data_dir):
        if rec.get("kind") != "data" or rec.get("status") != "succeeded":
            continue
        if rec.get("profile") not in profiles or not isinstance(rec.get("as_of"), str):
            continue
        if rec.get("steps", {}).get(require_step, {}).get("status") != "succeeded":
            continue
        key = (rec["as_of"], str(rec.get("started_at") or ""))
        if rec["as_of"] <= day and (best is None or key > best):
            best, found = key, str(rec["run_id"])
    return found
