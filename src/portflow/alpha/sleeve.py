"""One sleeve, window → weights, as one pure function (SPEC §6.1-§6.5).

``produce(view, settings) -> SleeveResult`` is the only composition of Phase 2. The production
steps call its three parts one by one (saving each part's outputs in the run, so a step re-runs
alone), walk-forward validation calls it on the view cut at every rebalance, and a meta run
calls it for every sleeve. It reads no file and no clock except the view's.

1. :func:`select` — Strict Health on the view's bars (:func:`aggregate.build_window`, fails
   fast), then the selection inputs as of the window end: each healthy candidate's metadata
   valid at the clock (its first version when the clock precedes it: counted), `recommend_all`
   from the features matrix, ADX 14 from its bars, liquidity (median value traded over the last
   20 bars); then HTR (:func:`select.select_htr`).
2. :func:`pre_optimize` — the winners become Strategy Atoms with synthetic returns
   (:mod:`synthesize`), then clusters, antifragility, regime and the effective caps
   (:func:`analyze.analyze_window`) on them, the regime from the equal-weight proxy of every
   healthy candidate's raw returns.
3. :func:`allocate` — every configured method through its Stable Sum Gate and fallback chain
   (:func:`optimize.optimize`); the weights table in physical space (a SHORT atom's weight is
   negative), one row per (method, atom).

A gate failure raises :class:`HealthGateError` with the partial outputs attached (`window`, and
`result` when selection failed), so the runner can still save what explains it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from portflow.alpha import synthesize
from portflow.alpha.aggregate import CandidateBars, Window, build_window, window_from_panel
from portflow.alpha.analyze import Analysis, analyze_window, equal_weight_proxy
from portflow.alpha.optimize import OptimizationResult, optimize
from portflow.alpha.select import SelectionResult, select_htr
from portflow.alpha.settings import SleeveSettings
from portflow.alpha.synthesize import Atom
from portflow.alpha.view import SleeveView
from portflow.errors import HealthGateError

WEIGHTS_COLUMNS = ["method", "symbol", "atom", "direction", "cluster", "weight"]


@dataclass(frozen=True)
class Selection:
    """Step 1's outputs. info: indexed by candidate key (healthy ones), columns symbol,
    direction, logic, tick_size, lot_size, liquidity, recommend_all, adx."""

    as_of: pd.Timestamp
    window: Window
    info: pd.DataFrame
    result: SelectionResult
    metadata_before_first: tuple[str, ...]

    @property
    def returns(self) -> pd.DataFrame:
        """The raw returns window (index UTC dates, columns healthy keys)."""
        return self.window.returns

    def health_record(self) -> dict[str, Any]:
        """health.json (SPEC §4)."""
        return health_record(self.as_of, self.window)

    def selection_record(self) -> dict[str, Any]:
        """selection.json (SPEC §4, §6.2)."""
        out = self.result.to_dict()
        out["metadata_before_first_version"] = {
            "count": len(self.metadata_before_first),
            "symbols": list(self.metadata_before_first),
            "note": "the clock precedes these symbols' first recorded metadata version;"
            " their first version was used (documented assumption)",
        }
        return out


def health_record(as_of: pd.Timestamp, window: Window) -> dict[str, Any]:
    return {"as_of": f"{as_of:%Y-%m-%d}", "calendar": window.calendar,
            "window_end": f"{window.window_end:%Y-%m-%d}", "candidates": window.health}


@dataclass(frozen=True)
class PreOpt:
    """Step 2's outputs. synthetic: index UTC dates, columns atom ids; labels: atom → cluster."""

    atoms: tuple[Atom, ...]
    synthetic: pd.DataFrame
    analysis: Analysis

    @functools.cached_property
    def labels(self) -> pd.Series:
        return self.analysis.clusters.labels.reindex(self.synthetic.columns)


@dataclass(frozen=True)
class SleeveResult:
    """Everything ``produce`` decides for one window."""

    selection: Selection
    pre_opt: PreOpt
    allocations: Mapping[str, OptimizationResult]
    weights: pd.DataFrame


# -- step 1 -----------------------------------------------------------------------------------


def select(view: SleeveView, settings: SleeveSettings) -> Selection:
    """Step 1 (module docstring). Raises HealthGateError when a gate fails."""
    cands = [
        CandidateBars(
            key=c.key, symbol=c.symbol, direction=c.direction.value, calendar=c.calendar,
            source=view.bars,
            phase1_status=view.exclusions[c.symbol].status if c.symbol in view.exclusions
            else None,
            phase1_reason=view.exclusions[c.symbol].reason if c.symbol in view.exclusions
            else None,
        )
        for c in view.candidates
    ]
    if view.panel is not None:
        window = window_from_panel(cands, view.panel, view.as_of, settings.lookback_bars,
                                   settings.min_healthy_fraction, settings.min_assets)
    else:
        window = build_window(cands, view.as_of, settings.lookback_bars,
                              settings.min_healthy_fraction, settings.min_assets)
    info, before_first = selection_inputs(view, window)
    try:
        result = select_htr(window.returns, info, settings.selection)
    except HealthGateError as exc:
        exc.window = window  # type: ignore[attr-defined]
        raise
    return Selection(view.as_of, window, info, result, before_first)


def selection_inputs(view: SleeveView, window: Window) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The per-candidate inputs of HTR as of the window end (module docstring step 1)."""
    by_key = {c.key: c for c in view.candidates}
    end_ns = int(window.window_end.value)
    clock_ns = int(pd.Timestamp(view.as_of).value)
    healthy = [by_key[k] for k in window.healthy]
    tick, lot = np.full(len(healthy), math.nan), np.full(len(healthy), math.nan)
    before_first = set()
    for i, c in enumerate(healthy):
        meta = view.metadata.get(c.symbol)
        if meta is not None:
            tick[i], lot[i], before = meta.at(clock_ns)
            if before:
                before_first.add(c.symbol)
    panel = view.panel
    if panel is not None and panel.calendar == window.calendar:  # as of the window end
        row = panel.row(end_ns)
        cols = [panel.col[c.symbol] for c in healthy]
        rating = panel.ratings["recommend_all"][row, cols]
        adx = panel.adx[row, cols]
    else:
        rating = np.array([_last_rating(view, c.symbol, end_ns) for c in healthy])
        adx = np.array([_last_adx(view, c.symbol, end_ns) for c in healthy])
    info = pd.DataFrame({
        "symbol": [c.symbol for c in healthy],
        "direction": [c.direction.value for c in healthy],
        "logic": [c.logic for c in healthy],
        "tick_size": tick,
        "lot_size": lot,
        "liquidity": [window.liquidity[c.key] for c in healthy],
        "recommend_all": rating,
        "adx": adx,
    }, index=pd.Index(list(window.healthy), name="key"))
    return info, tuple(sorted(before_first))


def _last_rating(view: SleeveView, symbol: str, t_ns: int) -> float:
    ratings = view.ratings.get(symbol)
    return math.nan if ratings is None else ratings.last("recommend_all", t_ns)


def _last_adx(view: SleeveView, symbol: str, t_ns: int) -> float:
    bars = view.bars[symbol]
    last = int(np.searchsorted(bars.ts, t_ns, side="right")) - 1
    return float(bars.adx[last]) if last >= 0 else math.nan


# -- step 2 -----------------------------------------------------------------------------------


def pre_optimize(
    returns: pd.DataFrame, info: pd.DataFrame, winners: Sequence[str], settings: SleeveSettings
) -> PreOpt:
    """Step 2 on the raw returns window and the selection inputs (both as step 1 made them)."""
    atoms = tuple(synthesize.make_atoms(list(winners), info))
    syn = synthesize.synthetic_returns(returns, list(atoms))
    opt = settings.optimization
    analysis = analyze_window(
        syn, equal_weight_proxy(returns), periods_per_year=settings.periods_per_year,
        max_weight=opt.max_weight, cluster_threshold=settings.selection.cluster_threshold,
        max_clusters=settings.selection.max_clusters, base_cap=opt.cluster_cap,
        cap_headroom=opt.cap_headroom,
    )
    return PreOpt(atoms, syn, analysis)


# -- step 3 -----------------------------------------------------------------------------------


def allocate(
    synthetic: pd.DataFrame,
    labels: pd.Series,
    cluster_cap: float,
    atom_max: float,
    atoms: Sequence[Atom],
    settings: SleeveSettings,
) -> tuple[dict[str, OptimizationResult], pd.DataFrame]:
    """Step 3: each method's result and the weights table (SPEC §4 weights.csv columns)."""
    opt = settings.optimization
    by_atom = {a.atom: a for a in atoms}
    results: dict[str, OptimizationResult] = {}
    rows = []
    for method in opt.methods:
        res = optimize(method, synthetic, labels, periods_per_year=settings.periods_per_year,
                       cluster_cap=cluster_cap, atom_max=atom_max, covariance=opt.covariance,
                       linkage=opt.linkage, risk_free=opt.risk_free)
        results[method] = res
        for atom, w in res.weights.items():
            a = by_atom[str(atom)]
            rows.append({"method": method, "symbol": a.symbol, "atom": a.atom,
                         "direction": a.direction, "cluster": int(labels[atom]),
                         "weight": a.sign * float(w)})
    return results, pd.DataFrame(rows, columns=WEIGHTS_COLUMNS)


# -- the composition ----------------------------------------------------------------------------


def produce(view: SleeveView, settings: SleeveSettings) -> SleeveResult:
    """Steps 1-3 on one point-in-time view (module docstring)."""
    selection = select(view, settings)
    pre = pre_optimize(selection.returns, selection.info, selection.result.winners, settings)
    caps = pre.analysis.caps
    allocations, weights = allocate(pre.synthetic, pre.labels, caps.cluster_cap, caps.atom_max,
                                    pre.atoms, settings)
    return SleeveResult(selection, pre, allocations, weights)
