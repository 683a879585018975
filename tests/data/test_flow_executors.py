"""Phase 1 through the executor seam: Ray and the local threads build the same lakehouse."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.conftest import portflow

HEALTH_KEYS = ["provider", "symbol", "status", "reason", "bar_timestamp", "last_bar",
               "checked_for"]


def _small_universe(config_dir: Path, n: int) -> None:
    manifest = yaml.safe_load((config_dir / "manifest.yaml").read_text())
    manifest["defaults"]["provider"]["sizes"] = {"synthetic-crypto": n}
    (config_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def _same_lakehouse(a: Path, b: Path) -> None:
    """Byte-identical OHLCV files, equal features matrices (rows and fingerprints) and equal
    health verdicts (check times aside)."""
    la, lb = a / "lakehouse", b / "lakehouse"
    files = sorted(p.relative_to(la) for p in (la / "ohlcv").rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(lb) for p in (lb / "ohlcv").rglob("*.parquet"))
    assert all(filecmp.cmp(la / p, lb / p, shallow=False) for p in files)
    ma, mb = (pd.read_parquet(x / "features_matrix.parquet") for x in (la, lb))
    assert len(ma) > 0
    pd.testing.assert_frame_equal(ma, mb)
    from portflow.data.features import read_fingerprints

    assert read_fingerprints(la / "features_matrix.parquet") == read_fingerprints(
        lb / "features_matrix.parquet")
    ha, hb = (pd.read_parquet(x / "health.parquet")[HEALTH_KEYS] for x in (la, lb))
    pd.testing.assert_frame_equal(ha, hb)


@pytest.mark.slow
@pytest.mark.ray
def test_flow_data_on_ray_builds_the_local_executors_lakehouse(
    tmp_path: Path, config_dir: Path
) -> None:
    _small_universe(config_dir, 60)
    runs = {}
    for executor in ("local", "ray"):
        data = tmp_path / executor
        portflow("flow-data", "--profile", "crypto_long", "--run-id", "r", "--executor",
                 executor, data_dir=data, config_dir=config_dir, check=True)
        runs[executor] = json.loads((data / "runs" / "r" / "run.json").read_text())
    assert runs["local"]["executor"] == "local" and runs["ray"]["executor"] == "ray"
    assert runs["ray"]["steps"]["data-ingest"]["counts"] == (
        runs["local"]["steps"]["data-ingest"]["counts"])
    _same_lakehouse(tmp_path / "local", tmp_path / "ray")


def test_flow_data_refuses_an_unknown_executor_in_one_line(tmp_path: Path) -> None:
    proc = portflow("flow-data", "--profile", "crypto_long", "--executor", "dask",
                    data_dir=tmp_path / "data")
    assert proc.returncode == 2
    assert "--executor must be 'local' or 'ray'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "data" / "runs").exists()


def test_steps_record_seconds_and_peak_memory(phase1_data: Path) -> None:
    rec = json.loads((phase1_data / "runs" / "base" / "run.json").read_text())
    assert rec["executor"] == "local"
    for name, step in rec["steps"].items():
        assert step["seconds"] >= 0, name
        assert 0.01 < step["peak_rss_gib"] < 8, name
