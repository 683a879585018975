"""Crash safety (SPEC §4): SIGKILL at many points of data-ingest, feature-backfill and
flow-production. Afterwards every table opens, no temp file remains, and a rerun equals an
uninterrupted run. Slow: each point is a real process killed and a real rerun."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import portflow
from tests.reliability.helpers import (
    LATER,
    PRODUCTION,
    assert_no_debris,
    assert_same_lakehouse,
    lakehouse_state,
    slow_config,
    start,
)

pytestmark = pytest.mark.slow


def _kill_after(proc_args: tuple[str, ...], data: Path, run_id: str, after_s: float,
                trigger: str = "runs/{run}/run.json", **kw: object) -> bool:
    """Start a command, SIGKILL it `after_s` seconds after a file matching `trigger` (a glob
    under the data dir) appears; whether the kill landed while it ran."""
    proc = start(*proc_args, "--run-id", run_id, data_dir=data, **kw)  # type: ignore[arg-type]
    pattern = trigger.format(run=run_id)
    deadline = time.monotonic() + 300
    while not any(data.glob(pattern)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(after_s)
    landed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    return landed


@pytest.fixture(scope="module")
def slow_cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from portflow.config.loader import packaged_config_dir

    dst = tmp_path_factory.mktemp("slowcfg") / "configs"
    shutil.copytree(packaged_config_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    return slow_config(dst, 50)


@pytest.fixture(scope="module")
def ingested(phase1_base: Path, tmp_path_factory: pytest.TempPathFactory,
             slow_cfg: Path) -> dict[str, object]:
    ref = tmp_path_factory.mktemp("ingest-ref") / "data"
    shutil.copytree(phase1_base, ref)
    portflow("data-ingest", "--profile", "crypto_long", data_dir=ref, config_dir=slow_cfg,
             as_of=LATER, check=True)
    return lakehouse_state(ref)


@pytest.mark.parametrize("after_s", [0.2, 1.0, 2.0, 3.5, 5.0, 7.0])
def test_sigkill_during_data_ingest_then_a_rerun_equals_an_uninterrupted_run(
    phase1_base: Path, tmp_path: Path, slow_cfg: Path, ingested: dict[str, object],
    after_s: float,
) -> None:
    data = tmp_path / "data"
    shutil.copytree(phase1_base, data)
    args = ("data-ingest", "--profile", "crypto_long", "--jobs", "1")
    assert _kill_after(args, data, "k", after_s, config_dir=slow_cfg, as_of=LATER)
    portflow("data-ingest", "--profile", "crypto_long", data_dir=data, config_dir=slow_cfg,
             as_of=LATER, check=True)
    assert_no_debris(data / "lakehouse")
    assert_same_lakehouse(lakehouse_state(data), ingested)


@pytest.mark.parametrize(("trigger", "after_s"), [
    ("runs/{run}/run.json", 0.0),  # reading health, fingerprinting
    ("lakehouse/.tmp-features_matrix.parquet.*", 0.0),  # computing the first chunk
    ("lakehouse/.tmp-features_matrix.parquet.*", 0.5),
    ("lakehouse/.tmp-features_matrix.parquet.*", 1.5),
])
def test_sigkill_during_feature_backfill_then_a_rerun_rebuilds_the_same_matrix(
    phase1_base: Path, tmp_path: Path, trigger: str, after_s: float
) -> None:
    data = tmp_path / "data"
    shutil.copytree(phase1_base, data)
    matrix = data / "lakehouse" / "features_matrix.parquet"
    want = pd.read_parquet(matrix)
    matrix.unlink()  # a full rebuild: seconds of work to interrupt
    landed = _kill_after(("feature-backfill", "--profile", "crypto_long"), data, "k", after_s,
                         trigger)
    assert landed or after_s > 0  # the first points are always mid-backfill
    for table in (data / "lakehouse").rglob("*.parquet"):  # the previous versions all open
        pq.read_table(table)
    if matrix.exists():  # never torn: the old version (here none) or the whole new one
        pd.testing.assert_frame_equal(pd.read_parquet(matrix), want)
    portflow("feature-backfill", "--profile", "crypto_long", data_dir=data, check=True)
    assert_no_debris(data / "lakehouse")
    pd.testing.assert_frame_equal(pd.read_parquet(matrix), want)


@pytest.fixture(scope="module")
def weights(phase1_base: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    data = tmp_path_factory.mktemp("prod-ref") / "data"
    shutil.copytree(phase1_base, data)
    portflow(*PRODUCTION, "--run-id", "ref", data_dir=data, check=True)
    return (data / "runs" / "ref" / "weights.csv").read_bytes()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize("artifact", ["run.json", "health.json", "selection.json",
                                      "synthetic_returns.parquet", "regime.json"])
def test_sigkill_during_flow_production_leaves_the_lakehouse_and_a_rerun_equal(
    phase1_base: Path, tmp_path: Path, weights: bytes, artifact: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(phase1_base, data)
    lake_before = _files(data / "lakehouse")
    # killed the moment each step's output lands: the next step is always still to come
    assert _kill_after(PRODUCTION, data, "k", 0.0, f"runs/{{run}}/{artifact}")
    assert _files(data / "lakehouse") == lake_before  # Phase 2 writes only its workspace
    portflow(*PRODUCTION, "--run-id", "again", data_dir=data, check=True)
    assert (data / "runs" / "again" / "weights.csv").read_bytes() == weights
    assert_no_debris(data / "runs")  # the new run swept the killed one's temp files
