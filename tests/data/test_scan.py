from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from portflow.config.models import AllFilter, AnyFilter, LeafFilter, NotFilter, Scanner
from portflow.data.scan import filter_mask, run_scanner, union

FRAME = pd.DataFrame(
    {
        "symbol": ["A", "B", "C", "D"],
        "value_traded": [5e6, 1e5, np.nan, 2e7],
        "asset_class": ["crypto", "crypto", "equity", "crypto"],
        "perf_3m": [10.0, -5.0, 3.0, -20.0],
    }
)


def _rows(node) -> list[str]:  # type: ignore[no-untyped-def]
    return list(FRAME["symbol"][filter_mask(FRAME, node)])


def test_leaf_ops_and_missing_values_never_pass() -> None:
    assert _rows(LeafFilter(field="value_traded", op=">=", value=1e6)) == ["A", "D"]
    assert _rows(LeafFilter(field="value_traded", op="<", value=1e6)) == ["B"]
    assert _rows(LeafFilter(field="asset_class", op="in", value=["equity"])) == ["C"]
    assert _rows(LeafFilter(field="asset_class", op="not_in", value=["equity"])) == ["A", "B", "D"]
    assert _rows(LeafFilter(field="perf_3m", op="between", value=[-6, 5])) == ["B", "C"]
    assert _rows(LeafFilter(field="asset_class", op="!=", value="crypto")) == ["C"]


def test_all_any_not_compose() -> None:
    big = LeafFilter(field="value_traded", op=">", value=1e6)
    up = LeafFilter(field="perf_3m", op=">", value=0)
    assert _rows(AllFilter(all=[big, up])) == ["A"]
    assert _rows(AnyFilter(any=[big, up])) == ["A", "C", "D"]
    assert _rows(NotFilter(**{"not": up})) == ["B", "D"]


class _Frame:
    """A provider answering scans with a fixed frame."""

    name = "fixed"

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def scan(self, universe: str, as_of: pd.Timestamp, query: object = None) -> pd.DataFrame:
        return self.frame.copy()


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.floats(-1e9, 1e9), st.just(float('nan'))), min_size=1,
                    max_size=30),
    threshold=st.floats(-1e9, 1e9),
    limit=st.integers(1, 40),
)
def test_a_screen_only_drops_rows_and_never_alters_values(values, threshold, limit) -> None:  # type: ignore[no-untyped-def]
    frame = pd.DataFrame({"symbol": [f"S{i:03d}" for i in range(len(values))],
                          "value_traded": values, "close": np.arange(len(values), dtype=float)})
    scanner = Scanner(name="s", universe="u",
                      filters=[LeafFilter(field="value_traded", op=">", value=threshold)],
                      sort={"field": "value_traded", "order": "desc"}, limit=limit)
    out = run_scanner(scanner, _Frame(frame), pd.Timestamp("2026-01-01", tz="UTC"))  # type: ignore[arg-type]
    assert len(out) <= limit
    original = frame.set_index("symbol")
    for row in out.to_dict("records"):
        assert row["value_traded"] > threshold
        assert original.loc[row["symbol"], "close"] == row["close"]
    assert list(out["value_traded"]) == sorted(out["value_traded"], reverse=True)


def test_union_keeps_every_scanner_and_field() -> None:
    rec = {"symbol": "A", "provider": "p", "exchange": "X", "direction": "LONG", "scanners": ["s1"],
           "fields": {"close": 1.0}}
    out = union({"s1": [rec], "s2": [{**rec, "scanners": ["s2"], "fields": {"close": 1.0, "adx": 3}}]})
    assert len(out) == 1 and out[0]["scanners"] == ["s1", "s2"]
    assert out[0]["fields"] == {"close": 1.0, "adx": 3}
