"""Phase 2 end to end on a Phase-1 data dir of the synthetic market: the steps in process (the
same functions the CLI calls), `produce` against the steps, pinning to a data run, recorded
config on re-runs; one CLI run for the exit-code contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.conftest import AS_OF, portflow

from portflow.alpha import pipeline, sleeve
from portflow.context import Context
from portflow.errors import RunError
from portflow.lakehouse.store import Lakehouse
from portflow.runs import Run, csv_text

METHODS = {"hrp", "min_var", "max_sharpe", "equal_weight", "risk_parity"}
ARTIFACTS = ("health", "candidates", "returns", "selection", "atoms", "synthetic_returns",
             "clusters", "antifragility", "regime", "weights")


def _ctx(data: Path, as_of: str = AS_OF, config_dir: Path | None = None) -> Context:
    return Context(data_dir=data, config_dir=None if config_dir is None else str(config_dir),
                   as_of=pd.Timestamp(as_of, tz="UTC"))


def _produce(data: Path, profile: str, run_id: str, data_run: str | None = None,
             **kw: object) -> Run:
    ctx = _ctx(data, **kw)  # type: ignore[arg-type]
    return pipeline.flow_production(ctx, profile, run_id, data_run, skip_analysis=True,
                                    skip_validation=True)


def _check_weights(run: Run, sign: int) -> pd.DataFrame:
    w = run.load("weights")
    assert list(w.columns) == ["method", "symbol", "atom", "direction", "cluster", "weight"]
    assert set(w["method"]) == METHODS
    regime = run.load("regime")
    cap, amax = regime["effective_cluster_cap"], regime["effective_atom_max"]
    for _, g in w.groupby("method"):
        assert abs(g["weight"].abs().sum() - 1) < 1e-8
        assert (np.sign(g["weight"]) == sign).all()
        assert g.groupby("cluster")["weight"].apply(lambda x: x.abs().sum()).max() <= cap + 1e-8
        assert g["weight"].abs().max() <= amax + 1e-8
    return w


def test_long_sleeve_five_methods_within_caps_and_reproducible(phase1_data: Path) -> None:
    run = _produce(phase1_data, "crypto_long", "a")
    rec = run.record
    assert rec["status"] == "succeeded" and rec["kind"] == "production"
    assert rec["data_run"] == "base" and rec["as_of"] == AS_OF
    assert [s for s in rec["steps"]][:3] == ["port-select", "port-pre-opt", "port-optimize"]
    assert rec["steps"]["port-test"]["status"] == "skipped"
    assert rec["config"]["calendar"] == "24/7" and rec["config"]["health"]["lookback_bars"] == 365
    assert rec["optimization"]["estimators"]["covariance"] == "ledoit_wolf"
    sel = run.load("selection")
    winners = [c for c in sel["candidates"] if c["winner"]]
    assert 15 <= len(winners) <= 25 and not any(c["vetoes"] for c in winners)
    assert all({"features", "probabilities", "score", "cluster", "vetoes"} <= set(c)
               for c in sel["candidates"])
    health = run.load("health")["candidates"]
    dropped = [c for c in health if not c["healthy"]]
    assert dropped and all(c["reasons"] for c in dropped)  # every drop says why
    _check_weights(run, +1)
    syn = run.load("synthetic_returns")
    assert isinstance(syn.index, pd.DatetimeIndex) and syn.shape[1] == len(winners)

    # same lakehouse, same command: byte-identical files; each step re-run alone too
    again = _produce(phase1_data, "crypto_long", "b")
    for name in ARTIFACTS:
        assert again.file(name).read_bytes() == run.file(name).read_bytes(), name
    first = run.file("weights").read_bytes()
    for step in ("port-pre-opt", "port-optimize"):
        pipeline.COMMANDS[step](_ctx(phase1_data), run_id="a")
        assert run.file("weights").read_bytes() == first


def test_produce_equals_the_steps(phase1_data: Path) -> None:
    """`produce` on the run's own view and settings gives exactly the steps' outputs."""
    run = _produce(phase1_data, "crypto_long", "p")
    ctx = _ctx(phase1_data)
    settings = pipeline.settings_of(run)
    result = sleeve.produce(pipeline.load_view(ctx, run, settings), settings)
    assert csv_text(result.weights).encode() == run.file("weights").read_bytes()
    assert result.selection.selection_record()["winners"] == run.load("selection")["winners"]
    pd.testing.assert_frame_equal(result.pre_opt.synthetic, run.load("synthetic_returns"),
                                  check_exact=True, check_freq=False)
    for m, res in result.allocations.items():
        assert res.link == run.record["optimization"]["methods"][m]["link"]


def test_short_sleeve_holds_falling_assets_as_negative_weights(phase1_data: Path) -> None:
    run = _produce(phase1_data, "crypto_short", "s")
    w = _check_weights(run, -1)
    raw = run.load("returns")
    held = raw[[f"{s}:SHORT" for s in w["symbol"].unique()]]
    assert (held.mean() < 0).mean() > 0.8  # the shorts it picked were falling


def test_a_pinned_run_ignores_every_later_data_run(phase1_data: Path) -> None:
    """SPEC §8 Pinned: after a later data run adds bars, marks a symbol toxic (the planted
    October spike) and metadata gains versions (one valid later, one backdated), a production
    pinned to the first data run is byte-identical."""
    before = _produce(phase1_data, "crypto_long", "t0", data_run="base")
    assert "CRY-0011/USDT:LONG" in {c["key"] for c in before.load("health")["candidates"]}
    later = portflow("flow-data", "--profile", "crypto_meta", "--run-id", "later",
                     data_dir=phase1_data, as_of="2026-11-02")
    assert later.returncode == 0, later.stderr
    lake = Lakehouse(phase1_data)
    health = lake.read_health().set_index("symbol")
    assert health.loc["CRY-0011/USDT", "status"] == "toxic"
    meta = lake.read_symbols()
    meta = meta[meta["valid_to"].isna()].head(30).copy()
    meta["tick_size"] = meta["tick_size"] * 10
    for stamp in ("2026-11-01", "2026-01-01"):
        lake.upsert_symbols("synthetic", meta, pd.Timestamp(stamp, tz="UTC"))
        meta["lot_size"] = np.nan
    counts = json.loads((phase1_data / "runs" / "later" / "run.json").read_text())["steps"]
    assert counts["data-ingest"]["counts"]["bars_fetched"] > 0
    after = _produce(phase1_data, "crypto_long", "t1", data_run="base", as_of="2026-11-02")
    for name in ARTIFACTS:
        assert before.file(name).read_bytes() == after.file(name).read_bytes(), name
    # the default data run is the latest one not after the clock
    assert pipeline.default_data_run(_ctx(phase1_data, "2026-07-15"), "crypto_long") == "base"
    assert pipeline.default_data_run(_ctx(phase1_data, "2026-11-02"), "crypto_long") == "later"


def test_a_step_rerun_uses_the_recorded_config(phase1_data: Path, config_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = _produce(phase1_data, "crypto_long", "c", config_dir=config_dir)
    first = run.file("weights").read_bytes()
    manifest = config_dir / "manifest.yaml"
    cfg = yaml.safe_load(manifest.read_text())
    cfg["defaults"]["optimization"].update(max_weight=0.055, cluster_cap=0.10, risk_free=0.04)
    manifest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    pipeline.COMMANDS["port-optimize"](_ctx(phase1_data, config_dir=config_dir), run_id="c")
    assert run.file("weights").read_bytes() == first
    assert "configuration of 'crypto_long' changed" in capsys.readouterr().err
    with pytest.raises(RunError, match="reads data run 'base'"):
        pipeline.port_select(_ctx(phase1_data), "crypto_long", "c", data_run="other")


def test_health_gate_fails_fast_with_reasons_through_the_cli(phase1_data: Path) -> None:
    files = sorted((phase1_data / "lakehouse" / "ohlcv").rglob("*.parquet"))
    for i, f in enumerate(files):
        if i % 5 != 4:
            d = pd.read_parquet(f)
            d.drop(d.index[-40:-30]).to_parquet(f, index=False)
    proc = portflow("flow-production", "--profile", "crypto_long", "--run-id", "g",
                    "--skip-validation", "--skip-analysis", data_dir=phase1_data)
    assert proc.returncode == 3
    assert "health.json" in proc.stderr and "Traceback" not in proc.stderr
    run = phase1_data / "runs" / "g"
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "failed" and "healthy" in rec["failure_reason"]
    bad = [c for c in json.loads((run / "health.json").read_text())["candidates"]
           if not c["healthy"]]
    assert len(bad) > 50
    assert sum("missing bar" in " ".join(c["reasons"]) for c in bad) >= 0.8 * len(bad)


@pytest.mark.parametrize("step", ["port-pre-opt", "port-optimize"])
def test_step_on_a_missing_run_is_a_usage_error(tmp_path: Path, step: str) -> None:
    with pytest.raises(RunError, match="not found"):
        pipeline.COMMANDS[step](_ctx(tmp_path), run_id="nope")


def test_runs_weights_marks_the_primary_method(phase1_data: Path) -> None:
    _produce(phase1_data, "crypto_long", "w")
    out = portflow("runs", "weights", "w", "--top", "5", data_dir=phase1_data, check=True).stdout
    assert "hrp (primary)" in out and out.count("LONG") == 5
    shutil.rmtree(phase1_data / "runs" / "w")
