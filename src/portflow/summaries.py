"""What a run holds, readably in the terminal: `runs show`, `runs weights` and the closing
summary of `flow-production` (SPEC §2, §6.5: every place weights are shown marks a method whose
weights came from a fallback link)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from portflow.runs import ARTIFACTS, Run

LONG_STYLE, SHORT_STYLE = "green", "red"
BAR_WIDTH = 24


def _out() -> Console:
    return Console(highlight=False)


def method_links(rec: dict[str, Any]) -> dict[str, str]:
    """method → the fallback link that produced its weights (`primary` when the first held)."""
    methods = (rec.get("optimization") or {}).get("methods") or {}
    return {m: str(r.get("link")) for m, r in methods.items()}


def is_fallback(method: str, link: str) -> bool:
    return link not in ("primary", method)


def link_label(method: str, link: str) -> str:
    return f"FALLBACK ({link})" if is_fallback(method, link) else "primary"


def primary_method(rec: dict[str, Any]) -> str:
    cfg = rec.get("config") or {}
    return str((cfg.get("optimization") or {}).get("primary_method") or "hrp")


def weights_table(run: Run, method: str | None = None, top: int | None = None) -> Table:
    """A rich table of one method's weights, largest |weight| first: symbol, direction,
    cluster, signed weight and a bar (green long, red short); the caption counts what `top`
    left out and gives the gross and net exposure."""
    rec = run.record
    w = run.load("weights")
    if rec.get("kind") == "meta":
        return meta_weights_table(run, w, top)
    method = method or primary_method(rec)
    if method not in set(w["method"]):
        from portflow.errors import UsageError, suggest

        have = sorted(set(w["method"]))
        raise UsageError(f"run '{run.run_id}' has no weights for method '{method}'"
                         f"{suggest(method, have)}; methods: {', '.join(have)}")
    g = w[w["method"] == method].copy()
    g = g.reindex(g["weight"].abs().sort_values(ascending=False, kind="mergesort").index)
    gross, net, n = float(g["weight"].abs().sum()), float(g["weight"].sum()), len(g)
    shown = g.head(top) if top is not None else g
    link = method_links(rec).get(method, "primary")
    title = f"{run.run_id}: {method} ({link_label(method, link)})"
    caption = (f"{'top ' + str(len(shown)) + ' of ' if len(shown) < n else ''}{n} holdings;"
               f" gross {gross:.1%}, net {net:+.1%}")
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for col, just in (("symbol", "left"), ("direction", "left"), ("cluster", "right"),
                      ("weight", "right"), ("", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    biggest = float(g["weight"].abs().max()) if n else 1.0
    for r in shown.itertuples(index=False):
        weight = float(r.weight)
        style = SHORT_STYLE if weight < 0 else LONG_STYLE
        bar = "█" * max(1, round(BAR_WIDTH * abs(weight) / biggest)) if biggest > 0 else ""
        table.add_row(str(r.symbol), Text(str(r.direction), style=style), str(r.cluster),
                      Text(f"{weight:+.2%}", style=style), Text(bar, style=style))
    return table


def meta_weights_table(run: Run, w: Any, top: int | None = None) -> Table:
    """A meta run's flattened weights: symbol, direction, net weight, gross, sleeves."""
    w = w.head(top) if top is not None else w
    table = Table(title=f"{run.run_id}: flattened weights"
                  + (" (in-sample sleeve streams)" if run.record.get("in_sample") else ""),
                  title_justify="left")
    for col in ("symbol", "direction", "weight", "gross", "sleeves"):
        table.add_column(col, justify="right" if col in ("weight", "gross") else "left")
    for r in w.itertuples(index=False):
        table.add_row(str(r.symbol), str(r.direction), f"{float(r.weight):+.4f}",
                      f"{float(r.gross):.4f}", str(r.sleeves))
    return table


def print_weights_summary(run: Run, top: int = 10) -> None:
    """flow-production's closing lines: the top holdings of the primary method, each method's
    link (fallbacks marked), what was skipped, and where the report is."""
    if run.record.get("status") != "succeeded" or not run.has("weights"):
        return
    out = _out()
    out.print(weights_table(run, top=top))
    _print_links(out, run.record)
    skipped = [f"{name} {st.get('status')}" for name, st in (run.record.get("steps") or {}).items()
               if st.get("status") not in ("succeeded", "running")]
    if skipped:
        out.print("not run: " + ", ".join(skipped))
    if run.has("report"):
        out.print(f"report: {run.file('report')}", markup=False, soft_wrap=True)


def _print_links(out: Console, rec: dict[str, Any]) -> None:
    links = method_links(rec)
    if links:
        out.print("methods: " + ", ".join(f"{m} {link_label(m, lk)}" for m, lk in links.items()),
                  markup=False)


def show_run(run: Run) -> None:
    """`runs show`: status, steps with counts, regime and primary holdings, fallbacks,
    outputs, failure."""
    rec = run.record
    out = _out()
    head = (f"{rec.get('run_id')}  {rec.get('kind')}  profile {rec.get('profile')}  as of"
            f" {rec.get('as_of')}  {rec.get('status')}")
    out.print(head, markup=False)
    for key, label in (("data_run", "data run"), ("executor", "executor"),
                       ("failure_reason", "failure")):
        if rec.get(key):
            out.print(f"{label}: {rec[key]}", markup=False)
    steps = Table(title="steps", title_justify="left")
    for col in ("step", "status", "seconds", "counts"):
        steps.add_column(col)
    for name, step in (rec.get("steps") or {}).items():
        counts = step.get("counts") or {}
        text = ", ".join(f"{k} {_short(v)}" for k, v in counts.items())
        status = str(step.get("status"))
        steps.add_row(name, Text(status, style=_STATUS_STYLE.get(status, "")),
                      f"{float(step.get('seconds') or 0):.1f}", Text(text))
    out.print(steps)
    if run.has("regime"):
        regime = run.load("regime")
        out.print(f"regime: {regime.get('regime')} (score {float(regime.get('score', 0)):.2f});"
                  f" cluster cap {float(regime.get('effective_cluster_cap', 0)):.1%}, atom max"
                  f" {float(regime.get('effective_atom_max', 0)):.1%}", markup=False)
    _print_links(out, rec)
    if run.has("weights"):
        out.print(weights_table(run, top=5))
    present = [a.file for name, a in ARTIFACTS.items() if run.has(name)]
    if present:
        out.print("outputs: " + ", ".join(present), markup=False)
    if run.has("report"):
        out.print(f"report: {run.file('report')}", markup=False, soft_wrap=True)


_STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "skipped": "yellow",
                 "not available yet": "yellow", "running": "cyan"}


def _short(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, dict | list) else str(v)
    return text if len(text) <= 60 else text[:57] + "..."
