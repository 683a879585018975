"""Phase 3 runner: ``flow-meta-production --profile M`` (SPEC §7, the meta run of SPEC §4).

1. Plan: M's sleeve tree from its resolved configuration (:mod:`portflow.meta.tree`); cycles
   and nesting deeper than 3 were rejected when the configuration loaded. Every leaf is pinned
   to a data run: `--data-run D` for all of them, else each leaf's own default
   (:func:`portflow.alpha.pipeline.default_data_run`: the latest succeeded data run of the
   leaf's profile or of a meta containing it, `as_of` not after the clock). The leaves must
   agree on the clock (`as_of`); otherwise nothing runs (exit 2).
2. Workspaces: the meta run ``runs/<ID>/`` (kind meta, `executor` recorded) and, for every
   nested meta, a meta run of its own at ``sleeves/<id>/`` inside its parent's — all created
   before any sleeve runs. Each leaf creates its production run at ``sleeves/<id>/`` of its
   parent (``Run.create(parent=...)``, nested run id ``M/sleeves/ID``).
3. Fan-out: every leaf of the whole tree at once, one task each
   (:func:`portflow.meta.sleeves.run_sleeve`, a full Phase 2), through the executor seam: Ray
   tasks of 1 CPU on a local cluster of the profile's `num_cpus` (default: the cores), or on
   the cluster at `--ray-address`; `--executor local` runs them one after the other in this
   process. The same thread cap, and the same inline walk-forward, either way. Ray's cluster
   started in the background before step 1 (:func:`portflow.meta.sleeves.sleeve_executor`);
   it is shut down in the background as soon as the last leaf is back, while step 4 runs.
   Every task runs to its end (each leaves a complete workspace) before any verdict.
4. Assembly, bottom-up (a nested meta before its parent), at every meta level:
   a. `sleeves`: each child's status, seconds, workspace and report link in the level's
      run.json. A failed child fails the level with the failing sleeve's path, its reason and
      its exit code (3 for a data or health gate) — unless the profile sets
      `allow_missing_sleeves`: then it is left out, with a warning, and listed in
      `missing_sleeves`.
   b. `meta-returns`: the children's streams (:mod:`portflow.meta.returns`), aligned onto the
      coarsest calendar → `meta_returns.parquet`; `in_sample` recorded.
   c. `meta-optimize`: :mod:`portflow.meta.allocate` → `sleeve_weights.csv`; the allocation
      and its fallback record in run.json.
   d. `flatten`: :mod:`portflow.meta.flatten` and its conservation gate → `weights.csv`.
   e. `meta-report`: `report.html` (:mod:`portflow.meta.report`).
   The level's own meta-portfolio stream and holdings tree then feed its parent.
5. A failure marks every meta run of the tree that is still running as failed with the
   reason. Nothing is written outside ``runs/<ID>/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from portflow.alpha import pipeline as phase2
from portflow.clock import periods_per_year
from portflow.config import config_hash
from portflow.context import Context
from portflow.errors import HealthGateError, PortflowError, RunError
from portflow.executors import Executor, RayExecutor
from portflow.meta import report as meta_report
from portflow.meta.allocate import allocate
from portflow.meta.flatten import Node, conservation_gate, flatten
from portflow.meta.returns import Stream, align, in_sample_stream, meta_stream, validation_stream
from portflow.meta.sleeves import (
    JOBS_PER_SLEEVE,
    THREADS_PER_SLEEVE,
    SleeveOutcome,
    SleeveTask,
    run_sleeve,
    sleeve_executor,
)
from portflow.meta.tree import SleeveNode, plan
from portflow.runs import Run
from portflow.summaries import link_label, meta_weights_table
from portflow.ui import Tracker, log


@dataclass(frozen=True)
class MetaOptions:
    """How to run the sleeves (CLI options of flow-meta-production)."""

    executor: str = "ray"
    ray_address: str | None = None
    skip_analysis: bool = False
    skip_validation: bool = False


@dataclass(frozen=True)
class _Level:
    """A finished meta level, as its parent sees it: its stream and its holdings tree."""

    stream: Stream
    flat: Node


# -- step 1 ----------------------------------------------------------------------------------


def pin_data_runs(ctx: Context, root: SleeveNode, data_run: str | None) -> dict[str, str]:
    """Step 1: leaf path → data run id, all on one clock."""
    recs = {leaf.path: phase2.resolve_data_run(ctx, leaf.profile, data_run)
            for leaf in root.leaves()}
    clocks = {str(r["as_of"]) for r in recs.values()}
    if len(clocks) > 1:
        seen = "; ".join(f"{p}: {r['run_id']} (as of {r['as_of']})" for p, r in recs.items())
        raise RunError(
            f"the sleeves of '{root.profile}' resolve to data runs of different clocks ({seen});"
            f" run 'portflow flow-data --profile {root.profile}' to refresh them together, or"
            " pass --data-run"
        )
    return {p: str(r["run_id"]) for p, r in recs.items()}


# -- the command -------------------------------------------------------------------------------


def flow_meta_production(ctx: Context, profile: str, run_id: str | None = None,
                         data_run: str | None = None, opts: MetaOptions | None = None,
                         executor: Executor | None = None) -> Run:
    """Steps 1-5 (module docstring); returns the meta run (succeeded) or raises.
    executor: the leaves' executor when the caller made it already
    (:func:`portflow.meta.sleeves.sleeve_executor` from the same `opts`, as the CLI does so
    that its own imports overlap Ray's start-up); closed here either way."""
    opts = opts or MetaOptions()
    ctx.config.meta(profile)
    if executor is None:
        executor = sleeve_executor(ctx.config, profile, opts.executor, opts.ray_address)
    try:
        return _flow_meta_production(ctx, profile, run_id, data_run, opts, executor)
    finally:
        if isinstance(executor, RayExecutor):
            executor.close()


def _flow_meta_production(ctx: Context, profile: str, run_id: str | None, data_run: str | None,
                          opts: MetaOptions, executor: Executor) -> Run:
    resolved = ctx.resolved(profile)
    root = plan(profile, resolved)
    pins = pin_data_runs(ctx, root, data_run)
    as_of = pd.Timestamp(Run.open(ctx.data_dir, next(iter(pins.values()))).record["as_of"],
                         tz="UTC")
    distinct = sorted(set(pins.values()))
    run = Run.create(
        ctx.data_dir, "meta", profile, as_of, resolved, config_hash(resolved), run_id=run_id,
        extra={"executor": opts.executor, "ray_address": opts.ray_address,
               "data_run": distinct[0] if len(distinct) == 1 else None, "data_runs": pins,
               "threads_per_sleeve": THREADS_PER_SLEEVE, "jobs_per_sleeve": JOBS_PER_SLEEVE},
    )
    log(f"flow-meta-production: run {run.run_id} for {profile}: {len(pins)} sleeve(s) on"
        f" {opts.executor}, data run(s) {', '.join(distinct)} (as of {as_of:%Y-%m-%d})")
    runs: dict[str, Run] = {"": run}
    with run.lifecycle():
        try:
            for node in root.metas_top_down():
                if node.path:
                    runs[node.path] = Run.create(
                        ctx.data_dir, "meta", node.profile, as_of, dict(node.config),
                        config_hash(dict(node.config)), run_id=node.id,
                        parent=runs[_parent(node.path)].path / "sleeves",
                        extra={"executor": opts.executor,
                               "data_runs": {p: d for p, d in pins.items()
                                             if p.startswith(node.path + "/")},
                               "threads_per_sleeve": THREADS_PER_SLEEVE,
                               "jobs_per_sleeve": JOBS_PER_SLEEVE},
                    )
            levels: dict[str, _Level] = {}
            with run.step("sleeves") as counts:
                outcomes = _fan_out(ctx, root, runs, pins, opts, executor, counts)
                for node in root.metas_bottom_up():
                    if node.path:
                        outcomes[node.path] = _nested(ctx, node, runs[node.path], outcomes,
                                                      levels, pins)
                kept = _check_children(root, run, outcomes, pins, counts)
            _assemble(ctx, root, run, kept, outcomes, levels)
        except BaseException as exc:
            for r in runs.values():
                if r is not run and r.record.get("status") == "running":
                    r.finish(exc)
            raise
    print_summary(run)
    return run


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


# -- step 3 ----------------------------------------------------------------------------------


def _fan_out(ctx: Context, root: SleeveNode, runs: dict[str, Run], pins: dict[str, str],
             opts: MetaOptions, executor: Executor,
             counts: dict[str, Any]) -> dict[str, SleeveOutcome]:
    data_dir = ctx.data_dir.resolve()
    tasks = [
        SleeveTask(
            path=leaf.path, sleeve_id=leaf.id, profile=leaf.profile, data_dir=str(data_dir),
            config_dir=str(ctx.config.config_dir.resolve()), as_of=f"{ctx.as_of:%Y-%m-%d}",
            data_run=pins[leaf.path],
            parent=str(runs[_parent(leaf.path)].path.resolve() / "sleeves"),
            skip_analysis=opts.skip_analysis, skip_validation=opts.skip_validation,
            debug=ctx.debug,
        )
        for leaf in root.leaves()
    ]
    if isinstance(executor, RayExecutor):
        _join_cluster(executor, opts, counts)
    out: dict[str, SleeveOutcome] = {}
    try:
        with Tracker("sleeves", len(tasks)) as tracker:
            for o in executor.map(run_sleeve, tasks):
                if o.ok and o.value is not None:
                    res = o.value
                else:
                    res = SleeveOutcome(o.item.path, "failed", 0.0, None,
                                        f"the {opts.executor} task failed:"
                                        f" {type(o.error).__name__}: {o.error}", 1)
                out[res.path] = res
                log(f"sleeve {res.path}: {res.status} in {res.seconds:.1f}s"
                    + (f" ({res.failure_reason})" if res.failure_reason else ""))
                tracker.advance()
    finally:
        if isinstance(executor, RayExecutor):
            executor.close(wait=False)  # Ray's processes exit while the meta assembles
    counts.update(leaves=len(tasks), leaves_succeeded=sum(o.ok for o in out.values()),
                  leaves_seconds={p: o.seconds for p, o in sorted(out.items())})
    return out


def _join_cluster(executor: RayExecutor, opts: MetaOptions, counts: dict[str, Any]) -> None:
    """Wait for the cluster started in the background; record its start-up (which overlapped
    the planning) and how long the sleeves waited for it."""
    import ray

    t = time.perf_counter()
    executor.start()  # a cluster that does not start or join: RunError (executors.start_error)
    counts["ray_wait_seconds"] = round(time.perf_counter() - t, 3)
    counts["ray_startup_seconds"] = round(executor.startup_seconds or 0.0, 3)
    counts["ray_cluster_cpus"] = int(ray.cluster_resources().get("CPU", 0))
    log(f"sleeves: Ray {'joined at ' + opts.ray_address if opts.ray_address else 'local cluster'}"
        f" ({counts['ray_cluster_cpus']} CPUs) in {counts['ray_startup_seconds']:.1f}s, the"
        f" sleeves waited {counts['ray_wait_seconds']:.1f}s for it")


# -- step 4 ----------------------------------------------------------------------------------


def _nested(ctx: Context, node: SleeveNode, nrun: Run, outcomes: dict[str, SleeveOutcome],
            levels: dict[str, _Level], pins: dict[str, str]) -> SleeveOutcome:
    """Step 4 for a nested meta, in its own run; its failure becomes its parent's sleeve
    failure (naming the deepest failing sleeve). Its seconds: its slowest sleeve's plus its
    own assembly."""
    t0 = time.perf_counter()
    slowest = max(outcomes[c.path].seconds for c in node.children)

    def secs() -> float:
        return round(slowest + time.perf_counter() - t0, 3)

    try:
        with nrun.lifecycle():
            with nrun.step("sleeves") as counts:
                kept = _check_children(node, nrun, outcomes, pins, counts)
            levels[node.path] = _assemble(ctx, node, nrun, kept, outcomes, levels)
    except PortflowError as exc:
        return SleeveOutcome(node.path, "failed", secs(), nrun.run_id, getattr(exc, "sleeve_reason", str(exc)),
                             exc.exit_code, failed_path=getattr(exc, "sleeve_path", node.path))
    return SleeveOutcome(node.path, "succeeded", secs(), nrun.run_id)


def _sleeve_error(o: SleeveOutcome, others: list[str]) -> PortflowError:
    """A failed sleeve as the meta run's error: same exit code, path and reason kept."""
    path = o.failed_path or o.path
    more = f" (also failed: {', '.join(others)})" if others else ""
    msg = f"sleeve '{path}' failed: {o.failure_reason}{more}"
    err: PortflowError
    if o.exit_code == 3:
        err = HealthGateError(msg)
    elif o.exit_code == 2:
        err = RunError(msg)
    else:
        err = PortflowError(msg)
    err.sleeve_path = path  # type: ignore[attr-defined]
    err.sleeve_reason = o.failure_reason  # type: ignore[attr-defined]
    return err


def _check_children(node: SleeveNode, mrun: Run, outcomes: dict[str, SleeveOutcome],
                    pins: dict[str, str], counts: dict[str, Any]) -> list[SleeveNode]:
    """Step 4a: record the children, fail on a failed one unless missing sleeves are allowed."""
    rec: dict[str, Any] = {}
    for child in node.children:
        o = outcomes[child.path]
        ws = mrun.path / "sleeves" / child.id
        link = "sleeves/" + child.id + ("/report.html" if (ws / "report.html").is_file() else "/")
        rec[child.id] = {
            "kind": "meta" if child.is_meta else "sleeve", "profile": child.profile,
            "status": o.status, "seconds": o.seconds, "run_id": o.run_id,
            "workspace": mrun.relative(ws) if ws.is_dir() else None,
            "link": link if ws.is_dir() else None, "failure_reason": o.failure_reason,
            **({} if child.is_meta else {"data_run": pins[child.path]}),
        }
    mrun.record["sleeves"] = rec
    failed = [c for c in node.children if not outcomes[c.path].ok]
    counts.update(sleeves=len(node.children), succeeded=len(node.children) - len(failed),
                  failed=[c.id for c in failed])
    if failed and not node.allow_missing:
        raise _sleeve_error(outcomes[failed[0].path], [c.path for c in failed[1:]])
    for c in failed:
        log(f"warning: sleeve '{c.path}' failed and is left out (allow_missing_sleeves):"
            f" {outcomes[c.path].failure_reason}")
    mrun.record["missing_sleeves"] = [c.id for c in failed]
    kept = [c for c in node.children if outcomes[c.path].ok]
    lo, hi = float(node.allocation["min_weight"]), float(node.allocation["max_weight"])
    if failed and (len(kept) * lo > 1 + 1e-12 or len(kept) * hi < 1 - 1e-12):
        raise HealthGateError(
            f"meta '{node.path or node.profile}': {len(failed)} sleeve(s) failed"
            f" ({', '.join(c.id for c in failed)}) and the {len(kept)} left cannot meet the"
            f" allocation bounds [{lo:g}, {hi:g}]; see their failure_reason in run.json"
        )
    return kept


def _leaf(ctx: Context, run_id: str) -> tuple[Stream, Node, list[Path]]:
    """A leaf's stream (validation, else in-sample), holdings (its primary method) and the
    files they were read from."""
    srun = Run.open(ctx.data_dir, run_id)
    cfg = srun.record["config"]
    method, calendar = str(cfg["optimization"]["primary_method"]), str(cfg["calendar"])
    where = srun.relative(srun.path)
    weights = srun.load("weights")
    tested = (srun.record.get("steps") or {}).get("port-test", {}).get("status") == "succeeded"
    source = "validation_returns" if tested and srun.has("validation_returns") else (
        "synthetic_returns")
    if source == "validation_returns":
        stream = validation_stream(srun.load(source), method, calendar, where)
    else:
        stream = in_sample_stream(srun.load(source), weights, method, calendar, where)
    return stream, Node.leaf(weights, method), [srun.json_path, srun.file("weights"),
                                                  srun.file(source)]


def _assemble(ctx: Context, node: SleeveNode, mrun: Run, kept: list[SleeveNode],
              outcomes: dict[str, SleeveOutcome], levels: dict[str, _Level]) -> _Level:
    """Steps 4b-4e for one meta level."""
    streams: dict[str, Stream] = {}
    flats: dict[str, Node] = {}
    inputs: list[Path] = []
    for child in kept:
        if child.is_meta:
            streams[child.id], flats[child.id] = levels[child.path].stream, levels[child.path].flat
            inputs += [mrun.path / "sleeves" / child.id / f for f in ("run.json", "weights.csv")]
        else:
            run_id = outcomes[child.path].run_id
            assert run_id is not None  # a succeeded leaf has its workspace
            streams[child.id], flats[child.id], files = _leaf(ctx, run_id)
            inputs += files
    mrun.add_inputs(inputs)
    name = node.path or node.profile

    with mrun.step("meta-returns") as counts:
        mr, calendar = align(streams)
        in_sample = any(s.in_sample for s in streams.values())
        mrun.save("meta_returns", mr)
        mrun.record.update(calendar=calendar, in_sample=in_sample)
        for cid, s in streams.items():
            mrun.record["sleeves"][cid]["stream"] = s.summary()
        counts.update(sleeves=len(streams), bars=len(mr), calendar=calendar,
                      first=f"{mr.index[0]:%Y-%m-%d}", last=f"{mr.index[-1]:%Y-%m-%d}",
                      in_sample=in_sample)
    log(f"meta-returns [{name}]: {len(streams)} sleeves x {len(mr)} {calendar} bars"
        + (" (IN-SAMPLE streams)" if in_sample else " (out-of-sample streams)"))

    alloc_cfg = node.allocation
    with mrun.step("meta-optimize") as counts:
        alloc = allocate(mr, str(alloc_cfg["method"]), float(alloc_cfg["min_weight"]),
                         float(alloc_cfg["max_weight"]), periods_per_year(calendar))
        mrun.save("sleeve_weights", alloc.table())
        mrun.record["allocation"] = alloc.record()
        for cid in streams:
            mrun.record["sleeves"][cid].update(
                weight=float(alloc.weights[cid]),
                risk_contribution=float(alloc.risk_contributions[cid]))
        counts.update(method=alloc.method, link=alloc.result.link,
                      weights={k: round(float(v), 6) for k, v in alloc.weights.items()})
    fallback = alloc.result.link not in ("primary", alloc.method)
    log(f"meta-optimize [{name}]: {alloc.method}"
        f" ({'FALLBACK ' + alloc.result.link if fallback else 'primary'}): "
        + ", ".join(f"{k} {float(v):.4f}" for k, v in alloc.weights.items()))

    with mrun.step("flatten") as counts:
        tree = Node(children=tuple((cid, float(alloc.weights[cid]), flats[cid])
                                   for cid in streams))
        assets = flatten(tree)
        conservation_gate(tree, assets, node.path)
        mrun.save("weights", assets)
        counts.update(assets=len(assets), gross=float(assets["gross"].sum()),
                      net_abs=float(assets["weight"].abs().sum()),
                      long=float(assets.loc[assets["weight"] > 0, "weight"].sum()),
                      short=float(assets.loc[assets["weight"] < 0, "weight"].sum()))
    log(f"flatten [{name}]: {len(assets)} assets, Σ gross {float(assets['gross'].sum()):.12f},"
        f" Σ|net| {float(assets['weight'].abs().sum()):.4f}")

    with mrun.step("meta-report") as counts:
        html = meta_report.render(_report_data(mrun, node, mr, calendar, in_sample, alloc,
                                               assets))
        path = mrun.save("report", html)
        counts["bytes"] = path.stat().st_size
    return _Level(meta_stream(mr, alloc.weights, calendar, in_sample), tree)


def _report_data(mrun: Run, node: SleeveNode, mr: pd.DataFrame, calendar: str,
                 in_sample: bool, alloc: Any, assets: pd.DataFrame) -> meta_report.MetaReport:
    rows = []
    for child in node.children:
        e = mrun.record["sleeves"][child.id]
        stream = e.get("stream") or {}
        rows.append(meta_report.SleeveRow(
            id=child.id, kind=e["kind"], profile=child.profile, status=e["status"],
            weight=e.get("weight"), risk_contribution=e.get("risk_contribution"),
            source=stream.get("source"), in_sample=bool(stream.get("in_sample")),
            seconds=e.get("seconds"), link=e.get("link"), reason=e.get("failure_reason"),
        ))
    return meta_report.MetaReport(
        run_id=mrun.run_id, profile=node.profile, as_of=str(mrun.record["as_of"]),
        executor=str(mrun.record.get("executor")), calendar=calendar, in_sample=in_sample,
        method=alloc.method, link=alloc.result.link, sleeves=rows, meta_returns=mr,
        weights=alloc.weights, holdings=assets,
        data_runs=dict(mrun.record.get("data_runs") or {}),
    )


# -- output ------------------------------------------------------------------------------------


def print_summary(run: Run, top: int = 10) -> None:
    """The closing lines of flow-meta-production: sleeve weights, top holdings, the report."""
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    sw = run.load("sleeve_weights")
    rec = run.record
    alloc = rec.get("allocation") or {}
    label = link_label(str(alloc.get("method")), str(alloc.get("link")))
    t = Table(title=f"{run.run_id}: sleeves ({alloc.get('method')}, {label})"
              + (" - IN-SAMPLE streams" if rec.get("in_sample") else ""), title_justify="left")
    for col in ("sleeve", "weight", "risk contribution", "stream"):
        t.add_column(col, justify="left" if col in ("sleeve", "stream") else "right")
    for r in sw.itertuples(index=False):
        stream = (rec.get("sleeves", {}).get(str(r.sleeve), {}).get("stream") or {})
        t.add_row(str(r.sleeve), f"{float(r.weight):.4f}", f"{float(r.risk_contribution):.4f}",
                  str(stream.get("source", "")))
    out.print(t)
    out.print(meta_weights_table(run, run.load("weights"), top))
    for missing in rec.get("missing_sleeves") or []:
        out.print(f"MISSING sleeve {missing} (allow_missing_sleeves): see run.json")
    out.print(f"report: {run.relative(run.file('report'))}")

