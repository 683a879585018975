"""Hierarchical Risk Parity kernel (numpy/scipy), matching skfolio's HierarchicalRiskParity.

Reference configuration (skfolio 1.12): ``HierarchicalRiskParity(risk_measure=VARIANCE)`` with
the defaults ``EmpiricalPrior()`` (sample mean, ``np.cov`` with ddof=1), ``PearsonDistance()``
and ``HierarchicalSeriation`` (Ward linkage, optimal leaf ordering). Algorithm:

1. Correlation ``ρ = np.corrcoef(X)`` (as skfolio's PearsonDistance), distance
   ``d = sqrt(clip(½(1 − ρ), 0, 1))``; ``d = 0`` for perfectly correlated pairs is fine.
   ρ is scaled from the sample covariance, which step 3 needs too: compute it once
   (:func:`sample_covariance`) and pass it to :func:`covariance_distance` (or
   :func:`condensed_covariance_distance`, the upper triangle that step 2 consumes, at half
   the cost) and :func:`hrp_weights`.
   A zero-variance column has no correlation: its row/column of ρ is set to 0 (d = √½), a
   documented departure where skfolio would fail.
2. ``scipy.cluster.hierarchy.linkage(squareform(d, checks=False), method)`` then
   :func:`optimal_leaf_ordering`, a numba re-implementation that returns exactly the
   linkage of ``scipy.cluster.hierarchy.optimal_leaf_ordering`` (same float32 path costs,
   same tie-breaks; see :func:`_identify_swaps`): O(n³) below the root, the root (about ¾
   of the work on a 500-leaf Ward tree) decided in O(n²) plus a row or two, ~1/400 of
   scipy's time for 500 leaves; ``leaves_list`` gives the order.
3. Unit risks ``σ²_i = Σ_ii`` (skfolio evaluates ``e_iᵀ Σ e_i``, the same numbers).
4. Recursive bisection (numba, :func:`_bisect`): every ordered segment of length > 1 splits
   at ``mid = len // 2`` (skfolio's ``bisection``). For each half h the inverse-variance
   portfolio ``u_h ∝ 1/σ²`` has variance ``V_h = u_hᵀ Σ_hh u_h``;
   ``α = 1 − V_L / (V_L + V_R)``; left weights ×α, right ×(1 − α).
5. (In :mod:`portflow.alpha.optimize`) the caps are applied afterwards, proportionally: the
   point of the capped set closest in relative entropy (``CappedSet.project_kl``).

Failure modes raise ``ValueError`` with the reason (zero or non-finite unit variance, zero
total split risk); the optimiser records it and moves to the next fallback link.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
from scipy.cluster import hierarchy as sch
from scipy.spatial import distance as ssd
from threadpoolctl import ThreadpoolController

__all__ = [
    "LINKAGES",
    "HRPTree",
    "condensed_covariance_distance",
    "correlation_distance",
    "covariance_distance",
    "hrp_weights",
    "sample_covariance",
    "seriate",
]

LINKAGES = ("single", "complete", "average", "weighted", "centroid", "median", "ward")


def sample_covariance(x: np.ndarray) -> np.ndarray:
    """``np.cov(x, rowvar=False, ddof=1)`` (n, n) of returns x (T, n), on one BLAS thread.

    Why one thread: the (n x T) @ (T x n) product of an HRP fit is small enough that
    OpenBLAS's threads spend more time synchronising than computing whenever the cores are
    shared — on a busy 2-core machine one thread takes ~20 ms at 500 x 2,500 against ~170 ms
    for two (its idle threads spin), and parallel sleeves (Ray workers) oversubscribe the
    cores anyway. :func:`correlation_distance` keeps ``np.corrcoef``'s exact path.

    It is ``np.cov``'s own computation (column means, centred copy, ``X_cᵀ X_c`` as one
    symmetric BLAS product, times 1 / (T − 1)), without its extra copy of x: centring writes
    the only copy. Bit for bit ``np.cov`` on one BLAS thread, except for a large product
    (n² T ≥ ``SPLIT_PRODUCT``, e.g. 500 x 2,500) when the caller allows parallel threads
    (numba's thread count, which :func:`portflow.executors.thread_cap` lowers to 1 inside
    capped tasks): then the product is the sum of its two halves in time, the first computed
    on a Python thread of its own while this one computes the second (one BLAS thread each:
    nothing spins when the other core is busy). That sum equals ``np.cov`` to rounding
    (~1e-16 relative) and is the same on every call (always second + first).
    """
    x = np.asarray(x)
    with _blas_limit():
        if x.ndim != 2 or x.shape[0] < 2:
            return np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
        t, n = x.shape
        if n * n * t >= SPLIT_PRODUCT and nb.get_num_threads() >= 2:
            # row-major, so that each half is one contiguous block (a column-major x, e.g. a
            # DataFrame's values, would make BLAS copy each half: no faster than one product)
            c = _gram_in_two_halves(np.subtract(x, x.mean(axis=0, dtype=np.float64), order="C"))
        else:
            xc = x - x.mean(axis=0, dtype=np.float64)
            # xc.T and xc share their buffer: numpy hands the product to syrk, as in np.cov.
            c = np.dot(xc.T, xc)
        c *= np.true_divide(1, x.shape[0] - 1)
        return c


#: n² T of a covariance product above which :func:`sample_covariance` uses two threads
#: (500 x 2,500 is 6.25e8; the atoms of a walk-forward window, ~25 x 180, are 1e5).
SPLIT_PRODUCT = 1e8


def _gram_in_two_halves(xc: np.ndarray) -> np.ndarray:
    """``xcᵀ xc`` as ``X₂ᵀX₂ + X₁ᵀX₁`` over the two halves of the rows, X₁ᵀX₁ on a thread of
    its own (numpy releases the GIL inside BLAS). A plain thread per call, not a pool: it
    costs ~0.1 ms against ~10 ms of product, and nothing is left behind for a fork to copy."""
    first, second = xc[: xc.shape[0] // 2], xc[xc.shape[0] // 2 :]
    out: list[np.ndarray] = []
    helper = threading.Thread(target=lambda: out.append(np.dot(first.T, first)),
                              name="hrp-covariance")
    helper.start()
    c = np.dot(second.T, second)
    helper.join()
    c += out[0] if out else np.dot(first.T, first)  # (the thread failed: its error again here)
    return c


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()  # inspects the loaded BLAS libraries once per process


def _blas_limit() -> Any:
    return _blas_controller().limit(limits=1, user_api="blas")


def correlation_distance(x: np.ndarray) -> np.ndarray:
    """Angular correlation distance sqrt(½(1 − ρ)) of the columns of x.

    x: array (T, n) of returns, T >= 2. Returns d: array (n, n), zero diagonal. Columns with
    zero sample variance get ρ = 0 with every other column (they carry no co-movement).
    ρ is ``np.corrcoef(x, rowvar=False)`` bit for bit (see :func:`covariance_distance`).
    """
    return covariance_distance(np.atleast_2d(np.cov(x, rowvar=False)))


def covariance_distance(cov: np.ndarray) -> np.ndarray:
    """:func:`correlation_distance` from the sample covariance ``np.cov(x, rowvar=False)``
    (n, n), which is left unchanged: HRP needs that same matrix for its risks, so one
    product serves both (the covariance is most of the kernel's time).

    ρ is ``np.corrcoef`` bit for bit: the same scaling and clipping written out, so the
    zero-variance test reuses the covariance diagonal instead of a separate ``x.std`` pass.
    """
    c = np.array(cov, dtype=np.float64)
    var = np.diag(c).copy()
    flat = ~(var > 0)
    std = np.sqrt(np.where(flat, 1.0, var))
    c /= std[:, None]
    c /= std[None, :]
    np.clip(c, -1.0, 1.0, out=c)
    if flat.any():
        c[flat, :] = 0.0
        c[:, flat] = 0.0
        c[np.diag_indices_from(c)] = np.where(flat, 1.0, np.diag(c))
    # skfolio: sqrt(clip(0.5 * (1 - corr), 0, 1)), same operations in place.
    np.subtract(1.0, c, out=c)
    c *= 0.5
    np.clip(c, 0.0, 1.0, out=c)
    return np.sqrt(c, out=c)


def condensed_covariance_distance(cov: np.ndarray) -> np.ndarray:
    """``squareform(covariance_distance(cov), checks=False)`` bit for bit: the upper
    triangle (n(n−1)/2,) that :func:`seriate` and scipy's linkage consume, in one pass over
    half the matrix (the divisions and square roots are this step's cost).
    """
    cov = np.ascontiguousarray(np.atleast_2d(cov), dtype=np.float64)
    return _condensed_distance(cov)


@nb.njit(cache=True)
def _condensed_distance(cov: np.ndarray) -> np.ndarray:
    # covariance_distance's operations element by element (IEEE division and sqrt, so the
    # same bits): ρ = c / σ_i / σ_j clipped to [-1, 1], then sqrt(clip(½(1 − ρ), 0, 1));
    # a zero-variance column has ρ = 0 with every other one.
    n = cov.shape[0]
    std = np.empty(n)
    flat = np.empty(n, dtype=np.bool_)
    for i in range(n):
        v = cov[i, i]
        flat[i] = not v > 0
        std[i] = np.sqrt(1.0 if flat[i] else v)
    out = np.empty(n * (n - 1) // 2)
    pos = 0
    for i in range(n):
        row = cov[i]
        si = std[i]
        for j in range(i + 1, n):
            c = row[j] / si / std[j]
            c = -1.0 if c < -1.0 else c
            c = 1.0 if c > 1.0 else c
            c = (1.0 - c) * 0.5
            c = 0.0 if c < 0.0 else c
            c = 1.0 if c > 1.0 else c
            out[pos + j - i - 1] = np.sqrt(c)
        pos += n - i - 1
    flat_d = np.sqrt(0.5)
    pos = 0
    for i in range(n):
        for j in range(i + 1, n):
            if flat[i] or flat[j]:
                out[pos + j - i - 1] = flat_d
        pos += n - i - 1
    return out


_BIG = np.float32(1073741824.0)  # scipy's initial "infinity", 2**30


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
def _sort_slice(m64, col, lo, hi, vals, idx):
    # scipy's _sort_M_slice: positions lo..hi-1 ordered by M[., col], same quicksort.
    for j in range(hi - lo):
        vals[j] = np.float32(m64[lo + j, col])
        idx[j] = lo + j
    _qsort(vals, idx, 0, hi - lo)


@nb.njit(cache=True)
def _scipy_pair(m64, sorted_d, u, w, m_ord, k_ord, min_km):
    """scipy's own pruned search for one (u, w), step for step (float32 sums, its sort
    orders m_ord / k_ord, its break tests); used only where the fast path cannot vouch for
    the result or would enumerate many tied candidates (see :func:`_identify_swaps`).
    M is held in float64 but every entry is a float32 value, converted back exactly.
    """
    cur = _BIG
    mu = m64[u]
    mw = m64[w]
    k0 = k_ord[0]
    for mi in range(m_ord.size):
        m = m_ord[mi]
        um = np.float32(mu[m])
        if um + np.float32(mw[k0]) + min_km >= cur:
            break
        for ki in range(k_ord.size):
            k = k_ord[ki]
            s = um + np.float32(mw[k])  # float32 + float32 -> float32, as in C
            if s + min_km >= cur:
                break
            val = np.float32(s + sorted_d[m, k])
            if val < cur:
                cur = val
    return cur


@nb.njit(cache=True, inline="always")
def _fold(best, second, arg, v, label):
    # One candidate v into (minimum, second minimum, argmin); branch-free so that it
    # vectorises: second' = min(second, max(best, v)).
    lt = v < best
    hi = v if v > best else best
    return (v if lt else best), (hi if hi < second else second), (label if lt else arg)


@nb.njit(cache=True)
def _min2_rows(best, second, arg, rows, shifts, shift_off, p_lo, p_hi, lo, hi):
    """Minimum, second minimum and argmin over p in [p_lo, p_hi) of
    ``rows[p, j] + shifts[p - shift_off]``, folded into ``best/second/arg[j - lo]`` for j in
    [lo, hi): one row of a (min, +) product. Four rows per pass over the accumulators,
    vectorised over j.
    """
    width = hi - lo
    b1 = best[:width]
    b2 = second[:width]
    ba = arg[:width]
    p = p_lo
    while p + 4 <= p_hi:
        s0 = rows[p, lo:hi]
        s1 = rows[p + 1, lo:hi]
        s2 = rows[p + 2, lo:hi]
        s3 = rows[p + 3, lo:hi]
        h0 = shifts[p - shift_off]
        h1 = shifts[p + 1 - shift_off]
        h2 = shifts[p + 2 - shift_off]
        h3 = shifts[p + 3 - shift_off]
        for j in range(width):
            b, s, a = _fold(b1[j], b2[j], ba[j], s0[j] + h0, p)
            b, s, a = _fold(b, s, a, s1[j] + h1, p + 1)
            b, s, a = _fold(b, s, a, s2[j] + h2, p + 2)
            b, s, a = _fold(b, s, a, s3[j] + h3, p + 3)
            b1[j] = b
            b2[j] = s
            ba[j] = a
        p += 4
    while p < p_hi:
        s0 = rows[p, lo:hi]
        h0 = shifts[p - shift_off]
        for j in range(width):
            b, s, a = _fold(b1[j], b2[j], ba[j], s0[j] + h0, p)
            b1[j] = b
            b2[j] = s
            ba[j] = a
        p += 1


@nb.njit(cache=True)
def _col_min(acc, rows, p_lo, p_hi, lo, hi):
    # acc[j - lo] = min over p of rows[p, j], j in [lo, hi): elementwise, so it vectorises.
    width = hi - lo
    out = acc[:width]
    out[:] = np.inf
    for p in range(p_lo, p_hi):
        src = rows[p, lo:hi]
        for j in range(width):
            v = src[j]
            out[j] = v if v < out[j] else out[j]


@nb.njit(cache=True)
def _f32_block_min(acc, lo, hi):
    # scipy's float32 running minimum of a block of D from _BIG, replaced by f32(min D):
    # rounding is monotone, so once min D has been seen the running value is f32(min D)
    # and no later D (all >= min D) lowers it.
    mn = np.inf
    for j in range(lo, hi):
        mn = acc[j] if acc[j] < mn else mn
    return np.float32(mn) if mn < _BIG else _BIG


@nb.njit(cache=True)
def _root_candidates(m64, sorted_d, l0, lmid, l1, r0, rmid, r1, env, qk, e, ucand):
    """The root's band θ_G = G(1 + 2⁻²⁰) (plus 2⁻¹²⁰ for float32 underflow), G the smallest
    real path cost min over (u, m, k, w) of M[u,m] + D[m,k] + M[k,w], in O(n²); marks
    ucand[u - l0] when row u's lower envelope min_w r*[u, w] =
    ``min_m M[u,m] + min_k (D[m,k] + min_w M[k,w])`` is within it.
    """
    nl = l1 - l0
    for k in range(r0, r1):  # qk[k] = min over k's partners w of M[k, w]; 0 for a leaf
        if rmid == r1:
            qk[k - r0] = 0.0
            continue
        w_lo, w_hi = (rmid, r1) if k < rmid else (r0, rmid)
        row = m64[k]
        mn = np.inf
        for w in range(w_lo, w_hi):
            mn = row[w] if row[w] < mn else mn
        qk[k - r0] = mn
    for m in range(l0, l1):  # e[m] = min_k D[m, k] + qk[k]
        row = sorted_d[m]
        mn = np.inf
        for k in range(r0, r1):
            v = row[k] + qk[k - r0]
            mn = v if v < mn else mn
        e[m - l0] = mn
    g = np.inf
    for u in range(l0, l1):
        if lmid == l1:
            m_lo, m_hi = u, u + 1
        elif u < lmid:
            m_lo, m_hi = lmid, l1
        else:
            m_lo, m_hi = l0, lmid
        row = m64[u]
        mn = np.inf
        for m in range(m_lo, m_hi):
            v = row[m] + e[m - l0]
            mn = v if v < mn else mn
        env[u - l0] = mn
        g = mn if mn < g else g
    theta = g * (1.0 + 2.0**-20) + 2.0**-120
    for u in range(nl):
        ucand[u] = env[u] <= theta
    return theta


@nb.njit(cache=True)
def _identify_swaps(
    sorted_z: np.ndarray, sorted_d: np.ndarray, ranges: np.ndarray, nonneg: bool
) -> np.ndarray:
    """Child rotations of scipy's ``identify_swaps`` (Bar-Joseph et al. 2001), in O(n³).

    Leaves are in ``leaves_list`` positions, so every subtree is a range of positions.
    M[u, w] (u in the left, w in the right subtree of node v) is the cheapest path through
    v's leaves from u to w, where m is the inner end of the left part (in u's sibling
    subtree) and k that of the right part (in w's sibling). scipy stores M as float32 and
    scores a candidate (m, k) as ``c = f32(f32(M[u,m] + M[w,k]) + D[m,k])`` (the last sum
    in double, as C promotes); its pruned search returns the minimum of c over all (m, k),
    so M[u, w] does not depend on the search order. Here, node by node and row u by row u:

    1. ``T[u, k] = min_m M[u,m] + D[m,k]`` and ``r*[u, w] = min_k M[w,k] + T[u,k]`` in
       float64 (with second minima and argmins): the exact-arithmetic optimum,
       O(|R|·(|m-side| + |k-side|)) per row u, (min, +) products vectorised over k and
       over w, four rows per pass (:func:`_min2_rows`).
    2. Each c is within a factor (1 ± 2⁻²⁴)² of its real value, so the minimal c comes from
       a candidate whose real value is ≤ r*(1 + 2⁻²²). Every candidate within
       θ = r*(1 + 2⁻²⁰) is re-scored with scipy's float32 formula. When the second minima
       exceed θ the only such candidate is the argmin (the usual case); otherwise
       (near-ties) the candidates are enumerated, up to a budget of ~4(|m-side| + |k-side|)
       re-scorings; past it (mass ties, e.g. many identical assets) step 3's replay runs.
    3. scipy's search is pruned with ``f32(f32(M[u,m] + M[w,k]) + min_km) >= running min``,
       min_km the block minimum of D stored as float32. A skipped candidate's own bound is
       >= the running minimum >= scipy's result, so if some candidate attaining the float32
       minimum has bound <= that minimum, scipy returns exactly it. Otherwise (min_km was
       rounded up past D[m, k]; ~0.1% of pairs on factor-model correlation data) scipy's
       search is replayed step for step for that (u, w) (:func:`_scipy_pair`, its sorts
       done once per u and per w instead of per pair). On correlation data the replay has
       always returned the fast path's value; with exact ties (distances on a 0.1 grid)
       scipy really does skip its optimum by an ulp now and then, and the replay keeps M
       equal to scipy's bit for bit in every case, including its 2**30 start value.
    4. Node decision as scipy: the first (u, w) in row-major order with the strictly
       smallest M; the children's rotations are those of that (u, w).
    5. The root's M is never read again: only its decision counts, and it is ~¾ of the
       work (the largest |L|·|R|). With D >= 0 (nonneg), every M[u, w] lies within
       (1 ± 2⁻²²) of its real optimum r*[u, w] (scipy's pruning only ever skips a candidate
       whose bound, itself within (1 + 2⁻²³) of its real value, is not below the result),
       so a pair whose r* exceeds θ_G = G(1 + 2⁻²⁰), G the smallest real path cost, has
       M above the real optimum's pair and cannot be chosen. G and each row's lower
       envelope min_w r*[u, w] cost O(n²) (:func:`_root_candidates`); steps 1-4 then run
       only for rows u and pairs (u, w) within θ_G (usually one or two rows), in the same
       row-major order, so the first strictly smallest M is scipy's. Paths of 2**29 or more
       (near scipy's 2**30 start value) take the full computation.
    """
    n = sorted_z.shape[0] + 1
    inf32 = np.float32(np.inf)
    rel = 1.0 + 2.0**-20
    m64 = np.zeros((n, n))  # M, for the float64 (min, +) products
    # The same values as float32 for the re-scoring loads (measured faster there than
    # converting from m64); the sorts and the replay read m64.
    m32 = np.zeros((n, n), dtype=np.float32)
    b1 = np.empty(n)  # T[u, k] over k, for the current u
    b2 = np.empty(n)  # second minimum over m
    ba = np.empty(n, dtype=np.int64)  # argmin m
    r1v = np.empty(n)  # r*[u, w] over w, for the current u
    r2v = np.empty(n)
    rav = np.empty(n, dtype=np.int64)
    acc = np.empty((2, n))  # column minima of D over each half of the left subtree
    env = np.empty(n)  # root: lower envelopes (see _root_candidates)
    qk = np.empty(n)
    e = np.empty(n)
    ucand = np.ones(n, dtype=np.bool_)
    min_km = np.empty((2, 2), dtype=np.float32)
    sort_vals = np.empty(n, dtype=np.float32)
    m_ord = np.empty(n, dtype=np.int64)  # scipy's order of M[{m}, u] for the current u
    k_ord = np.empty(1, dtype=np.int64)  # same for M[{k}, w], per w of the current node
    k_done = np.zeros(n, dtype=np.bool_)
    must_swap = np.zeros(n - 1, dtype=np.int8)
    for i in range(n - 1):
        v_l = sorted_z[i, 0]
        v_r = sorted_z[i, 1]
        l0, l1 = ranges[v_l, 0], ranges[v_l, 1]
        r0, r1 = ranges[v_r, 0], ranges[v_r, 1]
        # v_l = (a, b) = [l0, lmid) + [lmid, l1): u in a has m in b (no swap), u in b has m
        # in a (swap). v_r = (c, d) = [r0, rmid) + [rmid, r1): w in d has k in c (no swap),
        # w in c has k in d (swap). A leaf is its own m (or k).
        lmid = ranges[sorted_z[v_l - n, 0], 1] if v_l >= n else l1
        rmid = ranges[sorted_z[v_r - n, 0], 1] if v_r >= n else r1
        nr = r1 - r0
        # scipy's C[{m}, {k}] lower bound per (swap_L, swap_R): the float32 block minimum
        # of D over (m-side, k-side).
        for sl in range(2 if v_l >= n else 1):
            if v_l < n:
                a_lo, a_hi = l0, l1
            elif sl == 0:
                a_lo, a_hi = lmid, l1
            else:
                a_lo, a_hi = l0, lmid
            _col_min(acc[sl], sorted_d, a_lo, a_hi, r0, r1)
            for sr in range(2 if v_r >= n else 1):
                if v_r < n:
                    min_km[sl, sr] = _f32_block_min(acc[sl], 0, nr)
                elif sr == 0:
                    min_km[sl, sr] = _f32_block_min(acc[sl], 0, rmid - r0)
                else:
                    min_km[sl, sr] = _f32_block_min(acc[sl], rmid - r0, nr)
        root = i == n - 2
        theta_g = np.inf
        if root and nonneg:
            theta_g = _root_candidates(
                m64, sorted_d, l0, lmid, l1, r0, rmid, r1, env, qk, e, ucand
            )
            if not theta_g < 2.0**29:
                theta_g = np.inf
        pruned = theta_g < np.inf
        best = _BIG
        best_u = l0
        k_width = max(rmid - r0, r1 - rmid)
        k_ready = False
        k_done[:nr] = False
        best_w = r0
        for u in range(l0, l1):
            if pruned and not ucand[u - l0]:
                continue
            if v_l < n:
                m_lo, m_hi = u, u + 1
            elif u < lmid:
                m_lo, m_hi = lmid, l1
            else:
                m_lo, m_hi = l0, lmid
            mu = m64[u]
            mu32 = m32[u]
            # T[u, k] for all k, then r*[u, w] for all w (M symmetric: M[w, k] = M[k, w]).
            b1[:nr] = np.inf
            b2[:nr] = np.inf
            _min2_rows(b1, b2, ba, sorted_d, mu, 0, m_lo, m_hi, r0, r1)
            r1v[:nr] = np.inf
            r2v[:nr] = np.inf
            if v_r < n:
                r1v[0] = b1[0]
                rav[0] = r0
            else:
                q = rmid - r0
                _min2_rows(r1v[q:], r2v[q:], rav[q:], m64, b1, r0, r0, rmid, rmid, r1)
                _min2_rows(r1v, r2v, rav, m64, b1, r0, rmid, r1, r0, rmid)
            sl = 1 if (v_l >= n and u >= lmid) else 0
            m_ready = False
            for w in range(r0, r1):
                if pruned and r1v[w - r0] > theta_g:
                    continue
                sr = 1 if (v_r >= n and w < rmid) else 0
                if v_r < n:
                    kf_lo, kf_hi = w, w + 1
                elif sr == 0:
                    kf_lo, kf_hi = r0, rmid
                else:
                    kf_lo, kf_hi = rmid, r1
                theta = r1v[w - r0] * rel
                mw = m64[w]
                mw32 = m32[w]
                if r2v[w - r0] > theta:  # one k only
                    k_lo = rav[w - r0]
                    k_hi = k_lo + 1
                else:
                    k_lo, k_hi = kf_lo, kf_hi
                mk = min_km[sl, sr]
                cur = inf32
                reached = False  # some candidate at the minimum passes scipy's bound test
                budget = 4 * (m_hi - m_lo + kf_hi - kf_lo) + 64
                work = 0
                for k in range(k_lo, k_hi):
                    b64 = mw[k]
                    q = k - r0
                    if b64 + b1[q] > theta:
                        continue
                    lim = theta - b64
                    drow = sorted_d[k]  # D is symmetric: D[m, k] = D[k, m]
                    if b2[q] > lim:  # one m only
                        lo = ba[q]
                        hi = lo + 1
                    else:
                        lo, hi = m_lo, m_hi
                    work += hi - lo + 1
                    if work > budget:  # many near-ties: scipy's pruning is cheaper here
                        reached = False
                        break
                    for m in range(lo, hi):
                        if mu[m] + drow[m] > lim:
                            continue
                        s = mu32[m] + mw32[k]  # float32 + float32 -> float32, as in C
                        val = np.float32(s + drow[m])  # promoted to double, then stored
                        if val < cur:
                            cur = val
                            reached = s + mk <= val
                        elif val == cur and s + mk <= val:
                            reached = True
                if not reached:
                    # Either too many tied candidates, or none of the optimal ones passes
                    # scipy's bound test: scipy prunes (m, k) once f32(f32(M[u,m] +
                    # M[w,k]) + min_km) >= its running minimum, and min_km (D's block
                    # minimum stored as float32) may be rounded up past D[m, k], skipping
                    # the float32 optimum by an ulp. Replay scipy's search for this pair.
                    if not m_ready:
                        _sort_slice(m64, u, m_lo, m_hi, sort_vals, m_ord)
                        m_ready = True
                    if not k_ready:
                        k_ord = np.empty(nr * k_width, dtype=np.int64)
                        k_ready = True
                    ko = k_ord[(w - r0) * k_width : (w - r0) * k_width + kf_hi - kf_lo]
                    if not k_done[w - r0]:
                        _sort_slice(m64, w, kf_lo, kf_hi, sort_vals, ko)
                        k_done[w - r0] = True
                    cur = _scipy_pair(m64, sorted_d, u, w, m_ord[: m_hi - m_lo], ko, mk)
                elif cur > _BIG:
                    cur = _BIG
                m32[u, w] = cur
                m32[w, u] = cur
                m64[u, w] = cur
                m64[w, u] = cur
                if cur < best:
                    best = cur
                    best_u = u
                    best_w = w
        if v_l >= n:
            must_swap[v_l - n] = 1 if best_u >= lmid else 0
        if v_r >= n:
            must_swap[v_r - n] = 1 if best_w < rmid else 0
    return must_swap


@nb.njit(cache=True)
def _bisect(cov: np.ndarray, order: np.ndarray, inv: np.ndarray):
    """Recursive-bisection weights in order position, and False on a degenerate split.

    Segments are processed from an explicit stack; each split [a, mid) | [mid, b) costs
    O(len²) for the two inverse-variance cluster variances, O(n² log n) in total at worst.
    """
    n = order.size
    w = np.ones(n)
    stack = np.empty((n + 1, 2), dtype=np.int64)
    stack[0, 0] = 0
    stack[0, 1] = n
    top = 1
    while top > 0:
        top -= 1
        a = stack[top, 0]
        b = stack[top, 1]
        mid = a + (b - a) // 2
        risk = np.zeros(2)
        for h in range(2):
            lo = a if h == 0 else mid
            hi = mid if h == 0 else b
            tot = 0.0
            for p in range(lo, hi):
                tot += inv[p]
            v = 0.0
            for p in range(lo, hi):
                row = cov[order[p]]
                acc = 0.0
                for q in range(lo, hi):
                    acc += row[order[q]] * inv[q]
                v += inv[p] * acc
            risk[h] = v / (tot * tot)
        total = risk[0] + risk[1]
        if not (np.isfinite(risk[0]) and np.isfinite(risk[1]) and total > 0):
            return w, False
        alpha = 1.0 - risk[0] / total
        for p in range(a, mid):
            w[p] *= alpha
        for p in range(mid, b):
            w[p] *= 1.0 - alpha
        if b - mid > 1:
            stack[top, 0] = mid
            stack[top, 1] = b
            top += 1
        if mid - a > 1:
            stack[top, 0] = a
            stack[top, 1] = mid
            top += 1
    return w, True


@nb.njit(cache=True)
def _ordered_inputs(kids: np.ndarray, leaves: np.ndarray, condensed: np.ndarray):
    """scipy's relabelling: leaves by ``leaves_list`` position, D permuted, node ranges.

    kids: (n−1, 2) children of the linkage; leaves: (n,) ``leaves_list``; condensed:
    (n(n−1)/2,) float64. Returns sorted_z (children with leaves as positions), sorted_d
    (n, n) the symmetric distance in position order, ranges (2n−1, 2) each node's
    positions [start, stop).
    """
    n = leaves.size
    pos = np.empty(n, dtype=np.int64)
    for i in range(n):
        pos[leaves[i]] = i
    sorted_z = np.empty((n - 1, 2), dtype=np.int64)
    ranges = np.empty((2 * n - 1, 2), dtype=np.int64)
    for i in range(n):
        ranges[i, 0] = i
        ranges[i, 1] = i + 1
    for i in range(n - 1):  # tree nodes, in merge order
        for c in range(2):
            k = kids[i, c]
            sorted_z[i, c] = pos[k] if k < n else k
        ranges[n + i, 0] = ranges[sorted_z[i, 0], 0]
        ranges[n + i, 1] = ranges[sorted_z[i, 1], 1]
    sorted_d = np.empty((n, n))
    for i in range(n):
        sorted_d[i, i] = 0.0
        for j in range(i + 1, n):
            lo, hi = min(leaves[i], leaves[j]), max(leaves[i], leaves[j])
            v = condensed[n * lo - lo * (lo + 1) // 2 + hi - lo - 1]  # D[lo, hi], lo < hi
            sorted_d[i, j] = v
            sorted_d[j, i] = v
    return sorted_z, sorted_d, ranges


@nb.njit(cache=True)
def _apply_swaps(link: np.ndarray, kids: np.ndarray, must_swap: np.ndarray) -> np.ndarray:
    # A node is rotated once per rotated ancestor (itself included): parity, root first
    # (a parent's row comes after its children's).
    n = link.shape[0] + 1
    flip = np.zeros(n - 1, dtype=np.int8)
    flip[n - 2] = must_swap[n - 2]
    out = link.copy()
    for i in range(n - 2, -1, -1):
        for c in range(2):
            child = kids[i, c]
            if child >= n:
                flip[child - n] = flip[i] ^ must_swap[child - n]
        if flip[i]:
            out[i, 0] = link[i, 1]
            out[i, 1] = link[i, 0]
    return out


def _olo(link: np.ndarray, condensed: np.ndarray) -> np.ndarray:
    link = np.ascontiguousarray(link, dtype=np.float64)
    kids = link[:, :2].astype(np.int64)
    leaves = sch.leaves_list(link).astype(np.int64)
    condensed = np.ascontiguousarray(condensed, dtype=np.float64)
    sorted_z, sorted_d, ranges = _ordered_inputs(kids, leaves, condensed)
    nonneg = bool(condensed.min() >= 0.0)
    return _apply_swaps(link, kids, _identify_swaps(sorted_z, sorted_d, ranges, nonneg))


def optimal_leaf_ordering(link: np.ndarray, condensed: np.ndarray) -> np.ndarray:
    """Optimally ordered linkage, identical to ``scipy.cluster.hierarchy.optimal_leaf_ordering``.

    link: scipy linkage (n−1, 4); condensed: condensed distance (n(n−1)/2,), finite (scipy
    raises otherwise, and so does this). Same relabelling and swap propagation as scipy; the
    swap search runs in :func:`_identify_swaps` (numba, O(n³), same float32 path costs and
    tie-breaks as scipy's Cython).
    """
    if link.shape[0] == 0:
        return link.copy()
    if not np.isfinite(condensed).all():
        raise ValueError(
            "optimal_leaf_ordering: the condensed distances must all be finite (as scipy "
            "requires); drop or fill the NaN/inf entries first"
        )
    return _olo(link, condensed)


@dataclass(frozen=True)
class HRPTree:
    """Seriation result. order: leaf positions (n,); linkage: scipy linkage (n−1, 4)."""

    order: np.ndarray
    linkage: np.ndarray


def seriate(distance: np.ndarray, method: str = "ward") -> HRPTree:
    """Ordered leaves of the hierarchical clustering of a distance matrix (n, n), or of its
    condensed upper triangle (n(n−1)/2,) as scipy's linkage takes it (a square matrix is
    read through its upper triangle, as ``squareform`` does)."""
    if method not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}; got {method!r}")
    if distance.ndim == 1:
        condensed = distance
        n = (1 + math.isqrt(1 + 8 * condensed.size)) // 2
    else:
        n = distance.shape[0]
        condensed = ssd.squareform(distance, checks=False)
    if n == 1:
        return HRPTree(order=np.zeros(1, dtype=np.int64), linkage=np.empty((0, 4)))
    link = sch.linkage(condensed, method=method, optimal_ordering=False)
    link = _olo(link, condensed)
    return HRPTree(order=sch.leaves_list(link).astype(np.int64), linkage=link)


def hrp_weights(covariance: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Recursive-bisection HRP weights (n,) for covariance (n, n) and a leaf order (n,).

    Weights are long-only and sum to 1 (before any cap). Raises ValueError when a unit
    variance is zero/non-finite or a split has zero total risk.
    """
    covariance = np.atleast_2d(np.asarray(covariance, dtype=np.float64))
    n = covariance.shape[0]
    var = np.diag(covariance).copy()
    if not np.isfinite(var).all() or np.any(var <= 0):
        bad = np.flatnonzero(~(np.isfinite(var) & (var > 0)))
        raise ValueError(f"HRP needs positive finite variances; atoms at {bad.tolist()} fail")
    if n == 1:
        return np.ones(1)
    order = np.ascontiguousarray(order, dtype=np.int64)
    w, ok = _bisect(np.ascontiguousarray(covariance), order, 1.0 / var[order])
    if not ok:
        raise ValueError("HRP split with zero total or non-finite cluster risk")
    out = np.empty(n)
    out[order] = w
    return out
