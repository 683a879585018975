"""Optimiser benchmark: ours vs skfolio on 500 assets x 2,500 days of synthetic factor returns.

Run by hand: ``.venv/bin/python benchmarks/bench_optimize.py``. Prints, in one run, the time
ratio and weight/objective agreement for HRP (target: ours >= 30x faster, max |Δw| <= 1e-10),
min_var and max_sharpe (target: ours/skfolio <= 0.5, issue 13; objectives within 1e-6 relative).
Times are the min of a few repeats after one warm-up (numba JIT, imports); both sides of a
comparison get the same warm-up and the same number of repeats. skfolio's MeanRisk runs
with our tight clarabel tolerances (``optimize._settings(tight=True)``) so both solvers
reach the same optimum; its time at skfolio's default tolerances is printed alongside, and
so is its time with our linear solver as well (faer, one thread; ``optimize._settings``), so
that what a solver setting buys is not mistaken for what our formulation buys.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy as sch
from scipy.spatial import distance as ssd
from skfolio.cluster import HierarchicalClustering, LinkageMethod
from skfolio.distance import PearsonDistance
from skfolio.measures import RiskMeasure
from skfolio.moments import LedoitWolf as SkLedoitWolf
from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction
from skfolio.prior import EmpiricalPrior
from skfolio.seriation import HierarchicalSeriation

from portflow.alpha import hrp
from portflow.alpha.optimize import HRP, MaxSharpe, MinVariance, _settings, estimate_moments

N_ASSETS, N_DAYS, N_FACTORS, N_CLUSTERS = 500, 2_500, 5, 25
CLUSTER_CAP, ATOM_MAX = 0.08, 0.01
REPEATS = 3
_TIGHT = _settings(tight=True)
_OURS = _settings()
SK_TIGHT = {  # our tight clarabel tolerances, for skfolio's MeanRisk (cvxpy -> clarabel)
    key: getattr(_TIGHT, key) for key in ("tol_gap_abs", "tol_gap_rel", "tol_feas", "tol_ktratio")
}
SK_TIGHT_FAER = {  # ... and our linear solver
    **SK_TIGHT,
    **{key: getattr(_OURS, key) for key in ("direct_solve_method", "max_threads")},
}
PERIODS = 365


def synthetic() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(20240601)
    f = rng.normal(0.0003, 0.01, size=(N_DAYS, N_FACTORS))
    b = rng.normal(0.6, 0.4, size=(N_FACTORS, N_ASSETS))
    x = f @ b + rng.normal(0.0, 0.015, size=(N_DAYS, N_ASSETS)) * rng.uniform(0.5, 2, N_ASSETS)
    x += rng.normal(0.0002, 0.0003, N_ASSETS)
    idx = pd.date_range("2015-01-01", periods=N_DAYS, tz="UTC")
    return pd.DataFrame(x, index=idx, columns=[f"a{i}" for i in range(N_ASSETS)]), np.arange(
        N_ASSETS
    ) % N_CLUSTERS


def best_time(fn, repeats: int = REPEATS):
    out, best = None, float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    r, clusters = synthetic()
    x = r.to_numpy()
    groups = np.unique(clusters)
    a = (clusters[None, :] == groups[:, None]).astype(float)
    b = np.full(groups.size, CLUSTER_CAP)
    print(
        f"{N_ASSETS} assets x {N_DAYS} days, {N_CLUSTERS} clusters, cap {CLUSTER_CAP}, "
        f"atom max {ATOM_MAX}"
    )

    # HRP before caps: the kernel the spec pins to skfolio. Both start from the returns.
    def ours_hrp() -> np.ndarray:
        tree = hrp.seriate(hrp.correlation_distance(x), "ward")
        return hrp.hrp_weights(np.cov(x, rowvar=False, ddof=1), tree.order)

    def sk_model() -> HierarchicalRiskParity:
        return HierarchicalRiskParity(
            risk_measure=RiskMeasure.VARIANCE,
            prior_estimator=EmpiricalPrior(),
            distance_estimator=PearsonDistance(),
            seriation_estimator=HierarchicalSeriation(
                hierarchical_clustering_estimator=HierarchicalClustering(
                    linkage_method=LinkageMethod.WARD
                ),
                optimal_ordering=True,
            ),
        ).fit(x)

    ours_hrp()  # warm-up (numba cache load / JIT)
    sk = sk_model()  # warm-up (imports)
    t_ours, w_ours = best_time(ours_hrp)
    t_sk, sk = best_time(sk_model)
    w_sk = sk.weights_
    same_order = np.array_equal(
        hrp.seriate(hrp.correlation_distance(x), "ward").order, sk.seriation_estimator_.ordering_
    )
    ratio = t_sk / t_ours
    print(
        f"hrp (uncapped)   ours {t_ours:8.3f}s  skfolio {t_sk:8.3f}s  "
        f"speed-up {ratio:6.1f}x ({'PASS' if ratio >= 30 else 'FAIL'} >= 30x)  "
        f"max|dw| {np.max(np.abs(w_ours - w_sk)):.2e}  same leaf order {same_order}"
    )
    # Where our time goes, and scipy's own optimal leaf ordering for scale.
    d = hrp.correlation_distance(x)
    cond = ssd.squareform(d, checks=False)
    link = sch.linkage(cond, "ward")
    order = hrp.seriate(d, "ward").order
    cov_x = np.cov(x, rowvar=False, ddof=1)
    parts = {
        "distance": lambda: hrp.correlation_distance(x),
        "linkage": lambda: sch.linkage(cond, "ward"),
        "leaf ordering": lambda: hrp.optimal_leaf_ordering(link, cond),
        "covariance": lambda: np.cov(x, rowvar=False, ddof=1),
        "bisection": lambda: hrp.hrp_weights(cov_x, order),
    }
    times = {name: best_time(fn, repeats=5)[0] for name, fn in parts.items()}
    t_scipy_olo, scipy_link = best_time(lambda: sch.optimal_leaf_ordering(link, cond), repeats=2)
    print(
        "  ours by step: "
        + ", ".join(f"{name} {t * 1e3:.1f} ms" for name, t in times.items())
        + f"; scipy optimal_leaf_ordering {t_scipy_olo * 1e3:.0f} ms (ours identical: "
        f"{np.array_equal(hrp.optimal_leaf_ordering(link, cond), scipy_link)})"
    )
    t_full, _ = best_time(
        lambda: HRP(periods_per_year=PERIODS, cluster_cap=CLUSTER_CAP, atom_max=ATOM_MAX).fit(
            r, clusters
        )
    )
    print(f"hrp (capped, full estimator incl. projection) ours {t_full:.3f}s")

    mu, cov, _ = estimate_moments(x, "ledoit_wolf")
    prior = EmpiricalPrior(covariance_estimator=SkLedoitWolf())
    for name, ours_cls, objective, measure in (
        ("min_var", MinVariance, ObjectiveFunction.MINIMIZE_RISK, RiskMeasure.VARIANCE),
        ("max_sharpe", MaxSharpe, ObjectiveFunction.MAXIMIZE_RATIO, RiskMeasure.STANDARD_DEVIATION),
    ):

        def ours(cls=ours_cls):
            return cls(periods_per_year=PERIODS, cluster_cap=CLUSTER_CAP, atom_max=ATOM_MAX).fit(
                r, clusters
            )

        def sk(objective=objective, measure=measure, params=SK_TIGHT):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = MeanRisk(
                    objective_function=objective,
                    risk_measure=measure,
                    prior_estimator=prior,
                    min_weights=0.0,
                    max_weights=ATOM_MAX,
                    left_inequality=a,
                    right_inequality=b,
                    solver_params=params,
                ).fit(x)
            model.bench_warnings_ = sorted({str(w.message).split(".")[0] for w in caught})
            return model

        ours()
        sk()
        t_o, est = best_time(ours)
        t_s, ref = best_time(sk)
        t_s_default, _ = best_time(lambda sk=sk: sk(params=None))
        t_s_faer, _ = best_time(lambda sk=sk: sk(params=SK_TIGHT_FAER))
        w_o, w_s = est.weights_.to_numpy(), ref.weights_
        if name == "min_var":
            f_o, f_s = w_o @ cov @ w_o, w_s @ cov @ w_s
            label = "variance"
        else:
            f_o = (mu @ w_o) / np.sqrt(w_o @ cov @ w_o)
            f_s = (mu @ w_s) / np.sqrt(w_s @ cov @ w_s)
            label = "sharpe"
        print(
            f"{name:<16} ours {t_o:8.3f}s  skfolio {t_s:8.3f}s  ours/skfolio {t_o / t_s:5.2f}  "
            f"{label} ours {f_o:.10g} skfolio {f_s:.10g}  rel diff {abs(f_o - f_s) / abs(f_s):.2e}"
            f"  link {est.link_}"
        )
        print(
            f"  skfolio at its default tolerances {t_s_default:.3f}s (ours/skfolio "
            f"{t_o / t_s_default:.2f}); with our tolerances and faer {t_s_faer:.3f}s "
            f"(ours/skfolio {t_o / t_s_faer:.2f}); skfolio tight-tolerance warnings: "
            f"{ref.bench_warnings_ or 'none'}"
        )


if __name__ == "__main__":
    main()
