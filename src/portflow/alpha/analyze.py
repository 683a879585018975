"""Pre-optimisation analysis of one window (SPEC §6.4): clusters, antifragility, regime, caps.

Pure functions of the window they are given; the runner writes the results (``to_dict``) to
``regime.json`` and friends.

Algorithm
1. Clusters of the atoms: ``cluster.cluster_returns`` on the synthetic returns (same rule as
   selection: √(½(1 − ρ)), Ward, cut at the threshold, at most ``max_clusters``).
2. ``antifragility_stats`` per atom on its synthetic returns (per-bar fractions unless noted):
   vol = std (ddof 1)·√P (annual), skew and excess kurtosis (bias-corrected), var_95 = 5 %
   quantile, cvar_95 = mean of returns ≤ var_95, tail_gain = mean of returns ≥ the 95 %
   quantile, tail_ratio = q95 / |var_95| (NaN when var_95 = 0), max_drawdown = the deepest
   fall of the compounded curve Π(1 + r) from its running peak (a fraction ≤ 0), n = bars,
   significance = min(1, n / P), antifragility_score = (minmax(skew) + minmax(tail_gain)) ·
   significance ∈ [0, 2]. P = ``periods_per_year``: "a year of history" is 252 bars for
   equities (exactly SPEC's N/252) and 365 for 24/7 markets — the prior system's fixed 252
   mixed calendars (its defect 18). minmax of a constant column (one atom, or identical
   values) is 0.5 for every atom: no atom is better than another.
3. ``detect_regime`` on the equal-weight proxy of the healthy candidates' raw returns, score as
   prior-system §3.5(c):
   score = 0.35·vol_ratio + 0.25·turbulence + 0.15·vol_clustering + 0.10·PE
           + 0.10·2|H − 0.5| + 0.05·ADF p + 0.15·min(1, |excess kurtosis|/10)
   with vol_ratio = std(last 10)/std(all), turbulence = Haar DWT (3 levels) detail energy share
   over the last 64 bars, vol_clustering = lag-1 autocorrelation of |r|, PE = permutation
   entropy of order 3 over the last 64 bars, H = R/S Hurst of the whole proxy, ADF p-value of
   the proxy returns (constant, AIC lags). Adjustments in order: ×0.5 if vol_ratio < 0.2;
   ×0.01 if the current vol std(last 10) < 0.001; cap at 2.5; cap at 0.6 if vol_ratio < 0.5.
   Label: QUIET < 0.7 ≤ NORMAL < 1.3 ≤ TURBULENT < 1.8 ≤ CRISIS. Cluster cap: base (0.25);
   TURBULENT min(base, 0.20); CRISIS min(base, 0.15).
   A component that is undefined on the data (e.g. |r| constant) is recorded in
   ``Regime.undefined`` with the reason and contributes 0; it is never hidden.
4. ``effective_caps`` (SPEC §6.4), with h = ``cap_headroom`` (>= 1, default 1.5) and n_c the
   atoms of cluster c (G clusters):
   1. cluster cap C = max(regime cap, min(1, h/G)): a cap of exactly 1/G would force every
      method onto the same cluster weights, so the caps together leave h of room;
   2. the atoms hold at most F(a) = Σ_c min(C, n_c·a) under an atom max a; F is continuous,
      non-decreasing and piecewise linear with breakpoints C/n_c. Target T = min(h, G·C)
      (>= 1, so Σw = 1 is always feasible: caps never make a run fail);
   3. atom max a = max_weight when F(max_weight) >= T; otherwise the smallest a with
      F(a) = T: on the linear piece where the clusters with C/n_c <= a are saturated,
      a = (T − C·#saturated) / Σ_unsaturated n_c — exact, then nudged up by ulps until
      F(a) >= T holds in floating point. a <= max_c C/n_c <= 1.
   Whether each cap was raised, and why, is recorded on ``EffectiveCaps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from portflow.alpha import stats
from portflow.alpha.cluster import ClusterResult, cluster_returns

__all__ = [
    "REGIME_BANDS",
    "REGIME_WEIGHTS",
    "Analysis",
    "EffectiveCaps",
    "Regime",
    "analyze_window",
    "antifragility_stats",
    "detect_regime",
    "effective_caps",
    "equal_weight_proxy",
    "regime_cap",
    "regime_label",
]

REGIME_WEIGHTS: dict[str, float] = {
    "vol_ratio": 0.35,
    "turbulence": 0.25,
    "vol_clustering": 0.15,
    "entropy": 0.10,
    "hurst_dev": 0.10,
    "adf_pvalue": 0.05,
    "kurtosis": 0.15,
}
# Lower bounds of each label, ascending.
REGIME_BANDS: tuple[tuple[str, float], ...] = (
    ("QUIET", -math.inf),
    ("NORMAL", 0.7),
    ("TURBULENT", 1.3),
    ("CRISIS", 1.8),
)
RECENT_BARS = 10
SHAPE_BARS = 64
MIN_REGIME_BARS = 64

STAT_COLUMNS = (
    "vol",
    "skew",
    "kurtosis",
    "tail_gain",
    "var_95",
    "cvar_95",
    "tail_ratio",
    "max_drawdown",
    "n",
    "significance",
    "antifragility_score",
)


def _minmax(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    if not ok.any():
        return out
    lo, hi = float(x[ok].min()), float(x[ok].max())
    out[ok] = 0.5 if hi - lo <= 0 else (x[ok] - lo) / (hi - lo)
    return out


def antifragility_stats(synthetic_returns: pd.DataFrame, periods_per_year: int) -> pd.DataFrame:
    """Per-atom tail and antifragility statistics (module docstring step 2).

    synthetic_returns: DataFrame ``(T, N)``, index UTC dates, columns atom ids, synthetic simple
    returns (dense, finite). Returns a DataFrame indexed by atom id with ``STAT_COLUMNS``;
    undefined statistics (zero variance) are NaN.
    """
    if periods_per_year < 1:
        raise ValueError(f"periods_per_year must be >= 1, got {periods_per_year}")
    x = synthetic_returns.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("antifragility_stats needs dense, finite synthetic returns")
    t = x.shape[0]
    if t < 2:
        raise ValueError(f"antifragility_stats needs >= 2 bars, got {t}")
    q05 = np.quantile(x, 0.05, axis=0)
    q95 = np.quantile(x, 0.95, axis=0)
    lo, hi = x <= q05, x >= q95
    var_95 = q05
    cvar_95 = (x * lo).sum(axis=0) / lo.sum(axis=0)
    tail_gain = (x * hi).sum(axis=0) / hi.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail_ratio = np.where(var_95 != 0, q95 / np.abs(var_95), np.nan)
        wealth = np.cumprod(1.0 + x, axis=0)
        peak = np.maximum.accumulate(np.vstack([np.ones((1, x.shape[1])), wealth]), axis=0)[1:]
        drawdown = np.where(peak > 0, wealth / peak - 1.0, -1.0)
    skew, kurtosis = stats.skew_kurtosis(x)
    significance = min(1.0, t / periods_per_year)
    score = (_minmax(skew) + _minmax(tail_gain)) * significance
    frame = pd.DataFrame(
        {
            "vol": stats.annual_vol(x, periods_per_year),
            "skew": skew,
            "kurtosis": kurtosis,
            "tail_gain": tail_gain,
            "var_95": var_95,
            "cvar_95": cvar_95,
            "tail_ratio": tail_ratio,
            "max_drawdown": drawdown.min(axis=0),
            "n": np.full(x.shape[1], t, dtype=np.int64),
            "significance": np.full(x.shape[1], significance),
            "antifragility_score": score,
        },
        index=pd.Index(synthetic_returns.columns, name="atom"),
    )
    return frame


@dataclass(frozen=True)
class Regime:
    """Market regime of the equal-weight proxy.

    score: final score after adjustments; raw_score: the weighted sum before them.
    components: raw component values (vol_ratio, turbulence, vol_clustering, entropy,
    hurst, hurst_dev = 2|H − 0.5|, adf_pvalue, kurtosis (excess), current_vol (std of the last
    10 bars, per bar)). contributions: weight × component as summed. adjustments: the rules
    that fired, in order. undefined: component → reason, for components that contributed 0.
    """

    label: str
    score: float
    raw_score: float
    cluster_cap: float
    base_cap: float
    components: dict[str, float | None]
    contributions: dict[str, float]
    adjustments: tuple[str, ...]
    undefined: dict[str, str]
    n_bars: int
    window_end: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["adjustments"] = list(self.adjustments)
        return out


def regime_label(score: float) -> str:
    """QUIET < 0.7 ≤ NORMAL < 1.3 ≤ TURBULENT < 1.8 ≤ CRISIS."""
    label = REGIME_BANDS[0][0]
    for name, lower in REGIME_BANDS:
        if score >= lower:
            label = name
    return label


def regime_cap(
    label: str, base_cap: float = 0.25, turbulent_cap: float = 0.20, crisis_cap: float = 0.15
) -> float:
    """Cluster cap for a regime: base; TURBULENT min(base, 0.20); CRISIS min(base, 0.15)."""
    if label == "CRISIS":
        return min(base_cap, crisis_cap)
    if label == "TURBULENT":
        return min(base_cap, turbulent_cap)
    if label in ("QUIET", "NORMAL"):
        return base_cap
    raise ValueError(f"unknown regime label '{label}'")


def equal_weight_proxy(raw_returns: pd.DataFrame) -> pd.Series:
    """Equal-weight market proxy: row mean of the (dense) raw returns ``(T, N)`` → ``(T,)``."""
    if raw_returns.shape[1] == 0:
        raise ValueError("equal_weight_proxy needs at least one column")
    return raw_returns.mean(axis=1).rename("ew_proxy")


def _lag1_autocorr(x: np.ndarray) -> float:
    a, b = x[:-1] - x[:-1].mean(), x[1:] - x[1:].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    # Relative floor: a constant series leaves only rounding noise in the deviations.
    floor = (1e-12 * float(np.abs(x).max(initial=0.0))) ** 2 * x.shape[0]
    return float(a @ b) / den if den > floor else float("nan")


def detect_regime(
    proxy_returns: pd.Series,
    *,
    base_cap: float = 0.25,
    turbulent_cap: float = 0.20,
    crisis_cap: float = 0.15,
) -> Regime:
    """Score and label the regime of ``proxy_returns`` (index UTC dates, per-bar simple returns).

    Needs ≥ 64 finite bars (ValueError otherwise). See module docstring step 3.
    """
    x = np.asarray(proxy_returns.to_numpy(dtype=np.float64))
    if x.shape[0] < MIN_REGIME_BARS or not np.all(np.isfinite(x)):
        raise ValueError(
            f"detect_regime needs >= {MIN_REGIME_BARS} finite bars, got {x.shape[0]} "
            f"({int((~np.isfinite(x)).sum())} non-finite)"
        )
    undefined: dict[str, str] = {}
    std_all = float(x.std(ddof=1))
    current_vol = float(x[-RECENT_BARS:].std(ddof=1))
    if std_all > 0:
        vol_ratio = current_vol / std_all
    else:
        vol_ratio = float("nan")
        undefined["vol_ratio"] = "the proxy has zero variance over the window"
    h = float(stats.hurst_rs(x)[0])
    comp: dict[str, float] = {
        "vol_ratio": vol_ratio,
        "turbulence": stats.haar_turbulence(x, SHAPE_BARS, 3),
        "vol_clustering": _lag1_autocorr(np.abs(x)),
        "entropy": float(stats.permutation_entropy(x, order=3, window=SHAPE_BARS)[0]),
        "hurst": h,
        "hurst_dev": 2.0 * abs(h - 0.5),
        "adf_pvalue": stats.adf_pvalue(x),
        "kurtosis": float(stats.excess_kurtosis(x)[0]),
        "current_vol": current_vol,
    }
    reasons = {
        "turbulence": "no energy in the last 64 bars",
        "vol_clustering": "|r| is constant, its autocorrelation is undefined",
        "entropy": "permutation entropy needs finite bars",
        "hurst_dev": "rescaled range has fewer than 2 usable lags",
        "adf_pvalue": "the ADF regression is degenerate (constant, collinear or too short)",
        "kurtosis": "the proxy has zero variance",
    }
    contributions: dict[str, float] = {}
    for name, weight in REGIME_WEIGHTS.items():
        value = comp[name]
        if name == "kurtosis":
            value = min(1.0, abs(value) / 10.0)
        if not math.isfinite(value):
            undefined.setdefault(name, reasons.get(name, "undefined"))
            contributions[name] = 0.0
        else:
            contributions[name] = weight * value
    raw = float(sum(contributions.values()))
    score = raw
    adjustments: list[str] = []
    if math.isfinite(vol_ratio) and vol_ratio < 0.2:
        score *= 0.5
        adjustments.append("vol_ratio < 0.2: score x 0.5")
    if current_vol < 0.001:
        score *= 0.01
        adjustments.append("current vol < 0.001: score x 0.01")
    if score > 2.5:
        score = 2.5
        adjustments.append("score capped at 2.5")
    if math.isfinite(vol_ratio) and vol_ratio < 0.5 and score > 0.6:
        score = 0.6
        adjustments.append("vol_ratio < 0.5: score capped at 0.6")
    label = regime_label(score)
    return Regime(
        label=label,
        score=score,
        raw_score=raw,
        cluster_cap=regime_cap(label, base_cap, turbulent_cap, crisis_cap),
        base_cap=base_cap,
        components={k: (v if math.isfinite(v) else None) for k, v in comp.items()},
        contributions=contributions,
        adjustments=tuple(adjustments),
        undefined=undefined,
        n_bars=int(x.shape[0]),
        window_end=str(proxy_returns.index[-1]),
    )


@dataclass(frozen=True)
class EffectiveCaps:
    """Caps the optimiser enforces (module docstring step 4), with the inputs and the audit.

    cluster_cap, atom_max: the effective caps (fractions of capital). regime_cap, max_weight,
    cap_headroom, cluster_sizes (atoms per cluster, in cluster-label order): the inputs.
    ``*_raised`` says whether a cap is above its configured value; ``*_reason`` says why
    ("" when not raised). capacity: Σ_c min(cluster_cap, n_c·atom_max), the most the atoms can
    hold, >= min(cap_headroom, n_clusters·cluster_cap) >= 1.
    """

    cluster_cap: float
    atom_max: float
    regime_cap: float
    max_weight: float
    cap_headroom: float
    n_clusters: int
    n_atoms: int
    cluster_sizes: tuple[int, ...]
    capacity: float
    cluster_cap_raised: bool
    cluster_cap_reason: str
    atom_max_raised: bool
    atom_max_reason: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cluster_sizes"] = list(self.cluster_sizes)
        return out


def _atom_capacity(cap: float, sizes: np.ndarray, atom_max: float) -> float:
    return float(np.minimum(cap, sizes * atom_max).sum())


def _smallest_atom_max(cap: float, sizes: np.ndarray, target: float, start: float) -> float:
    """Smallest a >= start with Σ_c min(cap, n_c·a) >= target (step 4.3); assumes it exists."""
    breaks = np.unique(cap / sizes)
    a = start
    for k in range(breaks.size + 1):
        low = breaks[k - 1] if k else 0.0
        high = breaks[k] if k < breaks.size else math.inf
        if high < start:
            continue
        saturated = cap / sizes <= low
        # On this piece F(a) = cap·#saturated + a·Σ_unsaturated n_c.
        slope = float(sizes[~saturated].sum())
        if slope > 0:
            a = (target - cap * int(saturated.sum())) / slope
            if a <= high:
                # a breakpoint missed by rounding (e.g. 0.0999…9 for 0.1) is the breakpoint
                a = float(high if math.isclose(a, high, rel_tol=1e-12) else max(a, start, low))
                break
    while _atom_capacity(cap, sizes, a) < target and a < 1.0:  # rounding: up by ulps
        a = float(np.nextafter(a, math.inf))
    return a


def effective_caps(
    regime_cap: float,
    cluster_sizes: Sequence[int] | np.ndarray,
    max_weight: float,
    cap_headroom: float = 1.5,
) -> EffectiveCaps:
    """Effective cluster cap and atom max (module docstring step 4); never an empty set.

    regime_cap: the regime's cluster cap; cluster_sizes: atoms per cluster (each >= 1);
    max_weight: the configured atom max; cap_headroom: h >= 1. All caps are fractions in (0, 1].
    """
    sizes = np.asarray(cluster_sizes, dtype=np.int64)
    if sizes.ndim != 1 or sizes.size < 1 or np.any(sizes < 1):
        raise ValueError(f"cluster_sizes must list >= 1 atoms per cluster, got {cluster_sizes!r}")
    if not (0 < regime_cap <= 1 and 0 < max_weight <= 1):
        raise ValueError(f"caps must be in (0, 1], got regime {regime_cap}, atom {max_weight}")
    if not (math.isfinite(cap_headroom) and cap_headroom >= 1):
        raise ValueError(
            f"cap_headroom must be >= 1 (caps must leave room for a fully invested "
            f"portfolio), got {cap_headroom}"
        )
    n_clusters = int(sizes.size)
    headroom_cap = min(1.0, cap_headroom / n_clusters)
    cap = max(regime_cap, headroom_cap)
    cap_reason = ""
    if cap > regime_cap:
        cap_reason = (
            f"regime cap {regime_cap:.4g} x {n_clusters} clusters leaves less than the headroom "
            f"{cap_headroom:.4g}; raised to min(1, {cap_headroom:.4g}/{n_clusters})"
        )
    # Σ_c C summed like F itself, so that F can reach it in floating point.
    target = min(cap_headroom, _atom_capacity(cap, sizes, 1.0))
    held = _atom_capacity(cap, sizes, max_weight)
    atom_max = max_weight
    atom_reason = ""
    if held < target:
        atom_max = _smallest_atom_max(cap, sizes, target, max_weight)
        atom_reason = (
            f"max_weight {max_weight:.4g} lets the atoms hold only {held:.4g} under cluster cap "
            f"{cap:.4g} (clusters of {sizes.tolist()} atoms), less than min(headroom "
            f"{cap_headroom:.4g}, {n_clusters} x cap) = {target:.4g}; raised to the smallest "
            "atom max that holds it"
        )
    return EffectiveCaps(
        cluster_cap=cap,
        atom_max=atom_max,
        regime_cap=regime_cap,
        max_weight=max_weight,
        cap_headroom=cap_headroom,
        n_clusters=n_clusters,
        n_atoms=int(sizes.sum()),
        cluster_sizes=tuple(int(k) for k in sizes),
        capacity=_atom_capacity(cap, sizes, atom_max),
        cluster_cap_raised=bool(cap > regime_cap),
        cluster_cap_reason=cap_reason,
        atom_max_raised=bool(atom_max > max_weight),
        atom_max_reason=atom_reason,
    )


@dataclass(frozen=True)
class Analysis:
    """Everything §6.4 produces for one window."""

    clusters: ClusterResult
    stats: pd.DataFrame
    regime: Regime
    caps: EffectiveCaps

    def to_dict(self) -> dict[str, Any]:
        return {
            "clusters": self.clusters.to_dict(),
            "antifragility": [
                {"atom": str(k), **{c: _num(v) for c, v in row.items()}}
                for k, row in self.stats.iterrows()
            ],
            "regime": self.regime.to_dict(),
            "caps": self.caps.to_dict(),
        }


def _num(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def analyze_window(
    synthetic_returns: pd.DataFrame,
    proxy_returns: pd.Series,
    *,
    periods_per_year: int,
    max_weight: float,
    cluster_threshold: float = 0.5,
    max_clusters: int = 25,
    base_cap: float = 0.25,
    cap_headroom: float = 1.5,
) -> Analysis:
    """Run steps 1–4 on one window.

    synthetic_returns: ``(T, N)`` atoms' synthetic returns; proxy_returns: ``(T',)`` the
    equal-weight proxy of the healthy candidates' raw returns (``equal_weight_proxy``).
    """
    clusters = cluster_returns(synthetic_returns, cluster_threshold, max_clusters)
    table = antifragility_stats(synthetic_returns, periods_per_year)
    regime = detect_regime(proxy_returns, base_cap=base_cap)
    sizes = np.bincount(clusters.labels.to_numpy(dtype=np.int64), minlength=clusters.n_clusters)
    caps = effective_caps(regime.cluster_cap, sizes, max_weight, cap_headroom)
    return Analysis(clusters, table, regime, caps)
