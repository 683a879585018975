"""The meta report (SPEC §7.5): one self-contained `report.html` per meta run.

1. Sleeves: weight, risk contribution, where each sleeve's return stream came from (validation
   or in-sample, flagged), its status and seconds, and a link by relative path to the sleeve's
   own `report.html` (its workspace when it has none yet; a nested meta links its meta report).
2. Allocation: method and the fallback link that produced the weights (a fallback is marked).
3. Sleeve correlations (table) and the weights against the risk contributions (chart).
4. The meta equity curve and each sleeve's, on the aligned calendar, with CAGR, volatility,
   Sharpe and max drawdown (periods per year by calendar: 365 for 24/7, else 252). Flagged
   in-sample when any sleeve stream is — and always noted: the sleeve weights were fitted on
   this same stream.
5. Flattened top holdings: symbol, direction, net weight, gross, the sleeves holding it.

Charts are PNGs inlined as data URIs, so the file opens offline. The template autoescapes:
every string from data (sleeve ids, symbols, reasons) is escaped.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment

TOP_HOLDINGS = 20


@dataclass(frozen=True)
class SleeveRow:
    id: str
    kind: str
    profile: str
    status: str
    weight: float | None
    risk_contribution: float | None
    source: str | None
    in_sample: bool
    seconds: float | None
    link: str | None
    reason: str | None = None


@dataclass(frozen=True)
class MetaReport:
    """Everything the report shows. meta_returns: index UTC dates, one column per allocated
    sleeve; weights: Series by sleeve id; holdings: the meta weights.csv table."""

    run_id: str
    profile: str
    as_of: str
    executor: str
    calendar: str
    in_sample: bool
    method: str
    link: str
    sleeves: Sequence[SleeveRow]
    meta_returns: pd.DataFrame
    weights: pd.Series
    holdings: pd.DataFrame
    data_runs: Mapping[str, str] = field(default_factory=dict)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _allocation_chart(weights: pd.Series, rc: pd.Series) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 2.6))
    ax = fig.subplots()
    x = np.arange(len(weights))
    ax.bar(x - 0.2, weights.to_numpy(), 0.4, label="weight", color="#3465a4")
    ax.bar(x + 0.2, rc.to_numpy(), 0.4, label="risk contribution", color="#f57900")
    ax.set_xticks(x, [str(s) for s in weights.index])
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _equity_chart(curves: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    for col in curves.columns:
        meta = col == "meta portfolio"
        ax.plot(curves.index.tz_convert(None), curves[col].to_numpy(), label=str(col),
                lw=2.2 if meta else 1.0, color="black" if meta else None)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_ylabel("growth of 1")
    return _png(fig)


def _stats(r: pd.Series, periods: int) -> dict[str, str]:
    x = r.to_numpy(dtype=np.float64)
    n = x.size
    wealth = np.cumprod(1.0 + x)
    cagr = wealth[-1] ** (periods / n) - 1.0 if n and wealth[-1] > 0 else math.nan
    vol = float(np.std(x, ddof=1) * math.sqrt(periods)) if n > 1 else math.nan
    mean = float(np.mean(x) * periods) if n else math.nan
    peak = np.maximum.accumulate(np.concatenate([[1.0], wealth]))
    mdd = float(np.min(np.concatenate([[1.0], wealth]) / peak - 1.0))
    return {"cagr": f"{cagr:.1%}", "vol": f"{vol:.1%}",
            "sharpe": f"{mean / vol:.2f}" if vol and vol > 0 else "n/a", "mdd": f"{mdd:.1%}"}


def _corr_cells(corr: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """(text, css background) per cell: red for positive, blue for negative correlation."""
    rows = []
    for i in corr.index:
        row = []
        for j in corr.columns:
            v = float(corr.loc[i, j])
            a = min(1.0, abs(v)) * 0.6
            rgb = "214,39,40" if v >= 0 else "31,119,180"
            row.append((f"{v:+.2f}", f"background: rgba({rgb},{a:.2f})"))
        rows.append(row)
    return rows


def render(rep: MetaReport) -> str:
    """The report.html text (module docstring)."""
    periods = 365 if rep.calendar == "24/7" else 252
    port = pd.Series(rep.meta_returns[list(rep.weights.index)].to_numpy() @
                     rep.weights.to_numpy(), index=rep.meta_returns.index)
    curves = pd.concat({"meta portfolio": port, **{str(c): rep.meta_returns[c]
                                                  for c in rep.meta_returns.columns}}, axis=1)
    curves = (1.0 + curves).cumprod()
    stats = {"meta portfolio": _stats(port, periods),
             **{str(c): _stats(rep.meta_returns[c], periods) for c in rep.meta_returns.columns}}
    rc = pd.Series({s.id: s.risk_contribution for s in rep.sleeves if s.weight is not None})
    corr = rep.meta_returns.corr()
    top = rep.holdings.head(TOP_HOLDINGS)
    ctx = {
        "rep": rep,
        "periods": periods,
        "n_assets": len(rep.holdings),
        "gross": float(rep.holdings["gross"].sum()) if len(rep.holdings) else 0.0,
        "net_long": float(rep.holdings.loc[rep.holdings["weight"] > 0, "weight"].sum()),
        "net_short": float(rep.holdings.loc[rep.holdings["weight"] < 0, "weight"].sum()),
        "fallback": rep.link not in ("primary", rep.method),
        "alloc_chart": _allocation_chart(rep.weights, rc.reindex(rep.weights.index)),
        "equity_chart": _equity_chart(curves),
        "stats": stats,
        "corr_cols": [str(c) for c in corr.columns],
        "corr_rows": list(zip([str(i) for i in corr.index], _corr_cells(corr), strict=True)),
        "top": top.to_dict("records"),
        "sources": {"validation": "out-of-sample (validation)",
                    "in_sample": "primary weights on the optimiser window",
                    "meta": "its meta portfolio"},
        "start": f"{rep.meta_returns.index[0]:%Y-%m-%d}",
        "end": f"{rep.meta_returns.index[-1]:%Y-%m-%d}",
    }
    return _TEMPLATE.render(**ctx)


_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["pct"] = lambda v: "" if v is None else f"{float(v):.2%}"
_ENV.filters["w"] = lambda v: f"{float(v):+.4f}"

_TEMPLATE = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>portflow meta {{ rep.run_id }}</title>
<style>
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { padding: 3px 9px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child, td.l { text-align: left; }
.flag { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6em 0.9em; margin: 1em 0; }
.bad { color: #b00020; font-weight: bold; } .muted { color: #777; font-size: 0.85em; }
</style></head><body>
<h1>Meta portfolio {{ rep.profile }}</h1>
<p>run <b>{{ rep.run_id }}</b> · as of {{ rep.as_of }} · executor {{ rep.executor }} ·
aligned calendar {{ rep.calendar }} ({{ start }} to {{ end }}, {{ rep.meta_returns|length }} bars)</p>
{% if rep.in_sample %}
<div class="flag"><b>IN-SAMPLE.</b> At least one sleeve's return stream is the in-sample
portfolio return of its primary method's weights (validation skipped or not available), so
the curves and statistics below are in-sample, not out-of-sample results.</div>
{% endif %}
<p class="muted">The sleeve weights are fitted on these same aligned streams: the meta curve is
in-sample with respect to the meta allocation.</p>

<h2>Sleeves</h2>
<table><tr><th>sleeve</th><th>kind</th><th>profile</th><th>weight</th><th>risk contribution</th>
<th>stream</th><th>status</th><th>seconds</th><th>report</th></tr>
{% for s in rep.sleeves %}
<tr><td>{{ s.id }}</td><td class="l">{{ s.kind }}</td><td class="l">{{ s.profile }}</td>
<td>{{ s.weight|pct }}</td><td>{{ s.risk_contribution|pct }}</td>
<td class="l">{{ sources.get(s.source, s.source or "") }}{% if s.in_sample %} <b>(in-sample)</b>{% endif %}</td>
<td class="l{% if s.status != 'succeeded' %} bad{% endif %}">{{ s.status }}{% if s.reason %}: {{ s.reason }}{% endif %}</td>
<td>{{ "%.1f"|format(s.seconds) if s.seconds is not none else "" }}</td>
<td class="l">{% if s.link %}<a href="{{ s.link }}">{{ s.link }}</a>{% endif %}</td></tr>
{% endfor %}
</table>
<p>Allocation: <b>{{ rep.method }}</b>, link
{% if fallback %}<span class="bad">FALLBACK ({{ rep.link }})</span>{% else %}{{ rep.link }}{% endif %}.</p>
<img alt="sleeve weights and risk contributions" src="{{ alloc_chart }}">

<h2>Sleeve correlations</h2>
<table><tr><th></th>{% for c in corr_cols %}<th>{{ c }}</th>{% endfor %}</tr>
{% for name, cells in corr_rows %}
<tr><td>{{ name }}</td>{% for text, style in cells %}<td style="{{ style }}">{{ text }}</td>{% endfor %}</tr>
{% endfor %}
</table>

<h2>Equity curves{% if rep.in_sample %} (in-sample){% endif %}</h2>
<img alt="meta equity curve" src="{{ equity_chart }}">
<table><tr><th>stream</th><th>CAGR</th><th>volatility</th><th>Sharpe</th><th>max drawdown</th></tr>
{% for name, s in stats.items() %}
<tr><td>{{ name }}</td><td>{{ s.cagr }}</td><td>{{ s.vol }}</td><td>{{ s.sharpe }}</td><td>{{ s.mdd }}</td></tr>
{% endfor %}
</table>
<p class="muted">{{ periods }} periods a year; simple per-bar returns compounded.</p>

<h2>Top holdings (flattened)</h2>
<p>{{ n_assets }} assets · Σ gross {{ "%.6f"|format(gross) }} · long {{ "%.4f"|format(net_long) }} ·
short {{ "%.4f"|format(net_short) }}</p>
<table><tr><th>symbol</th><th>direction</th><th>net weight</th><th>gross</th><th>sleeves</th></tr>
{% for h in top %}
<tr><td>{{ h.symbol }}</td><td class="l">{{ h.direction }}</td><td>{{ h.weight|w }}</td>
<td>{{ "%.4f"|format(h.gross) }}</td><td class="l">{{ h.sleeves }}</td></tr>
{% endfor %}
</table>
{% if rep.data_runs %}
<h2>Inputs</h2>
<table><tr><th>sleeve</th><th>data run</th></tr>
{% for p, d in rep.data_runs.items() %}<tr><td>{{ p }}</td><td class="l">{{ d }}</td></tr>{% endfor %}
</table>
{% endif %}
</body></html>
""")
