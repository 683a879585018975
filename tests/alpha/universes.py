"""Seeded random universes for the optimiser's property test and ``benchmarks/compare_methods.py``.

Crypto-like factor returns: 2-5 factors with Student-t(4) shocks (fat tails), sparse positive
loadings, idiosyncratic vol of 1-5 % a bar and a positive drift (the winners of a long
selection have momentum), clustered as the pipeline clusters atoms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from portflow.alpha.cluster import cluster_returns


def crypto_universe(
    seed: int, atoms: tuple[int, int] = (15, 25), bars: tuple[int, int] = (180, 365)
) -> tuple[pd.DataFrame, np.ndarray]:
    """Returns (T, n) with UTC dates and atom ids, and one cluster label per atom.

    atoms, bars: inclusive ranges the sizes are drawn from.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(atoms[0], atoms[1] + 1))
    t = int(rng.integers(bars[0], bars[1] + 1))
    k = int(rng.integers(2, 6))
    f = rng.standard_t(4, size=(t, k)) * rng.uniform(0.01, 0.03, k)
    b = rng.normal(0.7, 0.5, size=(k, n)) * (rng.random((k, n)) < 0.7)
    eps = rng.standard_t(4, size=(t, n)) * rng.uniform(0.01, 0.05, n)
    x = f @ b + eps + rng.normal(0.002, 0.002, n)
    idx = pd.date_range("2024-01-01", periods=t, tz="UTC")
    returns = pd.DataFrame(x, index=idx, columns=[f"a{i:02d}" for i in range(n)])
    labels = cluster_returns(returns, 0.5, 25).labels.reindex(returns.columns).to_numpy()
    return returns, labels


def wide_universe(seed: int) -> tuple[pd.DataFrame, np.ndarray, float, float, float]:
    """A harsher draw for stress tests: 3-60 atoms, 20-400 bars, Student-t(3) shocks,
    loadings of either sign, occasionally a duplicated atom; clusters cut at 0.3-0.8 and
    caps from a random regime cap, max_weight and cap_headroom.

    Returns (returns, labels, regime_cap, max_weight, cap_headroom).
    """
    rng = np.random.default_rng(10_000 + seed)
    n, t, k = int(rng.integers(3, 60)), int(rng.integers(20, 400)), int(rng.integers(1, 6))
    f = rng.standard_t(3, size=(t, k)) * rng.uniform(0.005, 0.05, k)
    b = rng.normal(0.5, 0.8, size=(k, n))
    eps = rng.standard_t(3, size=(t, n)) * rng.uniform(0.001, 0.08, n)
    x = f @ b + eps + rng.normal(0.001, 0.003, n)
    if rng.random() < 0.1:
        x[:, 1 % n] = x[:, 0] * 2
    idx = pd.date_range("2024-01-01", periods=t, tz="UTC")
    returns = pd.DataFrame(x, index=idx, columns=[f"a{i:02d}" for i in range(n)])
    threshold = float(rng.choice([0.3, 0.5, 0.8]))
    labels = cluster_returns(returns, threshold, 25).labels.reindex(returns.columns).to_numpy()
    regime = float(rng.choice([0.25, 0.2, 0.15, 0.1, 0.05]))
    return (
        returns,
        labels,
        regime,
        float(rng.uniform(0.01, 0.5)),
        float(rng.choice([1.0, 1.2, 1.5, 3.0])),
    )
