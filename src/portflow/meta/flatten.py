"""Flattening (SPEC §7.4): a meta tree of sleeve weights and sleeve holdings → asset weights.

1. Contributions: walking the tree from the root, a leaf sleeve at path p reached through
   sleeve weights w_1 … w_k contributes, for every atom it holds with signed weight x (its
   primary method's `weights.csv` row: negative = short), c = (w_1 · … · w_k) · x to that
   atom's symbol, tagged with p. Nothing is netted yet.
2. Assets: per symbol, `weight` = Σ c (the signed net), `gross` = Σ |c| (before netting),
   `sleeves` = the `;`-joined sorted leaf paths with a non-zero contribution (e.g.
   ``crypto/long;crypto/short``), `direction` = LONG / SHORT by the sign of the net (FLAT
   when long and short cancel exactly). Zero contributions are dropped; rows are sorted by
   gross (descending), then symbol, so reruns are byte-identical.
3. Conservation gate: at every meta level the sleeve weights sum to 1 within 1e-9, and every
   unit of sleeve weight is accounted for in the asset rows: Σ gross = 1 within 1e-9 (gross
   before long/short netting — never gross against net). A breach raises
   :class:`HealthGateError` naming the level or the leaf whose holdings do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from portflow.errors import HealthGateError

CONSERVATION_TOL = 1e-9
COLUMNS = ["symbol", "direction", "weight", "gross", "sleeves"]


@dataclass(frozen=True)
class Holding:
    """One atom of a leaf sleeve: its physical symbol and signed weight (short < 0)."""

    symbol: str
    atom: str
    weight: float


@dataclass(frozen=True)
class Node:
    """A leaf (holdings) or a meta (children: (sleeve id, sleeve weight, node))."""

    holdings: tuple[Holding, ...] = ()
    children: tuple[tuple[str, float, Node], ...] = ()

    @classmethod
    def leaf(cls, weights: pd.DataFrame, method: str) -> Node:
        """From a sleeve's weights.csv (columns method, symbol, atom, weight)."""
        rows = weights[weights["method"] == method]
        return cls(holdings=tuple(
            Holding(str(s), str(a), float(w))
            for s, a, w in zip(rows["symbol"], rows["atom"], rows["weight"], strict=True)
        ))


def contributions(node: Node, path: str = "", scale: float = 1.0) -> pd.DataFrame:
    """Step 1: columns path, symbol, atom, contribution (one row per leaf atom)."""
    rows: list[tuple[str, str, str, float]] = []
    _walk(node, path, scale, rows)
    return pd.DataFrame(rows, columns=["path", "symbol", "atom", "contribution"])


def _walk(node: Node, path: str, scale: float, rows: list[tuple[str, str, str, float]]) -> None:
    for h in node.holdings:
        rows.append((path, h.symbol, h.atom, scale * h.weight))
    for sid, w, child in node.children:
        _walk(child, f"{path}/{sid}" if path else sid, scale * w, rows)


def flatten(node: Node) -> pd.DataFrame:
    """Steps 1-2: the meta weights.csv table (COLUMNS), one row per asset."""
    c = contributions(node)
    c = c[c["contribution"] != 0.0]
    if c.empty:
        return pd.DataFrame(columns=COLUMNS)
    c = c.assign(absolute=c["contribution"].abs())
    g = c.groupby("symbol", sort=True)
    out = pd.DataFrame({
        "weight": g["contribution"].sum(),
        "gross": g["absolute"].sum(),
        "sleeves": g["path"].agg(lambda p: ";".join(sorted(set(p)))),
    })
    out["direction"] = np.where(out["weight"] > 0, "LONG",
                                np.where(out["weight"] < 0, "SHORT", "FLAT"))
    out = out.reset_index().rename(columns={"index": "symbol"})
    out = out.sort_values(["gross", "symbol"], ascending=[False, True], kind="mergesort")
    return out[COLUMNS].reset_index(drop=True)


def conservation_gate(node: Node, assets: pd.DataFrame, path: str = "") -> None:
    """Step 3. Raises HealthGateError on a breach."""
    _check_levels(node, path)
    total = float(assets["gross"].sum()) if len(assets) else 0.0
    if abs(total - 1.0) > CONSERVATION_TOL:
        worst = _worst_leaf(node, path)
        raise HealthGateError(
            f"conservation gate: the asset rows account for Σ gross = {total:.12g} of the"
            f" sleeve weight, not 1 within {CONSERVATION_TOL:g}{worst}"
        )


def _check_levels(node: Node, path: str) -> None:
    if node.children:
        s = sum(w for _, w, _ in node.children)
        if abs(s - 1.0) > CONSERVATION_TOL:
            raise HealthGateError(
                f"conservation gate: the sleeve weights of '{path or 'the meta'}' sum to"
                f" {s:.12g}, not 1 within {CONSERVATION_TOL:g}"
            )
    for sid, _, child in node.children:
        _check_levels(child, f"{path}/{sid}" if path else sid)


def _worst_leaf(node: Node, path: str) -> str:
    """The leaf whose holdings' Σ|weight| is furthest from 1 (what breaks conservation)."""
    leaves: list[tuple[float, str]] = []

    def walk(n: Node, p: str) -> None:
        if not n.children:
            leaves.append((abs(sum(abs(h.weight) for h in n.holdings) - 1.0), p))
        for sid, _, child in n.children:
            walk(child, f"{p}/{sid}" if p else sid)

    walk(node, path)
    dev, where = max(leaves)
    return (f"; sleeve '{where}' holds Σ|weight| off 1 by {dev:.3g} (check its weights.csv)"
            if dev > CONSERVATION_TOL else "")
