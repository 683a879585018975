"""Kernels in portflow.alpha.stats against naive references and scipy / statsmodels."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps

from portflow.alpha import stats


def naive_perm_entropy(x: np.ndarray, order: int) -> float:
    pats = Counter(
        tuple(np.argsort(x[i : i + order], kind="stable")) for i in range(len(x) - order + 1)
    )
    n = sum(pats.values())
    h = -sum(c / n * math.log(c / n) for c in pats.values())
    return h / math.log(math.factorial(order))


def naive_hurst(x: np.ndarray) -> float:
    n = len(x)
    lags = [lag for lag in (8, 16, 32, 64, 128, 256, 512) if lag <= n // 2]
    pts = []
    for lag in lags:
        k = n // lag
        chunks = x[n - k * lag :].reshape(k, lag)
        rs = []
        for c in chunks:
            dev = np.cumsum(c - c.mean())
            s = c.std()
            if s > 0:
                rs.append((dev.max() - dev.min()) / s)
        if rs:
            pts.append((math.log(lag), math.log(np.mean(rs))))
    xs, ys = np.array(pts).T
    return float(np.polyfit(xs, ys, 1)[0])


@pytest.fixture
def panel() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((365, 12)) * 0.02
    x[:, 3] = np.round(x[:, 3], 2)  # many ties
    x[:, 4] = np.cumsum(x[:, 4]) * 0.1  # persistent
    return x


@pytest.mark.parametrize("order", [3, 5])
@pytest.mark.parametrize("window", [None, 120])
def test_permutation_entropy_matches_naive(panel: np.ndarray, order: int, window: int | None):
    got = stats.permutation_entropy(panel, order=order, window=window)
    tail = panel if window is None else panel[-window:]
    want = [naive_perm_entropy(tail[:, j], order) for j in range(panel.shape[1])]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_permutation_entropy_edges():
    trend = np.arange(200.0)
    assert stats.permutation_entropy(trend)[0] == pytest.approx(0.0)
    x = np.random.default_rng(0).standard_normal((200, 2))
    x[5, 1] = np.nan
    out = stats.permutation_entropy(x)
    assert np.isfinite(out[0]) and np.isnan(out[1])  # NaN is reported, never "neutral"
    assert np.isnan(stats.permutation_entropy(np.zeros(3), order=5)[0])


def test_kernels_accept_read_only_pandas_arrays():
    frame = pd.DataFrame(np.random.default_rng(1).standard_normal((300, 4)))
    values = frame.to_numpy()
    values.setflags(write=False)
    assert np.all(np.isfinite(stats.permutation_entropy(values)))
    assert np.all(np.isfinite(stats.hurst_rs(values)))


def test_hurst_matches_naive(panel: np.ndarray):
    got = stats.hurst_rs(panel)
    want = [naive_hurst(panel[:, j]) for j in range(panel.shape[1])]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_hurst_relations_and_short_series():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((2048, 20))
    h = stats.hurst_rs(noise)
    assert 0.4 < np.median(h) < 0.65
    persistent = np.cumsum(noise, axis=0)
    assert np.all(stats.hurst_rs(persistent) > h)
    assert np.isnan(stats.hurst_rs(noise[:31])[0])
    clean = stats.hurst_clean(np.array([0.5, 0.25, 1.0, 1.2, np.nan]))
    np.testing.assert_allclose(clean[:4], [1.0, 0.5, 0.0, 0.0])
    assert np.isnan(clean[4])


@pytest.mark.parametrize("bias", [True, False])
def test_moments_match_scipy(panel: np.ndarray, bias: bool):
    np.testing.assert_allclose(
        stats.skewness(panel, bias=bias), sps.skew(panel, bias=bias), rtol=1e-10
    )
    np.testing.assert_allclose(
        stats.excess_kurtosis(panel, bias=bias),
        sps.kurtosis(panel, fisher=True, bias=bias),
        rtol=1e-10,
    )


def test_moments_match_pandas_and_flat_is_nan(panel: np.ndarray):
    frame = pd.DataFrame(panel)
    np.testing.assert_allclose(stats.skewness(panel), frame.skew().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(stats.excess_kurtosis(panel), frame.kurt().to_numpy(), rtol=1e-10)
    flat = np.full((50, 1), 0.01)
    assert np.isnan(stats.skewness(flat)[0]) and np.isnan(stats.excess_kurtosis(flat)[0])


def test_annualisation_uses_periods_per_year(panel: np.ndarray):
    frame = pd.DataFrame(panel)
    np.testing.assert_allclose(stats.momentum(panel, 365), frame.mean() * 365)
    np.testing.assert_allclose(stats.annual_vol(panel, 252), frame.std() * math.sqrt(252))
    np.testing.assert_allclose(stats.stability(panel, 252), 1 / (frame.std() * math.sqrt(252)))
    assert np.isnan(stats.stability(np.zeros((10, 1)), 252)[0])


def test_cvar_and_efficiency(panel: np.ndarray):
    for j in range(panel.shape[1]):
        col = panel[:, j]
        q = np.quantile(col, 0.05)
        assert stats.cvar(panel)[j] == pytest.approx(col[col <= q].mean())
        tail = col[-120:]
        er = abs(tail.sum()) / np.abs(tail).sum()
        assert stats.efficiency_ratio(panel, 120)[j] == pytest.approx(er)
    assert stats.efficiency_ratio(np.full((50, 1), 0.01))[0] == pytest.approx(1.0)
    assert np.isnan(stats.efficiency_ratio(np.zeros((50, 1)))[0])


def test_haar_turbulence():
    assert stats.haar_turbulence(np.full(64, 0.01)) == pytest.approx(0.0)
    assert stats.haar_turbulence(np.tile([1.0, -1.0], 32)) == pytest.approx(1.0)
    noise = np.random.default_rng(3).standard_normal(64)
    assert 0.0 < stats.haar_turbulence(noise) < 1.0
    assert math.isnan(stats.haar_turbulence(np.zeros(64)))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (60, 3), elements=st.floats(-0.5, 0.5, allow_nan=False)))
def test_bounded_statistics(x: np.ndarray):
    pe = stats.permutation_entropy(x)
    assert np.all((pe >= 0) & (pe <= 1 + 1e-12))
    er = stats.efficiency_ratio(x)
    assert np.all(np.isnan(er) | ((er >= 0) & (er <= 1 + 1e-12)))


def test_mackinnon_pvalue_bounds():
    assert stats.mackinnon_pvalue_c(5.0) == 1.0
    assert stats.mackinnon_pvalue_c(-25.0) == 0.0
    assert stats.mackinnon_pvalue_c(-1.61) < stats.mackinnon_pvalue_c(-1.0)
    assert math.isnan(stats.mackinnon_pvalue_c(float("nan")))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [40, 120, 365, 800])
def test_adf_matches_statsmodels(seed: int, n: int):
    tsa = pytest.importorskip("statsmodels.tsa.stattools")
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n)
    series = [e, np.cumsum(e), 0.2 * np.cumsum(e) + e, np.convolve(e, [1, 0.6, 0.3])[:n]]
    for x in series:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ref = tsa.adfuller(x, regression="c", autolag="AIC")
        got = stats.adf_test(x)
        assert got.usedlag == ref[2] and got.nobs == ref[3]
        assert got.stat == pytest.approx(ref[0], abs=1e-8)
        assert got.pvalue == pytest.approx(ref[1], abs=1e-6)


def test_adf_degenerate_is_nan():
    assert math.isnan(stats.adf_pvalue(np.full(100, 0.3)))
    assert math.isnan(stats.adf_pvalue(np.arange(5.0)))
    assert stats.adf_test(np.random.default_rng(0).standard_normal(300)).pvalue < 0.01
