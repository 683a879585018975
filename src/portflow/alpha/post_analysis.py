"""Post-analysis of a production run (SPEC §6.8): cluster map, factor map, drift monitor and
cluster stability, as PNG figures plus the numbers behind them.

Pure functions of :class:`PostInputs` (the atoms' synthetic returns — the optimiser's window —,
their cluster labels, the weights table, the clustering rule, `test_bars`, and validation's drift
table when validation ran); :func:`analyze` returns the figures and a summary the runner saves.

1. Correlation ρ of the synthetic returns (Pearson over the whole window) and the distance
   d = √(½(1 − ρ)) (:func:`portflow.alpha.cluster.correlation_distance`, the clustering's own).
2. Cluster map: Ward linkage on d with optimal leaf ordering; ρ drawn in leaf order under the
   dendrogram. A cluster cut from the tree is a subtree, hence a contiguous block: each is boxed.
3. Factor map: classical MDS of d — B = −½·J·D²·J (J the centring matrix), the two largest
   eigenpairs, coordinates = eigenvector·√eigenvalue, each axis's sign fixed so that its largest
   |coordinate| is positive (deterministic). The share of the positive eigenvalues' sum the two
   axes keep is printed on the map. Points coloured by cluster, sized by the primary method's
   |weight|, labelled by symbol.
4. Drift monitor: per atom, the target and the drifted signed weight of the primary method, and
   per method the total drift Σ|drifted − target| (the turnover a rebalance now would need).
   Source: validation's drift table (out-of-sample, since its last rebalance) when validation
   ran; otherwise in-sample: the final weights held without trading over the window's last
   `test_bars` bars, in synthetic space as the optimiser and the simulator see them:
   drifted_i = s_i·w_i·Π(1 + r_i) / Σ_j w_j·Π(1 + r_j) (w ≥ 0 synthetic weights, s_i = −1 for a
   short), labelled "in-sample" wherever it appears.
5. Cluster stability: the window split into halves (the first ⌊T/2⌋ bars and the rest), each
   clustered by the production rule (:func:`portflow.alpha.cluster.cluster_returns`, same
   threshold and maximum); the adjusted Rand index (ARI: 1 = the same partition, ≈ 0 = chance)
   between the halves and of each half against the whole window, and the contingency table of
   the halves' labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import dendrogram, leaves_list, linkage, optimal_leaf_ordering
from scipy.spatial.distance import squareform

from portflow.alpha import figures
from portflow.alpha.cluster import cluster_returns, correlation_distance

DRIFT_COLUMNS = ["method", "atom", "symbol", "direction", "cluster", "target", "drifted",
                 "rebalance_at", "as_of"]
FIGURES = ("plot_cluster_map", "plot_factor_map", "plot_drift_monitor", "plot_cluster_stability")


@dataclass(frozen=True)
class PostInputs:
    """synthetic: index UTC dates, columns atom ids (dense); labels: atom → cluster; weights:
    the weights.csv table; drift: validation's drift table (DRIFT_COLUMNS) or None."""

    synthetic: pd.DataFrame
    labels: Mapping[str, int]
    weights: pd.DataFrame
    primary_method: str
    cluster_threshold: float
    max_clusters: int
    test_bars: int
    drift: pd.DataFrame | None = None


@dataclass(frozen=True)
class Stability:
    """Step 5. ari_*: adjusted Rand indices; contingency: rows first-half clusters, columns
    second-half clusters, values atom counts."""

    ari_halves: float
    ari_first_vs_full: float
    ari_second_vs_full: float
    n_clusters_first: int
    n_clusters_second: int
    n_clusters_full: int
    first: tuple[str, str]
    second: tuple[str, str]
    contingency: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {"ari_halves": self.ari_halves, "ari_first_vs_full": self.ari_first_vs_full,
                "ari_second_vs_full": self.ari_second_vs_full,
                "n_clusters": {"first": self.n_clusters_first, "second": self.n_clusters_second,
                               "full": self.n_clusters_full},
                "first_half": list(self.first), "second_half": list(self.second)}


@dataclass(frozen=True)
class PostAnalysis:
    """figures: artifact name (FIGURES) → PNG bytes; summary: post_analysis.json."""

    figures: Mapping[str, bytes]
    summary: Mapping[str, Any]


# -- the numbers ------------------------------------------------------------------------------


def leaf_order(synthetic: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Step 2: the atoms in optimal-leaf-ordered Ward order, and the linkage (over the
    key-sorted columns)."""
    keys = sorted(synthetic.columns, key=str)
    if len(keys) < 3:
        return keys, np.empty((0, 4))
    dist, _ = correlation_distance(synthetic[keys].to_numpy(np.float64))
    condensed = squareform(dist, checks=False)
    z = optimal_leaf_ordering(linkage(condensed, method="ward"), condensed)
    return [keys[i] for i in leaves_list(z)], z


def classical_mds(dist: np.ndarray) -> tuple[np.ndarray, float]:
    """Step 3: 2-D coordinates ``(N, 2)`` of a distance matrix and the share of the positive
    eigenvalues' sum they keep."""
    n = dist.shape[0]
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (dist**2) @ j
    vals, vecs = np.linalg.eigh(0.5 * (b + b.T))
    order = np.argsort(vals)[::-1][:2]
    top = np.clip(vals[order], 0.0, None)
    coords = vecs[:, order] * np.sqrt(top)
    for k in range(coords.shape[1]):
        if coords[np.argmax(np.abs(coords[:, k])), k] < 0:
            coords[:, k] = -coords[:, k]
    positive = float(vals[vals > 0].sum())
    return coords, (float(top.sum()) / positive if positive > 0 else math.nan)


def in_sample_drift(synthetic: pd.DataFrame, weights: pd.DataFrame, test_bars: int
                    ) -> pd.DataFrame:
    """Step 4 without validation: each method's final weights drifted over the last
    `test_bars` bars of the window (DRIFT_COLUMNS, one row per (method, atom))."""
    if not 1 <= test_bars < len(synthetic):
        raise ValueError(f"test_bars must be in [1, {len(synthetic) - 1}], got {test_bars}")
    tail = synthetic.iloc[-test_bars:]
    growth = (1.0 + tail).prod(axis=0)
    rebalance_at, as_of = synthetic.index[-test_bars - 1], synthetic.index[-1]
    frames = []
    for method, g in weights.groupby("method", sort=False):
        w = g["weight"].abs().to_numpy(np.float64)
        grown = w * growth.reindex(g["atom"]).to_numpy(np.float64)
        sign = np.where(g["direction"].to_numpy() == "SHORT", -1.0, 1.0)
        frames.append(pd.DataFrame({
            "method": method, "atom": g["atom"].to_numpy(), "symbol": g["symbol"].to_numpy(),
            "direction": g["direction"].to_numpy(), "cluster": g["cluster"].to_numpy(),
            "target": g["weight"].to_numpy(np.float64),
            "drifted": sign * grown / grown.sum(),
            "rebalance_at": rebalance_at, "as_of": as_of,
        }))
    return pd.concat(frames, ignore_index=True)[DRIFT_COLUMNS]


def drift_totals(drift: pd.DataFrame) -> dict[str, float]:
    """method → Σ|drifted − target| (in the drift table's method order)."""
    gap = (drift["drifted"] - drift["target"]).abs()
    return {str(m): float(v) for m, v in gap.groupby(drift["method"], sort=False).sum().items()}


def cluster_stability(synthetic: pd.DataFrame, threshold: float, max_clusters: int
                      ) -> Stability:
    """Step 5."""
    # here, not at the top: scikit-learn (and the scipy.stats it loads) costs ~0.5 s to import,
    # paid by every process that imports the Phase 2 runner, post-analysis or not
    from sklearn.metrics import adjusted_rand_score

    half = len(synthetic) // 2
    if half < 2:
        raise ValueError(f"cluster stability needs >= 4 bars, got {len(synthetic)}")
    first = cluster_returns(synthetic.iloc[:half], threshold, max_clusters).labels
    second = cluster_returns(synthetic.iloc[half:], threshold, max_clusters).labels
    full = cluster_returns(synthetic, threshold, max_clusters).labels
    second, full = second.reindex(first.index), full.reindex(first.index)
    table = pd.crosstab(first.rename("first half"), second.rename("second half"))
    idx = synthetic.index
    return Stability(
        ari_halves=float(adjusted_rand_score(first, second)),
        ari_first_vs_full=float(adjusted_rand_score(first, full)),
        ari_second_vs_full=float(adjusted_rand_score(second, full)),
        n_clusters_first=int(first.nunique()), n_clusters_second=int(second.nunique()),
        n_clusters_full=int(full.nunique()),
        first=(f"{idx[0]:%Y-%m-%d}", f"{idx[half - 1]:%Y-%m-%d}"),
        second=(f"{idx[half]:%Y-%m-%d}", f"{idx[-1]:%Y-%m-%d}"),
        contingency=table,
    )


# -- the figures -------------------------------------------------------------------------------


def cluster_map_png(synthetic: pd.DataFrame, labels: Mapping[str, int],
                    names: Mapping[str, str]) -> bytes:
    """Step 2's figure."""
    order, z = leaf_order(synthetic)
    corr = synthetic[order].corr().to_numpy()
    n = len(order)
    size = min(12.0, max(6.5, 0.3 * n + 2.5))
    with figures.style():
        fig = figures.figure(size + 1.0, size + 1.2)
        grid = fig.add_gridspec(2, 2, height_ratios=[1.2, size], width_ratios=[size, 0.22])
        top, ax, bar = (fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]),
                        fig.add_subplot(grid[1, 1]))
        if len(z):
            dendrogram(z, ax=top, no_labels=True, color_threshold=0,
                       above_threshold_color=figures.INK)
            top.set_xlim(0, 10 * n)  # scipy puts leaf i at 10·i + 5: one heatmap column each
        top.set_axis_off()
        image = figures.heatmap(ax, corr, [names[a] for a in order],
                                [int(labels[a]) for a in order])
        ax.set_aspect("auto")
        fig.colorbar(image, cax=bar, label="correlation of synthetic returns")
        fig.suptitle(f"Cluster map: {n} atoms in {len(set(labels.values()))} clusters"
                     " (Ward on √(½(1 − ρ)); boxes = clusters)", fontweight="bold")
        return figures.png(fig)


def factor_map_png(synthetic: pd.DataFrame, labels: Mapping[str, int], names: Mapping[str, str],
                   primary: pd.Series, primary_method: str) -> tuple[bytes, float]:
    """Step 3's figure and the share of the eigenvalue sum the two axes keep."""
    keys = sorted(synthetic.columns, key=str)
    dist, _ = correlation_distance(synthetic[keys].to_numpy(np.float64))
    coords, kept = classical_mds(dist)
    held = primary.abs().reindex(keys).fillna(0.0).to_numpy()
    sizes = 30.0 + 900.0 * held / max(float(held.max()), 1e-12)
    with figures.style():
        fig = figures.figure(9.0, 7.0)
        ax = fig.add_subplot()
        for c in sorted({int(labels[k]) for k in keys}):
            idx = [i for i, k in enumerate(keys) if int(labels[k]) == c]
            ax.scatter(coords[idx, 0], coords[idx, 1], s=sizes[idx], alpha=0.75,
                       color=figures.cluster_color(c), edgecolor="white", linewidth=0.8,
                       label=f"cluster {c}")
        for i, k in enumerate(keys):
            ax.annotate(names[k], (coords[i, 0], coords[i, 1]), xytext=(5, 4),
                        textcoords="offset points", fontsize=7.5)
        ax.axhline(0, color=figures.GRID, linewidth=0.8, zorder=0)
        ax.axvline(0, color=figures.GRID, linewidth=0.8, zorder=0)
        ax.set_xlabel("MDS axis 1")
        ax.set_ylabel("MDS axis 2")
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="colour = cluster")
        for handle in legend.legend_handles:
            handle.set_sizes([40.0])  # type: ignore[union-attr]
        kept_text = f"; the 2 axes keep {kept:.0%} of the variance" if math.isfinite(kept) else ""
        fig.suptitle(f"Factor map: classical MDS of √(½(1 − ρ)){kept_text}", fontweight="bold")
        ax.set_title(f"colour = cluster, size = {primary_method} weight; close points move"
                     " together", fontsize=9, fontweight="normal")
        return figures.png(fig), kept


def drift_png(drift: pd.DataFrame, primary_method: str, source: str) -> bytes:
    """Step 4's figure; `source` says where the drift comes from (shown in the title). The
    atoms are the drift table's own (validation's last window may hold other atoms than the
    final weights)."""
    mine = drift[drift["method"] == primary_method]
    mine = mine.reindex(mine["target"].abs().sort_values(kind="mergesort").index)
    totals = drift_totals(drift)
    colors = figures.method_colors(list(totals))
    height = max(4.5, 0.22 * len(mine) + 1.8)
    with figures.style():
        fig = figures.figure(11.0, height)
        grid = fig.add_gridspec(1, 2, width_ratios=[2.2, 1.0])
        ax, tot = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        if mine.empty:
            figures.no_data(ax, f"no {primary_method} weights in the drift table")
        else:
            y = np.arange(len(mine))
            ax.barh(y + 0.2, mine["target"], height=0.4, color="#bbbbbb", label="target")
            ax.barh(y - 0.2, mine["drifted"], height=0.4,
                    color=[figures.SHORT if v < 0 else figures.LONG for v in mine["drifted"]],
                    label="drifted")
            ax.set_yticks(y, [str(s) for s in mine["symbol"]], fontsize=7.5)
            ax.axvline(0, color=figures.INK, linewidth=0.8)
            ax.xaxis.grid(True)
            ax.set_xlabel("signed weight (negative = short)")
            ax.legend(loc="lower right")
            ax.set_title(f"{primary_method}: target vs drifted")
        ms = list(totals)
        tot.bar(range(len(ms)), [totals[m] for m in ms], color=[colors[m] for m in ms])
        tot.set_xticks(range(len(ms)), ms, rotation=30, ha="right")
        tot.set_ylabel("Σ |drifted − target|")
        tot.yaxis.grid(True)
        tot.set_title("total drift per method")
        start = pd.Timestamp(drift["rebalance_at"].iloc[0])
        end = pd.Timestamp(drift["as_of"].iloc[0])
        fig.suptitle(f"Drift monitor: weights drifted without trading from {start:%Y-%m-%d}"
                     f" to {end:%Y-%m-%d}\n{source}", fontweight="bold")
        return figures.png(fig)


def stability_png(stab: Stability, synthetic: pd.DataFrame, labels: Mapping[str, int]) -> bytes:
    """Step 5's figure: the contingency of the halves' clusters and, per cluster of the whole
    window with two atoms or more, its mean intra-cluster correlation in each half."""
    half = len(synthetic) // 2
    with figures.style():
        fig = figures.figure(11.0, 4.8)
        ax, bars = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        table = stab.contingency
        ax.imshow(table.to_numpy(), cmap="Blues", aspect="auto")
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            if v:
                ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=8,
                        color="white" if v > table.to_numpy().max() / 2 else figures.INK)
        ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
        ax.set_yticks(range(table.shape[0]), [str(c) for c in table.index])
        ax.set_xlabel(f"cluster in the second half ({stab.second[0]} … {stab.second[1]})")
        ax.set_ylabel(f"cluster in the first half ({stab.first[0]} … {stab.first[1]})")
        ax.set_title(f"atoms per cluster pair; ARI {stab.ari_halves:.2f}")
        sizes = pd.Series([int(labels[a]) for a in synthetic.columns]).value_counts()
        clusters = sorted(int(c) for c, k in sizes.items() if k > 1)
        means: dict[str, list[float]] = {"first half": [], "second half": []}
        for c in clusters:
            members = [a for a in synthetic.columns if int(labels[a]) == c]
            for name, part in (("first half", synthetic.iloc[:half]),
                               ("second half", synthetic.iloc[half:])):
                means[name].append(_mean_offdiag(part[members].corr().to_numpy()))
        x = np.arange(len(clusters))
        bars.bar(x - 0.2, means["first half"], width=0.4, color="#9ecae1", label="first half")
        bars.bar(x + 0.2, means["second half"], width=0.4, color="#3182bd", label="second half")
        bars.set_xticks(x, [str(c) for c in clusters])
        bars.set_xlabel("cluster of the whole window (clusters of one atom left out)")
        bars.set_ylabel("mean intra-cluster correlation")
        bars.yaxis.grid(True)
        bars.legend()
        bars.set_title("do the clusters hold together?")
        fig.suptitle("Cluster stability between the two halves of the window (ARI 1 = same"
                     " clusters, 0 = chance)", fontweight="bold")
        return figures.png(fig)


def _mean_offdiag(corr: np.ndarray) -> float:
    """Mean off-diagonal correlation (NaN for a single member: nothing to hold together)."""
    n = corr.shape[0]
    if n < 2:
        return math.nan
    return float((np.nansum(corr) - np.trace(corr)) / (n * (n - 1)))


# -- the composition ---------------------------------------------------------------------------


def analyze(inputs: PostInputs) -> PostAnalysis:
    """Steps 1-5: the four figures and their summary."""
    syn, w = inputs.synthetic, inputs.weights
    names = figures.atom_names(w)
    primary = w[w["method"] == inputs.primary_method].set_index("atom")["weight"]
    if inputs.drift is not None:
        drift, source = inputs.drift, "out-of-sample: validation's holdings since its last rebalance"
    else:
        drift = in_sample_drift(syn, w, inputs.test_bars)
        source = (f"IN-SAMPLE (no validation): the final weights held over the window's last"
                  f" {inputs.test_bars} bars")
    stab = cluster_stability(syn, inputs.cluster_threshold, inputs.max_clusters)
    factor, kept = factor_map_png(syn, inputs.labels, names, primary, inputs.primary_method)
    pngs = {
        "plot_cluster_map": cluster_map_png(syn, inputs.labels, names),
        "plot_factor_map": factor,
        "plot_drift_monitor": drift_png(drift, inputs.primary_method, source),
        "plot_cluster_stability": stability_png(stab, syn, inputs.labels),
    }
    summary = {
        "atoms": int(syn.shape[1]),
        "factor_map": {"method": "classical MDS of sqrt(0.5 * (1 - rho))",
                       "variance_kept": None if not math.isfinite(kept) else kept},
        "drift": {"source": "validation" if inputs.drift is not None else "in-sample",
                  "label": source,
                  "rebalance_at": f"{pd.Timestamp(drift['rebalance_at'].iloc[0]):%Y-%m-%d}",
                  "as_of": f"{pd.Timestamp(drift['as_of'].iloc[0]):%Y-%m-%d}",
                  "total_by_method": drift_totals(drift)},
        "stability": stab.to_dict(),
    }
    return PostAnalysis(pngs, summary)
