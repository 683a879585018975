"""The capped set of long-only weights and two exact projections onto it.

The capped set for n atoms in G disjoint clusters is

    W = { w in R^n : sum_i w_i = 1,  lo_i <= w_i <= hi_i,  sum_{i in g} w_i <= C for every g }

(``lo`` = atom min, ``hi`` = effective atom max, ``C`` = effective cluster cap). Every optimiser
of portflow returns a point of W. Solver output is cleaned by the Euclidean projection
(``project``); HRP and equal weight are capped by the relative-entropy projection
(``project_kl``), which only ever scales weights (SPEC §6.5).

Both projections share one solver, for points of the form ``x_i(t) = a_i − c_i·t`` (c_i > 0):

- Euclidean ``argmin_{w in W} ½‖w − v‖²``: a = v, c = 1, t = the budget shift;
- relative entropy ``argmin_{w in W} Σ w_i log(w_i / u_i)`` (u > 0): the KKT conditions give
  ``log(w_i/u_i) = −τ − μ_g(i)`` inside the bounds, i.e. ``w_i = u_i·s·s_g(i)`` with a global
  scale s = e^−τ and a cluster scale s_g = e^−μ_g <= 1; a = 0, c = u, t = −s·s_g.

Algorithm:

1. KKT: ``w_i = clip(a_i − c_i·max(τ, t_g(i)*), lo_i, hi_i)`` with one budget multiplier τ and
   one threshold ``t_g*`` per cluster, above τ only where the cluster sits at C.
2. Let ``f_g(t) = Σ_{i in g} clip(a_i − c_i·t, lo_i, hi_i)`` (continuous, non-increasing,
   piecewise linear). Per cluster, solve ``f_g(t_g*) = C`` (``t_g* = −inf`` when the cluster
   can never reach C). Then cluster g contributes ``min(C, f_g(τ)) = f_g(max(τ, t_g*))``.
3. Solve ``F(τ) = Σ_g f_g(max(τ, t_g*)) = 1`` for τ.
4. Steps 2 and 3 are 1-D monotone root problems on piecewise-linear functions whose slope
   changes only at the knots ``(a_i − hi_i)/c_i``, ``(a_i − lo_i)/c_i`` and the floors
   ``t_g*``. A binary search over the sorted knots, vectorised over all clusters at once
   (``np.bincount`` over cluster codes, no per-atom loops; ~log2(3n) evaluations), finds the
   linear piece holding the root; on it the active set is known and the root is computed in
   closed form ``t = (Σ_active a + Σ_at_hi hi + Σ_at_lo lo − target) / Σ_active c``. The
   result is exact to rounding (~1e-15), not to a bisection tolerance.
5. ``w = clip(a − c·max(τ, t_g*), lo, hi)``. For the relative-entropy projection every atom
   below its max keeps ``w_i / u_i`` equal to that of every other such atom of its cluster,
   and equal across all clusters below C: HRP's ratios inside every unconstrained group
   survive, and no atom goes to 0 (u > 0, lo >= 0).

Emptiness: W is empty when ``Σ lo > 1``, when some cluster has ``Σ lo_g > C``, or when the
capacity ``Σ_g min(C, Σ hi_g) < 1`` (e.g. ``n·hi < 1``); the constructor raises ``ValueError``.
A slack of 1e-12 absorbs rounding in boundary cases such as ``hi = 1/n`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["FEASIBILITY_SLACK", "CappedSet"]

FEASIBILITY_SLACK = 1e-12


def _clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """np.clip for lo <= hi, at a third of its cost on portfolio-sized arrays."""
    return np.minimum(np.maximum(x, lo), hi)


def _group_sums(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=n_groups)


@dataclass(frozen=True, eq=False)
class CappedSet:
    """The long-only capped set W (see module docstring) for one universe of atoms.

    lo, hi: arrays (n,), per-atom weight bounds in [0, 1] (fraction of capital).
    codes: int array (n,), cluster code 0..G-1 of each atom.
    cluster_cap: float in (0, 1], the cap C on every cluster's total weight.
    labels: the original cluster label of each code (for reports), length G.
    """

    lo: np.ndarray
    hi: np.ndarray
    codes: np.ndarray
    cluster_cap: float
    labels: tuple = ()
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        n_atoms: int,
        clusters: Sequence | np.ndarray | pd.Series | None,
        *,
        cluster_cap: float,
        atom_max: float,
        atom_min: float = 0.0,
    ) -> CappedSet:
        """Validate caps and clusters and return the set; ``ValueError`` when W is empty.

        clusters: one label per atom (array-like of length n_atoms) or None (no cluster
        constraint; then cluster_cap must be 1.0).
        """
        if n_atoms < 1:
            raise ValueError("capped set needs at least one atom; got 0")
        for name, value in (("cluster_cap", cluster_cap), ("atom_max", atom_max)):
            if not (np.isfinite(value) and 0.0 < value <= 1.0):
                raise ValueError(f"{name} must be in (0, 1]; got {value!r}")
        if not (np.isfinite(atom_min) and 0.0 <= atom_min <= atom_max):
            raise ValueError(f"atom_min must be in [0, atom_max={atom_max}]; got {atom_min!r}")
        if clusters is None:
            if cluster_cap < 1.0:
                raise ValueError(
                    f"cluster_cap={cluster_cap} given without clusters; pass one label per atom"
                )
            labels_arr = np.zeros(n_atoms, dtype=np.int64)
        else:
            labels_arr = np.asarray(clusters)
            if labels_arr.shape != (n_atoms,):
                raise ValueError(
                    f"clusters must have one label per atom ({n_atoms}); got shape "
                    f"{labels_arr.shape}"
                )
            if labels_arr.dtype.kind == "f" and not np.isfinite(labels_arr).all():
                raise ValueError("clusters contain NaN labels; give every atom a cluster")
        uniq, codes = np.unique(labels_arr, return_inverse=True)
        lo = np.full(n_atoms, float(atom_min))
        hi = np.full(n_atoms, float(atom_max))
        out = cls(
            lo=lo,
            hi=hi,
            codes=codes.astype(np.int64),
            cluster_cap=float(cluster_cap),
            labels=tuple(x.item() if hasattr(x, "item") else x for x in uniq),
        )
        out._check_nonempty()
        return out

    @property
    def n_atoms(self) -> int:
        return int(self.lo.size)

    @property
    def n_groups(self) -> int:
        return len(self.labels) if self.labels else int(self.codes.max()) + 1

    def _check_nonempty(self) -> None:
        g, c = self.n_groups, self.cluster_cap
        lo_g = _group_sums(self.lo, self.codes, g)
        capacity = self.capacity
        if self.lo.sum() > 1.0 + FEASIBILITY_SLACK:
            raise ValueError(
                f"capped set is empty: n_atoms*atom_min = {self.lo.sum():.6g} > 1; lower atom_min"
            )
        if (lo_g > c + FEASIBILITY_SLACK).any():
            raise ValueError(
                f"capped set is empty: a cluster's minimum weight {lo_g.max():.6g} exceeds "
                f"cluster_cap {c}; lower atom_min or raise the cap"
            )
        if capacity < 1.0 - FEASIBILITY_SLACK:
            raise ValueError(
                f"capped set is empty: the most the atoms can hold is {capacity:.6g} < 1 "
                f"(n_atoms={self.n_atoms}, atom_max={self.hi.max():.6g}, "
                f"cluster_cap={c}, n_clusters={g}); raise atom_max or cluster_cap"
            )

    # ------------------------------------------------------------------ membership
    def violation(self, w: np.ndarray) -> float:
        """Largest violation of W by w (0 inside): budget, bounds and cluster caps."""
        w = np.asarray(w, dtype=float)
        cluster = _group_sums(w, self.codes, self.n_groups) - self.cluster_cap
        return float(
            max(
                abs(w.sum() - 1.0),
                float(np.max(self.lo - w, initial=0.0)),
                float(np.max(w - self.hi, initial=0.0)),
                float(np.max(cluster, initial=0.0)),
            )
        )

    def binding(self, w: np.ndarray, tol: float = 1e-9) -> dict:
        """Which bounds bind at w: JSON-serialisable counts and cluster labels."""
        sums = _group_sums(w, self.codes, self.n_groups)
        at = (sums >= self.cluster_cap - tol) & (self.cluster_cap < 1.0)
        at_cap = [self.labels[k] for k in np.flatnonzero(at)]
        return {
            "atoms_at_max": int(np.sum(w >= self.hi - tol)),
            "atoms_at_min": int(np.sum(w <= self.lo + tol)),
            "clusters_at_cap": [_jsonable(x) for x in at_cap],
        }

    def argmax_linear(self, v: np.ndarray) -> np.ndarray:
        """A maximiser of vᵀw over W (n,): greedy in order of decreasing v (ties by index).

        Above lo, the atoms' room (hi − lo), the clusters' room (C − Σ_g lo) and the budget
        (1 − Σ lo) are capacities of a laminar family, so W − lo is the base polytope of a
        (truncated) polymatroid, on which the greedy order is optimal (Edmonds 1970) — the
        LP's answer at the cost of one sort.
        """
        v = self._checked(v, "argmax_linear")
        w = self.lo.copy()
        room = self.cluster_cap - _group_sums(self.lo, self.codes, self.n_groups)
        budget = 1.0 - float(self.lo.sum())
        for i in np.argsort(-v, kind="stable"):
            if budget <= 0.0:
                break
            g = self.codes[i]
            take = max(0.0, min(self.hi[i] - self.lo[i], room[g], budget))
            w[i] += take
            room[g] -= take
            budget -= take
        return w

    # ------------------------------------------------------------------ LP data
    def inequality_matrix(self) -> tuple[sparse.csc_matrix, np.ndarray]:
        """Cluster rows of ``A w <= b``: A (G, n) 0/1 sparse, b (G,) = C. Cached."""
        if "cluster_A" not in self._cache:
            n = self.n_atoms
            a = sparse.csc_matrix(
                (np.ones(n), (self.codes, np.arange(n))), shape=(self.n_groups, n)
            )
            self._cache["cluster_A"] = (a, np.full(self.n_groups, self.cluster_cap))
        return self._cache["cluster_A"]

    # ------------------------------------------------------------------ projection
    @property
    def capacity(self) -> float:
        """The most the atoms can hold: Σ_g min(C, Σ_{i in g} hi_i) (>= 1 when W is not empty)."""
        hi_g = _group_sums(self.hi, self.codes, self.n_groups)
        return float(np.minimum(self.cluster_cap, hi_g).sum())

    def _root(
        self,
        a: np.ndarray,
        c: np.ndarray,
        codes: np.ndarray,
        n_groups: int,
        target: np.ndarray,
        floor: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per group g solve Σ_{i in g} clip(a_i − c_i·max(t_g, floor_i), lo_i, hi_i) = target_g.

        Binary search over the knots, vectorised over all groups at once, then the closed-form
        root on the piece found (step 4). Assumes Σ lo <= target <= Σ hi per group (checked
        by callers).
        """
        lo, hi = self.lo, self.hi
        flo = np.full(a.size, -np.inf) if floor is None else floor
        knots = np.unique(np.concatenate([(a - hi) / c, (a - lo) / c, flo[np.isfinite(flo)]]))

        def total(t: np.ndarray) -> np.ndarray:
            x = _clip(a - c * np.maximum(t[codes], flo), lo, hi)
            return _group_sums(x, codes, n_groups)

        # Invariant: total >= target at knot `left`, < target at knot `right` (non-increasing
        # totals; positions -1 and K stand for -inf and +inf).
        left = np.full(n_groups, -1)
        right = np.full(n_groups, knots.size)
        while np.any(right - left > 1):
            mid = (left + right) // 2
            open_ = right - left > 1
            above = total(knots[mid]) >= target  # closed groups' mid may be -1: masked
            left = np.where(open_ & above, mid, left)
            right = np.where(open_ & ~above, mid, right)
        t_left = np.where(left >= 0, knots[np.maximum(left, 0)], knots[0] - 1.0)
        t_right = np.where(
            right < knots.size, knots[np.minimum(right, knots.size - 1)], knots[-1] + 1.0
        )
        t = 0.5 * (t_left + t_right)
        # Polish on the linear piece containing t: atoms floored by a capped cluster (flo > t)
        # and atoms clipped at a bound are constant there; the rest move with slope c_i in t.
        x = a - c * np.maximum(t[codes], flo)
        free = (flo < t[codes]) & (x > lo) & (x < hi)
        const = np.where(free, 0.0, _clip(x, lo, hi))
        c_free = _group_sums(np.where(free, c, 0.0), codes, n_groups)
        a_free = _group_sums(np.where(free, a, 0.0), codes, n_groups)
        s_const = _group_sums(const, codes, n_groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            exact = (a_free + s_const - target) / c_free
        return np.where(c_free > 0, exact, t)

    def _solve(self, a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Steps 2-5 for x(t) = a − c·t: the point of W on that family (see module docstring)."""
        g, cap, codes = self.n_groups, self.cluster_cap, self.codes
        hi_g = _group_sums(self.hi, codes, g)
        can_cap = hi_g > cap
        # Step 2: per-cluster threshold t_g* at which the cluster holds exactly C.
        t_star = np.full(g, -np.inf)
        if can_cap.any():
            roots = self._root(a, c, codes, g, np.full(g, cap))
            t_star = np.where(can_cap, roots, -np.inf)
        # Step 3: one global τ; F is one "group" over all atoms, floors = t_g* per atom.
        floor = t_star[codes]
        one = np.zeros(a.size, dtype=np.int64)
        tau = self._root(a, c, one, 1, np.ones(1), floor=floor)[0]
        # Clusters whose t_g* lies above τ are pinned at C; their atoms use t_g*.
        return _clip(a - c * np.maximum(tau, floor), self.lo, self.hi)

    def _checked(self, v: np.ndarray, name: str) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        if v.shape != (self.n_atoms,):
            raise ValueError(f"{name} expects shape ({self.n_atoms},); got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} got non-finite values; nothing to project")
        return v

    def project(self, v: np.ndarray) -> np.ndarray:
        """Exact Euclidean projection of v (n,) onto W; returns w (n,) in W to ~1e-15."""
        v = self._checked(v, "project")
        return self._solve(v, np.ones(v.size))

    def project_kl(self, u: np.ndarray) -> np.ndarray:
        """The point of W closest to u (n,), u > 0, in relative entropy: w_i = clip(u_i·s·s_g(i)).

        Weights are only scaled (one factor per cluster at C, one for all the others), never
        shifted; u need not sum to 1. Returns w (n,) in W to ~1e-15.
        """
        u = self._checked(u, "project_kl")
        if not np.all(u > 0):
            raise ValueError(
                f"project_kl needs positive weights to scale; got min {float(u.min()):.3g}"
            )
        # t = −(scale): x_i = u_i·scale is a − c·t with a = 0, c = u.
        return self._solve(np.zeros(u.size), u)


def _jsonable(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    return x if isinstance(x, int | float | str | bool) else str(x)
