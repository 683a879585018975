"""Phase 2 runner: one sleeve, one production run workspace (SPEC §6).

Every step is thin — load its inputs, call one part of :func:`portflow.alpha.sleeve.produce`,
save its outputs through the run's artifact table (:data:`portflow.runs.ARTIFACTS`) — so each
re-runs alone with `--run-id` and computes exactly what ``produce`` computes:

    port-select    the pinned view          → sleeve.select        → health, candidates,
                                                                      returns, selection
    port-pre-opt   returns, candidates,     → sleeve.pre_optimize  → atoms, synthetic_returns,
                   selection                                         clusters, antifragility,
                                                                      regime
    port-optimize  synthetic_returns,       → sleeve.allocate      → weights (+ each method's
                   clusters, regime, atoms                            fallback record, run.json)
    port-test      the pinned view          → validate.walk_forward → validation/ returns,
                                                                      metrics, windows, drift
    port-post-     synthetic_returns,       → post_analysis.analyze → plots/*.png,
      analysis     clusters, weights,                                 post_analysis
                   validation_drift (if any)
    port-report    every artifact above     → report.render        → report

Rules:
1. A production run is pinned to one data run D (`--data-run`, default: among the succeeded
   data runs of the profile or of a meta containing it, the one with the latest `as_of` not
   after the clock; ties by recorded start time). Its clock is D's; it reads the lakehouse
   through the point-in-time view (:mod:`portflow.alpha.view`): bars up to D's clock and the
   features, health and metadata as of D.
2. Settings come from the run's recorded resolved config, never the current files: a step
   re-run inside an existing run uses the values the run was created with, and warns when the
   files now say something else (a different config means a new run). An explicit
   `--data-run` that disagrees with an existing run's is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from portflow import summaries
from portflow.alpha import post_analysis, report, sleeve, validate
from portflow.alpha.settings import SleeveSettings
from portflow.alpha.synthesize import Atom
from portflow.alpha.view import SleeveView, read_view
from portflow.config import config_hash
from portflow.context import Context
from portflow.data.candidates import load_candidates, sleeve_candidates
from portflow.errors import ConfigError, HealthGateError, RunError, UsageError
from portflow.executors import Capped, LocalExecutor, default_jobs
from portflow.runs import NOT_AVAILABLE, Run, newest_data_run
from portflow.ui import Tracker, log

PHASE2 = ("port-select", "port-pre-opt", "port-optimize", "port-test", "port-post-analysis",
          "port-report")


# -- run resolution (rules 1-2) ----------------------------------------------------------------


def default_data_run(ctx: Context, profile: str) -> str | None:
    """Rule 1's default (runs.newest_data_run): the succeeded data run of `profile` or a meta
    containing it, its data-ingest succeeded, with the latest as_of not after the clock."""
    owners = [profile, *ctx.config.metas_containing(profile)]
    return newest_data_run(ctx.data_dir, owners, "data-ingest", ctx.as_of)


def resolve_data_run(ctx: Context, profile: str, data_run: str | None) -> dict[str, Any]:
    """The Phase-1 run a new production run of `profile` reads (rule 1)."""
    if data_run is None:
        data_run = default_data_run(ctx, profile)
        if data_run is None:
            raise RunError(
                f"no succeeded data run for '{profile}' with a clock on or before"
                f" {ctx.as_of:%Y-%m-%d}; run 'portflow flow-data --profile {profile}' first, or"
                " pass --data-run"
            )
    rec = Run.open(ctx.data_dir, data_run).record
    if rec.get("kind") != "data" or rec.get("status") != "succeeded":
        raise RunError(
            f"run '{data_run}' is not a succeeded data run; pick one from 'portflow runs list'"
        )
    if not rec.get("candidates_run"):
        raise RunError(f"data run '{data_run}' has no candidates; run scan-run or flow-data")
    return rec


def new_production_run(
    ctx: Context, profile: str, run_id: str | None, data_run: str | None,
    parent: Path | None = None,
) -> Run:
    ctx.config.sleeve(profile)
    data = resolve_data_run(ctx, profile, data_run)
    resolved = ctx.resolved(profile)
    run = Run.create(
        ctx.data_dir, "production", profile, pd.Timestamp(data["as_of"], tz="UTC"),
        resolved, config_hash(resolved), run_id=run_id, parent=parent,
        extra={"data_run": data["run_id"], "candidates_run": data["candidates_run"]},
    )
    return run


def open_production(ctx: Context, run_id: str, data_run: str | None = None) -> Run:
    """An existing production run, for a step re-run (rule 2)."""
    run = Run.open(ctx.data_dir, run_id)
    if run.record.get("kind") != "production":
        raise RunError(f"run '{run_id}' is a {run.record.get('kind')} run, not a production run")
    if data_run is not None and data_run != run.record.get("data_run"):
        raise RunError(
            f"run '{run_id}' reads data run '{run.record.get('data_run')}', not '{data_run}';"
            " leave out --data-run to re-run a step in it, or start a new run"
        )
    _warn_if_config_changed(ctx, run)
    return run


def _warn_if_config_changed(ctx: Context, run: Run) -> None:
    profile = str(run.record["profile"])
    try:
        current = config_hash(ctx.resolved(profile))
    except ConfigError as exc:
        log(f"warning: cannot read the current config of '{profile}' ({exc}); run"
            f" '{run.run_id}' uses its recorded config")
        return
    if current != run.record.get("config_hash"):
        log(f"warning: the configuration of '{profile}' changed since run '{run.run_id}' was"
            " created; this step uses the run's recorded config (start a new run to use the"
            " new values)")


def settings_of(run: Run) -> SleeveSettings:
    return SleeveSettings.from_config(run.record["config"])


def load_view(ctx: Context, run: Run, settings: SleeveSettings) -> SleeveView:
    """Rule 1: the view pinned to the run's data run."""
    data = Run.open(ctx.data_dir, str(run.record["data_run"])).record
    recorded_by = pd.Timestamp(data["ended_at"]) if data.get("ended_at") else None
    cands = load_candidates(ctx.data_dir, str(run.record["candidates_run"]))
    if not sleeve_candidates(cands, settings.scanners):
        raise RunError(
            f"data run '{run.record['data_run']}' has no candidates from the scanners of"
            f" '{settings.profile}' ({', '.join(settings.scanners)}); pick its own data run"
            f" with --data-run or run flow-data --profile {settings.profile}"
        )
    view = read_view(ctx.lake, settings, cands, pd.Timestamp(run.record["as_of"], tz="UTC"),
                     recorded_by)
    lake = ctx.lake
    inputs = [ctx.data_dir / "export" / str(run.record["candidates_run"]) / "candidates.json",
              lake.health_history_path, lake.health_path, lake.symbols_path,
              lake.features_matrix_path]
    inputs += [lake.ohlcv_path(settings.provider, settings.timeframe, s)
               for s in sorted({c.symbol for c in view.candidates})]
    run.add_inputs(inputs)
    return view


# -- the steps -----------------------------------------------------------------------------------


def step_select(ctx: Context, run: Run) -> dict[str, Any]:
    settings = settings_of(run)
    view = load_view(ctx, run, settings)
    try:
        sel = sleeve.select(view, settings)
    except HealthGateError as exc:
        window = getattr(exc, "window", None)
        result = getattr(exc, "result", None)
        if window is not None:
            run.save("health", sleeve.health_record(view.as_of, window))
        if result is not None:
            run.save("selection", result.to_dict())
            raise HealthGateError(f"{exc}; see {run.relative(run.file('selection'))}") from None
        if window is not None:
            raise HealthGateError(f"{exc}; see {run.relative(run.file('health'))}") from None
        raise
    run.save("health", sel.health_record())
    run.save("candidates", sel.info.reset_index())
    run.save("returns", sel.returns)
    run.save("selection", sel.selection_record())
    res = sel.result
    n_cands, n_ok = len(view.candidates), len(sel.window.healthy)
    log(f"port-select: {n_ok}/{n_cands} healthy, stage {res.stage}, {len(res.winners)} winners"
        f"{' (short of min_winners)' if res.short_of_min_winners else ''}")
    return {"candidates": n_cands, "healthy": n_ok, "stage": res.stage,
            "winners": len(res.winners), "short_of_min_winners": res.short_of_min_winners,
            "metadata_before_first_version": len(sel.metadata_before_first),
            "window_start": f"{sel.returns.index[0]:%Y-%m-%d}",
            "window_end": f"{sel.window.window_end:%Y-%m-%d}"}


def step_pre_opt(ctx: Context, run: Run) -> dict[str, Any]:
    settings = settings_of(run)
    selection = run.load("selection")
    returns = run.load("returns")
    info = run.load("candidates").set_index("key")
    pre = sleeve.pre_optimize(returns, info, list(selection["winners"]), settings)
    full = pre.analysis.to_dict()
    regime, caps = full["regime"], full["caps"]
    run.save("atoms", [a.__dict__ for a in pre.atoms])
    run.save("synthetic_returns", pre.synthetic)
    run.save("clusters", {str(k): int(v) for k, v in pre.labels.items()})
    run.save("antifragility", full["antifragility"])
    run.save("regime", {**regime, "regime": regime["label"],
                        "effective_cluster_cap": caps["cluster_cap"],
                        "effective_atom_max": caps["atom_max"], "caps": caps})
    a = pre.analysis
    log(f"port-pre-opt: {len(pre.atoms)} atoms, {a.clusters.n_clusters} clusters, regime"
        f" {a.regime.label} (score {a.regime.score:.2f}), cluster cap {a.caps.cluster_cap:.3f},"
        f" atom max {a.caps.atom_max:.3f}")
    return {"atoms": len(pre.atoms), "clusters": int(a.clusters.n_clusters),
            "regime": a.regime.label, "cluster_cap": a.caps.cluster_cap,
            "atom_max": a.caps.atom_max}


def step_optimize(ctx: Context, run: Run) -> dict[str, Any]:
    settings = settings_of(run)
    syn = run.load("synthetic_returns")
    clusters = run.load("clusters")
    regime = run.load("regime")
    atoms = [Atom(**a) for a in run.load("atoms")]
    labels = pd.Series([clusters[str(a)] for a in syn.columns], index=syn.columns)
    results, weights = sleeve.allocate(
        syn, labels, float(regime["effective_cluster_cap"]), float(regime["effective_atom_max"]),
        atoms, settings,
    )
    run.save("weights", weights)
    opt = settings.optimization
    run.record["optimization"] = {
        "primary_method": opt.primary_method,
        "estimators": {"mean": "sample mean", "covariance": opt.covariance,
                       "hrp_covariance": "sample", "risk_free_annual": opt.risk_free},
        "methods": {m: {"link": r.link, "attempts": r.attempts, "info": r.info}
                    for m, r in results.items()},
    }
    fallbacks = {m: r.link for m, r in results.items() if r.link not in ("primary", m)}
    log(f"port-optimize: {len(results)} methods x {syn.shape[1]} atoms ->"
        f" {run.relative(run.file('weights'))}"
        + (f"; FALLBACK links used: {fallbacks}" if fallbacks else ""))
    return {"methods": len(results), "atoms": int(syn.shape[1]),
            "links": {m: r.link for m, r in results.items()}, "fallbacks": len(fallbacks)}


def step_test(ctx: Context, run: Run, engine: str = "native") -> dict[str, Any]:
    """Walk-forward validation on the run's own pinned view (every window calls `produce`),
    its windows fanned out over processes through the executor seam."""
    if engine not in ("native", "vectorbt"):
        raise UsageError(f"--engine '{engine}' is unknown; use native or vectorbt")
    settings = settings_of(run)
    view = load_view(ctx, run, settings)
    jobs = ctx.jobs or default_jobs()
    executor = LocalExecutor(jobs=jobs, kind="process")

    def runner(fn: Callable[..., Any], chunks: list[Any]) -> Iterator[Any]:
        for out in executor.map(Capped(fn), chunks):  # one BLAS thread per window
            if not out.ok:
                assert out.error is not None
                raise out.error
            yield out.value

    bt = settings.backtest
    n_windows = len(validate.schedule(validate.bar_dates(view, settings.calendar).size,
                                      bt.train_bars, bt.test_bars, bt.step_bars))
    with Tracker("port-test windows", n_windows) as tracker:
        res = validate.walk_forward(view, settings, runner, chunks=4 * jobs if jobs > 1 else 1,
                                    on_window=tracker.advance)
    run.save("validation_returns", res.returns)
    run.save("validation_metrics", res.metrics)
    run.save("validation_windows", res.windows)
    run.save("validation_drift", res.drift)
    counts: dict[str, Any] = {}
    if engine == "vectorbt":
        from portflow.alpha import vbt_check

        curves, agreement = vbt_check.replay(view, settings, res)
        run.save("validation_vectorbt", curves)
        run.record["validation_vectorbt"] = agreement
        gap = agreement["without_costs_max_equity_rel_diff"]
        exact = agreement["exact_expected"]
        counts.update(vectorbt_rel_diff_without_costs=gap,
                      vectorbt_rel_diff_with_costs=agreement["with_costs_max_equity_rel_diff"])
        if exact:
            counts["vectorbt_agrees"] = gap <= vbt_check.EXACT_TOLERANCE
        verdict = ("agrees" if counts.get("vectorbt_agrees") else "WARNING: disagrees") if exact \
            else "(short book: fixed-share shorts differ by design)"
        log(f"port-test: vectorbt replay {verdict} without costs (max relative equity gap"
            f" {gap:.1e}); with costs {agreement['with_costs_max_equity_rel_diff']:.1e}"
            " (conventions in run.json)")
    kept = sum(d.targets is None for d in res.decisions)
    m = res.metrics.set_index("method")
    primary = settings.optimization.primary_method
    log(f"port-test: {len(res.decisions)} windows ({kept} kept), {len(res.returns)}"
        f" out-of-sample bars from {res.returns.index[0]:%Y-%m-%d}; {primary} sharpe"
        f" {m.loc[primary, 'sharpe']:.2f} vs benchmark {m.loc['benchmark', 'sharpe']:.2f}"
        f" -> {run.relative(run.file('validation_metrics'))}")
    return {"windows": len(res.decisions), "windows_kept": kept,
            "oos_bars": len(res.returns), "oos_start": f"{res.returns.index[0]:%Y-%m-%d}",
            "engine": engine, "jobs": jobs, **counts}


def step_post_analysis(ctx: Context, run: Run) -> dict[str, Any]:
    settings = settings_of(run)
    validated = report.step_status(run.record, "port-test") == "succeeded"
    post = post_analysis.analyze(post_analysis.PostInputs(
        synthetic=run.load("synthetic_returns"), labels=run.load("clusters"),
        weights=run.load("weights"), primary_method=settings.optimization.primary_method,
        cluster_threshold=settings.selection.cluster_threshold,
        max_clusters=settings.selection.max_clusters, test_bars=settings.backtest.test_bars,
        drift=run.load("validation_drift") if validated else None,
    ))
    for name, png in post.figures.items():
        run.save(name, png)
    run.save("post_analysis", post.summary)
    stab, drift = post.summary["stability"], post.summary["drift"]
    log(f"port-post-analysis: {len(post.figures)} plots in"
        f" {run.relative(run.file('plot_cluster_map').parent)}; drift {drift['source']},"
        f" cluster stability ARI {stab['ari_halves']:.2f} between the window's halves")
    return {"plots": len(post.figures), "drift": drift["source"],
            "ari_halves": round(float(stab["ari_halves"]), 4)}


def step_report(ctx: Context, run: Run) -> dict[str, Any]:
    inputs = report.inputs_from_run(run)
    path = run.save("report", report.render(inputs))
    size = path.stat().st_size
    log(f"port-report: {run.relative(path)} ({size / 1024:.0f} KiB)")
    return {"kib": round(size / 1024), "validation": inputs.validation is not None,
            "plots": len(inputs.plots)}


STEP_FUNCS: dict[str, Callable[[Context, Run], dict[str, Any]]] = {
    "port-select": step_select,
    "port-pre-opt": step_pre_opt,
    "port-optimize": step_optimize,
    "port-test": step_test,
    "port-post-analysis": step_post_analysis,
    "port-report": step_report,
}


def run_step(ctx: Context, run: Run, name: str, **kwargs: Any) -> None:
    with run.step(name) as counts:
        counts.update(STEP_FUNCS[name](ctx, run, **kwargs))


# -- commands --------------------------------------------------------------------------------------


def flow_production(ctx: Context, profile: str, run_id: str | None, data_run: str | None,
                    skip_analysis: bool = False, skip_validation: bool = False,
                    parent: Path | None = None) -> Run:
    run = new_production_run(ctx, profile, run_id, data_run, parent=parent)
    log(f"flow-production: run {run.run_id} for {profile} from data run {run.record['data_run']}"
        f" (as of {run.record['as_of']})")
    with run.lifecycle():
        for name in PHASE2:
            if (name == "port-test" and skip_validation) or (
                name == "port-post-analysis" and skip_analysis
            ):
                run.record["steps"][name] = {"status": "skipped", "seconds": 0.0, "counts": {}}
                run.save()
            elif name in STEP_FUNCS:
                run_step(ctx, run, name)
            else:
                run.not_available(name)
                log(f"{name}: {NOT_AVAILABLE} (recorded in run.json)")
    summaries.print_weights_summary(run)
    return run


def _single(name: str) -> Callable[..., Run]:
    def command(ctx: Context, run_id: str, **kwargs: Any) -> Run:
        run = open_production(ctx, run_id)
        run.record["status"] = "running"
        with run.lifecycle():
            run_step(ctx, run, name, **kwargs)
        return run

    return command


def port_select(ctx: Context, profile: str, run_id: str | None, data_run: str | None) -> Run:
    """Creates the production run when --run-id is new (or absent); re-runs it otherwise."""
    if run_id is not None and (ctx.data_dir / "runs" / run_id / "run.json").exists():
        run = open_production(ctx, run_id, data_run)
        if run.record["profile"] != profile:
            raise RunError(
                f"run '{run_id}' belongs to profile '{run.record['profile']}', not '{profile}'"
            )
        run.record["status"] = "running"
    else:
        run = new_production_run(ctx, profile, run_id, data_run)
    with run.lifecycle():
        run_step(ctx, run, "port-select")
    return run


COMMANDS: dict[str, Callable[..., Run]] = {
    "flow-production": flow_production,
    "port-select": port_select,
    "port-pre-opt": _single("port-pre-opt"),
    "port-optimize": _single("port-optimize"),
    "port-test": _single("port-test"),
    "port-post-analysis": _single("port-post-analysis"),
    "port-report": _single("port-report"),
}
