"""Filesystem trouble and corrupt files on real CLI runs (SPEC §2, §4): derived tables rebuild
themselves with a warning; the others give exit 3 naming the file and the repair; an
unreadable run is listed as such; one corrupt OHLCV file fails only its symbol."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import portflow
from tests.reliability.helpers import assert_no_debris, run_json


def _truncate(path: Path, size: int = 100) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


def _one_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stderr[-800:]
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) >= 1 and len(lines[-1]) <= 420
    return lines[-1]


@pytest.mark.slow
def test_a_truncated_features_matrix_is_rebuilt_with_a_warning(phase1_data: Path) -> None:
    matrix = phase1_data / "lakehouse" / "features_matrix.parquet"
    before = pd.read_parquet(matrix)
    _truncate(matrix)
    proc = portflow("flow-data", "--profile", "crypto_long", "--run-id", "c1",
                    data_dir=phase1_data)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "features_matrix.parquet does not open" in proc.stderr and "rebuilding" in proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(matrix), before)  # rebuilt == built
    assert_no_debris(phase1_data / "lakehouse")


def test_truncated_health_and_symbols_give_exit_3_with_the_repair(phase1_data: Path) -> None:
    lake = phase1_data / "lakehouse"
    _truncate(lake / "symbols.parquet")
    line = _one_line(portflow("flow-production", "--profile", "crypto_long", "--skip-validation",
                              "--skip-analysis", "--run-id", "p1", data_dir=phase1_data), 3)
    assert "lakehouse/symbols.parquet is unreadable" in line and "meta-ingest" in line
    assert run_json(phase1_data, "p1")["status"] == "failed"
    _truncate(lake / "health.parquet")
    line = _one_line(portflow("flow-data", "--profile", "crypto_long", data_dir=phase1_data), 3)
    assert "lakehouse/health.parquet is unreadable" in line and "data-ingest" in line
    assert (lake / "health.parquet").stat().st_size == 100  # never replaced: nothing lost


@pytest.mark.slow
def test_one_corrupt_ohlcv_file_fails_only_its_symbol(phase1_data: Path) -> None:
    cands = json.loads((phase1_data / "export" / "base" / "candidates.json").read_text())
    health = pd.read_parquet(phase1_data / "lakehouse" / "health.parquet").set_index("symbol")
    victim = next(c["symbol"] for c in cands if "crypto_long" in c["scanners"]
                  and health.loc[c["symbol"], "status"] == "healthy")
    path = next((phase1_data / "lakehouse" / "ohlcv").rglob(
        f"{victim.replace('/', '_')}.parquet"))
    _truncate(path)
    proc = portflow("flow-data", "--profile", "crypto_long", "--run-id", "c3",
                    data_dir=phase1_data)
    assert proc.returncode == 0, proc.stderr[-800:]
    rec = run_json(phase1_data, "c3")
    ingest = rec["steps"]["data-ingest"]
    assert ingest["symbols"][victim]["action"] == "failed"
    assert ingest["counts"]["symbols_failed"] == 1
    row = pd.read_parquet(phase1_data / "lakehouse" / "health.parquet").set_index("symbol").loc[victim]
    assert row["status"] == "unreadable" and "delete it and re-run" in row["reason"]
    matrix = pd.read_parquet(phase1_data / "lakehouse" / "features_matrix.parquet")
    assert victim not in set(matrix["symbol"])  # not healthy: left out, nothing crashed

    prod = portflow("flow-production", "--profile", "crypto_long", "--skip-validation",
                    "--skip-analysis", "--run-id", "p3", data_dir=phase1_data)
    assert prod.returncode == 0, prod.stderr[-800:]
    hj = json.loads((phase1_data / "runs" / "p3" / "health.json").read_text())["candidates"]
    dropped = next(c for c in hj if c["symbol"] == victim)
    assert not dropped["healthy"] and "unreadable" in dropped["reasons"][0]

    path.unlink()  # the repair the reason names
    portflow("data-ingest", "--profile", "crypto_long", data_dir=phase1_data, check=True)
    row = pd.read_parquet(phase1_data / "lakehouse" / "health.parquet").set_index("symbol").loc[victim]
    assert row["status"] == "healthy"


def test_an_unreadable_run_json_is_listed_and_named(phase1_data: Path) -> None:
    (phase1_data / "runs" / "base" / "run.json").write_text('{"run_id": "base", "kind": "da')
    listing = portflow("runs", "list", data_dir=phase1_data, check=True).stdout
    row = next(x for x in listing.splitlines() if " base " in x)
    assert "unreadable" in row
    line = _one_line(portflow("runs", "show", "base", data_dir=phase1_data), 3)
    assert "runs/base/run.json is unreadable" in line
    # with its only data run unreadable, Phase 2 has no default: a usage error, not a crash
    line = _one_line(portflow("flow-production", "--profile", "crypto_long",
                              data_dir=phase1_data), 2)
    assert "no succeeded data run" in line


def test_a_data_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_text("not a folder")
    for args in (("flow-data", "--profile", "crypto_long"), ("runs", "list")):
        assert "is a file, not a folder" in _one_line(portflow(*args, data_dir=f), 2)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run the CLI as an unprivileged user")
def test_a_read_only_data_dir_is_a_usage_error() -> None:
    top = Path(tempfile.mkdtemp(prefix="portflow-ro-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        data = top / "data"
        (data / "runs").mkdir(parents=True)
        os.chmod(data, 0o555)
        os.chmod(data / "runs", 0o555)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFLOW_")}
        if subprocess.run([*nobody, "-c", "import portflow.cli"], capture_output=True, env=env,
                          cwd=top, timeout=120).returncode != 0:
            pytest.skip("the unprivileged user cannot import portflow from this checkout"
                        " (e.g. a clone inside a folder only root may enter)")
        cmd = [*nobody, "-m", "portflow.cli", "--data-dir", str(data), "--as-of", "2026-06-30",
               "flow-data", "--profile", "crypto_long"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                              cwd=top)
        line = _one_line(proc, 2)
        assert "is not a writable folder" in line and str(data) in line
        assert not any((data / "runs").iterdir())
    finally:
        shutil.rmtree(top)
