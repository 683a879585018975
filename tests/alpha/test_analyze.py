"""Pre-optimisation analysis: antifragility stats, regime score and bands, effective caps."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from portflow.alpha.analyze import (
    REGIME_WEIGHTS,
    analyze_window,
    antifragility_stats,
    detect_regime,
    effective_caps,
    equal_weight_proxy,
    regime_cap,
    regime_label,
)
from portflow.alpha.projection import CappedSet

IDX = pd.date_range("2024-01-01", periods=365, freq="D", tz="UTC")


def series(x: np.ndarray) -> pd.Series:
    return pd.Series(x, index=IDX[: len(x)])


def calm(seed: int = 0) -> pd.Series:
    x = np.random.default_rng(seed).standard_normal(365) * 0.02
    x[-10:] *= 0.3  # the market has gone quiet
    return series(x)


def shocked(seed: int, last_std: float) -> pd.Series:
    """Calm 1 % noise, then 10 bars with a standard deviation of exactly ``last_std``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(365) * 0.01
    z = rng.standard_normal(10)
    x[-10:] = (z - z.mean()) / z.std(ddof=1) * last_std
    return series(x)


def crisis(seed: int = 0) -> pd.Series:
    return shocked(seed, 0.08)  # a volatility explosion in the last 10 bars


def turbulent(seed: int = 0) -> pd.Series:
    return shocked(seed, 0.03)


def test_antifragility_stats_match_definitions():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        rng.standard_normal((300, 3)) * 0.02,
        columns=["A_LONG", "B_SHORT", "C_LONG"],
        index=IDX[:300],
    )
    out = antifragility_stats(frame, periods_per_year=365)
    assert list(out.index) == list(frame.columns)
    for col in frame.columns:
        x = frame[col].to_numpy()
        q05, q95 = np.quantile(x, [0.05, 0.95])
        row = out.loc[col]
        assert row["vol"] == pytest.approx(x.std(ddof=1) * math.sqrt(365))
        assert row["skew"] == pytest.approx(sps.skew(x, bias=False))
        assert row["kurtosis"] == pytest.approx(sps.kurtosis(x, bias=False))
        assert row["var_95"] == pytest.approx(q05)
        assert row["cvar_95"] == pytest.approx(x[x <= q05].mean())
        assert row["tail_gain"] == pytest.approx(x[x >= q95].mean())
        assert row["tail_ratio"] == pytest.approx(q95 / abs(q05))
        wealth = np.cumprod(1 + x)
        peak = np.maximum.accumulate(np.r_[1.0, wealth])[1:]
        assert row["max_drawdown"] == pytest.approx((wealth / peak - 1).min())
        assert row["n"] == 300
        assert row["significance"] == pytest.approx(300 / 365)
    skew_mm = (out["skew"] - out["skew"].min()) / (out["skew"].max() - out["skew"].min())
    tg = out["tail_gain"]
    tg_mm = (tg - tg.min()) / (tg.max() - tg.min())
    np.testing.assert_allclose(out["antifragility_score"], (skew_mm + tg_mm) * 300 / 365)


def test_max_drawdown_is_compounded_and_single_atom_is_neutral():
    frame = pd.DataFrame({"X": [0.1, -0.5, 0.2, 0.0, 0.05]}, index=IDX[:5])
    out = antifragility_stats(frame, periods_per_year=252)
    assert out.loc["X", "max_drawdown"] == pytest.approx(-0.5)  # 1.1 → 0.55, not 0.1 − 0.5
    assert out.loc["X", "antifragility_score"] == pytest.approx((0.5 + 0.5) * 5 / 252)
    with pytest.raises(ValueError, match="finite"):
        antifragility_stats(frame.assign(X=[0.1, np.nan, 0, 0, 0]), 252)


@given(st.integers(0, 10_000))
def test_antifragility_score_bounds(seed: int):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_t(3, (120, 4)) * 0.01)
    score = antifragility_stats(frame, 252)["antifragility_score"]
    assert ((score >= 0) & (score <= 2 * 120 / 252 + 1e-12)).all()


def test_regime_bands_on_calm_normal_and_crisis():
    assert detect_regime(calm()).label == "QUIET"
    c = detect_regime(crisis())
    assert c.label == "CRISIS" and c.cluster_cap == pytest.approx(0.15)
    t = detect_regime(turbulent())
    assert t.label == "TURBULENT" and t.cluster_cap == pytest.approx(0.20)
    assert all(detect_regime(turbulent(s)).label == "TURBULENT" for s in range(1, 6))
    assert all(detect_regime(crisis(s)).label == "CRISIS" for s in range(1, 6))
    assert all(detect_regime(calm(s)).label == "QUIET" for s in range(1, 6))
    scores = [detect_regime(f(s)).score for s in range(3) for f in (calm, turbulent, crisis)]
    assert scores[0] < scores[1] < scores[2]
    json.dumps(c.to_dict(), allow_nan=False)


def test_regime_score_is_the_prior_formula():
    reg = detect_regime(turbulent(4))
    comp = reg.components
    want = (
        0.35 * comp["vol_ratio"]
        + 0.25 * comp["turbulence"]
        + 0.15 * comp["vol_clustering"]
        + 0.10 * comp["entropy"]
        + 0.10 * 2 * abs(comp["hurst"] - 0.5)
        + 0.05 * comp["adf_pvalue"]
        + 0.15 * min(1.0, abs(comp["kurtosis"]) / 10)
    )
    assert reg.raw_score == pytest.approx(want)
    assert set(reg.contributions) == set(REGIME_WEIGHTS)
    x = turbulent(4).to_numpy()
    assert comp["vol_ratio"] == pytest.approx(x[-10:].std(ddof=1) / x.std(ddof=1))
    assert reg.adjustments == () and reg.undefined == {}


def test_regime_adjustments():
    flat = detect_regime(series(np.random.default_rng(0).standard_normal(365) * 1e-4))
    assert any("x 0.01" in a for a in flat.adjustments) and flat.label == "QUIET"
    x = np.random.default_rng(2).standard_normal(365) * 0.02
    x[-10:] *= 0.1
    quiet = detect_regime(series(x))
    assert any("x 0.5" in a for a in quiet.adjustments)
    x = np.random.default_rng(3).standard_normal(365) * 0.02
    x[-40:-10] *= 8  # a spike that has already calmed: high kurtosis, low vol_ratio
    x[-10:] *= 0.45
    capped = detect_regime(series(x))
    assert capped.components["vol_ratio"] < 0.5 and capped.score <= 0.6


def test_regime_input_checks_and_undefined_components():
    with pytest.raises(ValueError, match="64"):
        detect_regime(series(np.zeros(30)))
    with pytest.raises(ValueError, match="finite"):
        detect_regime(series(np.r_[np.zeros(99), np.nan]))
    alt = detect_regime(series(np.tile([0.01, -0.01], 100)))  # |r| constant
    assert "vol_clustering" in alt.undefined and alt.components["vol_clustering"] is None
    json.dumps(alt.to_dict(), allow_nan=False)


def test_labels_and_caps():
    assert regime_label(0.6999) == "QUIET"
    assert regime_label(0.7) == "NORMAL"
    assert regime_label(1.3) == "TURBULENT"
    assert regime_label(1.8) == "CRISIS"
    assert regime_cap("NORMAL") == 0.25
    assert regime_cap("TURBULENT", base_cap=0.18) == 0.18
    assert regime_cap("CRISIS", base_cap=0.3) == 0.15
    with pytest.raises(ValueError):
        regime_cap("PANIC")


def test_caps_with_headroom_are_raised_and_say_why():
    # 4 clusters in CRISIS: 0.15 x 4 < 1.5, so the cap becomes 1.5/4; singletons and pairs
    # under an atom max of 0.1 hold 0.6 < 1.5, so the atom max rises to the smallest value
    # that holds 1.5: every cluster saturated at 0.375, i.e. a = 0.375 (a singleton's share).
    caps = effective_caps(0.15, [2, 2, 1, 1], max_weight=0.1)
    assert caps.cluster_cap == 0.375 and caps.cluster_cap_raised
    assert "1.5/4" in caps.cluster_cap_reason
    assert caps.atom_max == 0.375 and caps.atom_max_raised
    assert "holds it" in caps.atom_max_reason and caps.capacity == 1.5
    # Enough clusters and room: nothing raised, no reason.
    caps = effective_caps(0.25, [3] * 10, max_weight=0.2)
    assert (caps.cluster_cap, caps.atom_max) == (0.25, 0.2)
    assert not caps.cluster_cap_raised and not caps.atom_max_raised
    assert caps.cluster_cap_reason == caps.atom_max_reason == ""
    out = json.loads(json.dumps(caps.to_dict()))
    assert out["n_atoms"] == 30 and out["cluster_sizes"] == [3] * 10
    # On an inner linear piece: clusters of 5, 3, 2 and seven singletons, cap 0.25, target 1.5:
    # with the pairs and singletons unsaturated F(a) = 0.25·2 + 9a, so a = 1/9 exactly.
    caps = effective_caps(0.25, [5, 3, 2, 1, 1, 1, 1, 1, 1, 1], max_weight=0.055)
    assert caps.atom_max == pytest.approx(1 / 9, rel=1e-15) and caps.capacity >= 1.5
    # All 15 clusters must reach the 0.1 cap: a = 0.1 itself, not 0.0999…9 from rounding.
    caps = effective_caps(0.10, [3, 3, 1, 3, 1, 1, 3, 1, 1, 1, 1, 2, 2, 1, 1], max_weight=0.055)
    assert caps.atom_max == 0.1 and caps.capacity >= 1.5
    assert json.loads(json.dumps(caps.to_dict()))["atom_max_raised"] is True
    with pytest.raises(ValueError, match="cap_headroom"):
        effective_caps(0.25, [2, 2], max_weight=0.2, cap_headroom=0.9)
    with pytest.raises(ValueError, match="cluster_sizes"):
        effective_caps(0.25, [2, 0], max_weight=0.2)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=25),
    st.sampled_from([0.25, 0.20, 0.15, 0.10]),
    st.floats(0.01, 1.0),
    st.sampled_from([1.0, 1.2, 1.5, 2.0]),
)
def test_effective_caps_are_the_smallest_feasible_with_headroom(sizes, regime, max_weight, h):
    caps = effective_caps(regime, sizes, max_weight, h)
    n = np.asarray(sizes)
    assert caps.cluster_cap == max(regime, min(1.0, h / len(sizes)))

    def held(a: float) -> float:
        return float(np.minimum(caps.cluster_cap, n * a).sum())

    target = min(h, len(sizes) * caps.cluster_cap)
    assert max_weight <= caps.atom_max <= 1.0
    assert held(caps.atom_max) >= target * (1 - 1e-15)
    if caps.atom_max_raised:  # smallest: a hair less no longer holds the target
        assert held(caps.atom_max * (1 - 1e-9)) < target
    # never an empty capped set: caps never fail a run
    labels = np.repeat(np.arange(len(sizes)), sizes)
    CappedSet.build(labels.size, labels, cluster_cap=caps.cluster_cap, atom_max=caps.atom_max)


def test_analyze_window_end_to_end():
    rng = np.random.default_rng(9)
    f = rng.standard_normal((365, 3)) * 0.01
    syn = pd.DataFrame(
        {f"A{i}": f[:, i % 3] + rng.standard_normal(365) * 0.003 for i in range(9)}, index=IDX
    )
    proxy = equal_weight_proxy(syn)
    res = analyze_window(syn, proxy, periods_per_year=365, max_weight=0.1)
    assert res.clusters.n_clusters == 3
    # 3 clusters: cap >= min(1, 1.5/3); 3 atoms each must hold 1.5 in total: a = 0.5/3.
    assert res.caps.cluster_cap == max(res.regime.cluster_cap, 0.5)
    assert res.caps.cluster_sizes == (3, 3, 3)
    assert res.caps.atom_max == pytest.approx(1 / 6, rel=1e-15)
    assert len(res.stats) == 9
    json.dumps(res.to_dict(), allow_nan=False)
