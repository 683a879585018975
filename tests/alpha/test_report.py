"""report.html (SPEC §4, §6.6): the renderer on inputs built in code (escaping, self-contained,
validation present or not), then real production runs of every packaged sleeve profile
(post-analysis and report inside flow-production, each re-run alone through the CLI, a
headless Chromium that loads the page)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.conftest import AS_OF, portflow

from portflow.alpha import pipeline, post_analysis, report
from portflow.context import Context
from portflow.errors import RunError
from portflow.runs import Run

METHODS = ["hrp", "min_var", "max_sharpe", "equal_weight", "risk_parity"]
EVIL = "<script>alert(1)</script>"


class Links(HTMLParser):
    """Every URL-bearing attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "poster", "action", "data") and v is not None:
                self.urls.append((tag, k, v))


def assert_self_contained(page: str) -> Links:
    links = Links()
    links.feed(page)
    for tag, attr, url in links.urls:
        assert url.startswith(("data:", "#")), f"<{tag} {attr}={url[:80]!r}> is not inline"
    assert "script" not in links.tags and "link" not in links.tags
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?\s*(https?:)?//", page)
    return links


def visible_text(page: str) -> str:
    body = re.sub(r"<style\b.*?</style>", " ", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", body)


def ink(png: bytes) -> float:
    hist = Image.open(io.BytesIO(png)).convert("L").histogram()
    return 1.0 - sum(hist[246:]) / sum(hist)


# -- the renderer on inputs built in code ------------------------------------------------------


def made_inputs(symbols: list[str], validation: bool = False, plots: bool = False,
                steps: dict[str, str] | None = None) -> report.ReportInputs:
    """A small run's artifacts built in code: len(symbols) LONG atoms in two clusters."""
    rng = np.random.default_rng(5)
    idx = pd.date_range("2025-07-01", periods=120, freq="D", tz="UTC")
    atoms = [f"{s}:scan:LONG" for s in symbols]
    syn = pd.DataFrame(rng.normal(0.001, 0.02, (len(idx), len(atoms))), index=idx, columns=atoms)
    clusters = {a: i % 2 for i, a in enumerate(atoms)}
    rows = [{"method": m, "symbol": s, "atom": a, "direction": "LONG", "cluster": clusters[a],
             "weight": 1.0 / len(atoms)} for m in METHODS for s, a in zip(symbols, atoms,
                                                                           strict=True)]
    weights = pd.DataFrame(rows)
    status = {"port-select": "succeeded", "port-pre-opt": "succeeded",
              "port-optimize": "succeeded", "port-test": "skipped",
              "port-post-analysis": "skipped", **(steps or {})}
    record = {
        "run_id": "unit", "profile": "crypto_long", "status": "running", "as_of": AS_OF,
        "data_run": "base", "steps": {k: {"status": v, "seconds": 1.0, "counts": {}}
                                      for k, v in status.items()},
        "config": {"optimization": {"primary_method": "hrp"}, "periods_per_year": 365,
                   "note": EVIL},
        "inputs": {f"lakehouse/ohlcv/{EVIL}.parquet": "abc"},
        "optimization": {"methods": {m: {"link": "primary", "attempts": []} for m in METHODS}
                         | {"max_sharpe": {"link": "min_var", "attempts": [
                             {"link": "primary", "ok": False, "reason": "no positive mean"},
                             {"link": "min_var", "ok": True, "reason": ""}]}}},
    }
    health = {"candidates": [{"symbol": s, "healthy": True, "reasons": []} for s in symbols]
              + [{"symbol": EVIL + "X", "healthy": False, "reasons": [f"flat: {EVIL}"]}]}
    selection = {"stage": 2, "short_of_min_winners": False, "candidates": [
        {"symbol": s, "winner": True, "vetoes": []} for s in symbols] + [
        {"symbol": "V", "winner": False, "vetoes": [{"veto": "entropy", "reason": EVIL}]}]}
    val = None
    if validation:
        ridx = pd.date_range("2026-01-01", periods=60, freq="D", tz="UTC", name="timestamp")
        rets = pd.DataFrame(rng.normal(0.0005, 0.01, (60, 6)), index=ridx,
                            columns=[*METHODS, "benchmark"])
        metrics = pd.DataFrame([{"method": m, "cagr": 0.1, "ann_vol": 0.2, "sharpe": 0.5,
                                 "sortino": 0.7, "max_drawdown": -0.1, "calmar": 1.0,
                                 "turnover": 0.3, "costs": 0.001, "n_windows": 4}
                                for m in [*METHODS, "benchmark"]])
        win = pd.DataFrame([{"method": m, "window": k, "rebalance_at": ridx[15 * k] - pd.Timedelta(days=1),
                             "test_start": ridx[15 * k], "test_end": ridx[15 * k + 14],
                             "atom": a, "symbol": s, "direction": "LONG", "weight": 0.25,
                             "turnover": 0.2, "cost": 0.2 * 14e-4,
                             "status": "kept" if k == 2 else "ok", "note": ""}
                            for m in METHODS for k in range(4)
                            for s, a in zip(symbols, atoms, strict=True)])
        val = report.Validation(rets, metrics, win)
    pngs = {}
    if plots:
        post = post_analysis.analyze(post_analysis.PostInputs(
            syn, clusters, weights, "hrp", 0.5, 25, 14))
        pngs = dict(post.figures)
    return report.ReportInputs(
        record=record, weights=weights, synthetic=syn, clusters=clusters,
        regime={"regime": "TURBULENT", "score": 1.4, "effective_cluster_cap": 0.2,
                "effective_atom_max": 0.25},
        health=health, selection=selection, validation=val, plots=pngs)


def test_every_string_from_data_is_escaped() -> None:
    page = report.render(made_inputs([EVIL, "B/USDT", "C&D", "E\"F"]))
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "C&amp;D" in page and "E&#34;F" in page
    links = assert_self_contained(page)
    assert all(url.startswith("data:image/png;base64,") for tag, _, url in links.urls
               if tag == "img")


def test_headline_methods_fallbacks_and_missing_sections_say_what_ran() -> None:
    page = report.render(made_inputs(["A", "B", "C", "D"]))
    text = visible_text(page)
    for m in METHODS:
        assert m in text
    assert "TURBULENT" in text and AS_OF in text and "crypto_long" in text
    assert "max_sharpe → min_var" in text and "no positive mean" in text  # the fallback link
    assert "validation skipped (--skip-validation)" in text
    assert "analysis skipped (--skip-analysis)" in text
    assert text.index("hrp") < text.index("min_var")  # the primary method first
    gone = report.render(made_inputs(["A", "B", "C", "D"], steps={
        "port-test": "not available yet", "port-post-analysis": "not available yet"}))
    assert "validation not available" in visible_text(gone)
    assert "analysis not available" in visible_text(gone)


def test_validation_and_post_analysis_are_shown_when_they_ran() -> None:
    inputs = made_inputs(["A", "B", "C", "D"], validation=True, plots=True,
                         steps={"port-test": "succeeded", "port-post-analysis": "succeeded"})
    page = report.render(inputs)
    text = visible_text(page)
    assert "benchmark" in text
    assert "Sortino" in text and "validated" in text and "skipped" not in text
    blobs = {base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                                                    page)}
    assert set(inputs.plots.values()) <= blobs  # the very bytes of plots/*.png
    assert len(blobs) >= 6 + len(inputs.plots)
    assert 'class="warn"' in page  # the window whose holdings were kept is marked


def test_risk_contributions_sum_to_one_and_follow_the_variance() -> None:
    rng = np.random.default_rng(2)
    syn = pd.DataFrame(rng.normal(0, [0.01, 0.02, 0.04], (500, 3)), columns=["a", "b", "c"])
    rc = report.risk_contributions(syn, pd.Series({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}))
    assert rc.sum() == pytest.approx(1.0)
    assert rc["a"] < rc["b"] < rc["c"]  # equal weights: the volatile atom carries the risk
    perf = report.performance(pd.Series([0.1, -0.5, 0.2]), 365)
    assert perf["total"] == pytest.approx(1.1 * 0.5 * 1.2 - 1)
    assert perf["max_drawdown"] == pytest.approx(-0.5)


# -- real runs of every packaged sleeve profile ---------------------------------------------


def _ctx(data: Path) -> Context:
    return Context(data_dir=data, config_dir=None, as_of=pd.Timestamp(AS_OF, tz="UTC"))


@pytest.fixture(scope="module")
def runs(phase1_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One data dir with production runs: crypto_long and equities_long with post-analysis,
    crypto_short with --skip-analysis; all with --skip-validation (validation has its own
    tests) so the report's own work is what this module pays for."""
    data = tmp_path_factory.mktemp("report") / "data"
    shutil.copytree(phase1_base, data)
    portflow("flow-data", "--profile", "equities_long", "--run-id", "eq", data_dir=data,
             check=True)
    ctx = _ctx(data)
    pipeline.flow_production(ctx, "crypto_long", "long", None, skip_validation=True)
    pipeline.flow_production(ctx, "equities_long", "eq-long", None, skip_validation=True)
    pipeline.flow_production(ctx, "crypto_short", "short", None, skip_validation=True,
                             skip_analysis=True)
    yield data


@pytest.mark.parametrize(("run_id", "profile", "analysed"), [
    ("long", "crypto_long", True), ("eq-long", "equities_long", True),
    ("short", "crypto_short", False)])
def test_report_of_every_packaged_sleeve_profile(runs: Path, run_id: str, profile: str,
                                                 analysed: bool) -> None:
    run = Run.open(runs, run_id)
    assert run.record["status"] == "succeeded"
    steps = run.record["steps"]
    assert list(steps)[-2:] == ["port-post-analysis", "port-report"]  # the report comes last
    assert steps["port-report"]["status"] == "succeeded"
    page = run.file("report").read_text(encoding="utf-8")
    assert len(page.encode()) < 10 * 2**20
    assert_self_contained(page)
    text = visible_text(page)
    assert run_id in text and profile in text and run.load("regime")["regime"] in text
    w = run.load("weights")
    assert set(w["method"]) == set(METHODS) and all(m in text for m in METHODS)
    top = w[w["method"] == "hrp"].sort_values("weight", key=abs).iloc[-1]["symbol"]
    assert top in text
    assert "validation skipped (--skip-validation)" in text
    plots = sorted((run.path / "plots").glob("*.png"))
    if analysed:
        assert steps["port-post-analysis"]["status"] == "succeeded" and len(plots) == 4
        for p in plots:
            data = p.read_bytes()
            assert len(data) >= 5000 and ink(data) > 0.005
            assert base64.b64encode(data).decode() in page, p.name
        assert "in-sample" in run.load("post_analysis")["drift"]["source"]
    else:
        assert steps["port-post-analysis"]["status"] == "skipped" and not plots
        assert "analysis skipped (--skip-analysis)" in text
    if profile == "crypto_short":
        assert (w["weight"] < 0).all() and 'class="n wcell short"' in page  # drawn as shorts


def test_steps_rerun_alone_through_the_cli(runs: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(runs, data)
    run = Run.open(data, "long")
    before = {p.name: p.read_bytes() for p in (run.path / "plots").glob("*.png")}
    (run.path / "plots" / "cluster_map.png").unlink()
    run.file("report").unlink()
    proc = portflow("port-post-analysis", "--run-id", "long", data_dir=data)
    assert proc.returncode == 0, proc.stderr
    after = {p.name: p.read_bytes() for p in (run.path / "plots").glob("*.png")}
    assert after == before  # same inputs, same bytes
    proc = portflow("port-report", "--run-id", "long", data_dir=data)
    assert proc.returncode == 0, proc.stderr
    assert "port-report: runs/long/report.html" in proc.stderr
    assert run.file("report").is_file()
    # a run with no weights yet: the error names the file and the step to run (exit 2)
    Run.open(data, "long").file("weights").unlink()
    with pytest.raises(RunError, match=r"no weights\.csv; run port-optimize --run-id long"):
        pipeline.COMMANDS["port-report"](_ctx(data), run_id="long")


def test_report_with_a_validation_fixture(runs: Path, tmp_path: Path) -> None:
    """TEST FIXTURE standing in for port-test: validation files of the contract (SPEC §4) made
    from the run's own synthetic returns, then post-analysis and report read them."""
    data = tmp_path / "data"
    shutil.copytree(runs, data)
    run = Run.open(data, "long")
    syn, w = run.load("synthetic_returns"), run.load("weights")
    oos = syn.iloc[-60:]
    rets = pd.DataFrame({m: oos.to_numpy() @ w[w["method"] == m].set_index("atom")["weight"]
                         .reindex(syn.columns).to_numpy() for m in METHODS}, index=oos.index)
    rets["benchmark"] = oos.mean(axis=1)
    run.save("validation_returns", rets)
    run.save("validation_metrics", pd.DataFrame(
        [{"method": m, **report.performance(rets[m], 365), "sortino": 1.0, "calmar": 1.0,
          "turnover": 0.5, "costs": 0.0007, "n_windows": 4} for m in rets.columns]))
    windows = [{"method": m, "window": k, "rebalance_at": oos.index[15 * k] - pd.Timedelta(days=1),
                "test_start": oos.index[15 * k], "test_end": oos.index[15 * k + 14],
                "atom": r.atom, "symbol": r.symbol, "direction": r.direction,
                "weight": r.weight, "turnover": 0.1 * (k + 1), "cost": 0.1 * (k + 1) * 14e-4,
                "status": "ok", "note": ""}
               for m in METHODS for k in range(4) for r in w[w["method"] == m].itertuples()]
    run.save("validation_windows", pd.DataFrame(windows))
    drift = post_analysis.in_sample_drift(syn, w, 20)
    run.save("validation_drift", drift)
    run.record["steps"]["port-test"] = {"status": "succeeded", "seconds": 0.0, "counts": {}}
    run.save()
    ctx = _ctx(data)
    pipeline.COMMANDS["port-post-analysis"](ctx, run_id="long")
    pipeline.COMMANDS["port-report"](ctx, run_id="long")
    run = Run.open(data, "long")
    assert run.load("post_analysis")["drift"]["source"] == "validation"
    page = run.file("report").read_text(encoding="utf-8")
    text = visible_text(page)
    assert "benchmark" in text and "validated" in text and "Sortino" in text
    assert "validation skipped" not in text and "validation not available" not in text
    assert_self_contained(page)


# -- a real browser --------------------------------------------------------------------------


def test_chromium_loads_the_report_without_console_errors(runs: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        msg = ("chromium is not installed: run scripts/ensure-chromium.sh (make test does) or"
               " 'apt-get install -y chromium'")
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI must exercise the browser, never skip it silently
        pytest.skip(msg)
    page = Run.open(runs, "long").file("report")
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'ud'}",
           "--enable-logging=stderr", "--v=0", "--window-size=1400,2400",
           f"--screenshot={shot}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines()
               if "CONSOLE" in ln or "Failed to load resource" in ln or "Uncaught" in ln]
    assert not console, console
    img = Image.open(shot)
    assert img.size == (1400, 2400)
    assert ink(shot.read_bytes()) > 0.05  # the page is drawn, not blank
