"""Capped-set projection: membership, idempotence, optimality against a cvxpy projection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portflow.alpha.projection import CappedSet


@st.composite
def sets_and_points(draw):
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    clusters = rng.integers(0, draw(st.integers(1, n)), n)
    n_c = len(np.unique(clusters))
    cap = max(draw(st.floats(0.01, 1.0)), 1.0 / n_c)
    amax = max(draw(st.floats(0.01, 1.0)), 1.0 / n)
    amin = draw(st.sampled_from([0.0, 0.0, 0.3 / n]))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    v = rng.normal(size=n) * scale
    return n, clusters, cap, amax, min(amin, amax), v


def _build(n, clusters, cap, amax, amin):
    try:
        return CappedSet.build(n, clusters, cluster_cap=cap, atom_max=amax, atom_min=amin)
    except ValueError:
        return None


@settings(max_examples=200, deadline=None)
@given(sets_and_points())
def test_projection_in_set_and_idempotent(case):
    n, clusters, cap, amax, amin, v = case
    cset = _build(n, clusters, cap, amax, amin)
    if cset is None:
        return
    w = cset.project(v)
    assert cset.violation(w) <= 1e-12
    assert np.max(np.abs(cset.project(w) - w)) <= 1e-12


@settings(max_examples=40, deadline=None)
@given(sets_and_points())
def test_projection_is_optimal(case):
    import cvxpy as cp

    n, clusters, cap, amax, amin, v = case
    cset = _build(n, clusters, cap, amax, amin)
    if cset is None:
        return
    w = cset.project(v)
    x = cp.Variable(n)
    a, b = cset.inequality_matrix()
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(x - v)),
        [cp.sum(x) == 1, x >= amin, x <= amax, a @ x <= b],
    )
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    ours, ref = np.sum((w - v) ** 2), np.sum((x.value - v) ** 2)
    assert ours <= ref + 1e-9 * max(1.0, ref)
    assert np.max(np.abs(w - x.value)) <= 1e-5


def test_boundary_sets_are_points():
    n = 7
    cset = CappedSet.build(n, None, cluster_cap=1.0, atom_max=1 / n)
    w = cset.project(np.arange(n, dtype=float))
    assert np.allclose(w, 1 / n, atol=1e-15)
    cset = CappedSet.build(6, [0, 0, 1, 1, 2, 2], cluster_cap=1 / 3, atom_max=1.0)
    w = cset.project(np.array([5.0, 0, 0, 0, 0, 0]))
    assert np.allclose(w, [1 / 3, 0, 1 / 6, 1 / 6, 1 / 6, 1 / 6], atol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cluster_cap": 1.0, "atom_max": 0.1}, "empty"),
        ({"cluster_cap": 0.2, "atom_max": 1.0, "clusters": [0, 0, 1, 1, 2]}, "empty"),
        ({"cluster_cap": 1.0, "atom_max": 1.0, "atom_min": 0.3}, "empty"),
        ({"cluster_cap": 0.5, "atom_max": 1.0}, "without clusters"),
        ({"cluster_cap": 0.0, "atom_max": 1.0}, r"\(0, 1\]"),
    ],
)
def test_empty_or_invalid_sets_raise(kwargs, match):
    clusters = kwargs.pop("clusters", None)
    with pytest.raises(ValueError, match=match):
        CappedSet.build(5, clusters, **kwargs)


@settings(max_examples=200, deadline=None)
@given(sets_and_points())
def test_kl_projection_only_scales(case):
    n, clusters, cap, amax, amin, v = case
    cset = _build(n, clusters, cap, amax, amin)
    if cset is None:
        return
    u = np.exp(v / max(1.0, float(np.abs(v).max())))  # positive, spread over ~e^±1
    w = cset.project_kl(u)
    assert cset.violation(w) <= 1e-12
    assert np.all(w > 0)
    assert np.max(np.abs(cset.project_kl(w) - w)) <= 1e-12  # a point of W stays put
    assert np.max(np.abs(cset.project_kl(7.0 * u) - w)) <= 1e-12  # the scale of u is irrelevant
    # w = clip(u·s·s_g): atoms strictly inside their bounds share w/u within their cluster,
    # and across every cluster below the cap.
    ratio = w / u
    inside = (w < cset.hi - 1e-12) & (w > cset.lo + 1e-12)
    sums = np.bincount(cset.codes, weights=w)
    open_cluster = (sums < cap - 1e-12)[cset.codes] | (cap >= 1.0)
    for group in [
        *(inside & (cset.codes == g) for g in range(cset.n_groups)),
        inside & open_cluster,
    ]:
        if group.sum() > 1:
            r = ratio[group]
            assert r.max() - r.min() <= 1e-12 * r.mean()


@settings(max_examples=40, deadline=None)
@given(sets_and_points())
def test_kl_projection_is_optimal(case):
    import cvxpy as cp

    n, clusters, cap, amax, amin, v = case
    cset = _build(n, clusters, cap, amax, amin)
    if cset is None:
        return
    u = np.exp(v / max(1.0, float(np.abs(v).max())))
    u /= u.sum()
    w = cset.project_kl(u)
    x = cp.Variable(n)
    a, b = cset.inequality_matrix()
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.rel_entr(x, u))),
        [cp.sum(x) == 1, x >= amin, x <= amax, a @ x <= b],
    )
    prob.solve(solver="CLARABEL")
    ours = float(np.sum(w * np.log(w / u)))
    assert ours <= prob.value + 1e-7 * max(1.0, abs(prob.value))


def test_kl_projection_rejects_non_positive_weights():
    cset = CappedSet.build(3, None, cluster_cap=1.0, atom_max=0.5)
    with pytest.raises(ValueError, match="positive"):
        cset.project_kl(np.array([0.5, 0.5, 0.0]))
    w = cset.project_kl(np.array([0.7, 0.2, 0.1]))  # 0.7 capped at 0.5; 0.2 : 0.1 kept
    assert np.allclose(w, [0.5, 1 / 3, 1 / 6], atol=1e-15)


@settings(max_examples=100, deadline=None)
@given(sets_and_points())
def test_greedy_linear_maximum_matches_the_lp(case):
    from scipy.optimize import linprog

    n, clusters, cap, amax, amin, v = case
    cset = _build(n, clusters, cap, amax, amin)
    if cset is None:
        return
    w = cset.argmax_linear(v)
    assert cset.violation(w) <= 1e-12
    a, b = cset.inequality_matrix()
    lp = linprog(
        -v,
        A_ub=a.toarray(),
        b_ub=b,
        A_eq=np.ones((1, n)),
        b_eq=[1.0],
        bounds=list(zip(cset.lo, cset.hi, strict=True)),
        method="highs",
    )
    assert lp.status == 0
    assert v @ w >= -lp.fun - 1e-9 * max(1.0, abs(lp.fun))
