"""Correlation clustering: structure recovery, robustness, deterministic labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from portflow.alpha.cluster import cluster_returns, correlation_distance


def blocks(seed: int = 0, n_blocks: int = 3, per_block: int = 4, t: int = 250) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((t, n_blocks)) * 0.02
    cols = {}
    for b in range(n_blocks):
        for m in range(per_block):
            cols[f"B{b}_{m}"] = factors[:, b] + rng.standard_normal(t) * 0.004
    idx = pd.date_range("2024-01-01", periods=t, freq="D", tz="UTC")
    return pd.DataFrame(cols, index=idx)


def test_recovers_blocks_with_stable_labels():
    frame = blocks()
    res = cluster_returns(frame, threshold=0.5)
    assert res.n_clusters == 3
    assert sorted(res.labels.unique()) == [0, 1, 2]
    for b in range(3):
        assert res.labels[[f"B{b}_{m}" for m in range(4)]].nunique() == 1
    # Labels follow the first member in key order: B0 → 0, B1 → 1, B2 → 2.
    assert [res.labels[f"B{b}_0"] for b in range(3)] == [0, 1, 2]
    shuffled = frame[list(np.random.default_rng(1).permutation(frame.columns))]
    again = cluster_returns(shuffled, threshold=0.5)
    assert again.labels.equals(res.labels)
    json.dumps(res.to_dict(), allow_nan=False)


def test_distance_matches_formula():
    frame = blocks(seed=2)
    dist, zero = correlation_distance(frame.to_numpy())
    rho = np.corrcoef(frame.to_numpy(), rowvar=False)
    want = np.sqrt(np.clip(0.5 * (1 - rho), 0, None))
    np.fill_diagonal(want, 0)
    np.testing.assert_allclose(dist, want, atol=1e-12)
    assert not zero.any()


def test_zero_variance_and_duplicate_columns_are_safe():
    frame = blocks(seed=3)
    frame["DUP"] = frame["B0_0"]
    frame["DUP2"] = frame["B0_0"] * 3.0  # ρ = 1 exactly up to rounding
    frame["FLAT"] = 0.0
    frame["FLAT2"] = 0.001
    res = cluster_returns(frame, threshold=0.5)
    assert set(res.zero_variance) == {"FLAT", "FLAT2"}
    assert res.labels["DUP"] == res.labels["B0_0"] == res.labels["DUP2"]
    assert np.all(np.isfinite(res.linkage))
    assert res.labels.min() == 0 and res.labels.max() == res.n_clusters - 1


def test_recut_with_maxclust():
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.standard_normal((200, 40)), columns=[f"A{i:02d}" for i in range(40)])
    loose = cluster_returns(frame, threshold=0.01, max_clusters=25)
    assert loose.cut == "maxclust" and loose.n_clusters <= 25
    tight = cluster_returns(frame, threshold=100.0, max_clusters=25)
    assert tight.cut == "threshold" and tight.n_clusters == 1


def test_small_and_invalid_inputs():
    one = cluster_returns(pd.DataFrame({"X": [0.01, -0.02, 0.03]}))
    assert one.n_clusters == 1 and one.labels["X"] == 0
    empty = cluster_returns(pd.DataFrame(index=range(3)))
    assert empty.n_clusters == 0
    with pytest.raises(ValueError, match="finite"):
        cluster_returns(pd.DataFrame({"X": [0.01, np.nan, 0.0], "Y": [0.0, 0.1, 0.2]}))
    with pytest.raises(ValueError):
        cluster_returns(blocks(), max_clusters=0)
