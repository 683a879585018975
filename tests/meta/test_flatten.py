"""Flattening conserves weight on random nested trees; the gate catches every breach."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portflow.errors import HealthGateError
from portflow.meta.flatten import COLUMNS, Holding, Node, conservation_gate, flatten

SYMBOLS = [f"S{i}" for i in range(8)]


@st.composite
def leaves(draw: st.DrawFn) -> Node:
    """A sleeve's holdings: signed weights with Σ|w| = 1, a symbol possibly held twice (as a
    LONG and a SHORT atom of the same sleeve)."""
    n = draw(st.integers(1, 6))
    raw = draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n))
    syms = draw(st.lists(st.sampled_from(SYMBOLS), min_size=n, max_size=n))
    total = sum(raw)
    return Node(holdings=tuple(Holding(s, f"{s}:{i}", sg * r / total)
                               for i, (s, sg, r) in enumerate(zip(syms, signs, raw, strict=True))))


def metas(depth: int) -> st.SearchStrategy[Node]:
    child = leaves() if depth == 1 else st.one_of(leaves(), metas(depth - 1))

    @st.composite
    def build(draw: st.DrawFn) -> Node:
        kids = draw(st.lists(child, min_size=1, max_size=4))
        raw = draw(st.lists(st.floats(0.05, 1.0), min_size=len(kids), max_size=len(kids)))
        total = math.fsum(raw)
        w = [r / total for r in raw]
        w[-1] = 1.0 - math.fsum(w[:-1])  # the budget exactly, as the allocators deliver it
        return Node(children=tuple((f"s{i}", wi, k)
                                   for i, (wi, k) in enumerate(zip(w, kids, strict=True))))

    return build()


def _enumerate(node: Node, path: str, scale: float, out: list[tuple[str, str, float]]) -> None:
    """Independent reference: every (leaf path, symbol, effective weight) by plain recursion."""
    for h in node.holdings:
        out.append((path, h.symbol, scale * h.weight))
    for sid, w, child in node.children:
        _enumerate(child, f"{path}/{sid}" if path else sid, scale * w, out)


@settings(max_examples=60, deadline=None)
@given(metas(3))
def test_flattening_conserves_weight_on_random_nested_trees(tree: Node) -> None:
    table = flatten(tree)
    conservation_gate(tree, table)
    assert list(table.columns) == COLUMNS and not table["symbol"].duplicated().any()
    assert abs(table["gross"].sum() - 1.0) <= 1e-9
    ref: list[tuple[str, str, float]] = []
    _enumerate(tree, "", 1.0, ref)
    r = pd.DataFrame(ref, columns=["path", "symbol", "c"])
    r = r[r["c"] != 0]
    t = table.set_index("symbol")
    for sym, g in r.groupby("symbol"):
        assert t.loc[sym, "weight"] == pytest.approx(g["c"].sum(), abs=1e-12)
        assert t.loc[sym, "gross"] == pytest.approx(g["c"].abs().sum(), abs=1e-12)
        assert t.loc[sym, "sleeves"] == ";".join(sorted(set(g["path"])))
        net = g["c"].sum()
        assert t.loc[sym, "direction"] == ("LONG" if net > 0 else "SHORT" if net < 0 else "FLAT")
    assert (t["gross"] >= t["weight"].abs() - 1e-15).all()
    assert flatten(tree).equals(table)  # deterministic order and values


def _two_level() -> Node:
    long = Node(holdings=(Holding("A", "A:L", 0.6), Holding("B", "B:L", 0.4)))
    short = Node(holdings=(Holding("A", "A:S", -0.5), Holding("C", "C:S", -0.5)))
    eq = Node(holdings=(Holding("E", "E:L", 1.0),))
    crypto = Node(children=(("long", 0.5, long), ("short", 0.5, short)))
    return Node(children=(("crypto", 0.8, crypto), ("equities", 0.2, eq)))


def test_long_short_netting_keeps_gross_before_netting() -> None:
    table = flatten(_two_level()).set_index("symbol")
    # A: 0.8*0.5*0.6 long and 0.8*0.5*0.5 short net to +0.04 but hold 0.44 gross
    assert table.loc["A", "weight"] == pytest.approx(0.04)
    assert table.loc["A", "gross"] == pytest.approx(0.44)
    assert table.loc["A", "sleeves"] == "crypto/long;crypto/short"
    assert table.loc["C", "direction"] == "SHORT" and table.loc["C", "weight"] < 0
    assert table["gross"].sum() == pytest.approx(1.0, abs=1e-12)
    assert table["weight"].abs().sum() < 0.99  # net is not gross: the prior system's bug


def test_the_gate_fails_on_sleeve_weights_that_do_not_sum_to_one() -> None:
    good = _two_level()
    crypto = good.children[0][2]
    bad = Node(children=(("crypto", 0.8 + 2e-9, crypto), ("equities", 0.2, good.children[1][2])))
    with pytest.raises(HealthGateError, match="sleeve weights of 'the meta' sum to"):
        conservation_gate(bad, flatten(bad))


def test_the_gate_names_the_leaf_whose_holdings_do_not_add_up() -> None:
    lame = Node(holdings=(Holding("X", "X:L", 0.7),))
    tree = Node(children=(("a", 0.5, Node(holdings=(Holding("Y", "Y:L", 1.0),))),
                          ("b", 0.5, Node(children=(("c", 1.0, lame),)))))
    with pytest.raises(HealthGateError, match=r"Σ gross = 0\.85.*sleeve 'b/c'"):
        conservation_gate(tree, flatten(tree))


def test_zero_weights_leave_no_row() -> None:
    tree = Node(children=(("a", 1.0, Node(holdings=(Holding("Y", "Y:L", 1.0),
                                                    Holding("Z", "Z:L", 0.0)))),))
    table = flatten(tree)
    assert list(table["symbol"]) == ["Y"] and np.isclose(table["gross"].sum(), 1.0)
