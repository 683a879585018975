"""Meta-optimisation (SPEC §7.3): weights across sleeves from their aligned return streams.

A thin wrapper of Phase 2's allocators (:func:`portflow.alpha.optimize.optimize`): each sleeve
is one atom with per-atom bounds [`allocation.min_weight`, `allocation.max_weight`] and no
cluster cap, so the meta weights pass the same Stable Sum Gate and, when a link fails, the same
recorded fallback chain (more shrinkage → alternate solver → equal weight) as a sleeve's.

1. `risk_parity` (default): exact equal risk contribution — Newton on the strictly convex
   ``min ½yᵀΣy − bᵀlog y`` (Spinu) — and, when that point leaves the bounds, the constrained
   risk budgeting portfolio within them (recorded as ``cap_bound``); `hrp`, `min_var`,
   `max_sharpe` and `equal_weight` are selectable (``allocation.method``).
2. Σ is Ledoit–Wolf (HRP: the sample covariance, as in Phase 2), per bar of the aligned
   calendar; nothing is annualised.
3. Risk contributions are reported as shares of portfolio variance under the covariance the
   method used: RC_i = w_i (Σw)_i / wᵀΣw, summing to 1 (equal to 1/n for an exact ERC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from portflow.alpha.optimize import OptimizationResult, estimate_moments, optimize

COVARIANCE = "ledoit_wolf"


@dataclass(frozen=True)
class MetaAllocation:
    """weights / risk_contributions: Series indexed by sleeve id (in the input's order)."""

    method: str
    weights: pd.Series
    risk_contributions: pd.Series
    result: OptimizationResult
    covariance: str

    def table(self) -> pd.DataFrame:
        """sleeve_weights.csv (SPEC §4): sleeve, weight, risk_contribution."""
        return pd.DataFrame({"sleeve": list(self.weights.index),
                             "weight": self.weights.to_numpy(),
                             "risk_contribution": self.risk_contributions.to_numpy()})

    def record(self) -> dict[str, object]:
        """What run.json keeps: the link that produced the weights and why earlier ones failed."""
        return {"method": self.method, "link": self.result.link,
                "attempts": self.result.attempts, "info": self.result.info,
                "risk_contribution_covariance": self.covariance}


def allocate(returns: pd.DataFrame, method: str, min_weight: float, max_weight: float,
             periods_per_year: int) -> MetaAllocation:
    """Steps 1-3. returns: (T, n) aligned per-bar returns, one column per sleeve, on a calendar
    of `periods_per_year` bars (the in-sample figures are annualised with it).

    Raises ValueError when the bounds admit no weights for n sleeves, OptimisationError when
    every fallback link fails.
    """
    n = returns.shape[1]
    if n * min_weight > 1 + 1e-12 or n * max_weight < 1 - 1e-12:
        raise ValueError(f"allocation bounds [{min_weight}, {max_weight}] are infeasible for"
                         f" {n} sleeve(s)")
    res = optimize(method, returns, None, periods_per_year=periods_per_year, cluster_cap=1.0,
                   atom_max=max_weight, atom_min=min_weight, covariance=COVARIANCE)
    cov_name = "sample" if method == "hrp" else COVARIANCE
    _, cov, _ = estimate_moments(returns.to_numpy(dtype=np.float64), cov_name)
    w = res.weights.reindex(returns.columns).to_numpy(dtype=np.float64)
    rc = w * (cov @ w)
    total = float(rc.sum())
    shares = rc / total if total > 0 else np.full(n, np.nan)
    return MetaAllocation(method, pd.Series(w, index=returns.columns, name="weight"),
                          pd.Series(shares, index=returns.columns, name="risk_contribution"),
                          res, cov_name)
