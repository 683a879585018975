"""The sleeve's selection step on in-memory views: the panel's fast path (aggregate
.window_from_panel, slices of one sessions x symbols layout) decides exactly what the generic
per-candidate path (aggregate.build_window) decides — health and every reason, returns, closes,
liquidity, selection inputs and the weights — at every clock of a walk-forward."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.alpha.views import AS_OF, make_settings, make_view

from portflow import clock
from portflow.alpha import sleeve
from portflow.alpha.view import Exclusion
from portflow.errors import HealthGateError

DAY = 86_400 * 10**9


def _damage(calendar: str):  # type: ignore[no-untyped-def]
    """Pathologies on a few symbols: a gap inside recent windows, a flat tail, a late
    listing, a history that ends early (stale), a bar off the calendar (XNYS only)."""
    def apply(symbol: str, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = f["ts"].size
        keep = np.ones(n, dtype=bool)
        if symbol == "S001":
            keep[n - 60:n - 57] = False  # three missing bars
        elif symbol == "S002":
            f = {**f, "close": f["close"].copy()}
            f["close"][-8:] = f["close"][-9]  # flat tail
        elif symbol == "S003":
            keep[: n - 200] = False  # listed late
        elif symbol == "S004":
            keep[n - 30:] = False  # stopped (stale at the last clocks)
        out = {k: (v[keep] if k == "ts" else np.asarray(v)[keep]) for k, v in f.items()}
        if symbol == "S005" and calendar == "XNYS":  # a Saturday bar among the sessions
            sat = out["ts"][-30] + DAY
            while pd.Timestamp(sat, tz="UTC").day_of_week != 5:
                sat += DAY
            i = int(np.searchsorted(out["ts"], sat))
            out = {k: np.insert(v, i, sat if k == "ts" else v[i - 1]) for k, v in out.items()}
        return out
    return apply


@pytest.mark.parametrize("calendar", ["24/7", "XNYS"])
def test_the_panel_fast_path_decides_exactly_what_the_generic_path_decides(calendar: str) -> None:
    kw = {"calendar": calendar, "n_bars": 520, "damage": _damage(calendar),
          "exclusions": {"S006": Exclusion("toxic", "spike", None),
                         "S007": Exclusion("unreadable", "torn file", None)}}
    fast, slow = make_view(**kw), make_view(panel=False, **kw)  # type: ignore[arg-type]
    assert fast.panel is not None and slow.panel is None
    settings = make_settings(calendar)
    end = clock.last_closed_bar(calendar, AS_OF)
    clocks = [end - pd.Timedelta(days=d) for d in (0, 20, 45, 90)]
    for t in clocks:
        at = t + pd.Timedelta(days=1)
        try:
            a = sleeve.select(fast.at(at), settings)
        except HealthGateError as exc:
            with pytest.raises(HealthGateError, match=str(exc).split("(")[0]):
                sleeve.select(slow.at(at), settings)
            continue
        b = sleeve.select(slow.at(at), settings)
        assert a.window.health == b.window.health
        assert any(not h["healthy"] for h in a.window.health)  # the pathologies are seen
        pd.testing.assert_frame_equal(a.returns, b.returns, check_exact=True)
        pd.testing.assert_frame_equal(a.window.closes, b.window.closes, check_exact=True)
        assert a.window.liquidity == b.window.liquidity
        pd.testing.assert_frame_equal(a.info, b.info, check_exact=True)
        assert a.result.winners == b.result.winners
    pa, pb = sleeve.produce(fast, settings), sleeve.produce(slow, settings)
    pd.testing.assert_frame_equal(pa.weights, pb.weights, check_exact=True)
