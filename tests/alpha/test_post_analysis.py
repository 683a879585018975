"""Post-analysis (SPEC §6.8) on small seeded windows built in code: the numbers behind the
figures by their relations, the figures as real, non-blank, deterministic PNGs."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from portflow.alpha import post_analysis as pa
from portflow.alpha.cluster import correlation_distance

METHODS = ("hrp", "min_var", "equal_weight")


def ink(png: bytes) -> float:
    """Share of pixels that are not (near) white."""
    hist = Image.open(io.BytesIO(png)).convert("L").histogram()
    return 1.0 - sum(hist[246:]) / sum(hist)


def blocks(n_bars: int = 240, sizes: tuple[int, ...] = (4, 3, 3), seed: int = 3,
           swap_at: int | None = None) -> pd.DataFrame:
    """Returns of atoms in factor blocks (ρ ≈ 0.8 inside a block, ≈ 0 across); with `swap_at`,
    the first atoms of blocks 0 and 1 trade places from that bar on."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(0, 0.02, (n_bars, len(sizes)))
    member = [b for b, k in enumerate(sizes) for _ in range(k)]
    cols = {}
    for i, b in enumerate(member):
        f = factors[:, b].copy()
        if swap_at is not None and i in (0, sizes[0]):
            other = 1 - b
            f[swap_at:] = factors[swap_at:, other]
        cols[f"A{i:02d}:x:LONG"] = f + rng.normal(0, 0.01, n_bars)
    idx = pd.date_range("2025-01-01", periods=n_bars, freq="D", tz="UTC")
    return pd.DataFrame(cols, index=idx)


def weights_of(syn: pd.DataFrame, short: bool = False) -> pd.DataFrame:
    rows = []
    n = syn.shape[1]
    for k, m in enumerate(METHODS):
        raw = np.arange(1, n + 1, dtype=float) ** k
        w = raw / raw.sum()
        for i, atom in enumerate(syn.columns):
            rows.append({"method": m, "symbol": atom.split(":")[0], "atom": atom,
                         "direction": "SHORT" if short else "LONG", "cluster": i % 3,
                         "weight": -w[i] if short else w[i]})
    return pd.DataFrame(rows)


def test_classical_mds_recovers_a_planar_configuration() -> None:
    pts = np.random.default_rng(1).normal(size=(9, 2))
    dist = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    coords, kept = pa.classical_mds(dist)
    got = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(got, dist, atol=1e-9)
    assert kept == pytest.approx(1.0)
    # each axis's sign is fixed: its largest |coordinate| is positive
    assert all(coords[np.argmax(np.abs(coords[:, k])), k] > 0 for k in range(2))


def test_factor_map_puts_a_block_closer_together_than_apart() -> None:
    syn = blocks()
    dist, _ = correlation_distance(syn.to_numpy())
    coords, _ = pa.classical_mds(dist)
    d = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))
    assert d[0, 1:4].max() < d[0, 4:].min()


@pytest.mark.parametrize("short", [False, True])
def test_in_sample_drift_relations(short: bool) -> None:
    syn = blocks()
    w = weights_of(syn, short)
    drift = pa.in_sample_drift(syn, w, test_bars=14)
    assert list(drift.columns) == pa.DRIFT_COLUMNS
    assert len(drift) == len(w)
    for _, g in drift.groupby("method"):
        assert g["drifted"].abs().sum() == pytest.approx(1.0)  # still fully invested
        assert (np.sign(g["drifted"]) == np.sign(g["target"])).all()  # a short stays short
    assert (drift["rebalance_at"] == syn.index[-15]).all() and (drift["as_of"] == syn.index[-1]).all()
    # an atom whose synthetic returns were higher over the tail gains weight
    tail = (1 + syn.iloc[-14:]).prod()
    g = drift[drift["method"] == "equal_weight"].set_index("atom")
    best, worst = tail.idxmax(), tail.idxmin()
    assert abs(g.at[best, "drifted"]) > abs(g.at[best, "target"])
    assert abs(g.at[worst, "drifted"]) < abs(g.at[worst, "target"])
    # flat returns: nothing drifts
    flat = pa.in_sample_drift(syn * 0.0, w, test_bars=14)
    np.testing.assert_allclose(flat["drifted"], flat["target"], atol=1e-15)
    with pytest.raises(ValueError, match="test_bars"):
        pa.in_sample_drift(syn, w, test_bars=len(syn))


def test_cluster_stability_is_one_for_stable_blocks_and_drops_when_atoms_move() -> None:
    stable = pa.cluster_stability(blocks(), 0.5, 25)
    assert stable.ari_halves == pytest.approx(1.0)
    assert stable.n_clusters_first == stable.n_clusters_second == 3
    assert int(stable.contingency.to_numpy().sum()) == 10
    moved = pa.cluster_stability(blocks(swap_at=120), 0.5, 25)
    assert moved.ari_halves < 0.8
    assert moved.first[1] < moved.second[0]


def test_analyze_makes_four_real_deterministic_pngs() -> None:
    syn = blocks()
    w = weights_of(syn)
    labels = {a: int(c) for a, c in zip(syn.columns, [0] * 4 + [1] * 3 + [2] * 3, strict=True)}
    inputs = pa.PostInputs(syn, labels, w, "hrp", 0.5, 25, 14)
    out = pa.analyze(inputs)
    assert set(out.figures) == set(pa.FIGURES)
    for name, png in out.figures.items():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) >= 5000, name
        assert ink(png) > 0.02, name
        assert b"Software" not in png[:2000], name  # no time-varying metadata
    assert out.summary["drift"]["source"] == "in-sample"
    assert out.summary["stability"]["ari_halves"] == pytest.approx(1.0)
    again = pa.analyze(inputs)
    assert all(again.figures[k] == v for k, v in out.figures.items())
    # validation's drift table, when given, is what the monitor shows
    drift = pa.in_sample_drift(syn, w, 30)
    val = pa.analyze(pa.PostInputs(syn, labels, w, "hrp", 0.5, 25, 14, drift=drift))
    assert val.summary["drift"]["source"] == "validation"
    assert val.summary["drift"]["rebalance_at"] == f"{syn.index[-31]:%Y-%m-%d}"
    assert val.figures["plot_drift_monitor"] != out.figures["plot_drift_monitor"]


def test_symbols_are_text_not_mathtext() -> None:
    """A symbol that is a broken formula (matplotlib raises on it by default) still draws."""
    syn = blocks(sizes=(2, 2))
    syn.columns = ["$\\frac$:x:LONG", "B_1^2:x:LONG", "C:x:LONG", "D:x:LONG"]
    w = weights_of(syn)
    labels = dict(zip(syn.columns, [0, 0, 1, 1], strict=True))
    out = pa.analyze(pa.PostInputs(syn, labels, w, "hrp", 0.5, 25, 14))
    assert len(out.figures) == 4
