"""Walk-forward validation (SPEC §6.7): point in time, stitched, with costs and drift.

``walk_forward(view, settings)`` backtests a sleeve on the production run's own pinned view,
calling the very ``sleeve.produce`` the production steps use at every rebalance:

1. Schedule, on the sleeve's calendar. b_0..b_N are the bars of the view's history (its
   candidates' bar dates up to the last closed bar). Rebalance bars r_k = N − test − k·step
   (k = 0, 1, ...) while r_k − train + 1 ≥ 0; window k trains on b[r_k − train + 1 .. r_k] and
   tests on b[r_k + 1 .. r_k + test]. test = step (config), so the test windows tile the
   out-of-sample period without overlap and the last one ends at the last closed bar.
2. Decision at r_k. The clock is the day after b[r_k] (its bar is closed, the next is not).
   Eligibility: each candidate's features-matrix row as of the bar *before* b[r_k] (no
   same-bar look-ahead) passes the profile's `backtest.eligibility` filter for its direction
   (default recommend_all > 0 for LONG, < 0 for SHORT; a missing value is not eligible). Then
   ``produce`` on the view cut at the clock, restricted to the eligible candidates, with the
   train length as its lookback — selection, synthesis, analysis and every optimiser see the
   train slice only. A window whose health or selection gate fails keeps the previous holdings
   and records why. The benchmark targets the eligible candidates that pass Strict Health,
   equally weighted (signed by direction).
3. The out-of-sample period starts at the first window whose ``produce`` gave targets.
4. Simulation (:func:`simulate`), per method and for the benchmark, in the optimiser's own
   synthetic space (SPEC §6.3) and reported with physical signs: each atom is a position of
   |w| of equity whose return is its synthetic return — r for a LONG, −min(r, 1) for a SHORT
   (a short earns −r and loses at most its notional per bar; its notional follows its value,
   as the series the optimiser weighed does) — on the physical simple returns r of its
   symbol. At the close of b[r_k] the book trades from its drifted weights d to the targets w
   (signed fractions of equity): turnover = Σ|w − d| (the first window trades from cash,
   d = 0) and cost = (commission + slippage) × turnover is paid from equity then, so the
   positions are (1 − cost)·|w|. Inside the window they compound: with g_i(j) the growth of
   atom i to test bar j, V(j) = (1 − cost) Σ_i |w_i| g_i(j) and the day's return is
   V(j)/V(j−1) − 1 with V(0) = 1 — the first test bar earns the new holdings' return less
   the cost, (1 − cost)(1 + gross) − 1. The weights drift to w_i g_i / Σ|w| g (still
   summing to 1 in absolute value: no cash, no leverage), which the next window trades from,
   or keeps when its gate failed. A symbol without a bar on a test day (delisted, or its bars
   stop before a toxic print) keeps its last clean price (return 0) and is sold at the next
   rebalance.
5. Metrics (:func:`metrics`) on the stitched daily returns: P bars a year by calendar (365 for
   24/7, 252 for exchange sessions), CAGR = Π(1 + r)^(P/n) − 1, annual vol = std(r)·√P
   (ddof 1), Sharpe = mean(r − r_f)/std(r)·√P, Sortino with the downside deviation
   √mean(min(r − r_f, 0)²), max drawdown = min(W/peak − 1) with W = Π(1 + r) and the peak
   starting at 1, Calmar = CAGR/|max drawdown|, turnover and costs as annual rates
   (Σ per window / years), n_windows.

Survivorship: the candidates are the data run's — today's scan. A symbol that died before
today is not in the universe at all, so early windows choose among today's survivors; the
eligibility filter and Strict Health restrict them to what was listed, liquid and rated then,
but the backtest is still optimistic by that bias (README "Validation").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from portflow import clock
from portflow.alpha import sleeve
from portflow.alpha.settings import SleeveSettings
from portflow.alpha.stats import per_bar_rate
from portflow.alpha.synthesize import synthetic
from portflow.alpha.view import SleeveView
from portflow.config.models import FilterNode
from portflow.data.scan import filter_mask
from portflow.errors import HealthGateError, OptimisationError

BENCHMARK = "benchmark"
WINDOW_COLUMNS = ["method", "window", "rebalance_at", "test_start", "test_end", "atom", "symbol",
                  "direction", "weight", "turnover", "cost", "status", "change", "note"]
METRIC_COLUMNS = ["method", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar",
                  "turnover", "costs", "n_windows"]
DRIFT_COLUMNS = ["method", "atom", "symbol", "direction", "target", "drifted", "rebalance_at",
                 "as_of"]
_FILTER = TypeAdapter(FilterNode)


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """One position: `atom` id, physical `symbol`, `direction`, signed `weight` of equity."""

    atom: str
    symbol: str
    direction: str
    weight: float


@dataclass(frozen=True)
class Window:
    """Window k of the schedule: bar positions on the sleeve calendar (step 1)."""

    number: int
    rebalance: int
    test_start: int
    test_end: int


@dataclass(frozen=True)
class Decision:
    """What window k decided at its rebalance (step 2). targets: method → holdings, or None
    when a gate failed (note says why); benchmark: the equal-weight holdings (empty when no
    eligible candidate is healthy)."""

    window: Window
    targets: Mapping[str, tuple[Holding, ...]] | None
    benchmark: tuple[Holding, ...]
    note: str = ""
    counts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Validation:
    """The outputs (SPEC §4 validation/): returns (index UTC dates, one column per method and
    `benchmark`), metrics (one row per column), windows (the forensic table), drift (each
    method's last targets and the weights they drifted to), decisions (every window's, the
    out-of-sample ones from `first`)."""

    returns: pd.DataFrame
    metrics: pd.DataFrame
    windows: pd.DataFrame
    drift: pd.DataFrame
    decisions: tuple[Decision, ...]
    first: int

    @property
    def out_of_sample(self) -> tuple[Decision, ...]:
        return self.decisions[self.first:]


# -- step 1: the schedule -----------------------------------------------------------------------


def bar_dates(view: SleeveView, calendar: str) -> np.ndarray:
    """The view's history on the sleeve calendar, int64 UTC ns: every session from the first
    stored bar of any candidate to the last closed bar at the view's clock."""
    firsts = [b.ts[0] for b in view.bars.values() if len(b)]
    if not firsts:
        return np.empty(0, dtype=np.int64)
    return clock.session_ns(calendar, int(min(firsts)), view.last_closed_ns(calendar))


def schedule(n_bars: int, train: int, test: int, step: int) -> list[Window]:
    """Step 1 on bar positions 0..n_bars−1, oldest window first."""
    out = []
    r = n_bars - 1 - test
    while r - train + 1 >= 0:
        out.append(r)
        r -= step
    return [Window(k, r, r + 1, r + test) for k, r in enumerate(reversed(out))]


# -- step 2: decisions ----------------------------------------------------------------------------


def eligible_keys(view: SleeveView, rules: Mapping[str, Any] | None, asof_ns: int) -> list[str]:
    """Candidates whose features-matrix row at or before `asof_ns` passes the filter of their
    direction (all candidates when `rules` is None)."""
    if rules is None:
        return [c.key for c in view.candidates]
    out = []
    by_dir: dict[str, list[Any]] = {}
    for c in view.candidates:
        by_dir.setdefault(c.direction.value, []).append(c)
    panel = view.panel
    for direction, cands in by_dir.items():
        rule = rules.get(direction)
        if rule is None:
            out += [c.key for c in cands]
            continue
        node = _FILTER.validate_python(rule)
        if panel is not None:
            row = panel.row(asof_ns)
            cols = [panel.col.get(c.symbol, -1) for c in cands]
            rows = {name: [m[row, j] if j >= 0 and row >= 0 else math.nan for j in cols]
                    for name, m in panel.ratings.items()}
        else:
            rows = {name: [view.ratings[c.symbol].last(name, asof_ns)
                           if c.symbol in view.ratings and name in view.ratings[c.symbol].values
                           else math.nan for c in cands]
                    for name in ("recommend_all", "recommend_ma", "recommend_other")}
        mask = filter_mask(pd.DataFrame(rows), node)
        out += [c.key for c, ok in zip(cands, mask, strict=True) if ok]
    return sorted(out)


def window_settings(settings: SleeveSettings) -> SleeveSettings:
    """A window's production settings: the sleeve's, with the train length as lookback."""
    return replace(settings, lookback_bars=settings.backtest.train_bars)


def decide(view: SleeveView, settings: SleeveSettings, dates: np.ndarray, w: Window) -> Decision:
    """Step 2 for one window (a pure function of the view, the settings and the window)."""
    rebalance = int(dates[w.rebalance])
    clock_at = pd.Timestamp(rebalance, tz="UTC") + pd.Timedelta(days=1)
    at = view.at(clock_at)
    prev = int(dates[w.rebalance - 1]) if w.rebalance > 0 else rebalance - 1
    keys = eligible_keys(at, settings.backtest.eligibility, prev)
    counts: dict[str, Any] = {"candidates": len(at.candidates), "eligible": len(keys)}
    if not keys:
        return Decision(w, None, (), counts=counts, note=(
            f"none of {len(at.candidates)} candidates eligible on"
            f" {pd.Timestamp(prev, tz='UTC'):%Y-%m-%d} (backtest.eligibility)"))
    sub = at.restrict(keys)
    wset = window_settings(settings)
    try:
        result = sleeve.produce(sub, wset)
    except (HealthGateError, OptimisationError) as exc:
        win = getattr(exc, "window", None)
        healthy = list(win.healthy) if win is not None else []
        counts["healthy"] = len(healthy)
        return Decision(w, None, _equal_weight(sub, healthy), note=str(exc), counts=counts)
    sel = result.selection
    counts.update(healthy=len(sel.window.healthy), stage=sel.result.stage,
                  winners=len(sel.result.winners),
                  links={m: r.link for m, r in result.allocations.items()})
    targets: dict[str, tuple[Holding, ...]] = {}
    for method, g in result.weights.groupby("method", sort=False):
        targets[str(method)] = tuple(
            Holding(str(r.atom), str(r.symbol), str(r.direction), float(r.weight))
            for r in g.itertuples(index=False)
        )
    return Decision(w, targets, _equal_weight(sub, list(sel.window.healthy)), counts=counts)


def _equal_weight(view: SleeveView, keys: Sequence[str]) -> tuple[Holding, ...]:
    by_key = {c.key: c for c in view.candidates}
    n = len(keys)
    return tuple(
        Holding(k, by_key[k].symbol, by_key[k].direction.value, by_key[k].direction.sign / n)
        for k in sorted(keys)
    )


def _decide_many(view: SleeveView, settings: SleeveSettings, dates: np.ndarray,
                 windows: Sequence[Window]) -> list[Decision]:
    return [decide(view, settings, dates, w) for w in windows]


# -- step 4: simulation ---------------------------------------------------------------------------


def physical_returns(view: SleeveView, dates: np.ndarray) -> pd.DataFrame:
    """Simple returns of every candidate symbol on the sleeve calendar's `dates` (index UTC
    dates, columns symbols); a day without a bar keeps the last price (return 0), a day
    before the first bar is 0 too (nothing can be held then)."""
    idx = pd.DatetimeIndex(dates.view("datetime64[ns]")).tz_localize("UTC")
    cols = {}
    for sym in sorted({c.symbol for c in view.candidates}):
        b = view.bars.get(sym)
        if b is None or not len(b):
            cols[sym] = np.zeros(dates.size)
            continue
        pos = np.searchsorted(b.ts, dates, side="right") - 1
        close = np.where(pos >= 0, b.close[np.maximum(pos, 0)], np.nan)
        r = np.zeros(dates.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            r[1:] = close[1:] / close[:-1] - 1.0
        cols[sym] = np.where(np.isfinite(r), r, 0.0)
    return pd.DataFrame(cols, index=idx.rename("timestamp"))


@dataclass(frozen=True)
class Path:
    """One method's simulated path: daily returns over the test bars, per-window turnover,
    cost and status, the rows of the forensic table, and the final drift."""

    returns: np.ndarray
    rows: list[dict[str, Any]]
    turnover: list[float]
    costs: list[float]
    final_targets: tuple[Holding, ...]
    final_weights: dict[str, float]


def simulate(
    method: str,
    decisions: Sequence[Decision],
    returns: pd.DataFrame,
    dates: np.ndarray,
    rate: float,
) -> Path:
    """Step 4 for one method (or BENCHMARK) over the out-of-sample decisions, in order."""
    r_all = returns.to_numpy(dtype=np.float64)
    col = {s: j for j, s in enumerate(returns.columns)}
    held: dict[str, Holding] = {}
    weights: dict[str, float] = {}
    out: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    turnovers, costs = [], []
    targets: tuple[Holding, ...] = ()
    for d in decisions:
        w = d.window
        if method == BENCHMARK:
            new = d.benchmark if d.benchmark else None
        else:
            new = None if d.targets is None else d.targets.get(method)
        stamp = {"window": w.number, "rebalance_at": int(dates[w.rebalance]),
                 "test_start": int(dates[w.test_start]), "test_end": int(dates[w.test_end])}
        if new is None:  # a gate failed: keep the holdings, trade nothing
            status, turnover, note = "kept", 0.0, d.note or "no targets"
            targets = tuple(replace(held[a], weight=weights[a]) for a in sorted(held))
            win_rows = [_row(stamp, h, "kept") for h in targets]
        else:
            status, note = "ok", ""
            want = {h.atom: h.weight for h in new}
            turnover = float(sum(abs(want.get(a, 0.0) - weights.get(a, 0.0))
                                 for a in sorted(set(want) | set(weights))))
            sold = [replace(held[a], weight=0.0) for a in sorted(set(held) - set(want))]
            targets = tuple(new)
            win_rows = [_row(stamp, h, "sold") for h in sold]
            win_rows += [_row(stamp, h, "held" if h.atom in held else "new") for h in targets]
        cost = rate * turnover
        for row in win_rows:
            row.update(turnover=turnover, cost=cost, status=status, note=note)
        rows += win_rows
        turnovers.append(turnover)
        costs.append(cost)
        held = {h.atom: h for h in targets}
        wv = np.array([h.weight for h in targets])
        n_bars = w.test_end - w.test_start + 1
        growth: np.ndarray = np.ones((n_bars, len(targets)))
        if len(targets):
            r = r_all[w.test_start:w.test_end + 1][:, [col[h.symbol] for h in targets]]
            growth = np.cumprod(1.0 + synthetic(r, wv < 0), axis=0)
        # fully invested in synthetic space: V(j) = (1 − cost) Σ|w_i| g_i(j), V(0) = 1
        value = (1.0 - cost) * (growth @ np.abs(wv)) if len(targets) else np.ones(n_bars)
        prev = np.concatenate([[1.0], value[:-1]])
        # a book wiped out (a lone short that lost its whole notional) stays at 0: return 0
        out.append(np.divide(value, prev, out=np.ones_like(value), where=prev > 0) - 1.0)
        drifted = wv * growth[-1] / max(float(growth[-1] @ np.abs(wv)), 1e-300)
        weights = {h.atom: float(x) for h, x in zip(targets, drifted, strict=True)}
    return Path(np.concatenate(out) if out else np.empty(0), rows, turnovers, costs, targets,
                weights)


def _row(stamp: dict[str, Any], h: Holding, change: str) -> dict[str, Any]:
    return {**stamp, "atom": h.atom, "symbol": h.symbol, "direction": h.direction,
            "weight": h.weight, "change": change}


# -- step 5: metrics -----------------------------------------------------------------------------


def metrics(returns: pd.DataFrame, periods_per_year: int, risk_free_annual: float = 0.0,
            turnover: Mapping[str, Sequence[float]] | None = None,
            costs: Mapping[str, Sequence[float]] | None = None) -> pd.DataFrame:
    """Step 5: one row per column of `returns` (simple per-bar returns)."""
    p = periods_per_year
    rf = per_bar_rate(risk_free_annual, p)
    rows = []
    for name in returns.columns:
        r = returns[name].to_numpy(dtype=np.float64)
        n = r.size
        years = n / p
        wealth = np.cumprod(1.0 + r)
        peak = np.maximum.accumulate(np.concatenate([[1.0], wealth]))[1:]
        mdd = float(np.min(wealth / peak - 1.0)) if n else math.nan
        cagr = float(wealth[-1] ** (p / n) - 1.0) if n and wealth[-1] > 0 else -1.0
        ex = r - rf
        sd = float(np.std(r, ddof=1)) if n > 1 else math.nan
        down = math.sqrt(float(np.mean(np.minimum(ex, 0.0) ** 2))) if n else math.nan
        tu = list((turnover or {}).get(name, ()))
        co = list((costs or {}).get(name, ()))
        rows.append({
            "method": name,
            "cagr": cagr,
            "ann_vol": sd * math.sqrt(p),
            "sharpe": float(ex.mean()) / sd * math.sqrt(p) if sd > 0 else math.nan,
            "sortino": float(ex.mean()) / down * math.sqrt(p) if down > 0 else math.nan,
            "max_drawdown": mdd,
            "calmar": cagr / abs(mdd) if mdd < 0 else math.nan,
            "turnover": sum(tu) / years if years else math.nan,
            "costs": sum(co) / years if years else math.nan,
            "n_windows": len(tu),
        })
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


# -- the composition ------------------------------------------------------------------------------


Runner = Callable[[Callable[[Sequence[Window]], list[Decision]], list[list[Window]]],
                  Iterable[list[Decision]]]


def _inline(fn: Callable[[Sequence[Window]], list[Decision]],
            chunks: list[list[Window]]) -> Iterable[list[Decision]]:
    return (fn(c) for c in chunks)


def walk_forward(
    view: SleeveView,
    settings: SleeveSettings,
    runner: Runner = _inline,
    chunks: int = 1,
    on_window: Callable[[int], None] | None = None,
) -> Validation:
    """Steps 1-5. `runner(fn, chunks)` maps fn over chunks of windows (in any order, e.g. on a
    process pool through the executor seam); results are identical however they are run."""
    bt = settings.backtest
    dates = bar_dates(view, settings.calendar)
    windows = schedule(dates.size, bt.train_bars, bt.test_bars, bt.step_bars)
    if not windows:
        raise HealthGateError(
            f"walk-forward needs {bt.train_bars + bt.test_bars} bars of history"
            f" (train {bt.train_bars} + test {bt.test_bars}); the data run has {dates.size}"
        )
    size = max(1, math.ceil(len(windows) / max(1, chunks)))
    parts = [windows[i:i + size] for i in range(0, len(windows), size)]
    fn = functools.partial(_decide_many, view, settings, dates)
    found: dict[int, Decision] = {}
    for batch in runner(fn, parts):
        for d in batch:
            found[d.window.number] = d
        if on_window is not None:
            on_window(len(batch))
    decisions = [found[w.number] for w in windows]
    first = next((i for i, d in enumerate(decisions) if d.targets is not None), None)
    if first is None:
        raise HealthGateError(
            f"walk-forward: no window produced targets ({len(decisions)} windows; first reason:"
            f" {decisions[0].note})"
        )
    oos = decisions[first:]
    returns = physical_returns(view, dates)
    columns = [*settings.optimization.methods, BENCHMARK]
    paths = simulate_all(columns, oos, returns, dates, bt.cost_rate)
    stitched = stitch(paths, returns.index, oos)
    table = metrics(stitched, settings.periods_per_year, settings.optimization.risk_free,
                    {m: p.turnover for m, p in paths.items()},
                    {m: p.costs for m, p in paths.items()})
    return Validation(stitched, table, _windows_table(paths), _drift_table(paths, dates, oos),
                      tuple(decisions), first)


def simulate_all(columns: Sequence[str], oos: Sequence[Decision], returns: pd.DataFrame,
                 dates: np.ndarray, rate: float) -> dict[str, Path]:
    return {m: simulate(m, oos, returns, dates, rate) for m in columns}


def stitch(paths: Mapping[str, Path], index: pd.DatetimeIndex,
           oos: Sequence[Decision]) -> pd.DataFrame:
    """The out-of-sample returns: every test bar of every window once, oldest first."""
    idx = index[oos[0].window.test_start: oos[-1].window.test_end + 1]
    return pd.DataFrame({m: p.returns for m, p in paths.items()}, index=idx)


def _ts(ns: Any) -> pd.Series:
    return pd.to_datetime(pd.Series(ns, dtype="int64"), utc=True)


def _windows_table(paths: Mapping[str, Path]) -> pd.DataFrame:
    rows = [{"method": m, **r} for m, p in paths.items() for r in p.rows]
    table = pd.DataFrame(rows, columns=WINDOW_COLUMNS)
    for c in ("rebalance_at", "test_start", "test_end"):
        table[c] = _ts(table[c]).to_numpy()
    return table


def _drift_table(paths: Mapping[str, Path], dates: np.ndarray,
                 oos: Sequence[Decision]) -> pd.DataFrame:
    last = oos[-1].window
    rows = [
        {"method": m, "atom": h.atom, "symbol": h.symbol, "direction": h.direction,
         "target": h.weight, "drifted": p.final_weights.get(h.atom, 0.0),
         "rebalance_at": int(dates[last.rebalance]), "as_of": int(dates[last.test_end])}
        for m, p in paths.items() for h in p.final_targets
    ]
    table = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    for c in ("rebalance_at", "as_of"):
        table[c] = _ts(table[c]).to_numpy()
    return table
