"""The production tearsheet `report.html` (SPEC §4, §6.6): one self-contained page answering
"what do I hold, why, and how did it do".

:func:`inputs_from_run` reads a run's artifacts (through the run's artifact table only);
:func:`render` is a pure function of those inputs:

1. Headline: run, profile, regime (label and score, as text), data as of, status of the steps,
   primary method, the fallback links used (run.json `optimization.methods.<m>.link`), and
   whether validation and post-analysis ran ("skipped" / "not available" otherwise).
2. Weights: every method's signed weights per atom, the primary method first, as one table with
   in-cell bars (green long, red short) and as a small-multiples bar chart.
3. Risk: per atom and per cluster, each method's weight and risk contribution
   RC_i = w_i·(Σw)_i / wᵀΣw, with Σ the sample covariance (ddof 1) of the synthetic returns and
   w the synthetic (long-only) weights, so the RCs of a method sum to 1.
4. Selection funnel: candidates → healthy (the dropped ones counted by reason, from
   health.json) → not vetoed (vetoes counted by reason) → winners, and the HTR stage reached
   (selection.json).
5. Correlation heatmap of the synthetic returns, atoms grouped by cluster.
6. Performance: each method's in-sample curve Π(1 + Σ_i w_i·r_i) over the synthetic returns
   (weights fitted on that same window: labelled in-sample, never a backtest), and, when
   validation ran, the out-of-sample equity and drawdown curves against the benchmark, the
   metrics table and the per-window turnover and costs.
7. Post-analysis: the very bytes of `plots/*.png`, or the sentence that analysis was skipped
   (or is not available).
8. Appendix: the steps, the resolved config and the input fingerprints of run.json.

Everything is inline (PNG charts as `data:image/png;base64`, CSS in a `<style>` element, no
script): the page opens offline and prints. The template is rendered by jinja2 with autoescape
on, so every string from data (symbols, reasons, config values) is HTML-escaped.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from portflow.alpha import figures
from portflow.runs import ARTIFACTS, NOT_AVAILABLE, Run

ZERO_WEIGHT = 5e-5  # below half a basis point a weight prints as 0.00%: shown as "·"
PLOT_CAPTIONS = {
    "plot_cluster_map": "Cluster map: correlations of the atoms' synthetic returns in the order"
                        " of the clustering (boxes are the clusters the caps apply to).",
    "plot_factor_map": "Factor map: a 2-D picture of the correlation distance; atoms close"
                       " together move together.",
    "plot_drift_monitor": "Drift monitor: how far the holdings have drifted from their targets"
                          " since the last rebalance.",
    "plot_cluster_stability": "Cluster stability: do the two halves of the window find the same"
                              " clusters?",
}


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """validation/: returns (UTC index, one column per method plus `benchmark`), metrics
    (one row per method and benchmark), windows (one row per (method, window, atom))."""

    returns: pd.DataFrame
    metrics: pd.DataFrame
    windows: pd.DataFrame


@dataclass(frozen=True)
class ReportInputs:
    """What the report shows. record: run.json; weights: weights.csv; synthetic: index UTC
    dates, columns atom ids; clusters: atom → cluster; plots: artifact name → PNG bytes (empty
    when post-analysis did not run)."""

    record: Mapping[str, Any]
    weights: pd.DataFrame
    synthetic: pd.DataFrame
    clusters: Mapping[str, int]
    regime: Mapping[str, Any]
    health: Mapping[str, Any]
    selection: Mapping[str, Any]
    validation: Validation | None = None
    plots: Mapping[str, bytes] = field(default_factory=dict)
    post_summary: Mapping[str, Any] | None = None


def plot_names() -> list[str]:
    """The post-analysis figures of the artifact table, in its order."""
    return [n for n, a in ARTIFACTS.items() if a.format == "png" and a.step == "port-post-analysis"]


def inputs_from_run(run: Run) -> ReportInputs:
    """Every artifact the report shows, read through the run's artifact table."""
    rec = run.record
    validation = None
    if step_status(rec, "port-test") == "succeeded" and all(
        run.has(n) for n in ("validation_returns", "validation_metrics", "validation_windows")
    ):
        validation = Validation(run.load("validation_returns"), run.load("validation_metrics"),
                                run.load("validation_windows"))
    analysed = step_status(rec, "port-post-analysis") == "succeeded"
    plots = {n: run.load(n) for n in plot_names() if analysed and run.has(n)}
    return ReportInputs(
        record=rec, weights=run.load("weights"), synthetic=run.load("synthetic_returns"),
        clusters=run.load("clusters"), regime=run.load("regime"), health=run.load("health"),
        selection=run.load("selection"), validation=validation, plots=plots,
        post_summary=run.load("post_analysis") if analysed and run.has("post_analysis")
        else None,
    )


def step_status(record: Mapping[str, Any], name: str) -> str | None:
    return ((record.get("steps") or {}).get(name) or {}).get("status")


# -- numbers -----------------------------------------------------------------------------------


def risk_contributions(synthetic: pd.DataFrame, weights: pd.Series) -> pd.Series:
    """Step 3: RC_i = w_i·(Σw)_i / wᵀΣw of synthetic weights `weights` (index atom ids)."""
    w = weights.abs().reindex(synthetic.columns).fillna(0.0).to_numpy(np.float64)
    cov = np.cov(synthetic.to_numpy(np.float64), rowvar=False, ddof=1)
    marginal = cov @ w
    total = float(w @ marginal)
    rc = w * marginal / total if total > 0 else np.full(w.shape, np.nan)
    return pd.Series(rc, index=synthetic.columns)


def performance(returns: pd.Series, periods_per_year: int) -> dict[str, float]:
    """Total and annualised return, annual vol, Sharpe (rf 0) and max drawdown of simple
    per-bar returns (CAGR = Π(1 + r)^(P/n) − 1)."""
    r = returns.to_numpy(np.float64)
    wealth = np.cumprod(1.0 + r)
    n = r.size
    vol = float(r.std(ddof=1)) if n > 1 else math.nan
    peak = np.maximum.accumulate(np.concatenate([[1.0], wealth]))[1:]
    return {
        "total": float(wealth[-1] - 1.0) if n else math.nan,
        "cagr": float(wealth[-1] ** (periods_per_year / n) - 1.0) if n and wealth[-1] > 0
        else math.nan,
        "ann_vol": vol * math.sqrt(periods_per_year),
        "sharpe": float(r.mean()) / vol * math.sqrt(periods_per_year) if vol > 0 else math.nan,
        "max_drawdown": float((wealth / peak - 1.0).min()) if n else math.nan,
    }


def in_sample_returns(synthetic: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """Step 6: each method's portfolio return per bar, Σ_i |w_i|·r_i over the synthetic
    returns (index UTC dates, one column per method in weights.csv order)."""
    out = {}
    for method, g in weights.groupby("method", sort=False):
        w = g.set_index("atom")["weight"].abs().reindex(synthetic.columns).fillna(0.0)
        out[str(method)] = synthetic.to_numpy(np.float64) @ w.to_numpy(np.float64)
    return pd.DataFrame(out, index=synthetic.index)


_HEALTH_KINDS = (("toxic", "toxic"), ("missing bar", "missing bars"), ("flat", "flat"),
                 ("stale", "stale"), ("history starts", "history too short"),
                 ("no bar", "no bars"), ("unreadable", "unreadable file"))


def health_kind(reason: str) -> str:
    """A health reason's category (the text before ':' when no known kind matches)."""
    low = reason.lower()
    for needle, kind in _HEALTH_KINDS:
        if needle in low:
            return kind
    return re.split(r"[:;(]", reason, maxsplit=1)[0].strip() or "other"


# -- view records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    note: str = ""
    tone: str = ""  # "", "good", "warn", "bad": the headline card's colour


@dataclass(frozen=True)
class Cell:
    """A weight in the table: text, bar width in % of the column's largest |weight|, side."""

    text: str
    width: float
    side: str


@dataclass(frozen=True)
class MethodHead:
    name: str
    label: str
    primary: bool
    link: str
    fallback: bool
    why: str


@dataclass(frozen=True)
class Row:
    cells: Sequence[Any]
    css: str = ""


@dataclass(frozen=True)
class Table:
    """numeric: the indices of the right-aligned number columns."""

    head: Sequence[str]
    rows: Sequence[Row]
    numeric: frozenset[int] = frozenset()


def _cols(start: int, stop: int) -> frozenset[int]:
    return frozenset(range(start, stop))


@dataclass(frozen=True)
class Stage:
    label: str
    count: int
    width: float
    note: str = ""


@dataclass(frozen=True)
class Chart:
    title: str
    uri: str
    caption: str = ""
    alt: str = ""


@dataclass(frozen=True)
class Section:
    """A part of the page whose content may be missing: `state` is shown instead."""

    shown: bool
    state: str


def _pct(x: float, digits: int = 2, sign: bool = False) -> str:
    if x is None or not math.isfinite(float(x)):
        return "–"
    return f"{float(x) * 100:{'+' if sign else ''}.{digits}f}%"


def _num(x: float, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _methods(inputs: ReportInputs) -> list[str]:
    """weights.csv's methods, the primary first."""
    order = list(dict.fromkeys(str(m) for m in inputs.weights["method"]))
    primary = primary_of(inputs.record)
    return sorted(order, key=lambda m: (m != primary, order.index(m)))


def primary_of(record: Mapping[str, Any]) -> str:
    cfg = record.get("config") or {}
    return str((cfg.get("optimization") or {}).get("primary_method") or "hrp")


def _heads(inputs: ReportInputs, methods: Sequence[str]) -> list[MethodHead]:
    recorded = (inputs.record.get("optimization") or {}).get("methods") or {}
    primary = primary_of(inputs.record)
    out = []
    for m in methods:
        rec = recorded.get(m) or {}
        link = str(rec.get("link") or "primary")
        fallback = link not in ("primary", m)
        why = "; ".join(f"{a.get('link')}: {a.get('reason')}"
                        for a in rec.get("attempts") or [] if not a.get("ok"))
        out.append(MethodHead(m, figures.method_label(m), m == primary, link, fallback, why))
    return out


# -- the sections ------------------------------------------------------------------------------


def _steps_state(record: Mapping[str, Any]) -> tuple[str, str]:
    """(status, note) of the run so far: the report is its last step, so the run is still
    `running` while it renders; what counts is how the other steps ended."""
    steps = {k: v for k, v in (record.get("steps") or {}).items() if k != "port-report"}
    failed = [k for k, v in steps.items() if v.get("status") == "failed"]
    if failed or record.get("status") == "failed":
        return "failed", ", ".join(failed) or str(record.get("failure_reason"))
    counts = Counter(str(v.get("status")) for v in steps.values())
    return "succeeded", "steps: " + ", ".join(f"{n} {s}" for s, n in counts.items())


def _optional_state(record: Mapping[str, Any], step: str, flag: str, what: str
                    ) -> tuple[str, str]:
    """(short state, sentence) of a step that may not have run: skipped, not available,
    failed."""
    status = step_status(record, step)
    if status == "skipped":
        return "skipped", f"{what} skipped ({flag})"
    if status in (None, NOT_AVAILABLE):
        return "not available", f"{what} not available ({step} is not available yet)"
    if status == "failed":
        err = ((record.get("steps") or {}).get(step) or {}).get("error") or ""
        return "failed", f"{what} failed: {err}"
    return "not available", f"{what} not available (step {step} is {status})"


def headline(inputs: ReportInputs, heads: Sequence[MethodHead]) -> list[Fact]:
    rec, regime = inputs.record, inputs.regime
    status, steps_note = _steps_state(rec)
    sel = (rec.get("steps") or {}).get("port-select", {}).get("counts", {})
    window = f"window {sel.get('window_start', '?')} … {sel.get('window_end', '?')}" if sel else ""
    fallbacks = [h for h in heads if h.fallback]
    primary = next(h for h in heads if h.primary)
    n_hold = int((inputs.weights["method"] == primary.name).sum())
    caps = f"cluster cap {_pct(regime.get('effective_cluster_cap', math.nan), 1)}, atom max" \
           f" {_pct(regime.get('effective_atom_max', math.nan), 1)}"
    return [
        Fact("Status", status, f"run {rec.get('run_id')}; {steps_note}",
             "good" if status == "succeeded" else "bad"),
        Fact("Regime", str(regime.get("regime")),
             f"score {_num(regime.get('score', math.nan))}; {caps}",
             "warn" if regime.get("regime") in ("TURBULENT", "CRISIS") else ""),
        Fact("Data as of", str(rec.get("as_of")), f"data run {rec.get('data_run')}; {window}"),
        Fact("Primary method", primary.name, f"{primary.label}; {n_hold} holdings"),
        Fact("Fallback links", "none" if not fallbacks else
             ", ".join(f"{h.name} → {h.link}" for h in fallbacks),
             "every method's first link held" if not fallbacks else
             "; ".join(h.why for h in fallbacks if h.why), "warn" if fallbacks else "good"),
        Fact("Validation", *(("validated", _oos_note(inputs.validation, primary.name))
                             if inputs.validation is not None else
                             _optional_state(rec, "port-test", "--skip-validation",
                                             "validation")),
             "good" if inputs.validation is not None else "warn"),
        Fact("Post-analysis", *(("done", "plots below") if inputs.plots else
                                _optional_state(rec, "port-post-analysis", "--skip-analysis",
                                                "analysis")),
             "good" if inputs.plots else "warn"),
    ]


def _oos_note(val: Validation | None, primary: str) -> str:
    """The primary method's out-of-sample CAGR and Sharpe against the benchmark's."""
    if val is None:
        return ""
    m = val.metrics.set_index("method")
    parts = []
    for name in (primary, "benchmark"):
        if name in m.index:
            parts.append(f"{name} CAGR {_pct(m.at[name, 'cagr'], 1)}, Sharpe"
                         f" {_num(m.at[name, 'sharpe'])}")
    return "out-of-sample: " + "; ".join(parts) if parts else ""


def weights_table(inputs: ReportInputs, methods: Sequence[str]) -> Table:
    """Step 2: one row per atom (largest primary |weight| first), one bar cell per method."""
    w = inputs.weights
    pivot = w.pivot_table(index="atom", columns="method", values="weight", aggfunc="sum",
                          sort=False).reindex(columns=list(methods))
    primary = methods[0]
    pivot = pivot.reindex(pivot[primary].abs().sort_values(ascending=False, kind="mergesort")
                          .index)
    info = w.drop_duplicates("atom").set_index("atom")
    names = figures.atom_names(w)
    biggest = {m: float(pivot[m].abs().max()) or 1.0 for m in methods}
    rows = []
    for atom, vals in pivot.iterrows():
        cells: list[Any] = [names[str(atom)], str(info.at[atom, "direction"]),
                            str(int(info.at[atom, "cluster"]))]
        for m in methods:
            v = float(vals[m]) if pd.notna(vals[m]) else 0.0
            if abs(v) < ZERO_WEIGHT:
                cells.append(Cell("·", 0.0, "zero"))
            else:
                cells.append(Cell(_pct(v, 2, sign=True), round(100 * abs(v) / biggest[m], 1),
                                  "short" if v < 0 else "long"))
        rows.append(Row(cells))
    for label, fn in (("gross Σ|w|", lambda s: s.abs().sum()),
                      ("net Σw", lambda s: s.sum()),
                      ("holdings", lambda s: float((s.abs() >= ZERO_WEIGHT).sum())),
                      ("effective N 1/Σw²", lambda s: 1.0 / float((s**2).sum()))):
        cells = [label, "", ""]
        for m in methods:
            v = float(fn(pivot[m].fillna(0.0)))
            text = _pct(v, 1) if "Σ" in label and "1/" not in label else _num(v, 1)
            cells.append(Cell(text, 0.0, "none"))
        rows.append(Row(cells, "total"))
    return Table(["symbol", "side", "cluster", *methods], rows, _cols(2, 3 + len(methods)))


def weights_chart(inputs: ReportInputs, methods: Sequence[str]) -> bytes:
    """Step 2's chart: one panel per method, atoms in the table's order, bars by side."""
    w = inputs.weights
    prim = w[w["method"] == methods[0]].set_index("atom")["weight"]
    atoms = list(prim.abs().sort_values(ascending=False, kind="mergesort").index)
    names = figures.atom_names(w)
    n = len(atoms)
    with figures.style():
        fig = figures.figure(min(14.0, 2.4 * len(methods) + 2.0), max(3.5, 0.2 * n + 1.3))
        axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
        top = float(w["weight"].abs().max())
        for ax, m in zip(axes, methods, strict=True):
            s = w[w["method"] == m].set_index("atom")["weight"].reindex(atoms).fillna(0.0)
            y = np.arange(n)
            ax.barh(y, s.to_numpy(), color=[figures.SHORT if v < 0 else figures.LONG for v in s])
            ax.axvline(0, color=figures.INK, linewidth=0.6)
            lo = -top * 1.05 if (w["weight"] < 0).any() else 0.0
            hi = top * 1.05 if (w["weight"] > 0).any() else 0.0
            ax.set_xlim(lo, hi)
            ax.xaxis.set_major_formatter(lambda v, _: f"{v * 100:.0f}%")
            ax.xaxis.grid(True)
            ax.set_title(m + (" (primary)" if m == methods[0] else ""), fontsize=9)
        axes[0].set_yticks(np.arange(n), [names[a] for a in atoms], fontsize=7)
        axes[0].invert_yaxis()  # shared: every panel lists the atoms top-down alike
        return figures.png(fig)


def risk_tables(inputs: ReportInputs, methods: Sequence[str]) -> tuple[Table, Table]:
    """Step 3: per cluster and per atom, weight and risk contribution of every method."""
    syn, w = inputs.synthetic, inputs.weights
    rcs = {m: risk_contributions(syn, w[w["method"] == m].set_index("atom")["weight"])
           for m in methods}
    ws = {m: w[w["method"] == m].set_index("atom")["weight"].reindex(syn.columns).fillna(0.0)
          for m in methods}
    labels = pd.Series({a: int(inputs.clusters[a]) for a in syn.columns})
    names = figures.atom_names(w)
    head = [f"{m} weight · risk" for m in methods]
    crows = []
    for c in sorted(set(labels)):
        members = [a for a in syn.columns if labels[a] == c]
        cells: list[Any] = [f"cluster {c}", ", ".join(names[a] for a in members)]
        for m in methods:
            cells.append(f"{_pct(float(ws[m][members].sum()), 1, sign=True)} ·"
                         f" {_pct(float(rcs[m][members].sum()), 1)}")
        crows.append(Row(cells))
    order = ws[methods[0]].abs().sort_values(ascending=False, kind="mergesort").index
    arows = []
    for a in order:
        cells = [names[a], f"cluster {labels[a]}"]
        for m in methods:
            cells.append(f"{_pct(float(ws[m][a]), 2, sign=True)} · {_pct(float(rcs[m][a]), 2)}")
        arows.append(Row(cells))
    nums = _cols(2, 2 + len(methods))
    return (Table(["cluster", "atoms", *head], crows, nums),
            Table(["symbol", "cluster", *head], arows, nums))


def risk_chart(inputs: ReportInputs, method: str) -> bytes:
    """Step 3's chart: the primary method's weight beside its risk contribution, per atom."""
    syn, w = inputs.synthetic, inputs.weights
    wm = w[w["method"] == method].set_index("atom")["weight"].reindex(syn.columns).fillna(0.0)
    rc = risk_contributions(syn, wm)
    order = list(wm.abs().sort_values(ascending=False, kind="mergesort").index)
    names = figures.atom_names(w)
    y = np.arange(len(order))
    with figures.style():
        fig = figures.figure(8.5, max(3.5, 0.24 * len(order) + 1.3))
        ax = fig.add_subplot()
        ax.barh(y - 0.2, wm.abs()[order].to_numpy(), height=0.4, color="#9ecae1",
                label="|weight|")
        ax.barh(y + 0.2, rc[order].to_numpy(), height=0.4, color="#08519c",
                label="risk contribution")
        ax.set_yticks(y, [names[a] for a in order], fontsize=7.5)
        ax.invert_yaxis()
        ax.xaxis.set_major_formatter(lambda v, _: f"{v * 100:.0f}%")
        ax.xaxis.grid(True)
        ax.legend(loc="lower right")
        ax.set_title(f"{method}: weight vs share of portfolio variance (in-sample)")
        return figures.png(fig)


def funnel(inputs: ReportInputs) -> tuple[list[Stage], Table, Table, str]:
    """Step 4: the stages, the unhealthy by reason, the vetoed by reason, and the HTR stage."""
    cands = list(inputs.health.get("candidates") or [])
    healthy = [c for c in cands if c.get("healthy")]
    sel = inputs.selection
    scored = list(sel.get("candidates") or [])
    vetoed = [c for c in scored if c.get("vetoes")]
    winners = [c for c in scored if c.get("winner")]
    top = max(1, len(cands))
    stages = [
        Stage("candidates", len(cands), 100.0, "scanned by the data run"),
        Stage("healthy", len(healthy), 100 * len(healthy) / top,
              f"{len(cands) - len(healthy)} dropped by Strict Health"),
        Stage("not vetoed", len(scored) - len(vetoed), 100 * (len(scored) - len(vetoed)) / top,
              f"{len(vetoed)} vetoed"),
        Stage("winners", len(winners), 100 * len(winners) / top,
              f"HTR stage {sel.get('stage')}"
              + (" (short of min_winners)" if sel.get("short_of_min_winners") else "")),
    ]
    by_kind: dict[str, list[str]] = {}
    for c in cands:
        if not c.get("healthy"):
            for r in c.get("reasons") or ["no reason recorded"]:
                by_kind.setdefault(health_kind(str(r)), []).append(f"{c.get('symbol')}: {r}")
    unhealthy = Table(["reason", "candidates", "details"],
                      [Row([k, str(len(v)), "; ".join(v)]) for k, v in
                       sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0]))],
                      frozenset({1}))
    vetoes: dict[str, list[str]] = {}
    for c in vetoed:
        for v in c["vetoes"]:
            vetoes.setdefault(str(v.get("veto")), []).append(str(c.get("symbol")))
    examples: dict[str, str] = {}
    for c in vetoed:
        for v in c["vetoes"]:
            examples.setdefault(str(v.get("veto")), str(v.get("reason")))
    veto_table = Table(["veto", "candidates", "example"],
                       [Row([k, str(len(v)), examples[k]]) for k, v in
                        sorted(vetoes.items(), key=lambda kv: (-len(kv[1]), kv[0]))],
                       frozenset({1}))
    return stages, unhealthy, veto_table, str(sel.get("stage"))


def correlation_chart(inputs: ReportInputs) -> bytes:
    """Step 5: the correlation heatmap, atoms grouped by cluster (then by key)."""
    syn = inputs.synthetic
    order = sorted(syn.columns, key=lambda a: (int(inputs.clusters[a]), str(a)))
    names = figures.atom_names(inputs.weights)
    n = len(order)
    side = min(10.0, max(5.5, 0.26 * n + 2.2))
    with figures.style():
        fig = figures.figure(side + 1.0, side)
        ax = fig.add_subplot()
        image = figures.heatmap(ax, syn[order].corr().to_numpy(), [names[a] for a in order],
                                [int(inputs.clusters[a]) for a in order])
        fig.colorbar(image, ax=ax, shrink=0.8, label="correlation")
        ax.set_title("Correlation of the atoms' synthetic returns (boxes = clusters)")
        return figures.png(fig)


def in_sample_chart(curves: pd.DataFrame, methods: Sequence[str]) -> bytes:
    colors = figures.method_colors(methods)
    with figures.style():
        fig = figures.figure(10.0, 4.2)
        ax = fig.add_subplot()
        for m in methods:
            ax.plot(curves.index, (1.0 + curves[m]).cumprod(), color=colors[m],
                    linewidth=2.2 if m == methods[0] else 1.2, label=m)
        ax.axhline(1.0, color=figures.GRID, linewidth=0.8)
        ax.yaxis.grid(True)
        ax.set_ylabel("growth of 1 (in-sample)")
        ax.legend(loc="upper left", ncols=len(methods))
        ax.set_title("IN-SAMPLE: today's weights applied to the window they were fitted on"
                     " (not a backtest)")
        return figures.png(fig)


def oos_chart(val: Validation, methods: Sequence[str]) -> bytes:
    """Step 6: out-of-sample equity (top) and drawdown (bottom) per method and benchmark."""
    colors = figures.method_colors(methods)
    r = val.returns
    with figures.style():
        fig = figures.figure(10.0, 6.2)
        eq, dd = fig.subplots(2, 1, sharex=True, height_ratios=[2.0, 1.0])
        for m in [*[m for m in methods if m in r.columns], "benchmark"]:
            if m not in r.columns:
                continue
            wealth = (1.0 + r[m]).cumprod()
            style = {"color": figures.BENCHMARK, "linestyle": "--", "linewidth": 1.6} \
                if m == "benchmark" else \
                {"color": colors[m], "linewidth": 2.2 if m == methods[0] else 1.2}
            eq.plot(r.index, wealth, label=m, **style)
            dd.plot(r.index, wealth / np.maximum.accumulate(np.maximum(wealth, 1.0)) - 1.0,
                    **style)
        eq.axhline(1.0, color=figures.GRID, linewidth=0.8)
        eq.set_ylabel("growth of 1, net of costs")
        eq.yaxis.grid(True)
        eq.legend(loc="upper left", ncols=len(methods) + 1)
        eq.set_title("OUT-OF-SAMPLE walk-forward: equity against the equal-weight benchmark")
        dd.set_ylabel("drawdown")
        dd.yaxis.set_major_formatter(lambda v, _: f"{v * 100:.0f}%")
        dd.yaxis.grid(True)
        return figures.png(fig)


def window_costs(val: Validation, methods: Sequence[str]) -> tuple[pd.DataFrame, Table]:
    """Step 6: per (method, window) turnover and cost (windows.parquet repeats them per atom),
    and a table of them by window."""
    win = val.windows
    keys = ["method", "window"]
    per = win.groupby(keys, sort=True).agg(
        rebalance_at=("rebalance_at", "first"), test_start=("test_start", "first"),
        test_end=("test_end", "first"), turnover=("turnover", "first"), cost=("cost", "first"),
        status=("status", "first") if "status" in win.columns else ("turnover", "size"),
    ).reset_index()
    shown = [m for m in methods if m in set(per["method"])]
    rows = []
    for wid, g in per.groupby("window", sort=True):
        g = g.set_index("method")
        first = g.iloc[0]
        kept = "status" in win.columns and (g["status"].astype(str) == "kept").any()
        cells: list[Any] = [str(wid), f"{pd.Timestamp(first['rebalance_at']):%Y-%m-%d}",
                            f"{pd.Timestamp(first['test_start']):%Y-%m-%d} …"
                            f" {pd.Timestamp(first['test_end']):%Y-%m-%d}"]
        for m in shown:
            if m in g.index:
                cells.append(f"{_pct(float(g.at[m, 'turnover']), 1)} /"
                             f" {float(g.at[m, 'cost']) * 1e4:.1f} bp")
            else:
                cells.append("–")
        rows.append(Row(cells, "warn" if kept else ""))
    return per, Table(["window", "rebalance", "test period", *shown], rows,
                      _cols(3, 3 + len(shown)))


def turnover_chart(per: pd.DataFrame, methods: Sequence[str]) -> bytes:
    colors = figures.method_colors(methods)
    with figures.style():
        fig = figures.figure(10.0, 3.6)
        ax, cost = fig.subplots(1, 2)
        for m in methods:
            g = per[per["method"] == m]
            if g.empty:
                continue
            x = pd.to_datetime(g["rebalance_at"])
            ax.plot(x, g["turnover"], marker="o", markersize=3, color=colors[m], label=m)
            cost.plot(x, g["cost"].cumsum() * 1e4, color=colors[m], label=m)
        ax.set_title("turnover per rebalance (Σ|target − drifted|)")
        ax.yaxis.set_major_formatter(lambda v, _: f"{v * 100:.0f}%")
        ax.yaxis.grid(True)
        ax.tick_params(axis="x", labelrotation=30)
        cost.set_title("cumulative trading costs (bp of equity)")
        cost.yaxis.grid(True)
        cost.tick_params(axis="x", labelrotation=30)
        cost.legend(loc="upper left")
        return figures.png(fig)


_METRIC_COLUMNS = (("cagr", "CAGR", "pct"), ("ann_vol", "vol", "pct"),
                   ("sharpe", "Sharpe", "num"), ("sortino", "Sortino", "num"),
                   ("max_drawdown", "max DD", "pct"), ("calmar", "Calmar", "num"),
                   ("turnover", "turnover", "pct"), ("costs", "costs", "pct"),
                   ("n_windows", "windows", "int"))


def metrics_table(val: Validation, methods: Sequence[str]) -> Table:
    m = val.metrics.set_index("method")
    rows = []
    for name in [*[x for x in methods if x in m.index], "benchmark"]:
        if name not in m.index:
            continue
        cells: list[Any] = [name]
        for col, _, kind in _METRIC_COLUMNS:
            v = m.at[name, col] if col in m.columns else math.nan
            cells.append(_pct(v) if kind == "pct" else _num(v) if kind == "num" else
                         ("–" if pd.isna(v) else str(int(v))))
        rows.append(Row(cells, "benchmark" if name == "benchmark" else
                        "primary" if name == methods[0] else ""))
    return Table(["method", *[label for _, label, _ in _METRIC_COLUMNS]], rows,
                 _cols(1, 1 + len(_METRIC_COLUMNS)))


def in_sample_table(curves: pd.DataFrame, methods: Sequence[str], periods: int) -> Table:
    rows = []
    for m in methods:
        p = performance(curves[m], periods)
        rows.append(Row([m, _pct(p["total"], 1), _pct(p["cagr"], 1), _pct(p["ann_vol"], 1),
                         _num(p["sharpe"]), _pct(p["max_drawdown"], 1)],
                        "primary" if m == methods[0] else ""))
    return Table(["method", "total", "CAGR", "vol", "Sharpe", "max DD"], rows, _cols(1, 6))


def appendix(record: Mapping[str, Any]) -> tuple[Table, str, Table]:
    steps = Table(["step", "status", "seconds", "counts"], [
        Row([name, "this page" if name == "port-report" and s.get("status") == "running"
             else str(s.get("status")), _num(float(s.get("seconds") or 0.0), 1),
             ", ".join(f"{k} {v}" for k, v in (s.get("counts") or {}).items()
                       if not isinstance(v, dict | list))])
        for name, s in (record.get("steps") or {}).items()
    ], frozenset({2}))
    config = json.dumps(record.get("config"), indent=2, sort_keys=False)
    inputs = Table(["input (relative to the data dir)", "fingerprint"],
                   [Row([p, str(f)]) for p, f in sorted((record.get("inputs") or {}).items())])
    return steps, config, inputs


# -- rendering ---------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("portflow.alpha", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True,
    )


def render(inputs: ReportInputs) -> str:
    """Steps 1-8: the whole page as one string."""
    rec = inputs.record
    methods = _methods(inputs)
    heads = _heads(inputs, methods)
    periods = int((rec.get("config") or {}).get("periods_per_year") or 365)
    curves = in_sample_returns(inputs.synthetic, inputs.weights)
    stages, unhealthy, veto_table, stage = funnel(inputs)
    cluster_table, atom_risk = risk_tables(inputs, methods)
    val = inputs.validation
    oos: dict[str, Any] = {"section": Section(val is not None, "" if val is not None else
                                              _optional_state(rec, "port-test",
                                                              "--skip-validation",
                                                              "validation")[1])}
    if val is not None:
        per, wtable = window_costs(val, methods)
        oos.update(chart=Chart("Out-of-sample", _uri(oos_chart(val, methods))),
                   metrics=metrics_table(val, methods), windows=wtable,
                   turnover=Chart("Turnover and costs", _uri(turnover_chart(per, methods))),
                   period=f"{val.returns.index[0]:%Y-%m-%d} … {val.returns.index[-1]:%Y-%m-%d}"
                   if len(val.returns) else "")
    post = [Chart(n, _uri(inputs.plots[n]), PLOT_CAPTIONS.get(n, ""), n)
            for n in plot_names() if n in inputs.plots]
    analysis = Section(bool(post), "" if post else _optional_state(
        rec, "port-post-analysis", "--skip-analysis", "analysis")[1])
    steps, config, input_table = appendix(rec)
    return _environment().get_template("report.html.j2").render(
        run_id=str(rec.get("run_id")), profile=str(rec.get("profile")),
        as_of=str(rec.get("as_of")), regime=str(inputs.regime.get("regime")),
        facts=headline(inputs, heads), heads=heads,
        weights=weights_table(inputs, methods),
        weights_chart=Chart("Weights by method", _uri(weights_chart(inputs, methods))),
        cluster_table=cluster_table, atom_risk=atom_risk,
        risk_chart=Chart("Risk", _uri(risk_chart(inputs, methods[0]))),
        stages=stages, unhealthy=unhealthy, vetoes=veto_table, stage=stage,
        corr_chart=Chart("Correlation", _uri(correlation_chart(inputs))),
        in_sample=Chart("In-sample", _uri(in_sample_chart(curves, methods))),
        in_sample_table=in_sample_table(curves, methods, periods),
        window=f"{inputs.synthetic.index[0]:%Y-%m-%d} … {inputs.synthetic.index[-1]:%Y-%m-%d}",
        oos=oos, post=post, analysis=analysis, post_summary=inputs.post_summary or {},
        steps=steps, config=config, inputs=input_table,
        versions=", ".join(f"{k} {v}" for k, v in (rec.get("versions") or {}).items()),
    )
