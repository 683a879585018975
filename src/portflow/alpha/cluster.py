"""Hierarchical correlation clusters of a returns window (selection §6.2 and analysis §6.4).

Algorithm (``cluster_returns``)
1. Order the columns by key (``str`` sort) so the result does not depend on the input order.
2. Pearson correlation ρ of the whole window (every bar, no zero-as-missing masking, no short
   look-backs). A zero-variance column has no correlation: it gets ρ = 0 with every other
   column (and 1 with itself) and is listed in ``zero_variance``.
3. Distance d = √(½(1 − ρ)) with ρ clipped to [−1, 1] and ½(1 − ρ) clipped at 0, so ρ ≈ 1
   gives d = 0 instead of NaN. d is half the Euclidean distance between the standardised
   series (‖zᵢ − zⱼ‖² = 2(1 − ρ)), so Ward's criterion is well posed on it.
4. Ward linkage (scipy) on the condensed distance matrix.
5. Cut the tree at height ``threshold`` (``fcluster`` criterion "distance"); if that yields more
   than ``max_clusters`` clusters, re-cut with criterion "maxclust" = ``max_clusters``.
6. Relabel 0..k−1 in order of each cluster's first member in key order: deterministic and
   stable under column permutations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

__all__ = ["ClusterResult", "cluster_returns", "correlation_distance"]


@dataclass(frozen=True)
class ClusterResult:
    """Cluster labels of a returns window.

    labels: Series indexed by key (sorted), values int 0..n_clusters−1.
    cut: "threshold" or "maxclust" (the re-cut when the threshold gave too many clusters).
    linkage: scipy linkage matrix ``(N−1, 4)`` over the key-sorted columns (empty for N < 2).
    """

    labels: pd.Series
    n_clusters: int
    threshold: float
    max_clusters: int
    cut: str
    zero_variance: tuple[str, ...] = ()
    linkage: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))

    def members(self) -> dict[int, list[str]]:
        """Cluster id → member keys (key order)."""
        out: dict[int, list[str]] = {c: [] for c in range(self.n_clusters)}
        for key, c in self.labels.items():
            out[int(c)].append(str(key))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "threshold": self.threshold,
            "max_clusters": self.max_clusters,
            "cut": self.cut,
            "zero_variance": list(self.zero_variance),
            "labels": {str(k): int(v) for k, v in self.labels.items()},
            "clusters": {str(c): m for c, m in self.members().items()},
        }


def correlation_distance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance matrix √(½(1 − ρ)) of the columns of ``values`` ``(T, N)``, shape ``(N, N)``.

    Returns ``(distance, zero_variance_mask)``; zero-variance columns get ρ = 0 off-diagonal.
    """
    x = np.asarray(values, dtype=np.float64)
    d = x - x.mean(axis=0)
    norm = np.sqrt((d * d).sum(axis=0))
    scale = np.maximum(np.abs(x).max(axis=0, initial=0.0), 1e-300) * np.sqrt(max(x.shape[0], 1))
    zero = norm <= 1e-12 * scale
    # A zero column in z makes ρ = 0 against everything, including other flat columns.
    z = np.where(zero, 0.0, d / np.where(zero, 1.0, norm))
    rho = np.clip(z.T @ z, -1.0, 1.0)
    np.fill_diagonal(rho, 1.0)
    dist = np.sqrt(np.clip(0.5 * (1.0 - rho), 0.0, None))
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    return dist, zero


def cluster_returns(
    returns: pd.DataFrame, threshold: float = 0.5, max_clusters: int = 25
) -> ClusterResult:
    """Cluster the columns of ``returns`` (index dates, columns keys; dense, finite).

    Returns deterministic labels 0..k−1 (see module docstring), k ≤ ``max_clusters``.
    """
    keys = sorted(returns.columns, key=str)
    ordered = returns if list(returns.columns) == keys else returns[keys]
    return cluster_matrix(ordered.to_numpy(dtype=np.float64), keys, threshold, max_clusters)


def cluster_matrix(
    values: np.ndarray, keys: list, threshold: float = 0.5, max_clusters: int = 25
) -> ClusterResult:
    """:func:`cluster_returns` on a matrix ``(T, N)`` whose columns are `keys`, already in
    key order (step 1 done by the caller)."""
    if max_clusters < 1:
        raise ValueError(f"max_clusters must be >= 1, got {max_clusters}")
    if not threshold > 0:
        raise ValueError(f"cluster threshold must be > 0, got {threshold}")
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("cluster_returns needs a dense, finite returns window (found NaN/inf)")
    n = len(keys)
    if n == 0:
        return ClusterResult(pd.Series([], dtype=np.int64), 0, threshold, max_clusters, "threshold")
    dist, zero = correlation_distance(values)
    zero_keys = tuple(str(k) for k, z in zip(keys, zero, strict=True) if z)
    if n == 1:
        labels = pd.Series([0], index=pd.Index(keys), dtype=np.int64)
        return ClusterResult(labels, 1, threshold, max_clusters, "threshold", zero_keys)
    z_link = linkage(squareform(dist, checks=False), method="ward")
    raw = fcluster(z_link, t=threshold, criterion="distance")
    cut = "threshold"
    if len(np.unique(raw)) > max_clusters:
        raw = fcluster(z_link, t=max_clusters, criterion="maxclust")
        cut = "maxclust"
    remap: dict[int, int] = {}
    for lab in raw.tolist():
        remap.setdefault(lab, len(remap))
    labels = pd.Series(np.array([remap[lab] for lab in raw.tolist()], dtype=np.int64),
                       index=pd.Index(keys))
    return ClusterResult(
        labels, len(remap), threshold, max_clusters, cut, zero_keys, np.asarray(z_link)
    )
