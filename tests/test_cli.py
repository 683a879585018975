"""End-to-end: the real `portflow` commands on the synthetic provider into temp dirs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from portflow.ratings._jit import COMPILE_NOTICE
from tests.conftest import AS_OF, portflow
from tests.reliability.helpers import (
    assert_no_debris,
    assert_same_lakehouse,
    lakehouse_state,
    slow_config,
    start,
)


def _run_json(data: Path, run_id: str) -> dict:  # type: ignore[type-arg]
    return json.loads((data / "runs" / run_id / "run.json").read_text())


def test_help_lists_every_seed_command(tmp_path: Path) -> None:
    out = portflow("--help", data_dir=tmp_path).stdout
    for cmd in ("flow-data", "scan-run", "data-ingest", "meta-ingest", "feature-ingest",
                "feature-backfill", "flow-production", "port-select", "port-pre-opt",
                "port-optimize", "port-report", "port-test", "port-post-analysis",
                "flow-meta-production", "runs", "profiles", "init"):
        assert cmd in out


def test_flow_data_records_the_run_and_a_rerun_fetches_nothing(phase1_data: Path) -> None:
    first = _run_json(phase1_data, "base")
    assert first["kind"] == "data" and first["status"] == "succeeded"
    counts = first["steps"]["data-ingest"]["counts"]
    assert counts["bars_fetched"] > 0 and counts["symbols_toxic"] >= 1
    assert not os.path.isabs(first["candidates"])
    cands = json.loads((phase1_data / first["candidates"]).read_text())
    assert len(cands) >= 10 and all({"symbol", "direction", "fields", "scanners"} <= set(c)
                                    for c in cands)
    assert {"value_traded", "perf_3m", "volatility_d"} <= set(cands[0]["fields"])

    again = portflow("flow-data", "--profile", "crypto_long", "--run-id", "again",
                     data_dir=phase1_data, check=True)
    assert COMPILE_NOTICE not in again.stderr  # the session's first run compiled the kernels
    second = _run_json(phase1_data, "again")["steps"]["data-ingest"]
    assert second["counts"]["bars_fetched"] == 0
    assert {v["action"] for v in second["symbols"].values()} <= {"fresh", "skipped"}
    assert all(v["reason"] for v in second["symbols"].values())


def test_toxic_symbol_is_quarantined_with_reason_and_bar(phase1_data: Path) -> None:
    h = pd.read_parquet(phase1_data / "lakehouse" / "health.parquet")
    tox = h[h["status"] == "toxic"]
    assert len(tox) >= 1
    row = tox.iloc[0]
    assert "ln 6" in row["reason"] and pd.notna(row["bar_timestamp"])
    key = row["symbol"].replace("/", "_")
    assert not (phase1_data / "lakehouse" / "ohlcv" / "synthetic" / "1d" / f"{key}.parquet").exists()
    assert list((phase1_data / "lakehouse" / "quarantine" / "synthetic" / "1d" / key).glob("*.parquet"))
    assert {"stale", "flat", "gappy", "healthy"} <= set(h["status"])


def test_bad_input_gets_one_line_and_exit_2(phase1_data: Path, config_dir: Path) -> None:
    def one_line(proc: subprocess.CompletedProcess[str]) -> str:
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, proc.stderr
        return lines[0]

    assert "already exists" in one_line(portflow("flow-data", "--profile", "crypto_long",
                                                 "--run-id", "base", data_dir=phase1_data))
    assert "not allowed" in one_line(portflow("flow-data", "--profile", "crypto_long",
                                              "--run-id", "../x", data_dir=phase1_data))
    assert "did you mean 'crypto_long'" in one_line(
        portflow("flow-data", "--profile", "crypto_lnog", data_dir=phase1_data))
    assert "YYYY-MM-DD" in one_line(portflow("runs", "list", data_dir=phase1_data,
                                             as_of="30/06/2026"))

    manifest = config_dir / "manifest.yaml"
    good = manifest.read_text()
    manifest.write_text(good.replace("freshness_hours: 12", "freshness_hour: 12"))
    msg = one_line(portflow("profiles", "list", data_dir=phase1_data, config_dir=config_dir))
    assert "defaults.freshness_hour" in msg and "freshness_hours" in msg
    manifest.write_text(good.replace("  timeframe: 1d", "  timeframe: [1d"))
    assert "manifest.yaml:" in one_line(
        portflow("profiles", "list", data_dir=phase1_data, config_dir=config_dir))
    manifest.write_text(good)
    parent = config_dir / "scanners" / "liquid_crypto.yaml"
    parent.write_text("extends: crypto_short\n" + parent.read_text())
    assert "cycle" in one_line(portflow("flow-data", "--profile", "crypto_long",
                                        data_dir=phase1_data, config_dir=config_dir))


def test_runs_and_profiles_inspection(phase1_data: Path, tmp_path: Path) -> None:
    listing = portflow("runs", "list", data_dir=phase1_data, check=True).stdout
    assert "base" in listing and "succeeded" in listing
    shown = json.loads(portflow("runs", "show", "base", "--json", data_dir=phase1_data,
                                check=True).stdout)
    sleeve_cfg = shown["config"]["sleeve_configs"]["long"]
    assert shown["run_id"] == "base" and sleeve_cfg["history_bars"] == 1500
    readable = portflow("runs", "show", "base", data_dir=phase1_data, check=True).stdout
    assert "data-ingest" in readable and "succeeded" in readable
    assert portflow("runs", "show", "../etc", data_dir=phase1_data).returncode == 2
    resolved = json.loads(portflow("profiles", "show", "crypto_short", data_dir=phase1_data,
                                   check=True).stdout)
    assert resolved["selection"]["min_winners"] == 15
    # resolved: calendar-derived values filled in, never null (SPEC §4)
    assert resolved["calendar"] == "24/7" and resolved["health"]["lookback_bars"] == 365
    assert resolved["backtest"]["commission_bps"] == 4
    assert resolved["scanner_configs"]["crypto_short"]["direction"] == "SHORT"
    proc = subprocess.run([sys.executable, "-m", "portflow.cli", "init"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "configs" / "manifest.yaml").is_file()


def test_sigkill_mid_ingestion_then_rerun_equals_an_uninterrupted_run(
    phase1_base: Path, tmp_path: Path, config_dir: Path
) -> None:
    data = tmp_path / "killed"
    proc = start("flow-data", "--profile", "crypto_long", "--jobs", "2", data_dir=data,
                 config_dir=slow_config(config_dir, 60))
    ohlcv = data / "lakehouse" / "ohlcv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(ohlcv.rglob("*.parquet"))) < 8:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    stored = len(list(ohlcv.rglob("*.parquet")))
    assert 8 <= stored < 100, f"kill did not land mid-ingestion ({stored} files)"

    listing = portflow("runs", "list", data_dir=data, check=True).stdout
    assert "killed (process gone)" in listing  # not "running" forever

    portflow("flow-data", "--profile", "crypto_long", data_dir=data, check=True)
    assert_no_debris(data / "lakehouse")
    assert_same_lakehouse(lakehouse_state(data), lakehouse_state(phase1_base))


def _fake_runs(data: Path, ids: list[str]) -> None:
    for i, run_id in enumerate(ids):
        rec = {"run_id": run_id, "kind": "data", "profile": "crypto_long", "status": "succeeded",
               "as_of": AS_OF, "started_at": f"2026-07-01T00:00:0{i}+00:00",
               "steps": {"data-ingest": {"status": "succeeded", "seconds": 1.5, "counts": {
                   "symbols_total": 120, "bars_fetched": 177000, "symbols_toxic": 1}}}}
        (data / "runs" / run_id).mkdir(parents=True)
        (data / "runs" / run_id / "run.json").write_text(json.dumps(rec))


def test_runs_list_never_cuts_an_id_piped_or_on_a_narrow_terminal(tmp_path: Path) -> None:
    import pty

    ids = ["20260701T000000Z-" + "very_long_profile_name_" * 4 + "x", "short"]
    _fake_runs(tmp_path, ids)
    piped = portflow("runs", "list", data_dir=tmp_path, check=True).stdout
    for run_id in ids:  # piped: one row per run at its natural width
        assert any(run_id in line and "177000 bars" in line for line in piped.splitlines())
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFLOW_")}
    proc = subprocess.run([sys.executable, "-m", "portflow.cli", "--data-dir", str(tmp_path),
                           "runs", "list"], stdout=follower, stderr=subprocess.PIPE,
                          env={**env, "COLUMNS": "150", "TERM": "xterm"}, timeout=120)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.returncode == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())
    lines = text.splitlines()
    assert max(len(x) for x in lines) <= 150  # fits the terminal
    assert any(ids[0] in line for line in lines)  # the id is whole on one line


@pytest.mark.slow
def test_the_first_run_says_the_kernels_are_compiling_once(tmp_path: Path) -> None:
    code = ("import numpy as np; from portflow.ratings.panel import rate; "
            "x = np.linspace(1, 2, 300)[:, None]; "
            "rate({f: x for f in ('open', 'high', 'low', 'close', 'volume')})")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True)
    assert first.stderr.count(COMPILE_NOTICE) == 1
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert COMPILE_NOTICE not in second.stderr


def test_a_data_run_that_finds_no_candidates_fails_and_is_never_a_default(
    tmp_path: Path,
) -> None:
    proc = portflow("flow-data", "--profile", "crypto_long", "--run-id", "empty",
                    data_dir=tmp_path, as_of="1990-01-01")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "found no candidates as of 1990-01-01" in proc.stderr.splitlines()[-1]
    rec = _run_json(tmp_path, "empty")
    assert rec["status"] == "failed" and "no candidates" in rec["failure_reason"]
    prod = portflow("flow-production", "--profile", "crypto_long", data_dir=tmp_path,
                    as_of="1990-01-01")
    assert prod.returncode == 2 and "no succeeded data run" in prod.stderr


def test_a_bad_provider_option_is_exit_2_at_profiles_show(config_dir: Path, tmp_path: Path) -> None:
    path = config_dir / "manifest.yaml"
    data = yaml.safe_load(path.read_text())
    data["defaults"]["provider"]["latency_ms"] = -5
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = portflow("profiles", "show", "crypto_long", data_dir=tmp_path / "d", config_dir=config_dir)
    assert proc.returncode == 2 and "defaults.provider.latency_ms" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_files_example_runs_offline_end_to_end(tmp_path: Path) -> None:
    """The packaged files sample through flow-data twice (the second run fetches nothing)."""
    data = tmp_path / "data"
    portflow("flow-data", "--profile", "files_example", "--run-id", "f1", data_dir=data, check=True)
    portflow("flow-data", "--profile", "files_example", "--run-id", "f2", data_dir=data, check=True)
    counts = json.loads((data / "runs" / "f2" / "run.json").read_text())["steps"]["data-ingest"]["counts"]
    assert counts["bars_fetched"] == 0 and counts["symbols_total"] == 12
    assert (data / "lakehouse" / "ohlcv" / "files" / "1d" / "SMPL.B.parquet").exists()
    matrix = pd.read_parquet(data / "lakehouse" / "features_matrix.parquet")
    assert set(matrix["provider"]) == {"files"} and matrix["symbol"].nunique() == 12


@pytest.mark.slow
def test_files_example_through_flow_production(tmp_path: Path) -> None:
    data = tmp_path / "data"
    portflow("flow-data", "--profile", "files_example", data_dir=data, check=True)
    portflow("flow-production", "--profile", "files_example", "--skip-validation",
             "--skip-analysis", "--run-id", "p1", data_dir=data, check=True)
    w = pd.read_csv(data / "runs" / "p1" / "weights.csv")
    assert set(w["method"]) == {"hrp", "min_var", "max_sharpe", "equal_weight", "risk_parity"}
    assert w.groupby("method")["weight"].sum().round(8).eq(1).all()
