"""Natural selection, HTR v3.4 (Hierarchical Threshold Relaxation), on one returns window.

``select_htr(returns, candidates, params)`` is a pure function of the window it is given: the
caller slices ``returns`` to the bars ≤ t and passes ``recommend_all`` / ``adx`` as of t, so no
value after the window end can reach a decision.

Algorithm
1. Validate: ``returns`` (index UTC dates, columns candidate keys = atom ids, raw simple returns
   of the physical asset, dense and finite) and ``candidates`` (same keys) must agree.
   Work in key order (``str`` sort) throughout, so every tie is broken by key.
2. Synthetic returns s = r for LONG, −min(r, 1) for SHORT (``synthesize.synthetic``: exactly
   what the optimiser will see, SPEC §6.2-§6.3; a falling asset is a good short, and a short
   loses at most 100 % a bar). Features per candidate, all from s over the window:
   momentum = mean·P (P = ``periods_per_year``), annual vol = std·√P, stability = 1/vol,
   efficiency = |Σs|/Σ|s| over the last ``efficiency_window`` bars, permutation entropy
   (order 5) over the last ``entropy_window`` bars, Hurst H by R/S with
   hurst_clean = 1 − 2|H − 0.5|, skew, excess kurtosis, CVaR 95; from ``candidates``:
   liquidity (median value traded, last 20 bars), adx and recommend_all (×−1 for SHORT), both
   as of the window end.
3. Log-MPS score: for each weighted feature, average ranks among the candidates where it is
   finite (n of them); p = 0.01 + 0.99·(rank − 1)/(n − 1) with rank ascending (higher value is
   better) or descending (lower is better); p = 1 when n = 1; NaN feature → p = 0.01.
   alpha = exp(Σ wᵢ ln pᵢ) ∈ (0, 1].
4. Clusters of the synthetic returns s (``cluster.cluster_returns``: √(½(1 − ρ)), Ward, cut
   at ``cluster_threshold``, at most ``max_clusters``).
5. Vetoes (a candidate may carry several; each has veto, value, threshold, reason): missing
   tick/lot size; entropy > entropy_max; efficiency < efficiency_min; excess kurtosis >
   kurtosis_max; annual vol > vol_max; friction: momentum − vol·√(1e6/ADV) < friction_hurdle
   with ADV = liquidity (missing liquidity is a friction veto). A feature that cannot be
   computed fails its veto with that reason (it is never replaced by a neutral value).
6. Stages, stopping at the first whose winner set has ≥ ``min_winners``. Vetoes hold in every
   stage — a vetoed candidate never takes a slot: "top" always means the best non-vetoed
   members. Only the entropy and efficiency thresholds change (stage ≥ 2: entropy_max ×
   ``entropy_relax`` capped at 1, efficiency_min × ``efficiency_relax``).
   1. Per cluster, the ``top_n`` best non-vetoed members by alpha win (a cluster with at
      least ``top_n`` eligible members always gets ``top_n`` winners).
   2. The same with the relaxed thresholds: the pool only widens, so no cluster has fewer
      winners than at stage 1 (a member eligible only now may outrank a stage-1 winner).
   3. Factor floor: every cluster contributes at least its best non-vetoed member. Stage 2
      already gave every cluster with an eligible member its best ones, so this stage holds
      by construction; it is still evaluated and recorded in the funnel.
   4. Fill with the best remaining non-vetoed alpha, regardless of cluster, up to
      ``min_winners``.
   Winners are sorted by alpha (ties by key) and capped at ``max_winners``. Fewer than
   ``min_winners`` after stage 4: keep them and flag ``short_of_min_winners``; fewer than 2:
   raise ``HealthGateError`` (its ``result`` attribute carries the full ``SelectionResult`` so
   the runner can still write selection.json).

Skew direction: higher skew of the synthetic return is better (positive skew = convex,
antifragile payoff; a short on a crash-prone asset has positive synthetic skew), replacing the
prior system's direction-blind |skew|.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from portflow.alpha import stats
from portflow.alpha.cluster import ClusterResult, cluster_matrix
from portflow.alpha.synthesize import synthetic
from portflow.errors import HealthGateError, suggest

__all__ = [
    "DEFAULT_WEIGHTS",
    "FEATURES",
    "CandidateRecord",
    "SelectionParams",
    "SelectionResult",
    "compute_features",
    "rank_probabilities",
    "select_htr",
]

FEATURES: tuple[str, ...] = (
    "momentum",
    "stability",
    "liquidity",
    "efficiency",
    "entropy",
    "adx",
    "recommend_all",
    "skew",
    "kurtosis",
    "cvar",
    "hurst_clean",
)
# Extra informational columns of the feature table (not scorable).
INFO_COLUMNS: tuple[str, ...] = ("annual_vol", "hurst", "friction_cost", "n_bars")

# Prior system §3.2 HPO weights restricted to SPEC's feature list; the bool is "ascending":
# True = a higher value is better (rank ascending), False = lower is better.
DEFAULT_WEIGHTS: Mapping[str, tuple[float, bool]] = {
    "momentum": (1.7469, True),
    "stability": (0.0458, True),
    "liquidity": (0.2946, True),
    "efficiency": (1.5348, True),
    "entropy": (0.0322, False),
    "adx": (1.0, True),
    "recommend_all": (1.0, True),
    "skew": (0.5, True),
    "kurtosis": (0.5, False),
    "cvar": (1.0, True),
    "hurst_clean": (0.3485, True),
}

REQUIRED_CANDIDATE_COLUMNS = (
    "symbol",
    "direction",
    "tick_size",
    "lot_size",
    "liquidity",
    "recommend_all",
    "adx",
)
P_MIN = 0.01
FRICTION_NOTIONAL = 1e6  # quote currency; ECI = vol·√(notional / ADV)


@dataclass(frozen=True)
class SelectionParams:
    """HTR v3.4 parameters (defaults from SPEC §6.2).

    periods_per_year: bars per year for annualisation (365 for 24/7 crypto, 252 equities).
    weights: feature → (weight ≥ 0, ascending); ascending True = higher value is better.
    vol_max is an annual fraction (2.5 = 250 %); friction_hurdle an annual return fraction.
    efficiency_window / entropy_window: bars at the window end (None = the whole window). The
    entropy window defaults to 120 bars as in the prior system, where the 0.95 threshold was
    calibrated: plug-in entropy is biased low on few patterns (white noise reads ≈ 0.88 on
    120 bars but ≈ 0.96 on 365), so the same threshold means something else on another length.
    """

    periods_per_year: int
    weights: Mapping[str, tuple[float, bool]] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    top_n: int = 3
    cluster_threshold: float = 0.5
    max_clusters: int = 25
    entropy_max: float = 0.95
    efficiency_min: float = 0.05
    kurtosis_max: float = 20.0
    vol_max: float = 2.5
    friction_hurdle: float = 0.02
    min_winners: int = 15
    max_winners: int = 25
    efficiency_window: int | None = 120
    entropy_window: int | None = 120
    entropy_order: int = 5
    entropy_relax: float = 1.2
    efficiency_relax: float = 0.8

    def __post_init__(self) -> None:
        if self.periods_per_year < 1:
            raise ValueError(f"periods_per_year must be >= 1, got {self.periods_per_year}")
        for name, spec in self.weights.items():
            if name not in FEATURES:
                raise ValueError(
                    f"unknown selection feature '{name}' in weights{suggest(name, FEATURES)}"
                )
            weight, ascending = spec
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weight of '{name}' must be finite and >= 0, got {weight}")
            if not isinstance(ascending, bool | np.bool_):
                raise TypeError(f"ascending flag of '{name}' must be bool, got {ascending!r}")
        for name in ("top_n", "max_clusters", "min_winners", "max_winners"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_winners > self.max_winners:
            raise ValueError(
                f"min_winners ({self.min_winners}) must be <= max_winners ({self.max_winners})"
            )
        if not self.cluster_threshold > 0:
            raise ValueError(f"cluster_threshold must be > 0, got {self.cluster_threshold}")
        if not 0 < self.entropy_max <= 1:
            raise ValueError(f"entropy_max must be in (0, 1], got {self.entropy_max}")
        if self.entropy_relax < 1 or not 0 < self.efficiency_relax <= 1:
            raise ValueError("entropy_relax must be >= 1 and efficiency_relax in (0, 1]")

    def thresholds(self, stage: int) -> dict[str, float]:
        """Veto thresholds in force at ``stage`` (1..4)."""
        relaxed = stage >= 2
        return {
            "entropy_max": min(1.0, self.entropy_max * self.entropy_relax)
            if relaxed
            else self.entropy_max,
            "efficiency_min": self.efficiency_min * self.efficiency_relax
            if relaxed
            else self.efficiency_min,
            "kurtosis_max": self.kurtosis_max,
            "vol_max": self.vol_max,
            "friction_hurdle": self.friction_hurdle,
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k) for k in self.__dataclass_fields__ if k != "weights"
        }
        out["weights"] = {
            k: {"weight": float(w), "ascending": bool(a)} for k, (w, a) in self.weights.items()
        }
        return out


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate's selection audit row (selection.json)."""

    key: str
    symbol: str
    direction: str
    cluster: int
    features: dict[str, float | None]
    probabilities: dict[str, float]
    score: float
    log_score: float
    vetoes: tuple[dict[str, Any], ...]
    winner: bool
    stage_selected: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "symbol": self.symbol,
            "direction": self.direction,
            "cluster": self.cluster,
            "features": self.features,
            "probabilities": self.probabilities,
            "score": self.score,
            "log_score": self.log_score,
            "vetoes": [dict(v) for v in self.vetoes],
            "winner": self.winner,
            "stage_selected": self.stage_selected,
        }


@dataclass(frozen=True)
class _Detail:
    """Per-candidate arrays of one selection, in key order, for its audit records."""

    keys: list[str]
    symbols: np.ndarray
    directions: np.ndarray
    cluster_of: np.ndarray
    features: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]
    log_alpha: np.ndarray
    tick: np.ndarray
    lot: np.ndarray
    entered: dict[int, int]
    winners: frozenset[int]

    def records(self, th: Mapping[str, float]) -> tuple[CandidateRecord, ...]:
        out = []
        for i, key in enumerate(self.keys):
            row = {k: float(v[i]) for k, v in self.features.items()}
            out.append(CandidateRecord(
                key=key,
                symbol=str(self.symbols[i]),
                direction=str(self.directions[i]),
                cluster=int(self.cluster_of[i]),
                features={k: _num(row[k]) for k in (*FEATURES, *INFO_COLUMNS)},
                probabilities={k: float(p[i]) for k, p in self.probabilities.items()},
                score=float(np.exp(self.log_alpha[i])),
                log_score=float(self.log_alpha[i]),
                vetoes=tuple(_vetoes_for(row, float(self.tick[i]), float(self.lot[i]), th)),
                winner=i in self.winners,
                stage_selected=self.entered.get(i) if i in self.winners else None,
            ))
        return tuple(out)


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of ``select_htr``.

    stage: the stage reached (1..4). winners: keys ordered by alpha desc (ties by key).
    thresholds: stage → veto thresholds, for every stage evaluated.
    funnel: one row per evaluated stage {stage, n_eligible, n_winners}.
    records: one per candidate, key order; vetoes are those at the reached stage's thresholds.
    """

    stage: int
    winners: tuple[str, ...]
    short_of_min_winners: bool
    thresholds: dict[int, dict[str, float]]
    funnel: tuple[dict[str, int], ...]
    detail: _Detail
    clusters: ClusterResult
    params: SelectionParams
    window_start: str | None
    window_end: str | None
    n_bars: int

    @property
    def records(self) -> tuple[CandidateRecord, ...]:
        """One audit row per candidate, key order, with its vetoes at the reached stage's
        thresholds and their reasons (built when read: walk-forward windows never read
        them)."""
        return self.detail.records(self.thresholds[self.stage])

    def table(self) -> pd.DataFrame:
        """Records as a frame indexed by key: features, score, cluster, winner, n_vetoes."""
        rows = []
        for r in self.records:
            row: dict[str, Any] = {
                "symbol": r.symbol,
                "direction": r.direction,
                "cluster": r.cluster,
                "score": r.score,
                "winner": r.winner,
                "stage_selected": r.stage_selected,
                "vetoes": ",".join(v["veto"] for v in r.vetoes),
            }
            row.update({k: np.nan if v is None else v for k, v in r.features.items()})
            rows.append(row)
        return pd.DataFrame(rows, index=pd.Index([r.key for r in self.records], name="key"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "winners": list(self.winners),
            "n_winners": len(self.winners),
            "short_of_min_winners": self.short_of_min_winners,
            "n_candidates": len(self.records),
            "n_clusters": self.clusters.n_clusters,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "n_bars": self.n_bars,
            "thresholds": {str(k): v for k, v in self.thresholds.items()},
            "funnel": [dict(f) for f in self.funnel],
            "params": self.params.to_dict(),
            "clusters": self.clusters.to_dict(),
            "candidates": [r.to_dict() for r in self.records],
        }


def _num(x: Any) -> float | None:
    """JSON-safe float: NaN/inf → None."""
    v = float(x)
    return v if math.isfinite(v) else None


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy's ``rankdata(method="average")``,
    the same numbers, without its per-call overhead)."""
    order = np.argsort(values, kind="mergesort")
    ranked = values[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], ranked.size]
    out = np.empty(ranked.size)
    out[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return out


def rank_probabilities(values: np.ndarray, ascending: bool) -> np.ndarray:
    """Log-MPS rank probability per value, shape ``(N,)`` (see module docstring step 3)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, P_MIN)
    ok = np.isfinite(v)
    n = int(ok.sum())
    if n == 1:
        out[ok] = 1.0
    elif n > 1:
        r = average_ranks(v[ok])
        if not ascending:
            r = n + 1 - r
        out[ok] = P_MIN + (1.0 - P_MIN) * (r - 1.0) / (n - 1.0)
    return out


def _validate(returns: pd.DataFrame, candidates: pd.DataFrame) -> None:
    if returns.shape[0] < 2 or returns.shape[1] < 1:
        raise ValueError(f"returns window must have >= 2 bars and >= 1 column, got {returns.shape}")
    if not returns.columns.is_unique or not candidates.index.is_unique:
        raise ValueError("returns columns and candidates index must be unique keys")
    if not returns.index.is_monotonic_increasing:
        raise ValueError("returns index must be sorted oldest → newest")
    missing_cols = [c for c in REQUIRED_CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing_cols:
        raise ValueError(f"candidates frame lacks columns {missing_cols}")
    ret_keys, cand_keys = set(map(str, returns.columns)), set(map(str, candidates.index))
    if ret_keys != cand_keys:
        only_r = sorted(ret_keys - cand_keys)[:5]
        only_c = sorted(cand_keys - ret_keys)[:5]
        raise ValueError(
            f"returns columns and candidates keys differ: only in returns {only_r}, "
            f"only in candidates {only_c}"
        )
    bad_dir = sorted(set(candidates["direction"]) - {"LONG", "SHORT"})
    if bad_dir:
        raise ValueError(f"direction must be 'LONG' or 'SHORT', got {bad_dir}")
    values = returns.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        bad = returns.columns[~np.isfinite(values).all(axis=0)].tolist()[:5]
        raise ValueError(f"returns must be dense and finite; NaN/inf in {bad}")


def _numeric(candidates: pd.DataFrame, column: str) -> np.ndarray:
    col = candidates[column]
    if pd.api.types.is_float_dtype(col.dtype):  # as the sleeve builds it: no coercion needed
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)


def compute_features(
    returns: pd.DataFrame, candidates: pd.DataFrame, params: SelectionParams
) -> pd.DataFrame:
    """Feature table indexed by key (key order): ``FEATURES`` + ``INFO_COLUMNS``.

    returns: raw simple returns ``(T, N)``; candidates: see ``select_htr``. Units: momentum and
    annual_vol annual fractions, stability 1/annual vol, cvar a per-bar return, liquidity
    quote currency, the rest dimensionless. friction_cost = annual_vol·√(1e6/liquidity).
    """
    keys, x, cand = _aligned(returns, candidates)
    table = _features(x, cand, params)
    return pd.DataFrame(table, index=pd.Index(keys, name="key"))


def _aligned(returns: pd.DataFrame,
             candidates: pd.DataFrame) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """Keys in `str` order, the raw returns (T, N) and the candidates in that order."""
    cols = [str(c) for c in returns.columns]
    order = sorted(range(len(cols)), key=cols.__getitem__)
    keys = [cols[i] for i in order]
    x = returns.to_numpy(dtype=np.float64)
    if cols != keys:
        x = x[:, order]
    cand = candidates
    if list(cand.index) != keys:
        cand = cand.set_axis(cand.index.map(str))
        if list(cand.index) != keys:
            cand = cand.loc[keys]
    return keys, x, cand


def _features(x: np.ndarray, cand: pd.DataFrame, params: SelectionParams) -> dict[str, np.ndarray]:
    """The feature columns of :func:`compute_features` from aligned arrays."""
    short = cand["direction"].to_numpy() == "SHORT"
    sign = np.where(short, -1.0, 1.0)
    s = synthetic(x, short)
    ppy = params.periods_per_year
    vol = stats.annual_vol(s, ppy)
    hurst = stats.hurst_rs(s)
    skew, kurtosis = stats.skew_kurtosis(s)
    liquidity = _numeric(cand, "liquidity")
    liquidity = np.where(liquidity > 0, liquidity, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        friction_cost = vol * np.sqrt(FRICTION_NOTIONAL / liquidity)
    table = {
        "momentum": stats.momentum(s, ppy),
        "stability": stats.stability(s, ppy),
        "liquidity": liquidity,
        "efficiency": stats.efficiency_ratio(s, params.efficiency_window),
        "entropy": stats.permutation_entropy(s, params.entropy_order, params.entropy_window),
        "adx": _numeric(cand, "adx"),
        "recommend_all": _numeric(cand, "recommend_all") * sign,
        "skew": skew,
        "kurtosis": kurtosis,
        "cvar": stats.cvar(s, 0.95),
        "hurst_clean": stats.hurst_clean(hurst),
        "annual_vol": vol,
        "hurst": hurst,
        "friction_cost": friction_cost,
        "n_bars": np.full(s.shape[1], float(s.shape[0])),
    }
    return table


def _fmt(x: float) -> str:
    return "NaN" if not math.isfinite(x) else f"{x:.4g}"


def _veto(name: str, value: float, threshold: float, reason: str) -> dict[str, Any]:
    return {"veto": name, "value": _num(value), "threshold": _num(threshold), "reason": reason}


def _vetoes_for(
    row: Mapping[str, float], tick: float, lot: float, th: Mapping[str, float]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, v in (("tick_size", tick), ("lot_size", lot)):
        if not (math.isfinite(v) and v > 0):
            out.append(_veto(name, v, 0.0, f"{name} is missing or not positive ({_fmt(v)})"))
    ent, eff = float(row["entropy"]), float(row["efficiency"])
    if not ent <= th["entropy_max"]:
        why = "cannot be computed" if not math.isfinite(ent) else "too noisy"
        out.append(
            _veto(
                "entropy",
                ent,
                th["entropy_max"],
                f"permutation entropy {_fmt(ent)} > {_fmt(th['entropy_max'])} ({why})",
            )
        )
    if not eff >= th["efficiency_min"]:
        why = "cannot be computed" if not math.isfinite(eff) else "path too choppy"
        out.append(
            _veto(
                "efficiency",
                eff,
                th["efficiency_min"],
                f"efficiency ratio {_fmt(eff)} < {_fmt(th['efficiency_min'])} ({why})",
            )
        )
    kurt = float(row["kurtosis"])
    if not kurt <= th["kurtosis_max"]:
        out.append(
            _veto(
                "kurtosis",
                kurt,
                th["kurtosis_max"],
                f"excess kurtosis {_fmt(kurt)} > {_fmt(th['kurtosis_max'])} (fat tails)",
            )
        )
    vol = float(row["annual_vol"])
    if not vol <= th["vol_max"]:
        out.append(
            _veto(
                "volatility",
                vol,
                th["vol_max"],
                f"annual volatility {_fmt(vol)} > {_fmt(th['vol_max'])}",
            )
        )
    liq, mom, cost = float(row["liquidity"]), float(row["momentum"]), float(row["friction_cost"])
    if not math.isfinite(liq):
        out.append(
            _veto(
                "friction",
                liq,
                th["friction_hurdle"],
                "liquidity (median value traded) is missing: friction cannot be assessed",
            )
        )
    else:
        net = mom - cost
        if not net >= th["friction_hurdle"]:
            out.append(
                _veto(
                    "friction",
                    net,
                    th["friction_hurdle"],
                    f"momentum {_fmt(mom)} - friction {_fmt(cost)} (vol·√(1e6/ADV), "
                    f"ADV {_fmt(liq)}) = {_fmt(net)} < hurdle {_fmt(th['friction_hurdle'])}",
                )
            )
    return out


def _veto_masks(
    cols: Mapping[str, np.ndarray], tick: np.ndarray, lot: np.ndarray, th: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """Which candidates each veto of :func:`_vetoes_for` strikes, vectorised (the same
    comparisons: a value that cannot be computed fails its veto)."""
    with np.errstate(invalid="ignore"):
        return {
            "tick_size": ~(np.isfinite(tick) & (tick > 0)),
            "lot_size": ~(np.isfinite(lot) & (lot > 0)),
            "entropy": ~(cols["entropy"] <= th["entropy_max"]),
            "efficiency": ~(cols["efficiency"] >= th["efficiency_min"]),
            "kurtosis": ~(cols["kurtosis"] <= th["kurtosis_max"]),
            "volatility": ~(cols["annual_vol"] <= th["vol_max"]),
            "friction": ~np.isfinite(cols["liquidity"])
            | ~(cols["momentum"] - cols["friction_cost"] >= th["friction_hurdle"]),
        }


def _order(alpha: np.ndarray, idx: np.ndarray) -> list[int]:
    """Positions ``idx`` sorted by alpha desc, then key asc (keys are in ascending order, so
    a key's position breaks the tie)."""
    idx = np.asarray(idx, dtype=np.int64)
    return idx[np.lexsort((idx, -alpha[idx]))].tolist()


def select_htr(
    returns: pd.DataFrame, candidates: pd.DataFrame, params: SelectionParams
) -> SelectionResult:
    """Run HTR v3.4 on one window (see module docstring).

    returns: DataFrame ``(T, N)``, index UTC dates of the window (oldest first), columns
        candidate keys (atom ids), raw simple returns of the physical asset, dense, no NaN.
    candidates: DataFrame indexed by the same keys with columns symbol, direction
        ('LONG'|'SHORT'), tick_size, lot_size (NaN if unknown), liquidity (median value traded
        over the last 20 bars, quote currency), recommend_all and adx (as of the window end;
        NaN if unknown).
    """
    _validate(returns, candidates)
    keys, x, cand = _aligned(returns, candidates)
    cols = _features(x, cand, params)
    n = len(keys)
    short = cand["direction"].to_numpy() == "SHORT"

    probs: dict[str, np.ndarray] = {}
    log_alpha = np.zeros(n)
    for name, (weight, ascending) in params.weights.items():
        p = rank_probabilities(cols[name], ascending)
        probs[name] = p
        log_alpha += weight * np.log(p)
    alpha = np.exp(log_alpha)

    clusters = cluster_matrix(synthetic(x, short), keys, params.cluster_threshold,
                              params.max_clusters)
    cluster_of = clusters.labels.to_numpy(dtype=np.int64)
    ranked_all = np.asarray(_order(alpha, np.arange(n)), dtype=np.int64)
    by_cluster = [
        ranked_all[cluster_of[ranked_all] == c].tolist() for c in range(clusters.n_clusters)
    ]

    tick = _numeric(cand, "tick_size")
    lot = _numeric(cand, "lot_size")

    thresholds: dict[int, dict[str, float]] = {}
    funnel: list[dict[str, int]] = []
    entered: dict[int, int] = {}
    masks = _veto_masks(cols, tick, lot, params.thresholds(1))
    stage = 0
    for stage in (1, 2, 3, 4):
        thresholds[stage] = params.thresholds(stage)
        if stage == 2:
            masks = _veto_masks(cols, tick, lot, thresholds[2])
        eligible = ~np.logical_or.reduce(list(masks.values()))
        # Stage 3, the factor floor, holds once stage 2 ran (module docstring step 6.3).
        if stage in (1, 2):
            # The top_n of each cluster among its eligible members; a stage-1 winner still
            # among them keeps label 1.
            entered = {
                i: entered.get(i, stage)
                for members in by_cluster
                for i in [i for i in members if eligible[i]][: params.top_n]
            }
        elif stage == 4:
            for i in _order(alpha, np.flatnonzero(eligible)):
                if len(entered) >= params.min_winners:
                    break
                entered.setdefault(i, 4)
        funnel.append(
            {"stage": stage, "n_eligible": int(eligible.sum()), "n_winners": len(entered)}
        )
        if len(entered) >= params.min_winners:
            break

    ranked = _order(alpha, np.fromiter(entered, dtype=np.int64, count=len(entered)))
    winners_idx = ranked[: params.max_winners]
    detail = _Detail(keys, cand["symbol"].to_numpy(), cand["direction"].to_numpy(), cluster_of,
                     cols, probs, log_alpha, tick, lot, entered, frozenset(winners_idx))
    result = SelectionResult(
        stage=stage,
        winners=tuple(keys[i] for i in winners_idx),
        short_of_min_winners=len(winners_idx) < params.min_winners,
        thresholds=thresholds,
        funnel=tuple(funnel),
        detail=detail,
        clusters=clusters,
        params=params,
        window_start=str(returns.index[0]),
        window_end=str(returns.index[-1]),
        n_bars=int(returns.shape[0]),
    )
    if len(winners_idx) < 2:
        counts = {k: int(m.sum()) for k, m in masks.items() if m.any()}
        struck = ", ".join(f"{k} {c}" for k, c in sorted(counts.items())) or "none"
        err = HealthGateError(
            f"HTR selection kept {len(winners_idx)} winner(s) of {n} candidates after stage "
            f"{stage} (need at least 2; min_winners {params.min_winners}); vetoes: {struck}; "
            "see selection.json for each candidate's reasons, or widen the candidate pool"
        )
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result
