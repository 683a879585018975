"""Phase 1 runner: scan-run → data-ingest → meta-ingest → feature-ingest → feature-backfill.

Each step is a function of the context, the data run it records into and the sleeve profiles
it covers. `flow-data --profile P` runs them all in one data run for every sleeve under P
(a meta profile expands to its sleeves). A standalone step creates its own data run; steps
after scan-run read the candidates of the newest data run that scanned P (`--data-run`
overrides) and record it as `candidates_run`.

While a step writes the lakehouse it holds the lakehouse writer lock (one Phase-1 writer at a
time); the lock dies with the process, so a killed run never blocks the next one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pandas as pd

from portflow.config import config_hash
from portflow.config.models import SleeveProfile
from portflow.context import Context
from portflow.data import features, scan
from portflow.data.candidates import Candidate, load_candidates, sleeve_candidates
from portflow.data.ingest import Ingestor, Target, run_ingest
from portflow.data.metadata import ingest_metadata
from portflow.errors import HealthGateError, RunError, UsageError, one_line
from portflow.executors import Executor, RayExecutor, default_jobs
from portflow.lakehouse import atomic
from portflow.providers.base import Provider
from portflow.runs import Run, newest_data_run
from portflow.ui import Tracker, console, log

STEPS = ("scan-run", "data-ingest", "meta-ingest", "feature-ingest", "feature-backfill")


@dataclass
class IngestOptions:
    jobs: int | None = None
    freshness_hours: float | None = None
    strict: bool = False
    recheck_toxic: bool = False
    executor: str = "local"  # or "ray": ingestion and backfill chunks fan out on Ray
    ray_address: str | None = None

    def make_executor(self) -> Executor | None:
        """None for the local threads; a Ray executor (local cluster, or `ray_address`)."""
        if self.executor == "local":
            if self.ray_address:
                raise UsageError("--ray-address needs --executor ray")
            return None
        if self.executor == "ray":
            return RayExecutor(address=self.ray_address, num_cpus=self.jobs)
        raise UsageError(f"--executor must be 'local' or 'ray', not '{self.executor}'")


def sleeves_of(ctx: Context, profile: str) -> list[SleeveProfile]:
    return [ctx.config.sleeve(name) for name in ctx.config.expand(profile)]


def new_data_run(ctx: Context, profile: str, run_id: str | None, extra: dict[str, Any]) -> Run:
    resolved = ctx.resolved(profile)
    return Run.create(
        ctx.data_dir, "data", profile, ctx.as_of, resolved, config_hash(resolved),
        run_id=run_id, extra=extra,
    )


# -- steps ----------------------------------------------------------------------------------


def step_scan(ctx: Context, run: Run, sleeves: list[SleeveProfile]) -> None:
    with run.step("scan-run") as counts:
        per: dict[str, list[dict[str, Any]]] = {}
        failed: dict[str, str] = {}
        unmapped = 0
        for sleeve in sleeves:
            scanners = [ctx.config.scanners[s] for s in sleeve.scanners if s not in per]
            if not scanners:
                continue
            sp = sleeve.scan_provider
            mapping = None if sp is None or sp.bars_universe is None else scan.SymbolMap(
                ctx.provider(sleeve), sp.bars_universe, sp.symbol_map)
            res = scan.scan_all(scanners, ctx.scan_provider(sleeve), ctx.as_of,
                                sleeve.scan.allow_partial, mapping)
            per.update(res.per_scanner)
            failed.update(res.failed)
            if mapping is not None and mapping.unmapped:
                unmapped += len(mapping.unmapped)
                log(f"scan-run: {len(mapping.unmapped)} scanned symbol(s) have no"
                    f" {mapping.bars.name} symbol in {mapping.universe} and were dropped"
                    f" (e.g. {', '.join(mapping.unmapped[:3])}); map them with"
                    " scan_provider.symbol_map")
        export = ctx.data_dir / "export" / run.run_id
        for name, recs in per.items():
            atomic.write_json(recs, export / f"{name}.json")
            log(f"scan-run: scanner {name}: {len(recs)} candidates")
        candidates = scan.union(per)
        atomic.write_json(candidates, export / "candidates.json")
        counts.update(
            scanners=len(per), scanners_failed=len(failed), candidates=len(candidates),
            **({"failed": failed} if failed else {}),
            **({"unmapped": unmapped} if unmapped else {}),
        )
        run.record["candidates_run"] = run.run_id
        run.record["candidates"] = run.relative(export / "candidates.json")
        log(f"scan-run: {len(candidates)} candidates in {run.relative(export / 'candidates.json')}")
        if not candidates:  # an empty data run must never become the default of Phase 2
            raise HealthGateError(
                f"scan-run: the scanners of {', '.join(s.name for s in sleeves)} found no"
                f" candidates as of {ctx.as_of:%Y-%m-%d}; check the clock (--as-of: is the"
                " market listed then?) and the scanners' filters"
            )


def _targets(
    ctx: Context, sleeves: list[SleeveProfile], candidates: list[Candidate]
) -> dict[str, tuple[SleeveProfile, dict[str, Target]]]:
    """Targets grouped by provider name, one Target per symbol."""
    groups: dict[str, tuple[SleeveProfile, dict[str, Target]]] = {}
    for sleeve in sleeves:
        provider = ctx.provider(sleeve)
        universe_of = ctx.universe_of(sleeve)
        _, targets = groups.setdefault(provider.name, (sleeve, {}))
        for c in sleeve_candidates(candidates, sleeve.scanners):
            universe = universe_of[c.scanner_in(universe_of)]
            targets.setdefault(c.symbol, Target(c.symbol, universe, provider.calendar(universe)))
    return groups


def step_ingest(
    ctx: Context, run: Run, sleeves: list[SleeveProfile], candidates: list[Candidate],
    opts: IngestOptions, executor: Executor | None = None,
) -> None:
    with run.step("data-ingest") as counts:
        total: dict[str, int] = defaultdict(int)
        per_symbol: dict[str, Any] = {}
        for sleeve, targets in _targets(ctx, sleeves, candidates).values():
            provider = ctx.provider(sleeve)
            history: dict[str, int] = {}
            for s in sleeves:
                if ctx.provider(s).name == provider.name:
                    cal = ctx.calendar_of(s)
                    history[cal] = max(history.get(cal, 0), int(ctx.sleeve_settings(s)["history_bars"]))
            fresh_h = opts.freshness_hours if opts.freshness_hours is not None else sleeve.freshness_hours
            ingestor = Ingestor(ctx.lake, provider, ctx.as_of, history, fresh_h,
                                timeframe=sleeve.timeframe, recheck_toxic=opts.recheck_toxic,
                                data_run=run.run_id)
            jobs = opts.jobs or sleeve.ingest.jobs or default_jobs()
            todo = sorted(targets.values(), key=lambda t: t.symbol)
            with Tracker(f"data-ingest {provider.name}", len(todo)) as tracker:
                report = run_ingest(ingestor, todo, jobs, on_done=lambda _o: tracker.advance(),
                                    executor=executor,
                                    provider=(sleeve.provider.name, sleeve.provider.options))
            for k, v in report.counts().items():
                total[k] += v
            per_symbol.update(report.per_symbol())
            _summary(report.per_symbol(), provider.name)
        counts.update(total)
        run.record["steps"]["data-ingest"]["symbols"] = per_symbol
        failed = total["symbols_failed"]
        strict = opts.strict or any(s.ingest.strict for s in sleeves)
        if total["symbols_total"] and failed == total["symbols_total"]:
            first = next(v["reason"] for v in per_symbol.values() if v["action"] == "failed")
            raise HealthGateError(f"data-ingest: every one of {failed} symbols failed (first:"
                                  f" {one_line(first, 120)}); see {run.relative(run.json_path)}")
        if strict and failed:
            raise HealthGateError(f"data-ingest --strict: {failed} symbol(s) failed; see"
                                  f" {run.relative(run.json_path)}")


def _summary(per_symbol: dict[str, dict[str, Any]], provider: str) -> None:
    from rich.table import Table

    by_action: dict[str, list[str]] = defaultdict(list)
    for sym, rec in per_symbol.items():
        by_action[rec["action"]].append(sym)
    table = Table(title=f"data-ingest summary ({provider})", show_lines=False)
    table.add_column("action")
    table.add_column("symbols", justify="right")
    table.add_column("bars", justify="right")
    table.add_column("examples")
    for action in ("fetched", "fresh", "skipped", "toxic", "failed"):
        syms = by_action.get(action, [])
        if not syms:
            continue
        bars = sum(per_symbol[s]["bars"] for s in syms)
        ex = "; ".join(f"{s}: {per_symbol[s]['reason']}" for s in syms[:2])
        table.add_row(action, str(len(syms)), str(bars), ex)
    console.print(table)


def step_meta(
    ctx: Context, run: Run, sleeves: list[SleeveProfile], candidates: list[Candidate]
) -> None:
    with run.step("meta-ingest") as counts:
        for sleeve, targets in _targets(ctx, sleeves, candidates).values():
            by_universe: dict[str, list[str]] = defaultdict(list)
            for t in targets.values():
                by_universe[t.universe].append(t.symbol)
            res = ingest_metadata(ctx.lake, ctx.provider(sleeve), by_universe, ctx.as_of)
            for k, v in res.items():
                counts[k] = counts.get(k, 0) + v
        log(f"meta-ingest: {counts.get('symbols', 0)} symbols, {counts.get('added', 0)} added,"
            f" {counts.get('changed', 0)} changed; missing lot size: {counts.get('missing_lot_size', 0)}")


@dataclass
class _ScanRatings:
    """The bar provider as feature-ingest sees it, with today's ratings asked of the profile's
    scan provider (TradingView has them) under the scanned symbols and mapped back."""

    bars: Provider
    scan: Provider
    scanned: dict[str, tuple[str, str]]  # bar symbol -> (scan universe, scanned symbol)

    @property
    def name(self) -> str:
        return self.bars.name

    def technicals(self, universe: str, symbols: list[str], as_of: Any) -> Any:
        asks: dict[str, dict[str, str]] = defaultdict(dict)
        for s in symbols:
            if s in self.scanned:
                scan_universe, scanned = self.scanned[s]
                asks[scan_universe][scanned] = s
        frames = []
        for scan_universe, back in sorted(asks.items()):
            got = self.scan.technicals(scan_universe, sorted(back), as_of)
            if got is not None and len(got):
                frames.append(got.assign(symbol=got["symbol"].map(back)).dropna(subset=["symbol"]))
        return pd.concat(frames, ignore_index=True) if frames else None


def _by_provider(
    ctx: Context, sleeves: list[SleeveProfile], candidates: list[Candidate]
) -> dict[str, tuple[Any, str, dict[str, set[str]]]]:
    """provider name -> (provider, timeframe, universe -> symbols) of the sleeves' candidates;
    a sleeve with a scan_provider gets its ratings through `_ScanRatings`."""
    out: dict[str, tuple[Any, str, dict[str, set[str]]]] = {}
    for sleeve in sleeves:
        provider: Any = ctx.provider(sleeve)
        universes = ctx.universe_of(sleeve)
        mine = sleeve_candidates(candidates, sleeve.scanners)
        if sleeve.scan_provider is not None:
            scanned = {c.symbol: (ctx.config.scanners[c.scanner_in(universes)].universe,
                                  str(c.fields.get("scan_symbol", c.symbol))) for c in mine}
            known = out.get(provider.name, (None,))[0]
            if isinstance(known, _ScanRatings):
                known.scanned.update(scanned)
                provider = known
            else:
                provider = _ScanRatings(provider, ctx.scan_provider(sleeve), scanned)
        entry = out.setdefault(provider.name, (provider, sleeve.timeframe, {}))
        if entry[0] is not provider and isinstance(provider, _ScanRatings):
            entry = out[provider.name] = (provider, entry[1], entry[2])
        for c in mine:
            entry[2].setdefault(universes[c.scanner_in(universes)], set()).add(c.symbol)
    return out


def step_feature_ingest(
    ctx: Context, run: Run, sleeves: list[SleeveProfile], candidates: list[Candidate]
) -> None:
    with run.step("feature-ingest") as counts:
        for provider, tf, by_uni in _by_provider(ctx, sleeves, candidates).values():
            res = features.snapshot(ctx.lake, provider, tf,
                                    {u: sorted(s) for u, s in by_uni.items()}, ctx.as_of)
            for k, v in res.items():
                counts[k] = counts.get(k, 0) + v
        log("feature-ingest: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def step_feature_backfill(ctx: Context, run: Run, sleeves: list[SleeveProfile],
                          executor: Executor | None = None) -> None:
    """Every healthy symbol of the whole lakehouse — every provider, not only this run's
    candidates — so a backfill scoped to one profile never erases another's rows; and every
    symbol already in the matrix keeps its rows when it stops being healthy (a symbol turned
    toxic keeps its clean stored bars), so a run pinned to an earlier data run still reads the
    ratings it read then (SPEC §8 "Pinned": never rewrite the past)."""
    with run.step("feature-backfill") as counts:
        health = ctx.lake.read_health()
        timeframes: dict[str, str] = {ctx.provider(s).name: s.timeframe for s in sleeves}
        ok = health[health["status"] == "healthy"]
        keys = {(str(p), str(s)) for p, s in zip(ok["provider"], ok["symbol"], strict=True)}
        keys |= features.matrix_keys(ctx.lake.features_matrix_path)
        sources = [(p, timeframes.get(p, "1d"), s) for p, s in sorted(keys)]
        counts.update(features.backfill(ctx.lake, sources, executor=executor))
        log("feature-backfill: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


# -- commands -------------------------------------------------------------------------------


def flow_data(ctx: Context, profile: str, run_id: str | None, opts: IngestOptions) -> Run:
    sleeves = sleeves_of(ctx, profile)
    executor = opts.make_executor()
    run = new_data_run(ctx, profile, run_id, {"sleeves": [s.name for s in sleeves],
                                              "executor": opts.executor})
    log(f"flow-data: run {run.run_id} (as of {ctx.as_of:%Y-%m-%d}) for {', '.join(s.name for s in sleeves)}")
    with run.lifecycle(), ctx.lake.writer():
        step_scan(ctx, run, sleeves)
        candidates = load_candidates(ctx.data_dir, run.run_id)
        step_ingest(ctx, run, sleeves, candidates, opts, executor)
        step_meta(ctx, run, sleeves, candidates)
        step_feature_ingest(ctx, run, sleeves, candidates)
        step_feature_backfill(ctx, run, sleeves, executor)
    return run


def single_step(
    ctx: Context, step: str, profile: str, run_id: str | None, data_run: str | None,
    opts: IngestOptions,
) -> Run:
    """One Phase-1 step alone, in a new data run of its own."""
    sleeves = sleeves_of(ctx, profile)
    source = None
    if step != "scan-run":
        source = data_run or newest_data_run(
            ctx.data_dir, [profile, *ctx.config.metas_containing(profile)], "scan-run",
            ctx.as_of,
        )
        if source is None:
            raise RunError(
                f"no data run with a scan for '{profile}'; run 'portflow scan-run --profile"
                f" {profile}' (or flow-data) first, or pass --data-run"
            )
        rec = Run.open(ctx.data_dir, source).record
        source = rec.get("candidates_run") or source
    run = new_data_run(ctx, profile, run_id, {"sleeves": [s.name for s in sleeves],
                                              **({"candidates_run": source} if source else {})})
    with run.lifecycle(), ctx.lake.writer():
        if step == "scan-run":
            step_scan(ctx, run, sleeves)
            return run
        assert source is not None
        candidates = load_candidates(ctx.data_dir, source)
        if step == "data-ingest":
            step_ingest(ctx, run, sleeves, candidates, opts)
        elif step == "meta-ingest":
            step_meta(ctx, run, sleeves, candidates)
        elif step == "feature-ingest":
            step_feature_ingest(ctx, run, sleeves, candidates)
        else:
            step_feature_backfill(ctx, run, sleeves)
    return run
