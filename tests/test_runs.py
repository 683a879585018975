"""Run workspaces: the default data run at a clock, unreadable run.json files, the run lock
and the sweep of temp files that killed runs left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from portflow.errors import CorruptTableError, RunError
from portflow.lakehouse import atomic
from portflow.runs import Run, list_runs, newest_data_run, sweep_abandoned

DAY = pd.Timestamp("2026-06-30", tz="UTC")


def _data_run(data: Path, run_id: str, as_of: str, started: str, profile: str = "p",
              status: str = "succeeded", step: str = "succeeded") -> None:
    rec = {"run_id": run_id, "kind": "data", "profile": profile, "status": status,
           "as_of": as_of, "started_at": started,
           "steps": {"scan-run": {"status": "succeeded"}, "data-ingest": {"status": step}}}
    atomic.write_json(rec, data / "runs" / run_id / "run.json")


def test_default_data_run_is_the_latest_as_of_not_after_the_clock(tmp_path: Path) -> None:
    # ids and start times deliberately disagree with the as_of order: only as_of decides
    _data_run(tmp_path, "z-early", "2026-06-01", "2026-07-05T00:00:00+00:00")
    _data_run(tmp_path, "a-late", "2026-06-30", "2026-07-01T00:00:00+00:00")
    _data_run(tmp_path, "m-future", "2026-07-15", "2026-07-02T00:00:00+00:00")
    _data_run(tmp_path, "failed", "2026-06-29", "2026-07-09T00:00:00+00:00", status="failed")
    _data_run(tmp_path, "no-ingest", "2026-06-30", "2026-07-09T00:00:00+00:00", step="failed")
    _data_run(tmp_path, "other", "2026-06-30", "2026-07-09T00:00:00+00:00", profile="q")
    find = lambda clock, step="data-ingest": newest_data_run(  # noqa: E731
        tmp_path, ["p", "meta_p"], step, pd.Timestamp(clock, tz="UTC"))
    assert find("2026-06-30") == "a-late"
    assert find("2026-07-20") == "m-future"
    assert find("2026-06-15") == "z-early"
    assert find("2026-05-31") is None
    assert find("2026-06-30", "scan-run") == "no-ingest"  # its scan did succeed, started later
    # a meta data run containing the sleeve counts; a tie on as_of goes to the later start
    _data_run(tmp_path, "meta-tie", "2026-06-30", "2026-07-03T00:00:00+00:00", profile="meta_p")
    assert find("2026-06-30") == "meta-tie"


def test_an_unreadable_run_json_is_listed_as_such_and_named_by_open(tmp_path: Path) -> None:
    _data_run(tmp_path, "good", "2026-06-30", "2026-07-01T00:00:00+00:00")
    for run_id, text in (("torn", '{"run_id": "torn", "kind": "da'), ("list", "[1, 2]"),
                         ("binary", "\udcff")):
        folder = tmp_path / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "run.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    listed = {r["run_id"]: r for r in list_runs(tmp_path)}
    assert set(listed) == {"good", "torn", "list", "binary"}
    for run_id in ("torn", "list", "binary"):
        assert listed[run_id]["status"] == "unreadable"
        assert f"runs/{run_id}/run.json" in listed[run_id]["failure_reason"]
        with pytest.raises(CorruptTableError, match=f"runs/{run_id}/run.json is unreadable"):
            Run.open(tmp_path, run_id)
    assert newest_data_run(tmp_path, ["p"], "data-ingest", DAY) == "good"


def _new_run(data: Path, run_id: str) -> Run:
    return Run.create(data, "data", "p", DAY, {}, "h", run_id=run_id)


def test_a_run_held_by_a_live_process_refuses_a_second_writer(tmp_path: Path) -> None:
    run = _new_run(tmp_path, "r1")
    code = ("import sys; from pathlib import Path; from portflow.runs import Run\n"
            "try:\n    Run.open(Path(sys.argv[1]), 'r1').hold()\n"
            "except Exception as e:\n    print(type(e).__name__, e)")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                           text=True, check=True).stdout
    assert other.startswith("RunError") and "another process" in other
    run.release()
    again = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                           text=True, check=True).stdout
    assert again == ""
    # the lifecycle of a held run works; a second holder fails it
    with pytest.raises(RunError), run.lifecycle():
        Run.open(tmp_path, "r1").hold()
    assert json.loads(run.json_path.read_text())["status"] == "failed"


def test_creating_a_run_sweeps_temp_files_of_abandoned_runs_only(tmp_path: Path) -> None:
    live = _new_run(tmp_path, "live")
    dead = _new_run(tmp_path, "dead")
    dead.release()  # what a SIGKILL does: the lock dies with the process
    debris = [tmp_path / "runs" / "dead" / ".tmp-weights.csv.x1",
              tmp_path / "runs" / "dead" / "sleeves" / "a" / ".tmp-run.json.x2",
              tmp_path / "export" / "dead" / ".tmp-candidates.json.x3"]
    in_flight = tmp_path / "runs" / "live" / ".tmp-run.json.x4"
    for p in [*debris, in_flight]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("partial")
    assert sweep_abandoned(tmp_path) == 3
    assert not any(p.exists() for p in debris) and in_flight.exists()
    live.release()
    _new_run(tmp_path, "next")  # a new run sweeps by itself
    assert not in_flight.exists()
