"""Phase 2 optimisation (SPEC §6.5): five long-only allocators behind one Stable Sum Gate.

Every method returns weights in the capped set W = {Σw = 1, lo <= w <= hi, Σ_{g} w <= C}
(:mod:`portflow.alpha.projection`). Inputs: ``returns`` DataFrame (T, n) of per-bar returns,
index UTC dates, columns atom ids, float64, no NaN (NaN is rejected with ``ValueError``:
health has already dropped gappy atoms); ``clusters`` one label per atom;
``periods_per_year`` the bars a year of the returns' calendar (365 for 24/7, 252 for
exchange sessions; always explicit). The optimisation runs per bar; ``risk_free`` is an
annual rate, used per bar as r_f = (1 + risk_free)^(1/periods_per_year) − 1, and the
in-sample figures in ``info["in_sample"]`` are given per bar and annualised
(``mean_annualised`` = mean·P, ``volatility_annualised`` = sd·√P, ``sharpe_annualised`` =
(mean − r_f)/sd·√P), labelled with ``periods_per_year``.

Estimates: μ = sample mean; Σ = Ledoit–Wolf (``ledoit_wolf``, the formula of
``sklearn.covariance.LedoitWolf``) or the sample covariance (``np.cov``, ddof=1), chosen by
``covariance``. HRP always uses the sample covariance, as skfolio's empirical prior does.
Solvers see Σ / mean(diag Σ) and μ / max|μ| (scale-free problems have better-conditioned KKT
systems; the argmin is unchanged).

Methods:

1. ``hrp`` — :mod:`portflow.alpha.hrp` (angular distance, linkage with optimal leaf ordering,
   recursive bisection, inverse-variance cluster risk), then capped proportionally: the
   point of W closest to the HRP weights in relative entropy (``CappedSet.project_kl``), so
   weights are only scaled — HRP's ratios survive inside every cluster and across every
   cluster below the cap, and no atom goes to 0.
2. ``min_var`` — QP ``min wᵀΣw`` over W, clarabel (interior point) on scipy sparse data.
3. ``max_sharpe`` — the true ratio ``max (μ − r_f)ᵀw / sqrt(wᵀΣw)`` over W by the
   Charnes–Cooper transform y = κw: ``min yᵀΣy`` s.t. ``(μ − r_f)ᵀy = 1``, ``1ᵀy = κ``,
   ``lo·κ <= y <= hi·κ``, ``Σ_g y <= C·κ``, κ >= 0; then w = y / κ. When no point of W has a
   positive excess return (first check: no atom has one; then the greedy maximum of
   (μ − r_f)ᵀw over W, ``CappedSet.argmax_linear``) the ratio is undefined: this is
   recorded and the min_var chain produces the weights.
4. ``equal_weight`` — 1/n capped proportionally like HRP (``project_kl``).
5. ``risk_parity`` — exact equal risk contribution: damped Newton (``erc_newton``) on the
   strictly convex ``min ½yᵀΣy − bᵀlog y`` (b = 1/n; Spinu 2013), w = y / Σy, which has
   RC_i = w_i(Σw)_i equal for all i. If that point leaves W, the constrained risk budgeting
   portfolio of Richard & Roncalli (2019): ``y = argmin_{lo<=y<=hi, Σ_g y<=C}
   ½yᵀΣy − λ bᵀlog y`` with λ such that Σy = 1, solved for y and λ together by one
   primal-dual interior point (``risk_budgeting_ipm``); atoms touching no bound then share
   one risk contribution exactly (λ b_i). Either way the link fails unless those atoms'
   risk contributions agree within 1e-6; ``info`` records ``cap_bound``, ``n_free_atoms``
   and the deviations.

Stable Sum Gate and fallback chain (``fallback_chain_``, like skfolio's):

1. Each method has links, tried in order: ``primary`` (configured Σ; clarabel for the QPs,
   Newton / interior point for risk parity), ``more_shrinkage`` (Σ ← ½Σ + ½·mean(diag Σ)·I),
   ``alternate_solver`` (OSQP for the QPs; for risk parity clarabel with exponential cones
   for y(λ) and Brent's method on λ), ``equal_weight``. HRP has no solver: primary,
   more_shrinkage, equal_weight. Equal weight is its own only link.
2. A link passes when its raw solution is finite with Σw > 1e-6, its solver reported success
   — clarabel's "almost solved" counts, at reduced tolerances of 1e-7 (1e-9 for risk
   budgeting), and the status is recorded — and the final weights are finite, >= −1e-9, sum
   to 1 within 1e-8 and respect bounds and caps within 1e-8. Solver output is cleaned by the
   Euclidean projection onto W; a clean-up larger than 1e-6 fails the link (a solution that
   far off W is not trusted). Nothing is rounded. Convergence tests use tolerances float64
   can reach (see ``erc_newton`` and ``risk_budgeting_ipm``).
3. Each attempt is recorded as {link, ok, reason}; the first passing link wins. If all fail,
   ``portflow.errors.OptimisationError`` is raised.

Determinism: no random state anywhere; solver settings are fixed; identical inputs give
bit-identical weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import clarabel
import numpy as np
import pandas as pd
from scipy import optimize as sopt
from scipy import sparse
from scipy.linalg import lapack

from portflow.alpha import hrp as hrp_kernel
from portflow.alpha import stats
from portflow.alpha.projection import CappedSet
from portflow.errors import OptimisationError

__all__ = [
    "COVARIANCES",
    "HRP",
    "METHODS",
    "EqualWeight",
    "MaxSharpe",
    "MinVariance",
    "OptimizationResult",
    "RiskParity",
    "estimate_moments",
    "optimize",
    "stable_sum_gate",
]

METHODS = ("hrp", "min_var", "max_sharpe", "equal_weight", "risk_parity")
COVARIANCES = ("ledoit_wolf", "sample")
EXTRA_SHRINKAGE = 0.5
RAW_SUM_MIN = 1e-6
GATE_TOL = 1e-8
NEGATIVE_TOL = 1e-9
CLEANUP_MAX = 1e-6
ERC_RC_TOL = 1e-6
ERC_DECREMENT_TOL = 1e-20
RB_TOL = 1e-10
RB_GAP_TOL = 1e-14
RB_ACCEPT = 100.0
RB_MAX_ITER = 80
SIGMA_MIN = 0.1
CAPACITY_SLACK = 1e-7
_CLARABEL_OK = (clarabel.SolverStatus.Solved, clarabel.SolverStatus.AlmostSolved)
_SOLVE_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError, RuntimeError)


# ---------------------------------------------------------------------------- estimates
def estimate_moments(x: np.ndarray, covariance: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """μ (n,) sample mean and Σ (n, n) per bar from returns x (T, n); info names both."""
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}; got {covariance!r}")
    mu = x.mean(axis=0)
    if covariance == "sample":
        cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
        info: dict[str, Any] = {
            "mu_estimator": "sample_mean",
            "covariance_estimator": "sample (ddof=1)",
        }
    else:
        cov, shrinkage = ledoit_wolf(x)
        info = {
            "mu_estimator": "sample_mean",
            "covariance_estimator": "ledoit_wolf (formula of sklearn.covariance.LedoitWolf)",
            "ledoit_wolf_shrinkage": shrinkage,
        }
    return mu, cov, info


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf shrunk covariance (n, n) and shrinkage of returns x (T, n).

    The formula of ``sklearn.covariance.LedoitWolf().fit(x)`` (centred data, biased empirical
    covariance S = XᵀX/T, target mean(diag S)·I) with one matrix product where sklearn takes
    three (XᵀX twice, (X∘X)ᵀ(X∘X) once: only the sum of its entries is needed, Σ_t (Σ_i x²_ti)²)
    and without its input validation, which costs more than the arithmetic at portfolio
    sizes; equal to sklearn to rounding (tested).
    """
    t, n = x.shape
    xc = x - x.mean(axis=0)
    emp = xc.T @ xc / t
    if n == 1:
        return emp, 0.0
    x2 = xc * xc
    trace = x2.sum(axis=0) / t
    mu = float(trace.sum()) / n
    delta_ = float(np.sum(emp * emp))  # Σ (XᵀX)²_ij / T²
    beta_ = float(np.sum(x2.sum(axis=1) ** 2))  # Σ_ij (X2ᵀX2)_ij without the product
    beta = (beta_ / t - delta_) / (n * t)
    delta = (delta_ - 2.0 * mu * float(trace.sum()) + n * mu * mu) / n
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    cov = (1.0 - shrinkage) * emp
    cov.flat[:: n + 1] += shrinkage * mu
    return cov, shrinkage


def _shrink(cov: np.ndarray, amount: float) -> np.ndarray:
    """(1 − a)Σ + a·mean(diag Σ)·I: more shrinkage towards the scaled identity."""
    target = float(np.mean(np.diag(cov)))
    return (1.0 - amount) * cov + amount * target * np.eye(cov.shape[0])


def _scaled(cov: np.ndarray) -> np.ndarray:
    scale = float(np.mean(np.diag(cov)))
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError("covariance has no positive finite variance to optimise")
    return cov / scale


# ---------------------------------------------------------------------------- QP solvers
def _settings(tight: bool = False) -> clarabel.DefaultSettings:
    """Clarabel settings; "almost solved" (reduced tolerances) still means 1e-7-accurate."""
    s = clarabel.DefaultSettings()
    s.verbose = False
    s.max_iter = 200
    s.reduced_tol_gap_abs = s.reduced_tol_gap_rel = 1e-7
    s.reduced_tol_feas = 1e-7
    if not tight:
        # The QPs: faer's supernodal LDLᵀ factors the dense covariance block ~2.4x faster
        # than QDLDL at 500 atoms and as fast at 25; one thread keeps runs bit-identical.
        s.direct_solve_method = "faer"
        s.max_threads = 1
    else:  # risk budgeting: RC equality needs y to ~1e-10, not the objective to 1e-8
        # (exponential cones at these tolerances stall with faer: QDLDL, the default, stays)
        s.tol_gap_abs = s.tol_gap_rel = s.tol_feas = 1e-12
        s.tol_ktratio = 1e-10
        s.reduced_tol_gap_abs = s.reduced_tol_gap_rel = s.reduced_tol_feas = 1e-9
    return s


def _binding_groups(cset: CappedSet) -> np.ndarray:
    """Clusters whose cap can bind (bool per cluster code).

    A cap of 1 is implied by the budget and is left out: in the risk-budgeting problem, whose
    budget is not a constraint, it would add a spurious flat stretch to Σy(λ).
    """
    hi_g = np.bincount(cset.codes, weights=cset.hi, minlength=cset.n_groups)
    return (hi_g > cset.cluster_cap) & (cset.cluster_cap < 1.0)


def _cap_rows(cset: CappedSet) -> tuple[np.ndarray, np.ndarray, int]:
    """Cluster caps that can bind as 0/1 rows: (row of each member, member atoms, k rows)."""
    groups = np.flatnonzero(_binding_groups(cset))
    row_of = np.full(cset.n_groups, -1)
    row_of[groups] = np.arange(groups.size)
    members = np.flatnonzero(row_of[cset.codes] >= 0)
    return row_of[cset.codes[members]], members, int(groups.size)


@dataclass
class _QP:
    """min ½xᵀPx + qᵀx s.t. the first n_eq rows of A x = b, the others <= b.

    P: upper-triangular CSC; A: CSC with the equality rows first.
    """

    p: sparse.csc_matrix
    q: np.ndarray
    a: sparse.csc_matrix
    b: np.ndarray
    n_eq: int

    def solve_clarabel(self) -> tuple[np.ndarray, bool, str]:
        n_in = self.b.size - self.n_eq
        cones = [clarabel.ZeroConeT(self.n_eq), clarabel.NonnegativeConeT(n_in)]
        sol = clarabel.DefaultSolver(self.p, self.q, self.a, self.b, cones, _settings()).solve()
        return np.asarray(sol.x), sol.status in _CLARABEL_OK, f"clarabel: {sol.status}"

    def solve_osqp(self) -> tuple[np.ndarray, bool, str]:
        import osqp  # only the fallback link needs it

        lower = self.b.copy()
        lower[self.n_eq :] = -np.inf
        prob = osqp.OSQP()
        prob.setup(
            P=self.p,
            q=self.q,
            A=self.a,
            l=lower,
            u=self.b,
            verbose=False,
            eps_abs=1e-10,
            eps_rel=1e-10,
            max_iter=100_000,
            polishing=True,
            adaptive_rho_interval=25,
        )
        res = prob.solve(raise_error=False)
        status = str(res.info.status)
        return np.asarray(res.x), status == "solved", f"osqp: {status}"


def _constraints(
    cset: CappedSet, eq: np.ndarray, b_eq: np.ndarray, kappa: bool
) -> tuple[sparse.csc_matrix, np.ndarray]:
    """A, b of ``_QP``: the dense equality rows eq (n_eq, cols), then y <= hi(κ),
    −y <= −lo(κ) and the cluster caps that can bind (κ-scaled when kappa: row r becomes
    a_r·y − b_r·κ <= 0, plus −κ <= 0; κ is the last column).

    Built from coordinate arrays in one step (scipy's sparse stacking costs milliseconds).
    """
    n = cset.n_atoms
    cap_row, members, k = _cap_rows(cset)
    n_eq = eq.shape[0]
    idx = np.arange(n)
    er, ec = np.nonzero(eq)
    rows = [er, n_eq + idx, n_eq + n + idx, n_eq + 2 * n + cap_row]
    cols = [ec, idx, idx, members]
    data = [eq[er, ec], np.ones(n), -np.ones(n), np.ones(members.size)]
    b_in = np.concatenate([cset.hi, -cset.lo, np.full(k, cset.cluster_cap)])
    m, width = n_eq + b_in.size, n
    if kappa:
        nz = np.flatnonzero(b_in)
        rows += [n_eq + nz, np.array([m])]
        cols += [np.full(nz.size + 1, n)]
        data += [-b_in[nz], np.array([-1.0])]
        b_in = np.zeros(b_in.size + 1)
        m, width = m + 1, n + 1
    a = sparse.csc_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(m, width)
    )
    return a, np.concatenate([b_eq, b_in])


def _min_var_qp(cov_n: np.ndarray, cset: CappedSet) -> _QP:
    n = cov_n.shape[0]
    p = sparse.csc_matrix(np.triu(2.0 * cov_n))
    a, b = _constraints(cset, np.ones((1, n)), np.ones(1), kappa=False)
    return _QP(p, np.zeros(n), a, b, 1)


def _max_sharpe_qp(excess_n: np.ndarray, cov_n: np.ndarray, cset: CappedSet) -> _QP:
    n = cov_n.shape[0]
    p_full = np.zeros((n + 1, n + 1))
    p_full[:n, :n] = np.triu(2.0 * cov_n)
    eq = np.vstack([np.append(excess_n, 0.0), np.append(np.ones(n), -1.0)])
    a, b = _constraints(cset, eq, np.array([1.0, 0.0]), kappa=True)
    return _QP(sparse.csc_matrix(p_full), np.zeros(n + 1), a, b, 2)


def _max_excess_on_set(excess_n: np.ndarray, cset: CappedSet) -> float:
    """max (μ − r_f)ᵀw over W (scaled units): the greedy maximiser of ``CappedSet``."""
    return float(excess_n @ cset.argmax_linear(excess_n))


# ---------------------------------------------------------------------------- risk parity
def _cholesky(m: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of a symmetric positive definite m (LAPACK potrf, called
    directly: scipy's checked wrappers cost more than the factorisation at n ~ 25)."""
    c, info = lapack.dpotrf(m, lower=False, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix is not positive definite (potrf info {info})")
    return c


def _cho_solve(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with (cᵀc) x = b for the factor c of ``_cholesky``."""
    x, info = lapack.dpotrs(c, b, lower=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky solve failed (potrs info {info})")
    return x


def erc_newton(cov_n: np.ndarray, budgets: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """y (n,) minimising ½yᵀΣy − bᵀlog y; w = y/Σy has RC ∝ b exactly (Spinu 2013).

    cov_n: (n, n) PSD; budgets: (n,) positive. Damped Newton on F = (½yᵀΣy − bᵀlog y)/min b,
    which is standard self-concordant (a convex quadratic plus Σ −(b_i/min b) log y_i with
    weights >= 1): the step 1/(1 + δ) (δ² = the Newton decrement) stays in y > 0 and decreases
    F without a line search, and full steps converge quadratically once δ < 1/4 (Nesterov
    2004, §4.1.5). Stops at δ² <= 1e-20 — about 10 orders above float64 noise in δ², and
    then ‖y − y*‖ <= ~1e-10 relative. Raises ValueError when it does not converge (e.g. a
    zero-variance atom makes the problem unbounded).
    """
    diag = np.diag(cov_n)
    if np.any(diag <= 0):
        raise ValueError("risk parity needs a positive variance for every atom")
    k = 1.0 / float(budgets.min())
    y = budgets / np.sqrt(diag)
    y *= math.sqrt(budgets.sum() / float(y @ cov_n @ y))
    for _ in range(max_iter):
        grad = k * (cov_n @ y - budgets / y)
        hess = k * (cov_n + np.diag(budgets / (y * y)))
        step = _cho_solve(_cholesky(hess), grad)
        decrement = float(grad @ step)
        if not math.isfinite(decrement):
            raise ValueError("ERC Newton: non-finite Newton decrement")
        if decrement <= ERC_DECREMENT_TOL:
            return y
        y = y - (1.0 if decrement < 1.0 / 16.0 else 1.0 / (1.0 + math.sqrt(decrement))) * step
    raise ValueError(f"ERC Newton did not converge in {max_iter} iterations")


def _risk_contributions(w: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return w * (cov @ w)


def _max_rel_dev(rc: np.ndarray) -> float:
    if rc.size == 0:
        return 0.0
    mean = float(rc.mean())
    return float(np.max(np.abs(rc / mean - 1.0))) if mean > 0 else math.inf


def _rb_budget(cset: CappedSet) -> float:
    """Σy to aim at: 1, or just below the capacity when the caps leave no room above 1.

    With capacity exactly 1 every cluster sits at its cap for all λ >= λ* and Σy(λ) is flat;
    aiming CAPACITY_SLACK below it selects λ* (the smallest root) in the limit, and the
    clean-up projection adds the missing mass (< 1e-6, within the link's clean-up limit).
    """
    rows = _binding_groups(cset)
    hi_g = np.bincount(cset.codes, weights=cset.hi, minlength=cset.n_groups)
    capacity = float(np.where(rows, np.minimum(hi_g, cset.cluster_cap), hi_g).sum())
    return min(1.0, capacity - CAPACITY_SLACK)


def risk_budgeting_ipm(
    cov_n: np.ndarray, budgets: np.ndarray, cset: CappedSet, y_erc: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Constrained risk budgeting (Richard & Roncalli 2019) by one primal-dual interior point.

    Finds y and λ > 0 with y = argmin_{y in B} ½yᵀΣy − λ bᵀlog y and Σy = β (β = 1 unless the
    caps leave no room, ``_rb_budget``), where B = {lo <= y <= hi, Σ_g y <= C} written
    G y <= h. Atoms touching no bound then have y_i(Σy)_i = λ b_i: equal risk contributions.
    Algorithm (cov_n scaled, b = budgets; y_erc the uncapped ERC point of ``erc_newton``):

    1. The log term is written primal-dual, u = λ b / y as y∘u = λb, beside the slacks
       s = h − Gy with s∘z = μ: the conditions are Σy − u + Gᵀz = 0, y∘u = λb, s∘z = μ,
       1ᵀy = β — bilinear, not λ b / y, whose Newton linearisation cycles far from y*.
    2. λ is one more unknown of the Newton system; eliminating u and z leaves
       M = Σ + diag(u/y) + Gᵀ diag(z/s) G (n × n, Cholesky) with one extra column b/y, and
       dλ from the budget row.
    3. Start strictly inside B: 0.9 × (y_erc's weights scaled into W, ``project_kl``) +
       0.1 × the centre of B; λ0 = 1/(Σ y_erc)² (the λ at which the uncapped path has Σy = 1),
       u0 = λ0 b / y0, z0 = λ0 mean(b) / s0.
    4. Each step: the affine (μ → 0) direction gives σ = (μ_aff/μ)³ as in Mehrotra's method,
       floored at SIGMA_MIN = 0.1; then the Newton step towards s∘z = σμ, with fraction to
       the boundary 0.99 on y, u, s, z and λ. Neither Mehrotra's second-order correction nor
       a smaller σ: both let the cap complementarity fall faster than the stationarity
       residual, and on ~5 % of wide random universes y then jams against 0 (stress-tested:
       with the floor, 985 of 985 capped universes converge, in 15 iterations typically).
    5. Stop when the residuals, relative to their scale (‖u‖∞ for the stationarity row,
       λ max b for y∘u), are <= RB_TOL and the cap complementarity μ <= RB_GAP_TOL·λ max b:
       an atom a hair (s) inside its bound carries a multiplier z = μ/s that shifts its risk
       contribution by ~y·μ/(s λ b), under 1e-7/n for s >= 1e-7 at this μ. If the iterations
       stall (very tight caps), the best iterate is accepted within RB_ACCEPT times these
       tolerances, otherwise ValueError.
    """
    n = cov_n.shape[0]
    cap_row, members, k = _cap_rows(cset)
    caps = np.zeros((k, n))
    caps[cap_row, members] = 1.0
    lower = cset.lo > 0
    eye = np.eye(n)
    g = np.vstack([eye, -eye[lower], caps])
    h = np.concatenate([cset.hi, -cset.lo[lower], np.full(k, cset.cluster_cap)])
    beta = _rb_budget(cset)
    # Step 3: the centre of B, pulled towards lo inside each capped cluster.
    half = 0.5 * (cset.hi - cset.lo)
    room = np.ones(cset.n_groups)
    rows = np.flatnonzero(_binding_groups(cset))
    lo_g = np.bincount(cset.codes, weights=cset.lo, minlength=cset.n_groups)
    half_g = np.bincount(cset.codes, weights=half, minlength=cset.n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        room[rows] = np.minimum(1.0, 0.5 * (cset.cluster_cap - lo_g[rows]) / half_g[rows])
    centre = cset.lo + room[cset.codes] * half
    y = 0.9 * cset.project_kl(y_erc) + 0.1 * centre
    s = h - g @ y
    if not (np.all(s > 0) and np.all(y > 0)):
        raise ValueError(
            "risk budgeting: the caps leave no interior (atom min = max or cap = Σ min)"
        )
    lam = 1.0 / float(y_erc.sum()) ** 2
    pt = _RBPoint(y=y, u=lam * budgets / y, z=lam * float(budgets.mean()) / s, lam=lam)
    kkt = _RBSystem(cov_n, g, h, budgets, beta)
    best: tuple[float, _RBPoint, int] = (math.inf, pt, 0)
    for it in range(RB_MAX_ITER):
        res = kkt.residuals(pt)
        if not math.isfinite(res.merit):
            break
        if res.merit < best[0]:
            best = (res.merit, pt, it)
        if res.merit <= 1.0:
            break
        pt = kkt.step(pt, res)
    merit, pt, it = best
    if not merit <= RB_ACCEPT:
        hint = (
            "; with atom minimums Σy(λ) can exceed 1 for every λ > 0 (no risk budgeting "
            "within these bounds)"
            if lower.any()
            else ""
        )
        raise ValueError(
            f"risk budgeting interior point stalled at {merit:.2g} x its tolerances "
            f"(residuals {RB_TOL:g}, gap {RB_GAP_TOL:g}){hint}"
        )
    res = kkt.residuals(pt)
    return pt.y, {
        "lambda": pt.lam,
        "iterations": it,
        "residual": res.residual,
        "gap": res.gap,
        "budget_target": beta,
    }


@dataclass(frozen=True)
class _RBPoint:
    """An interior-point iterate: y, u (= λb/y at the solution), z (cap duals), λ."""

    y: np.ndarray
    u: np.ndarray
    z: np.ndarray
    lam: float


@dataclass(frozen=True)
class _RBResiduals:
    r_d: np.ndarray  # Σy − u + Gᵀz
    r_y: np.ndarray  # y∘u − λb
    r_b: float  # 1ᵀy − β
    s: np.ndarray  # h − Gy
    mu: float  # sᵀz / m
    residual: float  # the largest of r_d, r_y, r_b relative to their scales
    gap: float  # μ / (λ max b)
    merit: float  # max(residual / RB_TOL, gap / RB_GAP_TOL): converged at <= 1


@dataclass(frozen=True)
class _RBSystem:
    """The conditions of ``risk_budgeting_ipm`` (steps 1-2) and one Newton step (step 4)."""

    cov: np.ndarray
    g: np.ndarray
    h: np.ndarray
    b: np.ndarray
    beta: float

    def residuals(self, pt: _RBPoint) -> _RBResiduals:
        r_d = self.cov @ pt.y - pt.u + self.g.T @ pt.z
        r_y = pt.y * pt.u - pt.lam * self.b
        r_b = float(pt.y.sum()) - self.beta
        s = self.h - self.g @ pt.y
        mu = float(s @ pt.z) / s.size
        scale = pt.lam * float(self.b.max())
        residual = max(
            float(np.abs(r_d).max()) / float(np.abs(pt.u).max()),
            abs(r_b),
            float(np.abs(r_y).max()) / scale,
        )
        gap = mu / scale
        merit = max(residual / RB_TOL, gap / RB_GAP_TOL)
        if not (np.all(s > 0) and np.all(pt.y > 0)):
            # rounding put a slack on its boundary: no further step is defined
            merit = math.inf
        return _RBResiduals(r_d, r_y, r_b, s, mu, residual, gap, merit)

    def step(self, pt: _RBPoint, res: _RBResiduals) -> _RBPoint:
        """One centred Newton step (``risk_budgeting_ipm`` step 4)."""
        y, u, z, s, g = pt.y, pt.u, pt.z, res.s, self.g
        cf = _cholesky(self.cov + np.diag(u / y) + (g.T * (z / s)) @ g)
        col = self.b / y

        def direction(r_c: np.ndarray, r_yy: np.ndarray) -> tuple[np.ndarray, ...]:
            rhs = -res.r_d - r_yy / y + g.T @ (r_c / s)
            p = _cho_solve(cf, np.column_stack([rhs, col]))
            dlam = (-res.r_b - float(p[:, 0].sum())) / float(p[:, 1].sum())
            dy = p[:, 0] + p[:, 1] * dlam
            du = (-r_yy - u * dy + self.b * dlam) / y
            ds = -(g @ dy)
            dz = (-r_c - z * ds) / s
            return dy, du, np.array([dlam]), ds, dz

        now = np.concatenate([y, u, [pt.lam], s, z])
        aff = direction(s * z, res.r_y)
        a = _to_boundary(now, np.concatenate(aff), 1.0)
        dy, du, dlam, ds, dz = aff
        sigma = (float((s + a * ds) @ (z + a * dz)) / s.size / res.mu) ** 3
        step = direction(s * z - min(1.0, max(SIGMA_MIN, sigma)) * res.mu, res.r_y)
        a = _to_boundary(now, np.concatenate(step), 0.99)
        dy, du, dlam, _, dz = step
        return _RBPoint(y=y + a * dy, u=u + a * du, z=z + a * dz, lam=pt.lam + a * float(dlam[0]))


def _to_boundary(x: np.ndarray, dx: np.ndarray, frac: float) -> float:
    """The largest α <= 1 with x + α·dx >= (1 − frac)·x (x > 0): fraction to the boundary."""
    neg = dx < 0
    return min(1.0, frac * float(np.min(-x[neg] / dx[neg]))) if neg.any() else 1.0


class _RBClarabel:
    """Inner constrained risk-budgeting solve for one λ (exp cones); data built once."""

    def __init__(self, cov_n: np.ndarray, budgets: np.ndarray, cset: CappedSet) -> None:
        n = cov_n.shape[0]
        self.n, self.b = n, budgets
        p = np.zeros((2 * n, 2 * n))
        p[:n, :n] = np.triu(cov_n)
        self.p = sparse.csc_matrix(p)
        a_box, b_box = _constraints(cset, np.zeros((0, n)), np.zeros(0), kappa=False)
        a_box = sparse.hstack([a_box, sparse.csc_matrix((a_box.shape[0], n))])
        # Exponential cone rows (t_i, 1, y_i): s = b − A x.
        rows = np.concatenate([3 * np.arange(n), 3 * np.arange(n) + 2])
        cols = np.concatenate([n + np.arange(n), np.arange(n)])
        a_exp = sparse.csc_matrix((-np.ones(2 * n), (rows, cols)), shape=(3 * n, 2 * n))
        b_exp = np.tile([0.0, 1.0, 0.0], n)
        self.a = sparse.vstack([a_box, a_exp], format="csc")
        self.rhs = np.concatenate([b_box, b_exp])
        self.cones = [clarabel.NonnegativeConeT(b_box.size)] + [
            clarabel.ExponentialConeT() for _ in range(n)
        ]
        self.statuses: set[str] = set()

    def __call__(self, lam: float) -> np.ndarray:
        q = np.concatenate([np.zeros(self.n), -lam * self.b])
        settings = _settings(tight=True)
        sol = clarabel.DefaultSolver(self.p, q, self.a, self.rhs, self.cones, settings).solve()
        if sol.status not in _CLARABEL_OK:
            raise ValueError(f"risk budgeting inner solve: clarabel {sol.status}")
        self.statuses.add(str(sol.status))
        return np.asarray(sol.x[: self.n])


def _constrained_rb(
    inner: Callable[[float], np.ndarray], lam0: float, beta: float
) -> tuple[np.ndarray, dict]:
    """λ with Σ y(λ) = β and y(λ): bracket on log λ (×4 steps), then Brent.

    Σy(λ) is continuous and non-decreasing and β < the capacity (``_rb_budget``), so a
    bracket exists and the root is the smallest λ reaching β.
    """
    calls = [0]

    def gap(log_lam: float) -> float:
        calls[0] += 1
        return float(inner(math.exp(log_lam)).sum()) - beta

    lo = hi = math.log(lam0)
    g_lo = g_hi = gap(lo)
    for _ in range(60):
        if g_lo <= 0:
            break
        lo -= math.log(4.0)
        g_lo = gap(lo)
    for _ in range(60):
        if g_hi >= 0:
            break
        hi += math.log(4.0)
        g_hi = gap(hi)
    if g_lo > 0 or g_hi < 0:
        raise ValueError("risk budgeting: could not bracket λ with Σy(λ) = β")
    root = lo if g_lo == 0 else hi
    if g_lo < 0 < g_hi:
        root = float(sopt.brentq(gap, lo, hi, xtol=1e-13, rtol=1e-13))
    y = inner(math.exp(root))
    return y, {"lambda": math.exp(root), "lambda_evaluations": int(calls[0])}


# ---------------------------------------------------------------------------- gate
def stable_sum_gate(
    raw: np.ndarray, final: np.ndarray, cset: CappedSet, solver_ok: bool
) -> str | None:
    """SPEC §6.5 Stable Sum Gate: None when the link passes, else the reason (one line)."""
    if not solver_ok:
        return "solver did not report success"
    if not np.isfinite(raw).all():
        return "raw solution is not finite"
    if not raw.sum() > RAW_SUM_MIN:
        return f"raw solution sums to {raw.sum():.3g} <= {RAW_SUM_MIN}"
    if not np.isfinite(final).all():
        return "final weights are not finite"
    if final.min() < -NEGATIVE_TOL:
        return f"final weight {final.min():.3g} < -{NEGATIVE_TOL}"
    if abs(final.sum() - 1.0) > GATE_TOL:
        return f"final weights sum to {final.sum():.12g}, not 1 within {GATE_TOL}"
    viol = cset.violation(final)
    if viol > GATE_TOL:
        return f"final weights break bounds or caps by {viol:.3g} > {GATE_TOL}"
    return None


@dataclass
class _Outcome:
    raw: np.ndarray
    final: np.ndarray
    solver_ok: bool
    info: dict = field(default_factory=dict)
    cleanup_limit: float | None = CLEANUP_MAX


def _cleaned(raw: np.ndarray, cset: CappedSet, solver_ok: bool, info: dict) -> _Outcome:
    """Solver output → W by projection; the size of the clean-up is recorded."""
    if not np.isfinite(raw).all():
        return _Outcome(raw, raw, solver_ok, info)
    final = cset.project(raw)
    info = {**info, "cleanup_max_abs": float(np.max(np.abs(final - raw)))}
    return _Outcome(raw, final, solver_ok, info)


# ---------------------------------------------------------------------------- estimators
@dataclass(frozen=True)
class OptimizationResult:
    """One method's weights and the record of how they were produced.

    weights: Series (n,) indexed by atom id, in W; link: the fallback link that produced
    them; attempts: [{link, ok, reason}] in order; info: JSON-serialisable details.
    """

    method: str
    weights: pd.Series
    link: str
    attempts: list[dict]
    info: dict


def _prepare(returns: pd.DataFrame) -> np.ndarray:
    if not isinstance(returns, pd.DataFrame):
        raise TypeError(f"returns must be a DataFrame (dates x atoms); got {type(returns)!r}")
    x = returns.to_numpy(dtype=np.float64, copy=True)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError("returns must have at least one atom column")
    if x.shape[0] < 2:
        raise ValueError(f"returns need at least 2 observations; got {x.shape[0]}")
    if np.isnan(x).any():
        cols = returns.columns[np.isnan(x).any(axis=0)].tolist()
        raise ValueError(f"returns contain NaN in atoms {cols[:5]}; pass a dense matrix")
    if not np.isfinite(x).all():
        raise ValueError("returns contain infinite values")
    return x


class _Allocator:
    """Shared estimator shell: caps in __init__, ``fit`` runs the fallback chain."""

    method = ""

    def __init__(
        self,
        *,
        periods_per_year: int,
        cluster_cap: float = 1.0,
        atom_max: float = 1.0,
        atom_min: float = 0.0,
        risk_free: float = 0.0,
    ) -> None:
        self.periods_per_year = periods_per_year
        self.cluster_cap = cluster_cap
        self.atom_max = atom_max
        self.atom_min = atom_min
        self.risk_free = risk_free

    def _risk_free_per_bar(self) -> float:
        """(1 + rf)^(1/P) − 1: the annual risk-free rate per bar (SPEC §6.5)."""
        if not (isinstance(self.periods_per_year, int | np.integer) and self.periods_per_year >= 1):
            raise ValueError(f"periods_per_year must be an int >= 1; got {self.periods_per_year!r}")
        if not (math.isfinite(self.risk_free) and self.risk_free > -1.0):
            raise ValueError(f"risk_free is an annual rate > -1; got {self.risk_free!r}")
        return stats.per_bar_rate(self.risk_free, int(self.periods_per_year))

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        raise NotImplementedError

    def _base_info(self, x: np.ndarray) -> dict:
        return {}

    def fit(
        self, returns: pd.DataFrame, clusters: Sequence | np.ndarray | pd.Series | None = None
    ) -> Self:
        """Fit on returns (T, n) per bar and clusters (n labels); sets weights_, info_, ...

        Raises ValueError for bad inputs or an empty capped set, OptimisationError when
        every fallback link fails.
        """
        x = _prepare(returns)
        rf_bar = self._risk_free_per_bar()
        if isinstance(clusters, pd.Series):
            clusters = clusters.reindex(returns.columns).to_numpy()
        cset = CappedSet.build(
            x.shape[1],
            clusters,
            cluster_cap=self.cluster_cap,
            atom_max=self.atom_max,
            atom_min=self.atom_min,
        )
        info = {
            "method": self.method,
            "n_atoms": int(x.shape[1]),
            "n_observations": int(x.shape[0]),
            "periodicity": "per bar",
            "periods_per_year": int(self.periods_per_year),
            "risk_free_annual": float(self.risk_free),
            "risk_free_per_bar": rf_bar,
            "cluster_cap": float(self.cluster_cap),
            "atom_max": float(self.atom_max),
            "atom_min": float(self.atom_min),
            **self._base_info(x),
        }
        attempts: list[dict] = []
        chosen: tuple[str, _Outcome] | None = None
        for name, run in self._links(x, cset):
            try:
                out = run()
            except _SOLVE_ERRORS as exc:
                attempts.append({"link": name, "ok": False, "reason": f"{exc}"})
                continue
            reason = stable_sum_gate(out.raw, out.final, cset, out.solver_ok)
            cleanup = out.info.get("cleanup_max_abs", 0.0)
            if reason is None and out.cleanup_limit is not None and cleanup > out.cleanup_limit:
                reason = f"solver solution off the capped set by {cleanup:.3g}"
            attempts.append({"link": name, "ok": reason is None, "reason": reason or ""})
            if reason is None:
                chosen = (name, out)
                break
        if chosen is None:
            detail = "; ".join(f"{a['link']}: {a['reason']}" for a in attempts)
            raise OptimisationError(
                f"{self.method}: every fallback link failed ({detail}); check the returns "
                "matrix (flat or duplicated atoms) and the caps"
            )
        name, out = chosen
        w = out.final
        info.update(out.info)
        info["binding"] = cset.binding(w)
        info["in_sample"] = _in_sample(x, w, self.periods_per_year, rf_bar)
        self.weights_ = pd.Series(w, index=returns.columns, name=self.method)
        self.link_ = name
        self.fallback_chain_ = attempts
        self.info_ = _json_clean(info)
        return self


def _in_sample(x: np.ndarray, w: np.ndarray, periods: int, rf_bar: float) -> dict:
    """In-sample figures of x @ w: per bar, and annualised with `periods` bars a year."""
    port = x @ w
    var = float(np.var(port, ddof=1))
    mean = float(port.mean())
    sd = math.sqrt(var) if var > 0 else 0.0
    return {
        "periods_per_year": int(periods),
        "mean_per_bar": mean,
        "variance_per_bar": var,
        "mean_annualised": mean * periods,
        "volatility_annualised": sd * math.sqrt(periods),
        "sharpe_annualised": (mean - rf_bar) / sd * math.sqrt(periods) if sd > 0 else None,
    }


def _json_clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _equal_weight_link(x: np.ndarray, cset: CappedSet) -> _Outcome:
    raw = np.full(cset.n_atoms, 1.0 / cset.n_atoms)
    info = {"solver": "proportional capping (relative-entropy projection)"}
    return _Outcome(raw, cset.project_kl(raw), True, info, cleanup_limit=None)


class EqualWeight(_Allocator):
    """1/n capped proportionally (``CappedSet.project_kl``; exact, no solver)."""

    method = "equal_weight"

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        return [("equal_weight", lambda: _equal_weight_link(x, cset))]


class _CovarianceAllocator(_Allocator):
    def __init__(
        self,
        *,
        periods_per_year: int,
        cluster_cap: float = 1.0,
        atom_max: float = 1.0,
        atom_min: float = 0.0,
        risk_free: float = 0.0,
        covariance: str = "ledoit_wolf",
    ) -> None:
        super().__init__(
            periods_per_year=periods_per_year,
            cluster_cap=cluster_cap,
            atom_max=atom_max,
            atom_min=atom_min,
            risk_free=risk_free,
        )
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}; got {covariance!r}")
        self.covariance = covariance

    def _base_info(self, x: np.ndarray) -> dict:
        self._mu, self._cov, est = estimate_moments(x, self.covariance)
        return est

    def _solve(self, cov: np.ndarray, cset: CappedSet, solver: str) -> _Outcome:
        raise NotImplementedError

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        cov = self._cov
        return [
            ("primary", lambda: self._solve(cov, cset, "primary")),
            ("more_shrinkage", lambda: self._shrunk(cov, cset)),
            ("alternate_solver", lambda: self._solve(cov, cset, "alternate")),
            ("equal_weight", lambda: _equal_weight_link(x, cset)),
        ]

    def _shrunk(self, cov: np.ndarray, cset: CappedSet) -> _Outcome:
        out = self._solve(_shrink(cov, EXTRA_SHRINKAGE), cset, "primary")
        out.info["extra_shrinkage"] = EXTRA_SHRINKAGE
        return out


class MinVariance(_CovarianceAllocator):
    """Minimum variance wᵀΣw over the capped set (QP; clarabel, OSQP as alternate)."""

    method = "min_var"

    def _solve(self, cov: np.ndarray, cset: CappedSet, solver: str) -> _Outcome:
        cov_n = _scaled(cov)
        qp = _min_var_qp(cov_n, cset)
        x, ok, status = qp.solve_clarabel() if solver == "primary" else qp.solve_osqp()
        out = _cleaned(x, cset, ok, {"solver": status})
        out.info["objective_variance"] = float(out.final @ cov @ out.final)
        return out


class MaxSharpe(_CovarianceAllocator):
    """True Sharpe-ratio maximisation (Charnes–Cooper); min_var when the ratio is undefined."""

    method = "max_sharpe"

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        self._excess = self._mu - self._risk_free_per_bar()
        excess = self._excess
        scale = float(np.max(np.abs(excess)))
        undefined = None
        if not np.any(excess > 0):
            undefined = "ratio undefined: no atom has a positive mean excess return"
        elif _max_excess_on_set(excess / scale, cset) <= 1e-12:
            undefined = "ratio undefined: no capped portfolio has a positive excess return"
        if undefined is None:
            return super()._links(x, cset)
        fallback = MinVariance(
            periods_per_year=self.periods_per_year,
            cluster_cap=self.cluster_cap,
            atom_max=self.atom_max,
            atom_min=self.atom_min,
            risk_free=self.risk_free,
            covariance=self.covariance,
        )
        fallback._mu, fallback._cov = self._mu, self._cov

        def wrap(run: Callable[[], _Outcome]) -> Callable[[], _Outcome]:
            def inner() -> _Outcome:
                out = run()
                out.info.update(
                    {"sharpe_defined": False, "note": f"{undefined}; weights are min_var"}
                )
                return out

            return inner

        return [(f"min_var/{name}", wrap(run)) for name, run in fallback._links(x, cset)]

    def _solve(self, cov: np.ndarray, cset: CappedSet, solver: str) -> _Outcome:
        excess = self._excess
        excess_n = excess / float(np.max(np.abs(excess)))
        qp = _max_sharpe_qp(excess_n, _scaled(cov), cset)
        sol, ok, status = qp.solve_clarabel() if solver == "primary" else qp.solve_osqp()
        y, kappa = sol[:-1], float(sol[-1])
        if not (np.isfinite(kappa) and kappa > 0):
            return _Outcome(np.full_like(y, np.nan), y, False, {"solver": status})
        out = _cleaned(y / kappa, cset, ok, {"solver": status})
        w = out.final
        var = float(w @ cov @ w)
        out.info.update(
            {
                "sharpe_defined": True,
                "objective_sharpe_per_bar": float(excess @ w) / math.sqrt(var) if var > 0 else None,
            }
        )
        return out


class RiskParity(_CovarianceAllocator):
    """Exact equal risk contribution; constrained risk budgeting when a cap binds.

    Primary: ``erc_newton``; when its point leaves W, ``risk_budgeting_ipm``. Alternate
    solver: clarabel (exponential cones) for y(λ) with Brent on λ (``_constrained_rb``).
    Either way the risk contributions of the atoms touching no bound must agree within
    ERC_RC_TOL, or the link fails with that reason.
    """

    method = "risk_parity"

    def _solve(self, cov: np.ndarray, cset: CappedSet, solver: str) -> _Outcome:
        cov_n = _scaled(cov)
        n = cov_n.shape[0]
        budgets = np.full(n, 1.0 / n)
        info: dict[str, Any] = {"budgets": "equal"}
        if solver == "primary":
            y_erc = erc_newton(cov_n, budgets)
            w = y_erc / y_erc.sum()
            if cset.violation(w) <= GATE_TOL:
                info["solver"] = "newton (Spinu, self-concordant damping)"
                return self._checked(_cleaned(w, cset, True, info), cov, cset)
            y, search = risk_budgeting_ipm(cov_n, budgets, cset, y_erc)
            info["solver"] = "primal-dual interior point (numpy), λ solved with y"
        else:
            inner = _RBClarabel(cov_n, budgets, cset)
            # λ0 from inverse-volatility weights scaled to yᵀΣy = Σb: a start for the bracket
            y0 = budgets / np.sqrt(np.diag(cov_n))
            y0 *= math.sqrt(budgets.sum() / float(y0 @ cov_n @ y0))
            y, search = _constrained_rb(inner, 1.0 / float(y0.sum()) ** 2, _rb_budget(cset))
            info["solver"] = "clarabel (exp cones), Brent on λ"
            info["clarabel_status"] = sorted(inner.statuses)
        return self._checked(_cleaned(y, cset, True, {**info, **search}), cov, cset)

    @staticmethod
    def _checked(out: _Outcome, cov: np.ndarray, cset: CappedSet) -> _Outcome:
        """Record the risk contributions; fail the link unless free atoms share one RC."""
        w = out.final
        if not np.isfinite(w).all():
            return out
        rc = _risk_contributions(w, cov)
        sums = np.bincount(cset.codes, weights=w, minlength=cset.n_groups)
        tol = 1e-7
        free = (
            (w > cset.lo + tol)
            & (w < cset.hi - tol)
            & ((sums[cset.codes] < cset.cluster_cap - tol) | (cset.cluster_cap >= 1.0))
        )
        dev = _max_rel_dev(rc[free])
        out.info.update(
            {
                "cap_bound": bool(free.sum() < w.size),
                "n_free_atoms": int(free.sum()),
                "free_rc_max_rel_dev": dev,
                "rc_max_rel_dev": _max_rel_dev(rc),
            }
        )
        if dev > ERC_RC_TOL:
            raise ValueError(
                f"risk contributions of the {int(free.sum())} atoms off their bounds differ by "
                f"{dev:.2g} > {ERC_RC_TOL:g}"
            )
        return out


class HRP(_Allocator):
    """Hierarchical Risk Parity (own kernel, equal to skfolio before caps), capped
    proportionally (``CappedSet.project_kl``: weights only scaled, never shifted)."""

    method = "hrp"

    def __init__(
        self,
        *,
        periods_per_year: int,
        cluster_cap: float = 1.0,
        atom_max: float = 1.0,
        atom_min: float = 0.0,
        risk_free: float = 0.0,
        linkage: str = "ward",
    ) -> None:
        super().__init__(
            periods_per_year=periods_per_year,
            cluster_cap=cluster_cap,
            atom_max=atom_max,
            atom_min=atom_min,
            risk_free=risk_free,
        )
        if linkage not in hrp_kernel.LINKAGES:
            raise ValueError(f"linkage must be one of {hrp_kernel.LINKAGES}; got {linkage!r}")
        self.linkage = linkage

    def _base_info(self, x: np.ndarray) -> dict:
        return {
            "covariance_estimator": "sample (ddof=1)",
            "distance": "sqrt(0.5*(1-pearson))",
            "linkage": self.linkage,
            "optimal_leaf_ordering": True,
            "capping": "proportional (relative-entropy projection)",
        }

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
        tree: list[hrp_kernel.HRPTree] = []

        def run(c: np.ndarray, extra: float | None) -> _Outcome:
            if not tree:
                # Pearson distances from the covariance already at hand: the same bits as
                # correlation_distance(x), without a second covariance.
                distance = hrp_kernel.condensed_covariance_distance(cov)
                tree.append(hrp_kernel.seriate(distance, self.linkage))
            raw = hrp_kernel.hrp_weights(c, tree[0].order)
            info: dict[str, Any] = {
                "solver": "recursive bisection",
                "leaf_order": tree[0].order.tolist(),
                "uncapped_weights": raw.tolist(),
            }
            if extra is not None:
                info["extra_shrinkage"] = extra
            final = cset.project_kl(raw)
            info["cap_adjustment_max_abs"] = float(np.max(np.abs(final - raw)))
            return _Outcome(raw, final, True, info, cleanup_limit=None)

        return [
            ("primary", lambda: run(cov, None)),
            ("more_shrinkage", lambda: run(_shrink(cov, EXTRA_SHRINKAGE), EXTRA_SHRINKAGE)),
            ("equal_weight", lambda: _equal_weight_link(x, cset)),
        ]


_CLASSES: dict[str, type[_Allocator]] = {
    "hrp": HRP,
    "min_var": MinVariance,
    "max_sharpe": MaxSharpe,
    "equal_weight": EqualWeight,
    "risk_parity": RiskParity,
}


def optimize(
    method: str,
    returns: pd.DataFrame,
    clusters: Sequence | np.ndarray | pd.Series | None,
    *,
    cluster_cap: float,
    atom_max: float,
    periods_per_year: int,
    atom_min: float = 0.0,
    covariance: str = "ledoit_wolf",
    linkage: str = "ward",
    risk_free: float = 0.0,
) -> OptimizationResult:
    """Run one method of METHODS; returns its weights and fallback record.

    returns: DataFrame (T, n) per-bar returns, columns atom ids; clusters: n labels (or a
    Series indexed by atom). cluster_cap / atom_max / atom_min: fractions of capital (already
    the effective caps). periods_per_year: bars a year of the returns' calendar (365 for 24/7,
    252 for exchange sessions; no default: it converts risk_free and annualises
    ``info["in_sample"]``). risk_free: an annual rate (0.04 = 4 %), used per bar as
    (1 + rf)^(1/periods_per_year) − 1 by max_sharpe and by every in-sample Sharpe.
    covariance applies to min_var, max_sharpe and risk_parity (HRP uses the sample
    covariance, equal weight none); linkage to hrp. Raises ValueError on bad inputs,
    OptimisationError when all links fail.
    """
    if method not in _CLASSES:
        from portflow.errors import suggest

        raise ValueError(f"unknown method {method!r}{suggest(method, METHODS)}; use {METHODS}")
    common: dict[str, Any] = {
        "periods_per_year": periods_per_year,
        "cluster_cap": cluster_cap,
        "atom_max": atom_max,
        "atom_min": atom_min,
        "risk_free": risk_free,
    }
    est: _Allocator
    if method == "hrp":
        est = HRP(**common, linkage=linkage)
    elif method == "equal_weight":
        est = EqualWeight(**common)
    else:
        est = _CLASSES[method](**common, covariance=covariance)  # type: ignore[call-arg]
    est.fit(returns, clusters)
    return OptimizationResult(
        method=method,
        weights=est.weights_,
        link=est.link_,
        attempts=est.fallback_chain_,
        info=est.info_,
    )
