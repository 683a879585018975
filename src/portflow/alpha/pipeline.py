"""Phase 2 runner: one sleeve, one production run workspace (SPEC §6).

The steps are pure functions (aggregate, select, synthesize, analyze, optimize); this module
only loads their inputs — from the lakehouse and the Phase-1 data run for `port-select`,
from the run workspace for the later steps — and saves their outputs in the workspace, so
each step re-runs alone with `--run-id`:

    port-select   → health.json, candidates.parquet, returns.parquet, selection.json
    port-pre-opt  → atoms.json, synthetic_returns.parquet, clusters.json, antifragility.json,
                    regime.json
    port-optimize → weights.csv (+ each method's fallback record in run.json)

The window ends at the data run's `as_of`; nothing after it is read (bars are cut at the last
closed bar, the features matrix and the metadata are taken as of that date).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from portflow import clock
from portflow.alpha import aggregate, synthesize
from portflow.alpha.analyze import analyze_window, equal_weight_proxy
from portflow.alpha.optimize import optimize
from portflow.alpha.select import DEFAULT_WEIGHTS, SelectionParams, select_htr
from portflow.config import config_hash
from portflow.config.models import SleeveProfile
from portflow.context import Context
from portflow.data.candidates import Candidate, load_candidates, sleeve_candidates
from portflow.errors import HealthGateError, RunError
from portflow.lakehouse import atomic
from portflow.ratings.panel import frames_panel, last_values, rate
from portflow.runs import NOT_AVAILABLE, Run, newest_data_run
from portflow.ui import log

WEIGHTS_COLUMNS = ["method", "symbol", "atom", "direction", "cluster", "weight"]


# -- run resolution ----------------------------------------------------------------------


def resolve_data_run(ctx: Context, profile: str, data_run: str | None) -> dict[str, Any]:
    """The Phase-1 run to read: explicit, else the newest succeeded data run of the profile
    or of a meta containing it (by recorded start time)."""
    if data_run is None:
        data_run = newest_data_run(
            ctx.data_dir, [profile, *ctx.config.metas_containing(profile)], "data-ingest"
        )
        if data_run is None:
            raise RunError(
                f"no succeeded data run for '{profile}'; run 'portflow flow-data --profile"
                f" {profile}' first, or pass --data-run"
            )
    rec = Run.open(ctx.data_dir, data_run).record
    if rec.get("kind") != "data" or rec.get("status") != "succeeded":
        raise RunError(f"run '{data_run}' is not a succeeded data run; pick one from 'portflow runs list'")
    if not rec.get("candidates_run"):
        raise RunError(f"data run '{data_run}' has no candidates; run scan-run or flow-data")
    return rec


def new_production_run(
    ctx: Context, profile: str, run_id: str | None, data_run: str | None,
    parent: Path | None = None,
) -> Run:
    sleeve = ctx.config.sleeve(profile)
    data = resolve_data_run(ctx, profile, data_run)
    resolved = ctx.config.resolved(profile)
    run = Run.create(
        ctx.data_dir, "production", sleeve.name, pd.Timestamp(data["as_of"], tz="UTC"),
        resolved, config_hash(resolved), run_id=run_id, parent=parent,
    )
    run.record["data_run"] = data["run_id"]
    run.record["candidates_run"] = data["candidates_run"]
    run.save()
    return run


def _open_production(ctx: Context, run_id: str) -> tuple[Run, SleeveProfile]:
    run = Run.open(ctx.data_dir, run_id)
    if run.record.get("kind") != "production":
        raise RunError(f"run '{run_id}' is a {run.record.get('kind')} run, not a production run")
    return run, ctx.config.sleeve(run.record["profile"])


def _as_of(run: Run) -> pd.Timestamp:
    return pd.Timestamp(run.record["as_of"], tz="UTC")


def _require(run: Run, name: str, step: str) -> Path:
    path = run.file(name)
    if not path.exists():
        raise RunError(f"run '{run.run_id}' has no {name}; run {step} --run-id {run.run_id} first")
    return path


# -- step 1-2: aggregation, strict health, selection ------------------------------------


def _load_bars(ctx: Context, sleeve: SleeveProfile, cands: list[Candidate],
               as_of: pd.Timestamp) -> list[aggregate.CandidateBars]:
    provider = ctx.provider(sleeve)
    health = ctx.lake.health_of(provider.name)
    universes = {s: ctx.config.scanners[s].universe for s in sleeve.scanners}
    out = []
    for c in cands:
        universe = universes[c.scanner_in(universes)]
        cal = provider.calendar(universe)
        bars = ctx.lake.read_ohlcv(provider.name, sleeve.timeframe, c.symbol)
        if bars is not None:
            bars = bars[bars["timestamp"] <= clock.last_closed_bar(cal, as_of)]
        h = dict(health.get(c.symbol, {}))
        if h.get("status") == "toxic" and _after(h.get("bar_timestamp"), as_of):
            # the offending bar came after this window: the stored bars up to the window end
            # are clean (the toxic fetch was quarantined), so the future does not decide
            h = {}
        out.append(aggregate.CandidateBars(
            key=c.key, symbol=c.symbol, direction=c.direction.value,
            calendar=cal, bars=bars, phase1_status=_opt_str(h.get("status")),
            phase1_reason=_opt_str(h.get("reason")),
        ))
    return out


def _opt_str(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _after(bar: Any, as_of: pd.Timestamp) -> bool:
    return bar is not None and not pd.isna(bar) and pd.Timestamp(bar) >= as_of


def symbols_as_of(ctx: Context, provider: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """Metadata by symbol as known at the clock: the version valid at `as_of`, else (for a
    symbol first described later) its earliest version."""
    table = ctx.lake.read_symbols()
    table = table[table["provider"] == provider]
    if table.empty:
        return table.set_index("symbol")
    valid = (table["valid_from"] <= as_of) & (table["valid_to"].isna() | (table["valid_to"] > as_of))
    first = ~table["symbol"].duplicated(keep="first")
    have = set(table.loc[valid, "symbol"])
    pick = valid | (first & ~table["symbol"].isin(have))
    return table[pick].drop_duplicates("symbol", keep="last").set_index("symbol")


def _features_as_of(ctx: Context, symbols: list[str], as_of: pd.Timestamp) -> pd.Series:
    """recommend_all of each symbol at its last matrix row on or before the window end."""
    path = ctx.lake.features_matrix_path
    if not path.exists() or not symbols:
        return pd.Series(np.nan, index=symbols, dtype=float)
    table = ds.dataset(path).to_table(
        columns=["timestamp", "symbol", "recommend_all"],
        filter=(ds.field("symbol").isin(symbols)) & (ds.field("timestamp") < as_of),
    ).to_pandas()
    last = table.sort_values("timestamp").groupby("symbol")["recommend_all"].last()
    return last.reindex(symbols).astype(float)


def _adx_as_of(bars: list[aggregate.CandidateBars]) -> dict[str, float]:
    """ADX 14 of each candidate's bars as of its last bar, from the ratings engine."""
    usable = [b for b in bars if b.bars is not None and len(b.bars)]
    if not usable:
        return {}
    panel, counts = frames_panel([b.bars for b in usable])
    adx = last_values(rate(panel), counts)["adx"]
    return {b.key: float(v) for b, v in zip(usable, adx, strict=True)}


def selection_params(sleeve: SleeveProfile, periods_per_year: int) -> SelectionParams:
    sel = sleeve.selection
    weights = dict(DEFAULT_WEIGHTS)
    for name, w in (sel.weights or {}).items():
        if name not in weights:
            from portflow.errors import ConfigError, suggest

            raise ConfigError(
                f"selection.weights.{name}: unknown feature{suggest(name, weights)}"
                f" (features: {', '.join(weights)})"
            )
        weights[name] = (float(w), weights[name][1])
    return SelectionParams(
        periods_per_year=periods_per_year, weights=weights, top_n=sel.top_n,
        cluster_threshold=sel.cluster_threshold, max_clusters=sel.max_clusters,
        entropy_max=sel.entropy_max, efficiency_min=sel.efficiency_min,
        kurtosis_max=sel.kurtosis_max, vol_max=sel.vol_max, friction_hurdle=sel.friction_hurdle,
        min_winners=sel.min_winners, max_winners=sel.max_winners,
    )


def step_select(ctx: Context, run: Run) -> dict[str, Any]:
    sleeve = ctx.config.sleeve(run.record["profile"])
    as_of = _as_of(run)
    settings = ctx.sleeve_settings(sleeve)
    cands = sleeve_candidates(load_candidates(ctx.data_dir, run.record["candidates_run"]),
                              sleeve.scanners)
    if not cands:
        raise RunError(
            f"data run '{run.record['data_run']}' has no candidates from the scanners of"
            f" '{sleeve.name}' ({', '.join(sleeve.scanners)}); pick its own data run with"
            f" --data-run or run flow-data --profile {sleeve.name}"
        )
    export = ctx.data_dir / "export" / run.record["candidates_run"] / "candidates.json"
    bars = _load_bars(ctx, sleeve, cands, as_of)
    inputs = [export, ctx.lake.health_path, ctx.lake.symbols_path, ctx.lake.features_matrix_path]
    inputs += [ctx.lake.ohlcv_path(ctx.provider(sleeve).name, sleeve.timeframe, b.symbol)
               for b in bars]
    run.add_inputs(inputs)
    try:
        window = aggregate.build_window(
            bars, as_of, int(settings["lookback_bars"]), sleeve.health.min_healthy_fraction,
            sleeve.health.min_assets,
        )
    except HealthGateError as exc:
        win = getattr(exc, "window", None)
        if win is not None:
            atomic.write_json({"as_of": f"{as_of:%Y-%m-%d}", "candidates": win.health}, run.file("health.json"))
        raise HealthGateError(f"{exc}; see {run.relative(run.file('health.json'))}") from None
    atomic.write_json({"as_of": f"{as_of:%Y-%m-%d}", "calendar": window.calendar,
           "window_end": f"{window.window_end:%Y-%m-%d}", "candidates": window.health},
          run.file("health.json"))

    healthy = window.healthy
    by_key = {c.key: c for c in cands}
    meta = symbols_as_of(ctx, ctx.provider(sleeve).name, as_of)
    rec_all = _features_as_of(ctx, sorted({by_key[k].symbol for k in healthy}),
                              window.window_end + pd.Timedelta(days=1))
    adx = _adx_as_of([b for b in bars if b.key in set(healthy)])
    info = pd.DataFrame(
        {
            "symbol": [by_key[k].symbol for k in healthy],
            "direction": [by_key[k].direction.value for k in healthy],
            "logic": [by_key[k].scanner_in(sleeve.scanners) for k in healthy],
            "tick_size": [_meta(meta, by_key[k].symbol, "tick_size") for k in healthy],
            "lot_size": [_meta(meta, by_key[k].symbol, "lot_size") for k in healthy],
            "liquidity": [window.liquidity[k] for k in healthy],
            "recommend_all": [rec_all.get(by_key[k].symbol, np.nan) for k in healthy],
            "adx": [adx.get(k, np.nan) for k in healthy],
        },
        index=pd.Index(healthy, name="key"),
    )
    atomic.write_parquet(info.reset_index(), run.file("candidates.parquet"))
    atomic.write_parquet(window.returns.rename_axis("timestamp"), run.file("returns.parquet"),
                         index=True)
    params = selection_params(sleeve, int(settings["periods_per_year"]))
    try:
        result = select_htr(window.returns, info, params)
    except HealthGateError as exc:
        res = getattr(exc, "result", None)
        if res is not None:
            atomic.write_json((res.to_dict()), run.file("selection.json"))
        raise HealthGateError(f"{exc}; see {run.relative(run.file('selection.json'))}") from None
    atomic.write_json((result.to_dict()), run.file("selection.json"))
    n_ok = len(healthy)
    log(f"port-select: {n_ok}/{len(cands)} healthy, stage {result.stage},"
        f" {len(result.winners)} winners{' (short of min_winners)' if result.short_of_min_winners else ''}")
    return {"candidates": len(cands), "healthy": n_ok, "stage": result.stage,
            "winners": len(result.winners), "short_of_min_winners": result.short_of_min_winners,
            "window_start": f"{window.returns.index[0]:%Y-%m-%d}",
            "window_end": f"{window.window_end:%Y-%m-%d}",
            "features_matrix": ctx.lake.features_matrix_path.exists()}


def _meta(meta: pd.DataFrame, symbol: str, field: str) -> float:
    if meta.empty or symbol not in meta.index:
        return float("nan")
    v = meta.loc[symbol, field]
    return float(v) if v is not None and not pd.isna(v) else float("nan")


# -- step 3-4: synthesis and pre-optimisation analysis ------------------------------------


def _read_frame(path: Path) -> pd.DataFrame:
    """A returns frame saved with its date index (SPEC §4: index dates, columns ids)."""
    return pd.read_parquet(path)


def step_pre_opt(ctx: Context, run: Run) -> dict[str, Any]:
    sleeve = ctx.config.sleeve(run.record["profile"])
    settings = ctx.sleeve_settings(sleeve)
    selection = json.loads(_require(run, "selection.json", "port-select").read_text())
    raw = _read_frame(_require(run, "returns.parquet", "port-select"))
    info = pd.read_parquet(_require(run, "candidates.parquet", "port-select")).set_index("key")
    atoms = synthesize.make_atoms(list(selection["winners"]), info)
    syn = synthesize.synthetic_returns(raw, atoms)
    analysis = analyze_window(
        syn, equal_weight_proxy(raw), periods_per_year=int(settings["periods_per_year"]),
        max_weight=sleeve.optimization.max_weight,
        cluster_threshold=sleeve.selection.cluster_threshold,
        max_clusters=sleeve.selection.max_clusters, base_cap=sleeve.optimization.cluster_cap,
        cap_headroom=sleeve.optimization.cap_headroom,
    )
    atomic.write_json([a.__dict__ for a in atoms], run.file("atoms.json"))
    atomic.write_parquet(syn.rename_axis("timestamp"), run.file("synthetic_returns.parquet"),
                         index=True)
    labels = analysis.clusters.labels
    atomic.write_json({str(k): int(v) for k, v in labels.items()}, run.file("clusters.json"))
    full = atomic.jsonable(analysis.to_dict())
    atomic.write_json(full["antifragility"], run.file("antifragility.json"))
    regime = full["regime"]
    caps = full["caps"]
    atomic.write_json({**regime, "regime": regime.get("label"), "effective_cluster_cap": caps["cluster_cap"],
           "effective_atom_max": caps["atom_max"], "caps": caps}, run.file("regime.json"))
    log(f"port-pre-opt: {len(atoms)} atoms, {analysis.clusters.n_clusters} clusters, regime"
        f" {analysis.regime.label} (score {analysis.regime.score:.2f}), cluster cap"
        f" {analysis.caps.cluster_cap:.3f}")
    return {"atoms": len(atoms), "clusters": int(analysis.clusters.n_clusters),
            "regime": analysis.regime.label, "cluster_cap": analysis.caps.cluster_cap,
            "atom_max": analysis.caps.atom_max}


# -- step 5: optimisation and flattening --------------------------------------------------


def step_optimize(ctx: Context, run: Run) -> dict[str, Any]:
    sleeve = ctx.config.sleeve(run.record["profile"])
    opt = sleeve.optimization
    periods = int(ctx.sleeve_settings(sleeve)["periods_per_year"])
    syn = _read_frame(_require(run, "synthetic_returns.parquet", "port-pre-opt"))
    clusters = json.loads(_require(run, "clusters.json", "port-pre-opt").read_text())
    regime = json.loads(_require(run, "regime.json", "port-pre-opt").read_text())
    atoms = {a["atom"]: a for a in json.loads(_require(run, "atoms.json", "port-pre-opt").read_text())}
    labels = pd.Series([clusters[a] for a in syn.columns], index=syn.columns)
    rows, record = [], {}
    for method in opt.methods:
        res = optimize(method, syn, labels, cluster_cap=float(regime["effective_cluster_cap"]),
                       atom_max=float(regime["effective_atom_max"]), covariance=opt.covariance,
                       linkage=opt.linkage, risk_free=opt.risk_free, periods_per_year=periods)
        record[method] = atomic.jsonable({"link": res.link, "attempts": res.attempts,
                                          "info": res.info})
        for atom, w in res.weights.items():
            a = atoms[str(atom)]
            sign = -1.0 if a["direction"] == "SHORT" else 1.0
            rows.append({"method": method, "symbol": a["symbol"], "atom": atom,
                         "direction": a["direction"], "cluster": int(clusters[str(atom)]),
                         "weight": sign * float(w)})
    weights = pd.DataFrame(rows, columns=WEIGHTS_COLUMNS)
    atomic.write_text(weights.to_csv(index=False, float_format="%.12g", lineterminator="\n"),
                      run.file("weights.csv"))
    run.record["optimization"] = {
        "estimators": {"mean": "sample mean", "covariance": opt.covariance,
                       "risk_free": opt.risk_free},
        "methods": record,
    }
    log(f"port-optimize: {len(opt.methods)} methods x {syn.shape[1]} atoms ->"
        f" {run.relative(run.file('weights.csv'))}")
    return {"methods": len(opt.methods), "atoms": int(syn.shape[1]),
            "links": {m: r["link"] for m, r in record.items()}}


# -- commands -----------------------------------------------------------------------------

PHASE2 = ("port-select", "port-pre-opt", "port-optimize", "port-report", "port-test",
          "port-post-analysis")
STEP_FUNCS: dict[str, Callable[[Context, Run], dict[str, Any]]] = {
    "port-select": step_select,
    "port-pre-opt": step_pre_opt,
    "port-optimize": step_optimize,
}


def run_step(ctx: Context, run: Run, name: str) -> None:
    with run.step(name) as counts:
        counts.update(STEP_FUNCS[name](ctx, run))


def flow_production(ctx: Context, profile: str, run_id: str | None, data_run: str | None,
                    skip_analysis: bool = False, skip_validation: bool = False,
                    parent: Path | None = None) -> Run:
    run = new_production_run(ctx, profile, run_id, data_run, parent=parent)
    log(f"flow-production: run {run.run_id} for {profile} from data run {run.record['data_run']}"
        f" (as of {run.record['as_of']})")
    with run.lifecycle():
        for name in PHASE2:
            if name in STEP_FUNCS:
                run_step(ctx, run, name)
            elif (name == "port-test" and skip_validation) or (
                name == "port-post-analysis" and skip_analysis
            ):
                run.record["steps"][name] = {"status": "skipped", "seconds": 0.0, "counts": {}}
                run.save()
            else:
                run.not_available(name)
                log(f"{name}: {NOT_AVAILABLE} (recorded in run.json)")
    return run


def _single(name: str) -> Callable[..., Run]:
    def command(ctx: Context, run_id: str) -> Run:
        run, _ = _open_production(ctx, run_id)
        run.record["status"] = "running"
        with run.lifecycle():
            run_step(ctx, run, name)
        return run

    return command


def port_select(ctx: Context, profile: str, run_id: str | None, data_run: str | None) -> Run:
    """Creates the production run when --run-id is new (or absent); re-runs it otherwise."""
    if run_id is not None and (ctx.data_dir / "runs" / run_id / "run.json").exists():
        run, sleeve = _open_production(ctx, run_id)
        if sleeve.name != profile:
            raise RunError(f"run '{run_id}' belongs to profile '{sleeve.name}', not '{profile}'")
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
}
