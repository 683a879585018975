"""Meta-optimisation: exact ERC across sleeves, bounds, the selectable methods, the gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portflow.meta.allocate import allocate


def _streams(vols: list[float], n: int = 400, seed: int = 3, corr: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    k = len(vols)
    c = np.full((k, k), corr) + (1 - corr) * np.eye(k)
    x = rng.multivariate_normal(np.full(k, 2e-4), c, size=n) * np.array(vols)
    idx = pd.date_range("2025-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame(x, index=idx, columns=[f"s{i}" for i in range(k)])


def test_erc_shares_are_equal_within_1e6_when_no_bound_binds() -> None:
    r = _streams([0.01, 0.02, 0.04, 0.03])
    a = allocate(r, "risk_parity", 0.0, 1.0, 252)
    assert a.result.link == "primary" and a.result.info["cap_bound"] is False
    rc = a.risk_contributions.to_numpy()
    assert np.max(np.abs(rc * len(rc) - 1.0)) <= 1e-6
    assert abs(a.weights.sum() - 1.0) <= 1e-9
    # the low-volatility sleeve carries the most weight
    assert a.weights.idxmax() == "s0" and a.weights.idxmin() == "s2"


def test_binding_bounds_hold_whichever_link_produced_the_weights() -> None:
    r = _streams([0.005, 0.05])
    free = allocate(r, "risk_parity", 0.0, 1.0, 252)
    assert free.weights["s0"] > 0.8  # unconstrained ERC gives the calm sleeve > 80%
    a = allocate(r, "risk_parity", 0.25, 0.75, 252)
    w = a.weights.to_numpy()
    assert abs(w.sum() - 1.0) <= 1e-9 and w.min() >= 0.25 - 1e-9 and w.max() <= 0.75 + 1e-9
    assert a.weights["s0"] > a.weights["s1"]
    attempts = a.record()["attempts"]
    assert attempts[-1] == {"link": a.result.link, "ok": True, "reason": ""}
    assert all(not x["ok"] and x["reason"] for x in attempts[:-1])


def test_binding_bounds_give_the_constrained_risk_budgeting_portfolio() -> None:
    a = allocate(_streams([0.005, 0.05]), "risk_parity", 0.25, 0.75, 252)
    assert a.result.link == "primary" and a.result.info["cap_bound"] is True
    assert a.weights["s0"] == pytest.approx(0.75, abs=1e-8)


@pytest.mark.parametrize("method", ["hrp", "min_var", "equal_weight", "max_sharpe"])
def test_every_method_is_selectable_within_bounds(method: str) -> None:
    r = _streams([0.01, 0.02, 0.03])
    a = allocate(r, method, 0.1, 0.6, 252)
    w = a.weights.to_numpy()
    assert abs(w.sum() - 1.0) <= 1e-9 and w.min() >= 0.1 - 1e-9 and w.max() <= 0.6 + 1e-9
    assert a.risk_contributions.sum() == pytest.approx(1.0)
    assert list(a.table().columns) == ["sleeve", "weight", "risk_contribution"]
    assert a.record()["link"] == a.result.link and a.record()["attempts"]
    if method == "equal_weight":
        assert np.allclose(w, 1 / 3, atol=1e-15)


def test_infeasible_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="infeasible for 2 sleeve"):
        allocate(_streams([0.01, 0.02]), "risk_parity", 0.6, 0.9, 252)
