"""Ctrl-C and SIGTERM (SPEC §2): the run ends as failed (`interrupted` / `terminated`), one
stderr line, exit 130 / 143, nothing half-written, and the next run completes the work."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import portflow
from tests.reliability.helpers import (
    LATER,
    assert_no_debris,
    assert_same_lakehouse,
    lakehouse_state,
    run_json,
    slow_config,
    start,
    wait_for,
)


def _signal_mid_ingest(data: Path, config_dir: Path, signum: int, run_id: str,
                       after_s: float = 1.0) -> tuple[int, str]:
    proc = start("data-ingest", "--profile", "crypto_long", "--jobs", "1", "--run-id", run_id,
                 data_dir=data, config_dir=config_dir, as_of=LATER)
    wait_for(data / "runs" / run_id / "run.json")
    time.sleep(after_s)
    assert proc.poll() is None, "data-ingest ended before the signal"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize(("signum", "code", "reason"),
                         [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_fails_the_run_with_its_reason_and_exit_code(
    phase1_data: Path, config_dir: Path, signum: int, code: int, reason: str
) -> None:
    cfg = slow_config(config_dir, 50)
    rc, err = _signal_mid_ingest(phase1_data, cfg, signum, "sig")
    assert rc == code, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines[-1].startswith(f"portflow: {reason} by ") and "Traceback" not in err
    rec = run_json(phase1_data, "sig")
    assert rec["status"] == "failed" and rec["failure_reason"] == reason
    assert rec["steps"]["data-ingest"]["status"] == "failed" and rec["ended_at"]
    assert_no_debris(phase1_data / "lakehouse")
    # the lakehouse writer lock and the run lock died with the run: the next run goes on
    portflow("data-ingest", "--profile", "crypto_long", "--run-id", "after", data_dir=phase1_data,
             config_dir=config_dir, as_of=LATER, check=True)
    assert run_json(phase1_data, "after")["status"] == "succeeded"


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.3, 1.5, 3.0, 4.5])
def test_an_interrupted_ingest_then_a_rerun_equals_an_undisturbed_one(
    phase1_base: Path, tmp_path: Path, config_dir: Path, after_s: float
) -> None:
    import shutil

    cfg = slow_config(config_dir, 50)
    ref, data = tmp_path / "ref", tmp_path / "data"
    shutil.copytree(phase1_base, ref)
    shutil.copytree(phase1_base, data)
    portflow("data-ingest", "--profile", "crypto_long", data_dir=ref, config_dir=cfg,
             as_of=LATER, check=True)
    rc, _ = _signal_mid_ingest(data, cfg, signal.SIGINT, "sig", after_s)
    assert rc == 130
    portflow("data-ingest", "--profile", "crypto_long", data_dir=data, config_dir=cfg,
             as_of=LATER, check=True)
    assert_no_debris(data / "lakehouse")
    assert_same_lakehouse(lakehouse_state(data), lakehouse_state(ref))


@pytest.mark.slow
def test_sigterm_during_flow_production_fails_the_run(phase1_data: Path) -> None:
    proc = start("flow-production", "--profile", "crypto_long", "--skip-validation",
                 "--skip-analysis", "--run-id", "p", data_dir=phase1_data)
    wait_for(phase1_data / "runs" / "p" / "run.json")
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    rec = run_json(phase1_data, "p")
    assert rec["status"] == "failed" and rec["failure_reason"] == "terminated"
    assert_no_debris(phase1_data / "runs" / "p")
