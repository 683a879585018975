"""The `portflow` command line (SPEC §2): parses options, calls one function per command, and
maps errors to exit codes — 0 success, 2 bad usage or configuration, 3 a data or health gate
failed (the run is marked failed and says why), 1 anything unexpected.

Errors print one line on stderr (what, where, how to fix); `--debug` adds the traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

try:  # typer >= 0.29 vendors click as typer._click; older releases use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click import ClickException  # type: ignore[assignment]

from portflow import signals
from portflow.clock import parse_as_of
from portflow.config.loader import packaged_config_dir
from portflow.context import Context
from portflow.errors import NotAvailableError, PortflowError, UsageError, one_line
from portflow.runs import UNREADABLE, Run, is_orphaned, list_runs, validate_run_id

app = typer.Typer(
    name="portflow",
    help="Market data to portfolio weights, every day, reproducibly.\n\n"
    "Phase 1 (data): flow-data = scan-run, data-ingest, meta-ingest, feature-ingest,"
    " feature-backfill. Phase 2 (one sleeve): flow-production = port-select, port-pre-opt,"
    " port-optimize, port-test, port-post-analysis, port-report. Phase 3: flow-meta-production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
runs_app = typer.Typer(help="Inspect run workspaces.", no_args_is_help=True)
profiles_app = typer.Typer(help="Inspect profiles and their resolved configuration.",
                           no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(profiles_app, name="profiles")

_state: dict[str, Any] = {"debug": False}

ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="Profile name (see 'portflow profiles list').")]
RunIdOpt = Annotated[str | None, typer.Option("--run-id", help="Id of the new run (default: <UTC time>-<profile>).")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Parallel workers (default: cores).")]
FreshOpt = Annotated[float | None, typer.Option("--freshness-hours", min=0, help="Skip symbols asked this recently (default 12).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail the step if any symbol fails.")]
RecheckOpt = Annotated[bool, typer.Option("--recheck-toxic", help="Fetch symbols marked toxic again and re-run the guard.")]
DataRunOpt = Annotated[str | None, typer.Option("--data-run", help="Phase-1 data run to read (default: newest succeeded one for the profile).")]


@app.callback()
def _global(
    data_dir: Annotated[Path, typer.Option("--data-dir", envvar="PORTFLOW_DATA_DIR", help="Data dir (lakehouse, runs, export).")] = Path("data"),
    config_dir: Annotated[str | None, typer.Option("--config-dir", envvar="PORTFLOW_CONFIG_DIR", help="Config dir (default ./configs if present, else the packaged configs).")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", envvar="PORTFLOW_AS_OF", help="Clock date YYYY-MM-DD (default: today UTC).")] = None,
    debug: Annotated[bool, typer.Option("--debug", envvar="PORTFLOW_DEBUG", help="Show tracebacks.")] = False,
) -> None:
    _state["debug"] = debug
    try:
        not_a_folder = data_dir.exists() and not data_dir.is_dir()
    except OSError as exc:
        raise UsageError(f"--data-dir '{data_dir}' cannot be accessed ({exc.strerror}); fix"
                         " the permissions of its parent folders or pass another one") from None
    if not_a_folder:
        raise UsageError(f"--data-dir '{data_dir}' is a file, not a folder; point --data-dir /"
                         " PORTFLOW_DATA_DIR at a folder (it is created when missing)")
    _state["ctx"] = Context(data_dir=data_dir, config_dir=config_dir or None,
                            as_of=parse_as_of(as_of), debug=debug)


def _ctx() -> Context:
    return _state["ctx"]


def _run_id(run_id: str | None) -> str | None:
    return None if run_id is None else validate_run_id(run_id)


def _done(run: Run) -> None:
    rec = run.record
    typer.echo(f"run {run.run_id}: {rec['status']} -> {run.relative(run.json_path)}")


# -- setup ----------------------------------------------------------------------------------


@app.command()
def init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing ./configs.")] = False,
) -> None:
    """Copy the packaged configs into ./configs for editing."""
    target = Path("configs")
    if target.exists() and not force:
        raise UsageError("./configs already exists; edit it, or pass --force to overwrite it")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(packaged_config_dir(), target, ignore=shutil.ignore_patterns("__pycache__"))
    typer.echo(f"copied the packaged configs to {target}/ (manifest.yaml, scanners/)")


# -- Phase 1 ------------------------------------------------------------------------------


def _ingest_opts(jobs: int | None, fresh: float | None, strict: bool, recheck: bool) -> Any:
    from portflow.data.flow import IngestOptions

    return IngestOptions(jobs=jobs, freshness_hours=fresh, strict=strict, recheck_toxic=recheck)


@app.command("flow-data")
def flow_data(profile: ProfileOpt, run_id: RunIdOpt = None, jobs: JobsOpt = None,
              freshness_hours: FreshOpt = None, strict: StrictOpt = False,
              recheck_toxic: RecheckOpt = False,
              executor: Annotated[str, typer.Option("--executor", help="local (default) or ray: fan ingestion and backfill chunks out on Ray.")] = "local",
              ray_address: Annotated[str | None, typer.Option("--ray-address", help="Join an existing Ray cluster (with --executor ray).")] = None) -> None:
    """Phase 1 for every sleeve under PROFILE: scan-run, data-ingest, meta-ingest,
    feature-ingest, feature-backfill."""
    from dataclasses import replace

    from portflow.data.flow import flow_data as run_flow

    opts = replace(_ingest_opts(jobs, freshness_hours, strict, recheck_toxic),
                   executor=executor, ray_address=ray_address)
    _done(run_flow(_ctx(), profile, _run_id(run_id), opts))


def _phase1_step(step: str, profile: str, run_id: str | None, data_run: str | None,
                 opts: Any) -> None:
    from portflow.data.flow import single_step

    _done(single_step(_ctx(), step, profile, _run_id(run_id), data_run, opts))


@app.command("scan-run")
def scan_run(profile: ProfileOpt, run_id: RunIdOpt = None) -> None:
    """Run the profile's scanners; write export/<RUN_ID>/<scanner>.json and candidates.json."""
    _phase1_step("scan-run", profile, run_id, None, _ingest_opts(None, None, False, False))


@app.command("data-ingest")
def data_ingest(profile: ProfileOpt, run_id: RunIdOpt = None, data_run: DataRunOpt = None,
                jobs: JobsOpt = None, freshness_hours: FreshOpt = None,
                strict: StrictOpt = False, recheck_toxic: RecheckOpt = False) -> None:
    """Fetch missing daily bars of the candidates into the lakehouse (toxic guard, health)."""
    _phase1_step("data-ingest", profile, run_id, data_run,
                 _ingest_opts(jobs, freshness_hours, strict, recheck_toxic))


@app.command("meta-ingest")
def meta_ingest(profile: ProfileOpt, run_id: RunIdOpt = None, data_run: DataRunOpt = None) -> None:
    """Refresh tick size, lot size, min notional and precision into symbols.parquet."""
    _phase1_step("meta-ingest", profile, run_id, data_run, _ingest_opts(None, None, False, False))


@app.command("feature-ingest")
def feature_ingest(profile: ProfileOpt, run_id: RunIdOpt = None, data_run: DataRunOpt = None) -> None:
    """Today's technical ratings per candidate, stored as a dated snapshot."""
    _phase1_step("feature-ingest", profile, run_id, data_run, _ingest_opts(None, None, False, False))


@app.command("feature-backfill")
def feature_backfill(profile: ProfileOpt, run_id: RunIdOpt = None, data_run: DataRunOpt = None) -> None:
    """Ratings history of every healthy symbol into lakehouse/features_matrix.parquet."""
    _phase1_step("feature-backfill", profile, run_id, data_run, _ingest_opts(None, None, False, False))


# -- Phase 2 ------------------------------------------------------------------------------

RunIdStepOpt = Annotated[str | None, typer.Option("--run-id", help="Production run: new id creates it; an existing one re-runs this step in it.")]


def _phase2(command: str, **kwargs: Any) -> None:
    try:
        from portflow.alpha import pipeline
    except ImportError:
        raise NotAvailableError(f"{command} is not available yet") from None
    fn = pipeline.COMMANDS.get(command)
    if fn is None:
        raise NotAvailableError(f"{command} is not available yet")
    _done(fn(_ctx(), **kwargs))


@app.command("flow-production")
def flow_production(
    profile: ProfileOpt, run_id: RunIdOpt = None, data_run: DataRunOpt = None,
    skip_analysis: Annotated[bool, typer.Option("--skip-analysis", help="Skip post-analysis plots.")] = False,
    skip_validation: Annotated[bool, typer.Option("--skip-validation", help="Skip the walk-forward backtest.")] = False,
) -> None:
    """Phase 2 for one sleeve: select, pre-opt, optimize, validate, post-analysis, report."""
    _phase2("flow-production", profile=profile, run_id=_run_id(run_id), data_run=data_run,
            skip_analysis=skip_analysis, skip_validation=skip_validation)


@app.command("port-select")
def port_select(profile: ProfileOpt, run_id: RunIdStepOpt = None, data_run: DataRunOpt = None) -> None:
    """Aggregation + Strict Health + HTR selection (creates the run if --run-id is new)."""
    _phase2("port-select", profile=profile, run_id=_run_id(run_id), data_run=data_run)


@app.command("port-pre-opt")
def port_pre_opt(run_id: Annotated[str, typer.Option("--run-id", help="Existing production run.")]) -> None:
    """Strategy synthesis, clusters, antifragility stats and regime caps."""
    _phase2("port-pre-opt", run_id=validate_run_id(run_id))


@app.command("port-optimize")
def port_optimize(run_id: Annotated[str, typer.Option("--run-id", help="Existing production run.")]) -> None:
    """Optimisation (five methods, Stable Sum Gate) and flattening to weights.csv."""
    _phase2("port-optimize", run_id=validate_run_id(run_id))


@app.command("port-report")
def port_report(run_id: Annotated[str, typer.Option("--run-id", help="Existing production run.")]) -> None:
    """Self-contained report.html tearsheet of a production run."""
    _phase2("port-report", run_id=validate_run_id(run_id))


@app.command("port-test")
def port_test(
    run_id: Annotated[str, typer.Option("--run-id", help="Existing production run.")],
    engine: Annotated[str, typer.Option("--engine", help="native, or vectorbt to replay the same targets through vectorbt as a cross-check (extra portflow[vectorbt]).")] = "native",
) -> None:
    """Walk-forward validation of a production run: validation/ returns, metrics, windows."""
    _phase2("port-test", run_id=validate_run_id(run_id), engine=engine)


@app.command("port-post-analysis")
def port_post_analysis(run_id: Annotated[str, typer.Option("--run-id", help="Existing production run.")]) -> None:
    """Cluster map, factor map, drift monitor and cluster stability plots (plots/*.png)."""
    _phase2("port-post-analysis", run_id=validate_run_id(run_id))


# -- Phase 3 ------------------------------------------------------------------------------


@app.command("flow-meta-production")
def flow_meta_production(
    profile: ProfileOpt, run_id: RunIdOpt = None, data_run: DataRunOpt = None,
    executor: Annotated[str, typer.Option("--executor", help="ray (default: Ray tasks on a local cluster) or local (in this process).")] = "ray",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Join an existing Ray cluster (it must see the same data dir and environment).")] = None,
    skip_analysis: Annotated[bool, typer.Option("--skip-analysis", help="Skip the sleeves' post-analysis plots.")] = False,
    skip_validation: Annotated[bool, typer.Option("--skip-validation", help="Skip the sleeves' walk-forward backtests (meta-returns are then in-sample).")] = False,
) -> None:
    """Phase 3: run the meta profile's sleeves in parallel, meta-optimise, flatten, report."""
    ctx = _ctx()
    ctx.config.meta(profile)  # a wrong profile fails before the heavy imports below
    from portflow.meta.sleeves import sleeve_executor

    # Ray's cluster starts in the background now: the imports below overlap its start-up
    sleeves_on = sleeve_executor(ctx.config, profile, executor, ray_address)
    from portflow.meta.pipeline import MetaOptions
    from portflow.meta.pipeline import flow_meta_production as run_meta

    _done(run_meta(ctx, profile, _run_id(run_id), data_run,
                   MetaOptions(executor=executor, ray_address=ray_address,
                               skip_analysis=skip_analysis, skip_validation=skip_validation),
                   sleeves_on))


# -- inspection ---------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(kind: Annotated[str | None, typer.Option("--kind", help="data, production or meta.")] = None) -> None:
    """The runs in the data dir, newest first."""
    from rich.console import Console
    from rich.table import Table

    runs = [r for r in list_runs(_ctx().data_dir) if not kind or r.get("kind") == kind]
    table = Table()
    # ids are what users copy into the next command: never wrapped or cut
    table.add_column("run_id", no_wrap=True,
                     min_width=max([len(str(r.get("run_id"))) for r in runs] + [6]))
    for col in ("kind", "profile", "status", "as_of", "started_at", "seconds", "key outputs"):
        table.add_column(col)
    for rec in runs:
        steps = rec.get("steps", {})
        secs = sum(float(s.get("seconds") or 0) for s in steps.values())
        table.add_row(str(rec.get("run_id")), str(rec.get("kind")), str(rec.get("profile")),
                      "killed (process gone)" if is_orphaned(rec) else str(rec.get("status")),
                      str(rec.get("as_of")), str(rec.get("started_at")),
                      f"{secs:.1f}", _key_outputs(rec))
    out = Console(highlight=False)
    if not out.is_terminal:  # piped: every row on one line at its natural width
        natural = Console(width=100_000).measure(table).maximum
        out = Console(highlight=False, width=max(natural, 40))
    out.print(table)


def _key_outputs(rec: dict[str, Any]) -> str:
    steps = rec.get("steps", {})
    if rec.get("status") in ("failed", UNREADABLE):
        return str(rec.get("failure_reason") or "")[:60]
    if rec.get("kind") == "data":
        c = steps.get("data-ingest", {}).get("counts", {})
        if c:
            return (f"{c.get('symbols_total', 0)} symbols, {c.get('bars_fetched', 0)} bars,"
                    f" {c.get('symbols_toxic', 0)} toxic")
        if "scan-run" in steps:
            return f"{steps['scan-run'].get('counts', {}).get('candidates', 0)} candidates"
        for name, step in steps.items():
            counts: dict[str, Any] = step.get("counts", {})
            first = next(iter(counts.items()), None)
            return f"{name}: {first[0]} {first[1]}" if first else name
        return ""
    if rec.get("kind") == "meta":
        flat = steps.get("flatten", {}).get("counts", {})
        return (f"{len(rec.get('sleeves') or {})} sleeves -> {flat.get('assets', '?')} assets"
                + (" (in-sample)" if rec.get("in_sample") else ""))
    sel = steps.get("port-select", {}).get("counts", {})
    return f"{sel.get('winners', '')} winners" if sel else ""


def _open_any(run_id: str) -> Run:
    for part in run_id.split("/"):
        validate_run_id(part)
    return Run.open(_ctx().data_dir, run_id)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (a meta run's sleeve: META/sleeves/ID).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole run.json.")] = False,
) -> None:
    """One run readably: status, steps with counts, outputs, fallback links (--json: run.json)."""
    run = _open_any(run_id)
    if as_json:
        typer.echo(json.dumps(run.record, indent=2))
        return
    from portflow.summaries import show_run

    show_run(run)


@runs_app.command("weights")
def runs_weights(
    run_id: Annotated[str, typer.Argument(help="Production or meta run id.")],
    method: Annotated[str | None, typer.Option("--method", "-m", help="Method (default: the primary one; a meta run has one flattened table).")] = None,
    top: Annotated[int | None, typer.Option("--top", "-n", min=1, help="Largest N holdings only.")] = None,
) -> None:
    """A run's weights as a table: symbol, direction, cluster, weight (fallbacks marked)."""
    from portflow.summaries import Console, weights_table

    Console(highlight=False).print(weights_table(_open_any(run_id), method, top))


@profiles_app.command("list")
def profiles_list() -> None:
    """Profiles of the manifest in force: kind, sleeves or scanners, description."""
    cfg = _ctx().config
    typer.echo(f"config dir: {cfg.config_dir}")
    for name, prof in cfg.profiles.items():
        if prof.kind == "meta":
            what = "meta   sleeves: " + ", ".join(f"{s.id}={s.target}" for s in prof.sleeves)
        else:
            what = "sleeve scanners: " + ", ".join(prof.scanners)
        typer.echo(f"{name:26s} {what}  - {prof.description or ''}")


@profiles_app.command("show")
def profiles_show(profile: Annotated[str, typer.Argument(help="Profile name.")]) -> None:
    """The resolved configuration of one profile (defaults merged, scanners inlined), as JSON."""
    typer.echo(json.dumps(_ctx().resolved(profile), indent=2))


# -- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app and map errors to exit codes (module docstring)."""
    debug = bool(os.environ.get("PORTFLOW_DEBUG")) or "--debug" in (argv or sys.argv[1:])
    signals.install()
    try:
        # without standalone mode typer *returns* exit codes (typer.Exit, --help) instead of
        # raising them; a command's own return value is None
        code = app(args=argv, standalone_mode=False)
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("portflow: aborted", err=True)
        return 130
    except ClickException as exc:
        exc.show()
        return 2
    except signals.Signalled as exc:
        typer.echo(f"portflow: {exc.reason} by {exc.signal_label}; a run in progress is"
                   " recorded as failed", err=True)
        return exc.exit_code
    except PortflowError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"portflow: {one_line(str(exc))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("portflow: interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            typer.echo(f"portflow: cannot access '{exc.filename}' ({exc.strerror}); fix the"
                       " permissions of the data dir or pass another --data-dir", err=True)
            return 2
        typer.echo(
            f"portflow: unexpected error {type(exc).__name__}: {one_line(str(exc))}"
            " (re-run with --debug for the traceback and report it)",
            err=True,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
