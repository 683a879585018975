"""Phase 3 end to end on a Phase-1 data dir of the synthetic market: the local executor in
process (the function the CLI calls), the CLI for the exit-code contract (a failing sleeve, a
cycle, too deep a nesting), and — marked slow — a real Ray local cluster against the local
executor, and the nested fractal on two calendars."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from portflow import clock
from portflow.context import Context
from portflow.meta.pipeline import MetaOptions, flow_meta_production
from portflow.meta.tree import plan
from portflow.runs import Run
from tests.conftest import AS_OF, portflow

LOCAL = MetaOptions(executor="local", skip_analysis=True, skip_validation=True)


def _ctx(data: Path, config_dir: Path | None = None) -> Context:
    return Context(data_dir=data, config_dir=None if config_dir is None else str(config_dir),
                   as_of=pd.Timestamp(AS_OF, tz="UTC"))


def _files(data: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(data)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in data.rglob("*") if p.is_file()}


def _edit(config_dir: Path, profiles: dict) -> None:  # type: ignore[type-arg]
    path = config_dir / "manifest.yaml"
    m = yaml.safe_load(path.read_text())
    m["profiles"].update(profiles)
    path.write_text(yaml.safe_dump(m, sort_keys=False))


def _expected_flat(meta: Path) -> pd.DataFrame:
    """The meta weights recomputed from the sleeves' own files: Σ over leaves of (product of
    sleeve weights on the path) x the leaf's primary-method weight."""
    rows = []

    def walk(run: Path, prefix: str, scale: float) -> None:
        sw = pd.read_csv(run / "sleeve_weights.csv").set_index("sleeve")["weight"]
        for sid, w in sw.items():
            sub = run / "sleeves" / str(sid)
            rec = json.loads((sub / "run.json").read_text())
            if rec["kind"] == "meta":
                walk(sub, f"{prefix}{sid}/", scale * w)
                continue
            pm = rec["config"]["optimization"]["primary_method"]
            lw = pd.read_csv(sub / "weights.csv")
            for sym, x in zip(*(lw.loc[lw["method"] == pm, c] for c in ("symbol", "weight")),
                              strict=True):
                rows.append((sym, f"{prefix}{sid}", scale * w * x))

    walk(meta, "", 1.0)
    c = pd.DataFrame(rows, columns=["symbol", "path", "c"])
    return c.groupby("symbol").agg(net=("c", "sum"), gross=("c", lambda x: x.abs().sum()),
                                   paths=("path", lambda p: ";".join(sorted(set(p)))))


def _check_meta(meta: Path, lo: float, hi: float) -> pd.DataFrame:
    sw = pd.read_csv(meta / "sleeve_weights.csv")
    assert list(sw.columns) == ["sleeve", "weight", "risk_contribution"]
    assert abs(sw["weight"].sum() - 1) <= 1e-9
    assert sw["weight"].between(lo - 1e-9, hi + 1e-9).all()
    w = pd.read_csv(meta / "weights.csv")
    assert list(w.columns) == ["symbol", "direction", "weight", "gross", "sleeves"]
    assert not w["symbol"].duplicated().any() and abs(w["gross"].sum() - 1) <= 1e-9
    ref = _expected_flat(meta)
    got = w.set_index("symbol").loc[ref.index]
    assert sorted(w["symbol"]) == sorted(ref.index)
    assert np.abs(got["weight"] - ref["net"]).max() <= 1e-9
    assert np.abs(got["gross"] - ref["gross"]).max() <= 1e-9
    assert (got["sleeves"] == ref["paths"]).all()
    assert (got["direction"] == np.where(got["weight"] > 0, "LONG", "SHORT")).all()
    return w


def test_plan_walks_the_fractal() -> None:
    ctx = Context(data_dir=Path("unused"), config_dir=None, as_of=pd.Timestamp(AS_OF, tz="UTC"))
    root = plan("fractal_meta", ctx.resolved("fractal_meta"))
    assert [leaf.path for leaf in root.leaves()] == ["crypto/long", "crypto/short", "equities"]
    assert [m.path for m in root.metas_bottom_up()] == ["crypto", ""]
    assert [m.path for m in root.metas_top_down()] == ["", "crypto"]
    assert root.children[0].allocation["min_weight"] == 0.1


def test_two_sleeve_meta_in_process_end_to_end(phase1_data: Path) -> None:
    before = _files(phase1_data)
    run = flow_meta_production(_ctx(phase1_data), "crypto_meta", "m", opts=LOCAL)
    rec = run.record
    assert (rec["kind"], rec["status"], rec["executor"], rec["data_run"]) == (
        "meta", "succeeded", "local", "base")
    assert list(rec["steps"]) == ["sleeves", "meta-returns", "meta-optimize", "flatten",
                                  "meta-report"]
    for sid in ("long", "short"):
        sub = Run.open(phase1_data, f"m/sleeves/{sid}")
        assert sub.record["kind"] == "production" and sub.record["status"] == "succeeded"
        assert sub.record["steps"]["port-test"]["status"] == "skipped"
        s = rec["sleeves"][sid]
        assert s["status"] == "succeeded" and s["run_id"] == f"m/sleeves/{sid}"
        assert s["workspace"] == f"runs/m/sleeves/{sid}" and s["seconds"] > 0
        assert s["stream"]["source"] == "in_sample" and s["stream"]["in_sample"]
    assert rec["in_sample"] is True
    after = _files(phase1_data)
    changed = {f for f in after if before.get(f) != after[f]} | (set(before) - set(after))
    assert changed and all(f.startswith("runs/m/") for f in changed), sorted(changed)[:5]

    meta = phase1_data / "runs" / "m"
    w = _check_meta(meta, 0.1, 0.9)
    assert (w.loc[w["sleeves"] == "short", "weight"] < 0).all()
    assert (w.loc[w["sleeves"] == "long", "weight"] > 0).all()
    sw = pd.read_csv(meta / "sleeve_weights.csv")
    assert rec["allocation"]["link"] == "primary" and not rec["allocation"]["info"]["cap_bound"]
    assert np.abs(sw["risk_contribution"] - 0.5).max() <= 1e-6  # exact ERC inside the bounds
    mr = pd.read_parquet(meta / "meta_returns.parquet")
    assert list(mr.columns) == ["long", "short"] and len(mr) >= 300
    assert np.isfinite(mr.to_numpy()).all() and str(mr.index.tz) == "UTC"
    html = (meta / "report.html").read_text()
    assert 'href="sleeves/long/' in html and 'href="sleeves/short/' in html
    assert "IN-SAMPLE" in html and "<script" not in html and "data:image/png;base64," in html


def test_a_failing_sleeve_fails_the_meta_run_with_its_reason(phase1_data: Path,
                                                             config_dir: Path) -> None:
    _edit(config_dir, {
        "starved_sleeve": {"scanners": ["crypto_long"], "health": {"min_assets": 100000}},
        "broken_meta": {"sleeves": [{"id": "fine", "profile": "crypto_long"},
                                    {"id": "starved", "profile": "starved_sleeve"}],
                        "allocation": {"min_weight": 0.1, "max_weight": 0.9}},
        "tolerant_meta": {"sleeves": [{"id": "fine", "profile": "crypto_long"},
                                      {"id": "starved", "profile": "starved_sleeve"}],
                          "allow_missing_sleeves": True},
    })
    proc = portflow("flow-meta-production", "--profile", "broken_meta", "--run-id", "bad",
                    "--executor", "local", "--data-run", "base", "--skip-validation",
                    data_dir=phase1_data, config_dir=config_dir)
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("portflow: sleeve 'starved' failed: strict health failed")
    assert "runs/bad/sleeves/starved/health.json" in err and "Traceback" not in proc.stderr
    rec = json.loads((phase1_data / "runs" / "bad" / "run.json").read_text())
    assert rec["status"] == "failed" and rec["failure_reason"] == err.removeprefix("portflow: ")
    assert rec["steps"]["sleeves"]["status"] == "failed"
    assert rec["sleeves"]["fine"]["status"] == "succeeded"
    assert rec["sleeves"]["starved"]["status"] == "failed"
    assert not (phase1_data / "runs" / "bad" / "weights.csv").exists()

    # allow_missing_sleeves: the failure is left out, loudly, and the meta holds what is left
    run = flow_meta_production(_ctx(phase1_data, config_dir), "tolerant_meta", "ok",
                               data_run="base", opts=LOCAL)
    assert run.record["missing_sleeves"] == ["starved"]
    assert run.record["sleeves"]["starved"]["failure_reason"].startswith("strict health")
    sw = run.load("sleeve_weights")
    assert list(sw["sleeve"]) == ["fine"] and sw["weight"].iloc[0] == 1.0
    _check_meta(run.path, 0.0, 1.0)


def test_a_cycle_and_a_depth_4_nesting_are_refused_with_the_path(tmp_path: Path,
                                                                 config_dir: Path) -> None:
    _edit(config_dir, {
        "cyc_alpha": {"sleeves": [{"id": "inner", "meta": "cyc_beta"},
                                  {"id": "long", "profile": "crypto_long"}]},
        "cyc_beta": {"sleeves": [{"id": "back", "meta": "cyc_alpha"},
                                 {"id": "short", "profile": "crypto_short"}]},
    })
    proc = portflow("flow-meta-production", "--profile", "cyc_alpha", data_dir=tmp_path,
                    config_dir=config_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "meta profile cycle: cyc_alpha -> cyc_beta -> cyc_alpha" in proc.stderr

    deep = config_dir.parent / "deep"
    deep.mkdir()
    (deep / "scanners").symlink_to(config_dir / "scanners")
    m = yaml.safe_load((config_dir / "manifest.yaml").read_text())
    for p in ("cyc_alpha", "cyc_beta"):
        del m["profiles"][p]
    prev = "crypto_meta"
    for i in range(2):  # m1 -> m0 -> fractal_meta -> crypto_meta: four meta levels
        prev_ref = {"id": "x", "meta": "fractal_meta" if i == 0 else prev}
        m["profiles"][f"m{i}"] = {"sleeves": [prev_ref, {"id": "y", "profile": "crypto_long"}]}
        prev = f"m{i}"
    (deep / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    proc = portflow("flow-meta-production", "--profile", "m0", data_dir=tmp_path,
                    config_dir=deep)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "m1 -> m0 -> fractal_meta -> crypto_meta is deeper than 3 levels" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_ray_local_cluster_runs_the_sleeves_and_matches_the_local_executor(
        phase1_data: Path) -> None:
    ray_run = portflow("flow-meta-production", "--profile", "crypto_meta", "--run-id", "r",
                       "--skip-validation", data_dir=phase1_data)
    assert ray_run.returncode == 0, ray_run.stderr
    assert "report: runs/r/report.html" in ray_run.stdout
    local = portflow("flow-meta-production", "--profile", "crypto_meta", "--run-id", "l",
                     "--executor", "local", "--skip-validation", data_dir=phase1_data, check=True)
    assert local.returncode == 0
    runs = phase1_data / "runs"
    rec = {k: json.loads((runs / k / "run.json").read_text()) for k in ("r", "l")}
    assert rec["r"]["executor"] == "ray" and rec["l"]["executor"] == "local"
    counts = rec["r"]["steps"]["sleeves"]["counts"]
    assert counts["ray_startup_seconds"] > 0 and counts["ray_wait_seconds"] >= 0
    assert rec["r"]["jobs_per_sleeve"] == rec["l"]["jobs_per_sleeve"] == 1
    for sid in ("long", "short"):
        r_sub = json.loads((runs / "r" / "sleeves" / sid / "run.json").read_text())
        l_sub = json.loads((runs / "l" / "sleeves" / sid / "run.json").read_text())
        assert r_sub["pid"] != rec["r"]["pid"]  # ran in a Ray worker
        assert l_sub["pid"] == rec["l"]["pid"]  # ran in process
        assert (runs / "r" / "sleeves" / sid / "weights.csv").read_bytes() == (
            runs / "l" / "sleeves" / sid / "weights.csv").read_bytes()
    for f in ("sleeve_weights.csv", "weights.csv", "meta_returns.parquet"):
        assert (runs / "r" / f).read_bytes() == (runs / "l" / f).read_bytes(), f
    _check_meta(runs / "r", 0.1, 0.9)


@pytest.mark.slow
@pytest.mark.ray
def test_fractal_meta_nests_workspaces_and_compounds_crypto_onto_xnys(phase1_data: Path) -> None:
    portflow("flow-data", "--profile", "equities_long", "--run-id", "eq", data_dir=phase1_data,
             check=True)
    portflow("flow-meta-production", "--profile", "fractal_meta", "--run-id", "f",
             "--skip-validation", data_dir=phase1_data, check=True)
    meta = phase1_data / "runs" / "f"
    rec = json.loads((meta / "run.json").read_text())
    assert rec["data_runs"] == {"crypto/long": "base", "crypto/short": "base", "equities": "eq"}
    nested = json.loads((meta / "sleeves" / "crypto" / "run.json").read_text())
    assert (nested["kind"], nested["run_id"], nested["status"]) == (
        "meta", "f/sleeves/crypto", "succeeded")
    assert os.path.isfile(meta / "sleeves" / "crypto" / "sleeves" / "short" / "weights.csv")
    assert rec["sleeves"]["crypto"]["link"] == "sleeves/crypto/report.html"
    mr = pd.read_parquet(meta / "meta_returns.parquet")
    assert rec["calendar"] == "XNYS" and nested["calendar"] == "24/7"
    assert mr.index.isin(clock.sessions("XNYS", mr.index[0], mr.index[-1])).all()
    w = _check_meta(meta, 0.1, 0.9)
    assert {"crypto/long", "crypto/short", "equities"} <= set(";".join(w["sleeves"]).split(";"))
    _check_meta(meta / "sleeves" / "crypto", 0.1, 0.9)
