"""Hierarchical Risk Parity kernel (numpy/scipy), matching skfolio's HierarchicalRiskParity.

Reference configuration (skfolio 1.12): ``HierarchicalRiskParity(risk_measure=VARIANCE)`` with
the defaults ``EmpiricalPrior()`` (sample mean, ``np.cov`` with ddof=1), ``PearsonDistance()``
and ``HierarchicalSeriation`` (Ward linkage, optimal leaf ordering). Algorithm:

1. Correlation ``ρ = np.corrcoef(X)`` (as skfolio's PearsonDistance), distance
   ``d = sqrt(clip(½(1 − ρ), 0, 1))``; ``d = 0`` for perfectly correlated pairs is fine.
   A zero-variance column has no correlation: its row/column of ρ is set to 0 (d = √½), a
   documented departure where skfolio would fail.
2. ``scipy.cluster.hierarchy.linkage(squareform(d, checks=False), method)`` then
   ``optimal_leaf_ordering`` on the same condensed distance; ``leaves_list`` gives the order.
3. Unit risks ``σ²_i = Σ_ii`` (skfolio evaluates ``e_iᵀ Σ e_i``, the same numbers).
4. Recursive bisection, one tree level at a time: every ordered segment of length > 1 splits
   at ``mid = len // 2`` (skfolio's ``bisection``). For each half h the inverse-variance
   portfolio ``u_h ∝ 1/σ²`` has variance ``V_h = u_hᵀ Σ_hh u_h``; all halves of a level are
   evaluated at once with a block-diagonal mask and ``np.bincount`` (no per-asset loop).
   ``α = 1 − V_L / (V_L + V_R)``; left weights ×α, right ×(1 − α).
5. (In :mod:`portflow.alpha.optimize`) the caps are applied afterwards by projection onto the
   capped set.

Failure modes raise ``ValueError`` with the reason (zero or non-finite unit variance, zero
total split risk); the optimiser records it and moves to the next fallback link.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
from scipy.cluster import hierarchy as sch
from scipy.spatial import distance as ssd

__all__ = ["LINKAGES", "HRPTree", "correlation_distance", "hrp_weights", "seriate"]

LINKAGES = ("single", "complete", "average", "weighted", "centroid", "median", "ward")


def correlation_distance(x: np.ndarray) -> np.ndarray:
    """Angular correlation distance sqrt(½(1 − ρ)) of the columns of x.

    x: array (T, n) of returns, T >= 2. Returns d: array (n, n), zero diagonal. Columns with
    zero variance get ρ = 0 with every other column (they carry no co-movement).
    """
    std = x.std(axis=0)
    flat = ~(std > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(x, rowvar=False)
    corr = np.atleast_2d(corr)
    if flat.any():
        corr[flat, :] = 0.0
        corr[:, flat] = 0.0
        corr[np.diag_indices_from(corr)] = np.where(flat, 1.0, np.diag(corr))
    return np.sqrt(np.clip(0.5 * (1.0 - corr), a_min=0.0, a_max=1.0))


@nb.njit(cache=True)
def _dual_swap(d, ix, i1, i2):
    t = d[i1]
    d[i1] = d[i2]
    d[i2] = t
    u = ix[i1]
    ix[i1] = ix[i2]
    ix[i2] = u


@nb.njit(cache=True)
def _qsort(d, ix, lo, size):
    # scipy's _simultaneous_sort (median-of-three quicksort, float32 keys) on d[lo:lo+size],
    # with its two recursive calls replaced by an explicit stack (same visit order).
    stack = np.empty((2 * size + 8, 2), dtype=np.int64)
    top = 0
    stack[0, 0] = lo
    stack[0, 1] = size
    top = 1
    while top > 0:
        top -= 1
        lo = stack[top, 0]
        size = stack[top, 1]
        if size <= 1:
            continue
        if size == 2:
            if d[lo] > d[lo + 1]:
                _dual_swap(d, ix, lo, lo + 1)
            continue
        if size == 3:
            if d[lo] > d[lo + 1]:
                _dual_swap(d, ix, lo, lo + 1)
            if d[lo + 1] > d[lo + 2]:
                _dual_swap(d, ix, lo + 1, lo + 2)
                if d[lo] > d[lo + 1]:
                    _dual_swap(d, ix, lo, lo + 1)
            continue
        p = size // 2
        if d[lo] > d[lo + size - 1]:
            _dual_swap(d, ix, lo, lo + size - 1)
        if d[lo + size - 1] > d[lo + p]:
            _dual_swap(d, ix, lo + size - 1, lo + p)
            if d[lo] > d[lo + size - 1]:
                _dual_swap(d, ix, lo, lo + size - 1)
        pv = d[lo + size - 1]
        store = 0
        for i in range(size - 1):
            if d[lo + i] < pv:
                _dual_swap(d, ix, lo + i, lo + store)
                store += 1
        _dual_swap(d, ix, lo + store, lo + size - 1)
        p = store
        # The two halves are disjoint, so the order they are sorted in does not matter.
        if p + 2 < size:
            stack[top, 0] = lo + p + 1
            stack[top, 1] = size - p - 1
            top += 1
        if p > 1:
            stack[top, 0] = lo
            stack[top, 1] = p
            top += 1


@nb.njit(cache=True)
def _identify_swaps(sorted_z: np.ndarray, sorted_d: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Bar-Joseph optimal leaf ordering, same arithmetic as scipy's ``identify_swaps``.

    M is float32 and every sum/compare is done in the precision scipy's Cython uses, so the
    chosen swaps are identical; the sort of ``M[{k}, w]`` is hoisted out of the ``u`` loop
    (it does not depend on u), which is where scipy spends its time.
    """
    n = sorted_z.shape[0] + 1
    big = np.float32(1073741824.0)
    m_mat = np.zeros((n, n), dtype=np.float32)
    swap_l = np.zeros((n, n), dtype=np.int8)
    swap_r = np.zeros((n, n), dtype=np.int8)
    must_swap = np.zeros(n - 1, dtype=np.int8)
    u_cl = np.zeros(2, dtype=np.int64)
    m_cl = np.zeros(2, dtype=np.int64)
    w_cl = np.zeros(2, dtype=np.int64)
    k_cl = np.zeros(2, dtype=np.int64)
    for i in range(n - 1):
        v_l = sorted_z[i, 0]
        v_r = sorted_z[i, 1]
        if v_l < n:
            n_u = 1
            u_cl[0] = v_l
            m_cl[0] = v_l
        else:
            n_u = 2
            u_cl[0] = sorted_z[v_l - n, 0]
            m_cl[0] = sorted_z[v_l - n, 1]
            u_cl[1] = sorted_z[v_l - n, 1]
            m_cl[1] = sorted_z[v_l - n, 0]
        if v_r < n:
            n_w = 1
            w_cl[0] = v_r
            k_cl[0] = v_r
        else:
            n_w = 2
            w_cl[0] = sorted_z[v_r - n, 1]
            w_cl[1] = sorted_z[v_r - n, 0]
            k_cl[0] = sorted_z[v_r - n, 0]
            k_cl[1] = sorted_z[v_r - n, 1]
        for sl in range(n_u):
            for sr in range(n_w):
                u_min, u_max = ranges[u_cl[sl], 0], ranges[u_cl[sl], 1]
                m_min, m_max = ranges[m_cl[sl], 0], ranges[m_cl[sl], 1]
                w_min, w_max = ranges[w_cl[sr], 0], ranges[w_cl[sr], 1]
                k_min, k_max = ranges[k_cl[sr], 0], ranges[k_cl[sr], 1]
                min_km = big
                for m in range(m_min, m_max):
                    for k in range(k_min, k_max):
                        if sorted_d[m, k] < min_km:
                            min_km = np.float32(sorted_d[m, k])
                n_m = m_max - m_min
                n_k = k_max - k_min
                n_wc = w_max - w_min
                k_vals = np.empty((n_wc, n_k), dtype=np.float32)
                k_idx = np.empty((n_wc, n_k), dtype=np.int64)
                for wi in range(n_wc):
                    w = w_min + wi
                    for j in range(n_k):
                        k_vals[wi, j] = m_mat[k_min + j, w]
                        k_idx[wi, j] = k_min + j
                    _qsort(k_vals[wi], k_idx[wi], 0, n_k)
                m_vals = np.empty(n_m, dtype=np.float32)
                m_idx = np.empty(n_m, dtype=np.int64)
                for u in range(u_min, u_max):
                    for j in range(n_m):
                        m_vals[j] = m_mat[m_min + j, u]
                        m_idx[j] = m_min + j
                    _qsort(m_vals, m_idx, 0, n_m)
                    for wi in range(n_wc):
                        w = w_min + wi
                        kix = k_idx[wi]
                        cur = big
                        for mi in range(n_m):
                            m = m_idx[mi]
                            if m_mat[u, m] + m_mat[w, kix[0]] + min_km >= cur:
                                break
                            for ki in range(n_k):
                                k = kix[ki]
                                s = m_mat[u, m] + m_mat[w, k]
                                if s + min_km >= cur:
                                    break
                                val = np.float32(s + sorted_d[m, k])
                                if val < cur:
                                    cur = val
                        m_mat[u, w] = cur
                        m_mat[w, u] = cur
                        swap_l[u, w] = sl
                        swap_l[w, u] = sl
                        swap_r[u, w] = sr
                        swap_r[w, u] = sr
        cur = big
        best_u = 0
        best_w = 0
        for u in range(ranges[v_l, 0], ranges[v_l, 1]):
            for w in range(ranges[v_r, 0], ranges[v_r, 1]):
                if m_mat[u, w] < cur:
                    cur = m_mat[u, w]
                    best_u = u
                    best_w = w
        if v_l >= n:
            must_swap[v_l - n] = swap_l[best_u, best_w]
        if v_r >= n:
            must_swap[v_r - n] = swap_r[best_u, best_w]
    return must_swap


def optimal_leaf_ordering(link: np.ndarray, condensed: np.ndarray) -> np.ndarray:
    """Optimally ordered linkage, identical to ``scipy.cluster.hierarchy.optimal_leaf_ordering``.

    link: scipy linkage (n−1, 4); condensed: condensed distance (n(n−1)/2,). Same relabelling
    and swap propagation as scipy; the swap search runs in :func:`_identify_swaps` (numba).
    """
    n = link.shape[0] + 1
    leaves = sch.leaves_list(link)
    pos = np.empty(n, dtype=np.int64)
    pos[leaves] = np.arange(n)
    kids = link[:, :2].astype(np.int64)
    sorted_z = np.where(kids < n, pos[np.minimum(kids, n - 1)], kids)
    square = ssd.squareform(condensed, checks=False)
    sorted_d = np.ascontiguousarray(square[np.ix_(leaves, leaves)], dtype=np.float64)
    ranges = np.zeros((2 * n - 1, 2), dtype=np.int64)
    ranges[:n, 0] = np.arange(n)
    ranges[:n, 1] = np.arange(n) + 1
    for i in range(n - 1):  # tree nodes, in merge order
        ranges[n + i, 0] = ranges[sorted_z[i, 0], 0]
        ranges[n + i, 1] = ranges[sorted_z[i, 1], 1]
    must_swap = _identify_swaps(sorted_z, sorted_d, ranges)
    # A node is rotated once per rotated ancestor (itself included): parity, root first.
    flip = np.zeros(n - 1, dtype=np.int8)
    flip[n - 2] = must_swap[n - 2]
    for i in range(n - 2, -1, -1):
        for child in kids[i]:
            if child >= n:
                flip[child - n] = flip[i] ^ must_swap[child - n]
    out = link.copy()
    rows = flip.astype(bool)
    out[rows, 0], out[rows, 1] = link[rows, 1], link[rows, 0]
    return out


@dataclass(frozen=True)
class HRPTree:
    """Seriation result. order: leaf positions (n,); linkage: scipy linkage (n−1, 4)."""

    order: np.ndarray
    linkage: np.ndarray


def seriate(distance: np.ndarray, method: str = "ward") -> HRPTree:
    """Ordered leaves of the hierarchical clustering of a distance matrix (n, n)."""
    if method not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}; got {method!r}")
    n = distance.shape[0]
    if n == 1:
        return HRPTree(order=np.zeros(1, dtype=np.int64), linkage=np.empty((0, 4)))
    condensed = ssd.squareform(distance, checks=False)
    link = sch.linkage(condensed, method=method, optimal_ordering=False)
    link = optimal_leaf_ordering(link, condensed)
    return HRPTree(order=sch.leaves_list(link).astype(np.int64), linkage=link)


def hrp_weights(covariance: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Recursive-bisection HRP weights (n,) for covariance (n, n) and a leaf order (n,).

    Weights are long-only and sum to 1 (before any cap). Raises ValueError when a unit
    variance is zero/non-finite or a split has zero total risk.
    """
    n = covariance.shape[0]
    var = np.diag(covariance).copy()
    if not np.isfinite(var).all() or np.any(var <= 0):
        bad = np.flatnonzero(~(np.isfinite(var) & (var > 0)))
        raise ValueError(f"HRP needs positive finite variances; atoms at {bad.tolist()} fail")
    if n == 1:
        return np.ones(1)
    cov = covariance[np.ix_(order, order)]
    inv = 1.0 / var[order]
    w = np.ones(n)
    starts, ends = np.array([0]), np.array([n])
    pos = np.arange(n)
    while starts.size:
        mids = starts + (ends - starts) // 2
        # Halves of this level, as contiguous [a, b) ranges in order position.
        h_start = np.concatenate([starts, mids])
        h_end = np.concatenate([mids, ends])
        n_h = h_start.size
        label = np.full(n, -1, dtype=np.int64)
        for k in range(n_h):  # one slice assignment per half, not per asset
            label[h_start[k] : h_end[k]] = k
        inside = label >= 0
        lab = label[inside]
        idx = pos[inside]
        u = inv[idx] / np.bincount(lab, weights=inv[idx], minlength=n_h)[lab]
        block = cov[np.ix_(idx, idx)] * (lab[:, None] == lab[None, :])
        risk = np.bincount(lab, weights=u * (block @ u), minlength=n_h)
        left, right = risk[: starts.size], risk[starts.size :]
        total = left + right
        if not (np.isfinite(risk).all() and np.all(total > 0)):
            raise ValueError("HRP split with zero total or non-finite cluster risk")
        alpha = 1.0 - left / total
        factor = np.ones(n)
        for k in range(starts.size):
            factor[starts[k] : mids[k]] = alpha[k]
            factor[mids[k] : ends[k]] = 1.0 - alpha[k]
        w *= factor
        # Next level: halves longer than one leaf.
        keep = (h_end - h_start) > 1
        starts, ends = h_start[keep], h_end[keep]
    out = np.empty(n)
    out[order] = w
    return out
