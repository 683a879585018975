"""HRP kernel against skfolio's HierarchicalRiskParity and scipy's optimal leaf ordering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster import hierarchy as sch
from scipy.spatial import distance as ssd

from portflow.alpha import hrp


def _returns(n, t, seed, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(t, k)) @ rng.normal(size=(k, n)) * 0.01
    return x + rng.normal(size=(t, n)) * 0.01 * rng.uniform(0.5, 2.0, n)


def _ours(x, method):
    tree = hrp.seriate(hrp.correlation_distance(x), method)
    return hrp.hrp_weights(np.cov(x, rowvar=False, ddof=1), tree.order)


def _skfolio(x, method):
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.distance import PearsonDistance
    from skfolio.measures import RiskMeasure
    from skfolio.optimization import HierarchicalRiskParity
    from skfolio.prior import EmpiricalPrior
    from skfolio.seriation import HierarchicalSeriation

    model = HierarchicalRiskParity(
        risk_measure=RiskMeasure.VARIANCE,
        prior_estimator=EmpiricalPrior(),
        distance_estimator=PearsonDistance(),
        seriation_estimator=HierarchicalSeriation(
            hierarchical_clustering_estimator=HierarchicalClustering(
                linkage_method=LinkageMethod(method)
            ),
            optimal_ordering=True,
        ),
    )
    return model.fit(x).weights_


@pytest.mark.parametrize("method", ["ward", "single", "average", "complete"])
@pytest.mark.parametrize(("n", "t", "seed"), [(2, 30, 0), (5, 60, 1), (20, 365, 2), (60, 250, 3)])
def test_hrp_equals_skfolio(method, n, t, seed):
    x = _returns(n, t, seed)
    assert np.max(np.abs(_ours(x, method) - _skfolio(x, method))) <= 1e-10


@pytest.mark.parametrize(("n", "t", "seed"), [(5, 60, 1), (60, 250, 3), (300, 1000, 4)])
def test_shared_covariance_path_equals_skfolio(n, t, seed):
    """One covariance (one BLAS thread) for distances and risks: the benchmarked kernel."""
    x = _returns(n, t, seed)
    cov = hrp.sample_covariance(x)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-12, atol=0)
    with hrp._blas_limit():  # np.cov's own computation on that one thread
        assert np.array_equal(cov, np.cov(x, rowvar=False))
    assert np.array_equal(hrp.covariance_distance(np.cov(x, rowvar=False)),
                          hrp.correlation_distance(x))
    w = hrp.hrp_weights(cov, hrp.seriate(hrp.covariance_distance(cov), "ward").order)
    assert np.max(np.abs(w - _skfolio(x, "ward"))) <= 1e-10
    tree = hrp.seriate(hrp.condensed_covariance_distance(cov), "ward")
    assert np.array_equal(hrp.hrp_weights(cov, tree.order), w)


def test_large_covariance_in_two_halves_is_np_cov_to_rounding_and_repeatable():
    """Above SPLIT_PRODUCT, with parallel threads allowed, the product runs as two halves on
    two threads: np.cov to rounding, the same bits on every call; inside a 1-thread cap it is
    np.cov bit for bit."""
    import numba

    from portflow.executors import thread_cap

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one core: no parallel threads to allow")
    x = _returns(200, 2600, 5)
    assert hrp.SPLIT_PRODUCT <= 200 * 200 * 2600
    with thread_cap(2):
        cov = hrp.sample_covariance(x)
        xc = x - x.mean(axis=0)
        assert np.array_equal(cov, hrp._gram_in_two_halves(xc) * (1 / (len(x) - 1)))
        assert all(np.array_equal(cov, hrp.sample_covariance(x)) for _ in range(3))
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-12, atol=1e-18)
    with thread_cap(1), hrp._blas_limit():
        assert np.array_equal(hrp.sample_covariance(x), np.cov(x, rowvar=False))


@pytest.mark.parametrize("seed", range(6))
def test_condensed_distance_is_the_upper_triangle(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    x = _returns(n, int(rng.integers(3, 90)), seed)
    if seed % 2:
        x[:, rng.integers(0, n)] = 0.0  # zero variance
    if seed % 3 == 0 and n > 1:
        x[:, -1] = x[:, 0]  # rho = 1 up to rounding
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    square = hrp.covariance_distance(cov)
    condensed = hrp.condensed_covariance_distance(cov)
    assert np.array_equal(condensed, ssd.squareform(square, checks=False))
    a, b = hrp.seriate(square, "average"), hrp.seriate(condensed, "average")
    assert np.array_equal(a.order, b.order) and np.array_equal(a.linkage, b.linkage)


@pytest.mark.parametrize("seed", range(40))
def test_optimal_leaf_ordering_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 70))
    x = _returns(n, int(rng.integers(n + 2, 300)), seed, k=int(rng.integers(1, 5)))
    if seed % 5 == 0:
        x = np.round(x, 2)  # ties in the distances
    condensed = ssd.squareform(hrp.correlation_distance(x), checks=False)
    for method in ("ward", "average"):
        link = sch.linkage(condensed, method)
        assert np.array_equal(
            hrp.optimal_leaf_ordering(link, condensed), sch.optimal_leaf_ordering(link, condensed)
        )


def _olo_matches_scipy(d, methods=("ward", "average", "complete", "single")):
    condensed = ssd.squareform(d, checks=False)
    for method in methods:
        link = sch.linkage(condensed, method)
        ours = hrp.optimal_leaf_ordering(link, condensed)
        assert np.array_equal(ours, sch.optimal_leaf_ordering(link, condensed)), method


@pytest.mark.parametrize(("n", "k", "seed"), [(150, 5, 10), (300, 8, 11), (240, 1, 12)])
def test_optimal_leaf_ordering_equals_scipy_large(n, k, seed):
    x = _returns(n, 1000, seed, k=k)
    _olo_matches_scipy(hrp.correlation_distance(x), methods=("ward",))


def _grid(n, seed, values):
    rng = np.random.default_rng(seed)
    a = np.triu(rng.choice(values, size=(n, n)), 1)
    return a + a.T


@pytest.mark.parametrize(
    "case",
    [
        # Distances on a 0.1 grid: exact ties, and float32(min D) rounds up past D, where
        # scipy's pruning can skip its own float32 optimum (replayed step for step).
        *[("grid", seed) for seed in range(12)],
        ("equal", 0),  # all distances 0.1: every path ties (replay through the budget)
        ("duplicates", 1),  # identical columns: d = 0 blocks
        ("blocks", 2),  # two distinct values by group
    ],
)
def test_optimal_leaf_ordering_ties_equal_scipy(case):
    kind, seed = case
    rng = np.random.default_rng(seed)
    if kind == "grid":
        d = _grid(int(rng.integers(8, 60)), seed, np.array([0.1, 0.2, 0.3, 0.4]))
    elif kind == "equal":
        d = np.full((80, 80), 0.1)
        np.fill_diagonal(d, 0.0)
    elif kind == "duplicates":
        base = rng.normal(size=(200, 12))
        d = hrp.correlation_distance(base[:, rng.integers(0, 12, 90)])
    else:
        g = rng.integers(0, 7, 70)
        d = np.where(g[:, None] == g[None, :], 0.2, 0.6)
        np.fill_diagonal(d, 0.0)
    _olo_matches_scipy(d)


def test_optimal_leaf_ordering_small_trees():
    for n in (2, 3):
        d = _grid(n, n, np.array([0.1, 0.3]))
        _olo_matches_scipy(d, methods=("ward",))


def test_correlation_distance_is_skfolio_pearson():
    from skfolio.distance import PearsonDistance

    x = _returns(40, 120, 4)
    assert np.array_equal(hrp.correlation_distance(x), PearsonDistance().fit(x).distance_)


def test_hrp_weights_zero_split_risk_raises():
    block = np.array([[1.0, -1.0], [-1.0, 1.0]])  # each half: a perfect hedge, V = 0
    cov = np.kron(np.eye(2), block)
    with pytest.raises(ValueError, match="zero total"):
        hrp.hrp_weights(cov, np.arange(4))


def test_degenerate_distance_and_weights():
    x = _returns(5, 100, 7)
    x[:, 1] = x[:, 0]
    x[:, 4] = 0.0
    d = hrp.correlation_distance(x)
    assert np.isfinite(d).all()
    assert d[0, 1] < 1e-7  # rho = 1 up to rounding
    assert d[4, 0] == pytest.approx(np.sqrt(0.5))
    with pytest.raises(ValueError, match="positive finite variances"):
        _ours(x, "ward")
    w = _ours(x[:, :4], "ward")
    assert w.sum() == pytest.approx(1.0, abs=1e-15) and (w > 0).all()
    assert hrp.hrp_weights(np.array([[0.04]]), np.array([0])).tolist() == [1.0]


def _random_linkage(n, rng):
    """A valid linkage over n leaves with a random merge order (any tree, not just one a
    clustering method would build from the distances)."""
    active = list(range(n))
    sizes = {i: 1 for i in range(n)}
    link = np.empty((n - 1, 4))
    for i in range(n - 1):
        a, b = rng.choice(len(active), size=2, replace=False)
        x, y = active[a], active[b]
        link[i] = (x, y, float(i + 1), sizes[x] + sizes[y])
        sizes[n + i] = sizes[x] + sizes[y]
        active = [c for c in active if c not in (x, y)] + [n + i]
    return link


@st.composite
def _linkage_problems(draw):
    n = draw(st.integers(2, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "grid", "near_ties", "correlation", "signed"]))
    if kind == "uniform":
        a = np.triu(rng.uniform(size=(n, n)), 1)
        d = a + a.T
    elif kind == "grid":  # exact ties
        d = _grid(n, int(rng.integers(1 << 30)), np.array([0.0, 0.1, 0.2, 0.3]))
    elif kind == "near_ties":  # ties broken within a few float32 ulps
        base = _grid(n, int(rng.integers(1 << 30)), np.array([0.1, 0.2, 0.3]))
        jitter = np.triu(rng.integers(-4, 5, size=(n, n)) * 2.0**-24, 1)
        d = base * (1.0 + jitter + jitter.T)
    elif kind == "correlation":
        d = hrp.correlation_distance(_returns(n, 3 * n + 10, int(rng.integers(1 << 30))))
    else:  # negative entries: valid input to optimal_leaf_ordering, if not a distance
        a = np.triu(rng.normal(size=(n, n)), 1)
        d = a + a.T
    condensed = ssd.squareform(d, checks=False)
    if kind != "signed" and draw(st.booleans()):
        method = draw(st.sampled_from(["ward", "average", "single", "complete"]))
        link = sch.linkage(condensed, method)
    else:
        link = _random_linkage(n, rng)
    return link, condensed


@settings(max_examples=150, deadline=None)
@given(_linkage_problems())
def test_optimal_leaf_ordering_equals_scipy_on_random_linkages(problem):
    link, condensed = problem
    assert np.array_equal(
        hrp.optimal_leaf_ordering(link, condensed), sch.optimal_leaf_ordering(link, condensed)
    )


def test_optimal_leaf_ordering_rejects_non_finite():
    d = _grid(5, 0, np.array([0.1, 0.2]))
    condensed = ssd.squareform(d, checks=False)
    link = sch.linkage(condensed, "average")
    condensed[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        hrp.optimal_leaf_ordering(link, condensed)
