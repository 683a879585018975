"""Phase 2 end to end: the real commands on a Phase-1 data dir of the synthetic market."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.conftest import portflow

METHODS = {"hrp", "min_var", "max_sharpe", "equal_weight", "risk_parity"}
FLAGS = ("--skip-validation", "--skip-analysis")


def _produce(data: Path, profile: str, run_id: str, *extra: str, as_of: str = "2026-06-30"):  # type: ignore[no-untyped-def]
    return portflow("flow-production", "--profile", profile, "--run-id", run_id, *extra,
                    data_dir=data, as_of=as_of)


def _check_weights(run: Path, sign: int) -> pd.DataFrame:
    w = pd.read_csv(run / "weights.csv")
    assert list(w.columns) == ["method", "symbol", "atom", "direction", "cluster", "weight"]
    assert set(w["method"]) == METHODS
    regime = json.loads((run / "regime.json").read_text())
    cap = regime["effective_cluster_cap"]
    assert cap >= 1 / w["cluster"].nunique() - 1e-12
    for _, g in w.groupby("method"):
        assert abs(g["weight"].abs().sum() - 1) < 1e-6
        assert (np.sign(g["weight"][g["weight"].abs() > 1e-12]) == sign).all()
        assert g.groupby("cluster")["weight"].apply(lambda x: x.abs().sum()).max() <= cap + 1e-8
        assert g["weight"].abs().max() <= regime["effective_atom_max"] + 1e-8
    return w


def test_long_sleeve_produces_five_methods_within_caps_reproducibly(phase1_data: Path) -> None:
    proc = _produce(phase1_data, "crypto_long", "a", *FLAGS)
    assert proc.returncode == 0, proc.stderr
    run = phase1_data / "runs" / "a"
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "succeeded" and rec["kind"] == "production"
    assert rec["data_run"] == "base" and rec["as_of"] == "2026-06-30"
    assert rec["steps"]["port-test"]["status"] == "skipped"
    assert rec["steps"]["port-report"]["status"] == "not available yet"
    assert rec["optimization"]["estimators"]["covariance"] == "ledoit_wolf"
    sel = json.loads((run / "selection.json").read_text())
    winners = [c for c in sel["candidates"] if c["winner"]]
    assert 15 <= len(winners) <= 25
    assert all({"features", "probabilities", "score", "cluster", "vetoes"} <= set(c)
               for c in sel["candidates"])
    health = json.loads((run / "health.json").read_text())["candidates"]
    dropped = [c for c in health if not c["healthy"]]
    assert dropped and all(c["reasons"] for c in dropped)
    _check_weights(run, +1)
    syn = pd.read_parquet(run / "synthetic_returns.parquet")
    assert isinstance(syn.index, pd.DatetimeIndex) and syn.shape[1] == len(winners)

    # same lakehouse, same command: byte-identical weights; a step re-run alone too
    assert _produce(phase1_data, "crypto_long", "b", *FLAGS).returncode == 0
    first = (run / "weights.csv").read_bytes()
    assert (phase1_data / "runs" / "b" / "weights.csv").read_bytes() == first
    assert portflow("port-optimize", "--run-id", "a", data_dir=phase1_data).returncode == 0
    assert (run / "weights.csv").read_bytes() == first


def test_short_sleeve_holds_falling_assets_as_negative_weights(phase1_data: Path) -> None:
    assert _produce(phase1_data, "crypto_short", "s", *FLAGS).returncode == 0
    run = phase1_data / "runs" / "s"
    w = _check_weights(run, -1)
    raw = pd.read_parquet(run / "returns.parquet")
    held = raw[[f"{s}:SHORT" for s in w["symbol"].unique()]]
    assert (held.mean() < 0).mean() > 0.8  # the shorts it picked were falling


def test_validation_not_built_yet_is_recorded(phase1_data: Path) -> None:
    proc = _produce(phase1_data, "crypto_long", "v")
    assert proc.returncode == 0, proc.stderr
    steps = json.loads((phase1_data / "runs" / "v" / "run.json").read_text())["steps"]
    assert steps["port-test"]["status"] == "not available yet"
    assert steps["port-post-analysis"]["status"] == "not available yet"


def test_bars_missing_inside_the_window_fail_fast_with_reasons(phase1_data: Path) -> None:
    files = sorted((phase1_data / "lakehouse" / "ohlcv").rglob("*.parquet"))
    for i, f in enumerate(files):
        if i % 5 != 4:
            d = pd.read_parquet(f)
            d.drop(d.index[-40:-30]).to_parquet(f, index=False)
    proc = _produce(phase1_data, "crypto_long", "g", *FLAGS)
    assert proc.returncode == 3
    assert "health.json" in proc.stderr and "Traceback" not in proc.stderr
    run = phase1_data / "runs" / "g"
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "failed" and "healthy" in rec["failure_reason"]
    bad = [c for c in json.loads((run / "health.json").read_text())["candidates"]
           if not c["healthy"]]
    assert len(bad) > 50 and all("missing bar" in " ".join(c["reasons"]) or c["reasons"]
                                 for c in bad)


def test_data_after_the_window_never_changes_its_decisions(phase1_data: Path) -> None:
    """Point in time: a later flow-data (new bars, new ratings rows, newer health) leaves the
    weights of a production run on the earlier data run byte-identical."""
    assert _produce(phase1_data, "crypto_long", "t0", "--data-run", "base", *FLAGS).returncode == 0
    later = portflow("flow-data", "--profile", "crypto_meta", "--run-id", "later",
                     data_dir=phase1_data, as_of="2026-07-25")
    assert later.returncode == 0, later.stderr
    counts = json.loads((phase1_data / "runs" / "later" / "run.json").read_text())
    assert counts["steps"]["data-ingest"]["counts"]["bars_fetched"] > 0
    assert _produce(phase1_data, "crypto_long", "t1", "--data-run", "base", *FLAGS,
                    as_of="2026-07-25").returncode == 0
    runs = phase1_data / "runs"
    for name in ("weights.csv", "selection.json", "health.json", "synthetic_returns.parquet"):
        assert (runs / "t0" / name).read_bytes() == (runs / "t1" / name).read_bytes(), name


@pytest.mark.parametrize("step", ["port-pre-opt", "port-optimize"])
def test_step_on_a_missing_run_is_a_usage_error(phase1_data: Path, step: str) -> None:
    proc = portflow(step, "--run-id", "nope", data_dir=phase1_data)
    assert proc.returncode == 2 and "not found" in proc.stderr
