"""Phase 2 optimisation (SPEC §6.5): five long-only allocators behind one Stable Sum Gate.

Every method returns weights in the capped set W = {Σw = 1, lo <= w <= hi, Σ_{g} w <= C}
(:mod:`portflow.alpha.projection`). Returns are per bar (daily), nothing is annualised.
Inputs: ``returns`` DataFrame (T, n), index UTC dates, columns atom ids, float64, no NaN
(NaN is rejected with ``ValueError``: health has already dropped gappy atoms); ``clusters``
one label per atom.

Estimates: μ = sample mean; Σ = Ledoit–Wolf (``sklearn.covariance.LedoitWolf``) or the sample
covariance (``np.cov``, ddof=1), chosen by ``covariance``. HRP always uses the sample
covariance, as skfolio's empirical prior does. Solvers see Σ / mean(diag Σ) and μ / max|μ|
(scale-free problems have better-conditioned KKT systems; the argmin is unchanged).

Methods:

1. ``hrp`` — :mod:`portflow.alpha.hrp` (angular distance, linkage with optimal leaf ordering,
   recursive bisection, inverse-variance cluster risk), then projection onto W.
2. ``min_var`` — QP ``min wᵀΣw`` over W, clarabel (interior point) on scipy sparse data.
3. ``max_sharpe`` — the true ratio ``max (μ − r_f)ᵀw / sqrt(wᵀΣw)`` over W by the
   Charnes–Cooper transform y = κw: ``min yᵀΣy`` s.t. ``(μ − r_f)ᵀy = 1``, ``1ᵀy = κ``,
   ``lo·κ <= y <= hi·κ``, ``Σ_g y <= C·κ``, κ >= 0; then w = y / κ. When no point of W has a
   positive excess return (first check: no atom has one; then an LP over W) the ratio is
   undefined: this is recorded and the min_var chain produces the weights.
4. ``equal_weight`` — 1/n projected onto W (renormalised by construction: it lies in W).
5. ``risk_parity`` — exact equal risk contribution: Newton's method on the strictly convex
   ``min ½yᵀΣy − bᵀlog y`` (b = 1/n; Spinu 2013), w = y / Σy, which has
   RC_i = w_i(Σw)_i equal for all i. If that point leaves W, the constrained risk budgeting
   portfolio of Richard & Roncalli (2019): ``y(λ) = argmin_{lo<=y<=hi, Σ_g y<=C}
   ½yᵀΣy − λ bᵀlog y`` (clarabel, exponential cones) with λ found by Brent's method so that
   Σy(λ) = 1; atoms touching no bound then share one risk contribution exactly (λ b_i) and the
   result records ``cap_bound``.

Stable Sum Gate and fallback chain (``fallback_chain_``, like skfolio's):

1. Each method has links, tried in order: ``primary`` (configured Σ, clarabel / Newton),
   ``more_shrinkage`` (Σ ← ½Σ + ½·mean(diag Σ)·I), ``alternate_solver`` (OSQP for the QPs,
   SCS via cvxpy for risk budgeting), ``equal_weight``. HRP has no solver: primary,
   more_shrinkage, equal_weight. Equal weight is its own only link.
2. A link passes when its raw solution is finite with Σw > 1e-6, its solver reported success,
   and the final weights are finite, >= −1e-9, sum to 1 within 1e-8 and respect bounds and
   caps within 1e-8. Solver output is cleaned by projection onto W; a clean-up larger than
   1e-6 fails the link (a solution that far off W is not trusted). Nothing is rounded.
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
from scipy import linalg, sparse
from scipy import optimize as sopt
from sklearn.covariance import LedoitWolf

from portflow.alpha import hrp as hrp_kernel
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
_SOLVE_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError, RuntimeError)


# ---------------------------------------------------------------------------- estimates
def estimate_moments(x: np.ndarray, covariance: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """μ (n,) sample mean and Σ (n, n) per bar from returns x (T, n); info names both."""
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}; got {covariance!r}")
    mu = x.mean(axis=0)
    if covariance == "sample":
        cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
        info: dict[str, Any] = {"mu_estimator": "sample_mean", "covariance_estimator": "sample (ddof=1)"}
    else:
        lw = LedoitWolf().fit(x)
        cov = lw.covariance_
        info = {
            "mu_estimator": "sample_mean",
            "covariance_estimator": "ledoit_wolf (sklearn.covariance.LedoitWolf)",
            "ledoit_wolf_shrinkage": float(lw.shrinkage_),
        }
    return mu, cov, info


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
    s = clarabel.DefaultSettings()
    s.verbose = False
    s.max_iter = 200
    if tight:  # risk budgeting: RC equality needs y to ~1e-10, not the objective to 1e-8
        s.tol_gap_abs = s.tol_gap_rel = s.tol_feas = 1e-12
        s.tol_ktratio = 1e-10
    return s


def _set_rows(cset: CappedSet) -> tuple[sparse.csc_matrix, np.ndarray]:
    """Rows of the cluster caps that can bind: A (k, n), b (k,).

    A cap of 1 is implied by the budget and is left out: in the risk-budgeting problem, whose
    budget is not a constraint, it would add a spurious flat stretch to Σy(λ).
    """
    a, b = cset.inequality_matrix()
    size = np.asarray(a.sum(axis=1)).ravel()
    can_bind = (size * cset.hi.max() > cset.cluster_cap) & (cset.cluster_cap < 1.0)
    return a[np.flatnonzero(can_bind)], b[can_bind]


@dataclass
class _QP:
    """min ½xᵀPx + qᵀx s.t. A_eq x = b_eq, A_in x <= b_in (P upper-triangular CSC)."""

    p: sparse.csc_matrix
    q: np.ndarray
    a_eq: sparse.csc_matrix
    b_eq: np.ndarray
    a_in: sparse.csc_matrix
    b_in: np.ndarray

    def solve_clarabel(self) -> tuple[np.ndarray, bool, str]:
        a = sparse.vstack([self.a_eq, self.a_in], format="csc")
        b = np.concatenate([self.b_eq, self.b_in])
        cones = [clarabel.ZeroConeT(self.b_eq.size), clarabel.NonnegativeConeT(self.b_in.size)]
        sol = clarabel.DefaultSolver(self.p, self.q, a, b, cones, _settings()).solve()
        ok = sol.status == clarabel.SolverStatus.Solved
        return np.asarray(sol.x), ok, f"clarabel: {sol.status}"

    def solve_osqp(self) -> tuple[np.ndarray, bool, str]:
        import osqp  # only the fallback link needs it

        a = sparse.vstack([self.a_eq, self.a_in], format="csc")
        lower = np.concatenate([self.b_eq, np.full(self.b_in.size, -np.inf)])
        upper = np.concatenate([self.b_eq, self.b_in])
        prob = osqp.OSQP()
        prob.setup(
            P=self.p,
            q=self.q,
            A=a,
            l=lower,
            u=upper,
            verbose=False,
            eps_abs=1e-10,
            eps_rel=1e-10,
            max_iter=100_000,
            polishing=True,
            adaptive_rho_interval=25,
        )
        res = prob.solve()
        status = str(res.info.status)
        return np.asarray(res.x), status == "solved", f"osqp: {status}"


def _bounds_rows(n: int, cset: CappedSet, kappa: bool) -> tuple[sparse.csc_matrix, np.ndarray]:
    """y <= hi(κ), −y <= −lo(κ), cluster caps (κ-scaled when kappa) as A x <= b."""
    eye = sparse.identity(n, format="csc")
    a_g, b_g = _set_rows(cset)
    if not kappa:
        a = sparse.vstack([eye, -eye, a_g], format="csc")
        return a, np.concatenate([cset.hi, -cset.lo, b_g])
    col = sparse.csc_matrix(np.concatenate([-cset.hi, cset.lo, -b_g])[:, None])
    a = sparse.hstack([sparse.vstack([eye, -eye, a_g]), col], format="csc")
    neg_kappa = sparse.csc_matrix(([-1.0], ([0], [n])), shape=(1, n + 1))
    a = sparse.vstack([a, neg_kappa], format="csc")
    return a, np.zeros(a.shape[0])


def _min_var_qp(cov_n: np.ndarray, cset: CappedSet) -> _QP:
    n = cov_n.shape[0]
    p = sparse.csc_matrix(np.triu(2.0 * cov_n))
    a_in, b_in = _bounds_rows(n, cset, kappa=False)
    a_eq = sparse.csc_matrix(np.ones((1, n)))
    return _QP(p, np.zeros(n), a_eq, np.ones(1), a_in, b_in)


def _max_sharpe_qp(excess_n: np.ndarray, cov_n: np.ndarray, cset: CappedSet) -> _QP:
    n = cov_n.shape[0]
    p_full = np.zeros((n + 1, n + 1))
    p_full[:n, :n] = np.triu(2.0 * cov_n)
    a_in, b_in = _bounds_rows(n, cset, kappa=True)
    a_eq = sparse.csc_matrix(np.vstack([np.append(excess_n, 0.0), np.append(np.ones(n), -1.0)]))
    return _QP(sparse.csc_matrix(p_full), np.zeros(n + 1), a_eq, np.array([1.0, 0.0]), a_in, b_in)


def _max_excess_on_set(excess_n: np.ndarray, cset: CappedSet) -> float:
    """max (μ − r_f)ᵀw over W (scaled units), by LP (HiGHS)."""
    a_g, b_g = _set_rows(cset)
    res = sopt.linprog(
        -excess_n,
        A_ub=a_g.toarray() if a_g.shape[0] else None,
        b_ub=b_g if a_g.shape[0] else None,
        A_eq=np.ones((1, excess_n.size)),
        b_eq=np.ones(1),
        bounds=list(zip(cset.lo, cset.hi, strict=True)),
        method="highs",
    )
    if res.status != 0:
        raise ValueError(f"LP for the largest excess return failed: {res.message}")
    return float(-res.fun)


# ---------------------------------------------------------------------------- risk parity
def erc_newton(cov_n: np.ndarray, budgets: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """y (n,) minimising ½yᵀΣy − bᵀlog y by damped Newton; w = y/Σy has RC ∝ b exactly.

    cov_n: (n, n) PSD; budgets: (n,) positive. Raises ValueError when it does not converge
    (e.g. a zero-variance atom makes the problem unbounded).
    """
    diag = np.diag(cov_n)
    if np.any(diag <= 0):
        raise ValueError("risk parity needs a positive variance for every atom")
    y = budgets / np.sqrt(diag)
    y *= math.sqrt(budgets.sum() / float(y @ cov_n @ y))

    def objective(z: np.ndarray) -> float:
        return 0.5 * float(z @ cov_n @ z) - float(budgets @ np.log(z))

    f = objective(y)
    for _ in range(max_iter):
        grad = cov_n @ y - budgets / y
        hess = cov_n + np.diag(budgets / (y * y))
        step = linalg.cho_solve(linalg.cho_factor(hess), grad)
        decrement = float(grad @ step)
        if decrement < 1e-24:
            return y
        t = 1.0
        neg = step > 0
        if neg.any():
            t = min(1.0, 0.99 * float(np.min(y[neg] / step[neg])))
        while True:
            z = y - t * step
            fz = objective(z)
            if fz <= f - 0.25 * t * decrement or t < 1e-12:
                break
            t *= 0.5
        y, f = z, fz
    raise ValueError(f"ERC Newton did not converge in {max_iter} iterations")


def _risk_contributions(w: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return w * (cov @ w)


def _max_rel_dev(rc: np.ndarray) -> float:
    if rc.size == 0:
        return 0.0
    mean = float(rc.mean())
    return float(np.max(np.abs(rc / mean - 1.0))) if mean > 0 else math.inf


class _RBClarabel:
    """Inner constrained risk-budgeting solve for one λ; data built once, reused across λ."""

    def __init__(self, cov_n: np.ndarray, budgets: np.ndarray, cset: CappedSet) -> None:
        n = cov_n.shape[0]
        self.n, self.b = n, budgets
        p = np.zeros((2 * n, 2 * n))
        p[:n, :n] = np.triu(cov_n)
        self.p = sparse.csc_matrix(p)
        a_box, b_box = _bounds_rows(n, cset, kappa=False)
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

    def __call__(self, lam: float) -> np.ndarray:
        q = np.concatenate([np.zeros(self.n), -lam * self.b])
        settings = _settings(tight=True)
        sol = clarabel.DefaultSolver(self.p, q, self.a, self.rhs, self.cones, settings).solve()
        if sol.status != clarabel.SolverStatus.Solved:
            raise ValueError(f"risk budgeting inner solve: clarabel {sol.status}")
        return np.asarray(sol.x[: self.n])


class _RBSCS:
    """The same inner problem in cvxpy (λ a Parameter, DPP: compiled once) solved by SCS."""

    def __init__(self, cov_n: np.ndarray, budgets: np.ndarray, cset: CappedSet) -> None:
        import cvxpy as cp  # only the fallback link needs it

        n = cov_n.shape[0]
        evals, evecs = np.linalg.eigh(cov_n)
        root = evecs * np.sqrt(np.clip(evals, 0.0, None))
        a_g, b_g = _set_rows(cset)
        self.y = cp.Variable(n)
        self.lam = cp.Parameter(nonneg=True)
        cons = [self.y <= cset.hi, self.y >= cset.lo]
        if a_g.shape[0]:
            cons.append(a_g @ self.y <= b_g)
        obj = 0.5 * cp.sum_squares(root.T @ self.y) - self.lam * (budgets @ cp.log(self.y))
        self.problem = cp.Problem(cp.Minimize(obj), cons)
        self.cp = cp

    def __call__(self, lam: float) -> np.ndarray:
        self.lam.value = lam
        self.problem.solve(solver="SCS", eps_abs=1e-10, eps_rel=1e-10, max_iters=200_000)
        if self.problem.status != "optimal" or self.y.value is None:
            raise ValueError(f"risk budgeting inner solve: SCS {self.problem.status}")
        return np.asarray(self.y.value)


def _constrained_rb(inner: Callable[[float], np.ndarray], lam0: float) -> tuple[np.ndarray, dict]:
    """Smallest λ with Σ y(λ) = 1 and y(λ); Brent on log λ, then bisection off a flat stretch.

    Σy(λ) is non-decreasing; when caps sum to exactly the budget it is flat (= 1) beyond λ*,
    and only λ* (where no cap multiplier is yet positive) gives free atoms equal RC.
    """
    calls = [0]

    def gap(log_lam: float) -> float:
        calls[0] += 1
        return float(inner(math.exp(log_lam)).sum()) - 1.0

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
        raise ValueError("risk budgeting: could not bracket λ with Σy(λ) = 1")
    root = lo if g_lo == 0 else hi
    if g_lo < 0 < g_hi:
        root = float(_brentq(gap, lo, hi))
    flat_tol, probe = 1e-9, 1e-5
    if gap(root - probe) > -flat_tol:  # on the flat stretch: find where it starts
        a, b = lo, root
        for _ in range(80):
            mid = 0.5 * (a + b)
            if gap(mid) > -flat_tol:
                b = mid
            else:
                a = mid
            if b - a < 1e-12:
                break
        root = b
    y = inner(math.exp(root))
    return y, {"lambda": math.exp(root), "lambda_evaluations": int(calls[0])}


def _brentq(f: Callable[[float], float], a: float, b: float) -> float:
    return float(sopt.brentq(f, a, b, xtol=1e-13, rtol=1e-13))


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
        self, *, cluster_cap: float = 1.0, atom_max: float = 1.0, atom_min: float = 0.0
    ) -> None:
        self.cluster_cap = cluster_cap
        self.atom_max = atom_max
        self.atom_min = atom_min

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
        info["in_sample"] = _in_sample(x, w)
        self.weights_ = pd.Series(w, index=returns.columns, name=self.method)
        self.link_ = name
        self.fallback_chain_ = attempts
        self.info_ = _json_clean(info)
        return self


def _in_sample(x: np.ndarray, w: np.ndarray) -> dict:
    port = x @ w
    var = float(np.var(port, ddof=1))
    mean = float(port.mean())
    return {
        "mean": mean,
        "variance": var,
        "sharpe": mean / math.sqrt(var) if var > 0 else None,
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
    return _Outcome(raw, cset.project(raw), True, {"solver": "projection"}, cleanup_limit=None)


class EqualWeight(_Allocator):
    """1/n projected onto the capped set (exact; no solver)."""

    method = "equal_weight"

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        return [("equal_weight", lambda: _equal_weight_link(x, cset))]


class _CovarianceAllocator(_Allocator):
    def __init__(
        self,
        *,
        cluster_cap: float = 1.0,
        atom_max: float = 1.0,
        atom_min: float = 0.0,
        covariance: str = "ledoit_wolf",
    ) -> None:
        super().__init__(cluster_cap=cluster_cap, atom_max=atom_max, atom_min=atom_min)
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

    def __init__(
        self,
        *,
        cluster_cap: float = 1.0,
        atom_max: float = 1.0,
        atom_min: float = 0.0,
        covariance: str = "ledoit_wolf",
        risk_free: float = 0.0,
    ) -> None:
        super().__init__(
            cluster_cap=cluster_cap, atom_max=atom_max, atom_min=atom_min, covariance=covariance
        )
        self.risk_free = risk_free

    def _base_info(self, x: np.ndarray) -> dict:
        est = super()._base_info(x)
        return {**est, "risk_free_per_bar": float(self.risk_free)}

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        excess = self._mu - self.risk_free
        scale = float(np.max(np.abs(excess)))
        self._undefined = None
        if not np.any(excess > 0):
            self._undefined = "ratio undefined: no atom has a positive mean excess return"
        elif _max_excess_on_set(excess / scale, cset) <= 1e-12:
            self._undefined = "ratio undefined: no capped portfolio has a positive excess return"
        if self._undefined is None:
            return super()._links(x, cset)
        fallback = MinVariance(
            cluster_cap=self.cluster_cap,
            atom_max=self.atom_max,
            atom_min=self.atom_min,
            covariance=self.covariance,
        )
        fallback._mu, fallback._cov = self._mu, self._cov
        note = self._undefined

        def wrap(run: Callable[[], _Outcome]) -> Callable[[], _Outcome]:
            def inner() -> _Outcome:
                out = run()
                out.info.update({"sharpe_defined": False, "note": f"{note}; weights are min_var"})
                return out

            return inner

        return [(f"min_var/{name}", wrap(run)) for name, run in fallback._links(x, cset)]

    def _solve(self, cov: np.ndarray, cset: CappedSet, solver: str) -> _Outcome:
        excess = self._mu - self.risk_free
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
                "objective_sharpe": float(excess @ w) / math.sqrt(var) if var > 0 else None,
            }
        )
        return out


class RiskParity(_CovarianceAllocator):
    """Exact equal risk contribution; constrained risk budgeting when a cap binds."""

    method = "risk_parity"

    def _solve(self, cov: np.ndarray, cset: CappedSet, solver: str) -> _Outcome:
        cov_n = _scaled(cov)
        n = cov_n.shape[0]
        budgets = np.full(n, 1.0 / n)
        y = erc_newton(cov_n, budgets)
        w = y / y.sum()
        info: dict[str, Any] = {"solver": "newton (Spinu)", "budgets": "equal"}
        if cset.violation(w) <= GATE_TOL:
            out = _cleaned(w, cset, True, info)
            rc = _risk_contributions(out.final, cov)
            out.info.update({"cap_bound": False, "rc_max_rel_dev": _max_rel_dev(rc)})
            if out.info["rc_max_rel_dev"] > ERC_RC_TOL:
                out.solver_ok = False
            return out
        inner: Callable[[float], np.ndarray]
        if solver == "primary":
            inner, info["solver"] = _RBClarabel(cov_n, budgets, cset), "clarabel (exp cones)"
        else:
            inner, info["solver"] = _RBSCS(cov_n, budgets, cset), "scs via cvxpy"
        y, search = _constrained_rb(inner, 1.0 / float(y.sum()) ** 2)
        out = _cleaned(y / y.sum(), cset, True, {**info, **search})
        w = out.final
        rc = _risk_contributions(w, cov)
        sums = np.bincount(cset.codes, weights=w, minlength=cset.n_groups)
        tol = 1e-7
        free = (
            (w > cset.lo + tol)
            & (w < cset.hi - tol)
            & ((sums[cset.codes] < cset.cluster_cap - tol) | (cset.cluster_cap >= 1.0))
        )
        out.info.update(
            {
                "cap_bound": True,
                "n_free_atoms": int(free.sum()),
                "free_rc_max_rel_dev": _max_rel_dev(rc[free]),
                "rc_max_rel_dev": _max_rel_dev(rc),
            }
        )
        return out


class HRP(_Allocator):
    """Hierarchical Risk Parity (own kernel, equal to skfolio before caps), then projection."""

    method = "hrp"

    def __init__(
        self,
        *,
        cluster_cap: float = 1.0,
        atom_max: float = 1.0,
        atom_min: float = 0.0,
        linkage: str = "ward",
    ) -> None:
        super().__init__(cluster_cap=cluster_cap, atom_max=atom_max, atom_min=atom_min)
        if linkage not in hrp_kernel.LINKAGES:
            raise ValueError(f"linkage must be one of {hrp_kernel.LINKAGES}; got {linkage!r}")
        self.linkage = linkage

    def _base_info(self, x: np.ndarray) -> dict:
        return {
            "covariance_estimator": "sample (ddof=1)",
            "distance": "sqrt(0.5*(1-pearson))",
            "linkage": self.linkage,
            "optimal_leaf_ordering": True,
        }

    def _links(self, x: np.ndarray, cset: CappedSet) -> list[tuple[str, Callable[[], _Outcome]]]:
        cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
        tree: list[hrp_kernel.HRPTree] = []

        def run(c: np.ndarray, extra: float | None) -> _Outcome:
            if not tree:
                tree.append(hrp_kernel.seriate(hrp_kernel.correlation_distance(x), self.linkage))
            raw = hrp_kernel.hrp_weights(c, tree[0].order)
            info: dict[str, Any] = {
                "solver": "recursive bisection",
                "leaf_order": tree[0].order.tolist(),
                "uncapped_weights": raw.tolist(),
            }
            if extra is not None:
                info["extra_shrinkage"] = extra
            final = cset.project(raw)
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
    atom_min: float = 0.0,
    covariance: str = "ledoit_wolf",
    linkage: str = "ward",
    risk_free: float = 0.0,
) -> OptimizationResult:
    """Run one method of METHODS; returns its weights and fallback record.

    returns: DataFrame (T, n) per-bar returns, columns atom ids; clusters: n labels (or a
    Series indexed by atom). cluster_cap / atom_max / atom_min: fractions of capital (already
    the effective caps). covariance applies to min_var, max_sharpe and risk_parity (HRP uses
    the sample covariance, equal weight none); linkage to hrp; risk_free (per bar) to
    max_sharpe. Raises ValueError on bad inputs, OptimisationError when all links fail.
    """
    if method not in _CLASSES:
        from portflow.errors import suggest

        raise ValueError(f"unknown method {method!r}{suggest(method, METHODS)}; use {METHODS}")
    caps = {"cluster_cap": cluster_cap, "atom_max": atom_max, "atom_min": atom_min}
    est: _Allocator
    if method == "hrp":
        est = HRP(**caps, linkage=linkage)
    elif method == "equal_weight":
        est = EqualWeight(**caps)
    elif method == "max_sharpe":
        est = MaxSharpe(**caps, covariance=covariance, risk_free=risk_free)
    else:
        est = _CLASSES[method](**caps, covariance=covariance)  # type: ignore[call-arg]
    est.fit(returns, clusters)
    return OptimizationResult(
        method=method,
        weights=est.weights_,
        link=est.link_,
        attempts=est.fallback_chain_,
        info=est.info_,
    )
