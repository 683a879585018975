"""Concurrency on one data dir (SPEC §4): two data runs at once, two production runs at once,
and a production reading while a data run writes. Slow: real processes side by side."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import portflow
from tests.reliability.helpers import (
    LATER,
    PRODUCTION,
    assert_no_debris,
    assert_same_lakehouse,
    lakehouse_state,
    run_json,
    slow_config,
    start,
    wait_for,
)

pytestmark = pytest.mark.slow


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_two_data_runs_at_once_equal_the_same_runs_one_after_the_other(
    phase1_base: Path, tmp_path: Path, config_dir: Path
) -> None:
    cfg = slow_config(config_dir, 20)
    seq, par = _copy(phase1_base, tmp_path / "seq"), _copy(phase1_base, tmp_path / "par")
    for profile in ("crypto_long", "crypto_short"):
        portflow("flow-data", "--profile", profile, data_dir=seq, config_dir=cfg, as_of=LATER,
                 check=True)
    procs = [start("flow-data", "--profile", p, "--run-id", p, data_dir=par, config_dir=cfg,
                   as_of=LATER) for p in ("crypto_long", "crypto_short")]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-800:]
    assert_no_debris(par / "lakehouse")
    assert_same_lakehouse(lakehouse_state(par), lakehouse_state(seq))


def test_two_production_runs_at_once_give_identical_weights(phase1_data: Path) -> None:
    procs = [start(*PRODUCTION, "--run-id", r, data_dir=phase1_data) for r in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-800:]
    a, b = (phase1_data / "runs" / r / "weights.csv" for r in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert_no_debris(phase1_data / "runs")


def test_a_production_reading_while_a_data_run_writes_sees_its_own_clock(
    phase1_base: Path, tmp_path: Path, config_dir: Path
) -> None:
    quiet, busy = _copy(phase1_base, tmp_path / "quiet"), _copy(phase1_base, tmp_path / "busy")
    portflow(*PRODUCTION, "--run-id", "p", data_dir=quiet, check=True)
    writer = start("flow-data", "--profile", "crypto_meta", "--run-id", "w", data_dir=busy,
                   config_dir=slow_config(config_dir, 20), as_of=LATER)
    wait_for(busy / "runs" / "w" / "run.json")
    portflow(*PRODUCTION, "--run-id", "p", data_dir=busy, check=True)
    _, err = writer.communicate(timeout=900)
    assert writer.returncode == 0, err[-800:]
    # the data run at the later clock is not the default for the earlier clock, and what it
    # rewrote meanwhile (newer bars, health, the matrix) changes nothing before that clock
    assert run_json(busy, "p")["data_run"] == "base"
    assert (busy / "runs" / "p" / "weights.csv").read_bytes() == \
        (quiet / "runs" / "p" / "weights.csv").read_bytes()
