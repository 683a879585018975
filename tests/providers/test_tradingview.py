"""The TradingView screener on recorded answers from a local server: queries built from
scanners, paging, retries, field errors, and no look-ahead at an earlier clock."""

from __future__ import annotations

import pandas as pd
import pytest
from tests.providers.fixtures import ROWS
from tests.providers.servers import FakeScreener

from portflow.config.models import Scanner
from portflow.data.scan import query_of, run_scanner
from portflow.errors import ProviderResponseError, UsageError
from portflow.providers import get_provider

pytest.importorskip("tradingview_screener")
TODAY = pd.Timestamp("2026-06-30", tz="UTC")


def _tv(url: str, **extra: object):  # type: ignore[no-untyped-def]
    tv = get_provider("tradingview", {"url": url, "backoff_s": 0.01, **extra})
    tv.today = lambda: TODAY  # type: ignore[attr-defined]
    return tv


def _scanner(**kw: object) -> Scanner:
    return Scanner.model_validate({"name": "s", "universe": "crypto", **kw})


def test_a_scanner_becomes_one_screener_query_with_paging() -> None:
    scanner = _scanner(filters=[{"field": "value_traded", "op": ">=", "value": 1e6},
                                {"any": [{"field": "recommend_all", "op": ">", "value": 0.1},
                                         {"field": "perf_3m", "op": ">", "value": 0}]}],
                       sort={"field": "value_traded", "order": "desc"}, limit=3)
    with FakeScreener(ROWS) as srv:
        out = run_scanner(scanner, _tv(srv.url, page_size=2), TODAY)
        bodies = [e["body"] for e in srv.log]
    # the recorded answer is the top 3 by value traded; the local pass (the fake server does
    # not filter) drops NOBAR, whose rating and quarter fail the `any`
    assert list(out["symbol"]) == ["BINANCE:TSTDUSDT", "BINANCE:TSTAUSDT"]
    assert [b["range"] for b in bodies] == [[0, 2], [2, 3]]  # limit pushed down, paged
    assert bodies[0]["sort"] == {"sortBy": "Value.Traded", "sortOrder": "desc", "nullsFirst": False}
    ops = bodies[0]["filter2"]["operands"]
    assert ops[0]["expression"] == {"left": "Value.Traded", "operation": "egreater", "right": 1e6}
    assert ops[1]["operation"]["operator"] == "or"
    assert out["value_traded"].tolist() == sorted(out["value_traded"], reverse=True)
    assert (out["asset_class"] == "crypto").all()


def test_filters_that_stay_local_keep_the_limit_local_too() -> None:
    scanner = _scanner(filters=[{"not": {"field": "change_pct", "op": "<", "value": 0}},
                                {"field": "asset_class", "op": "==", "value": "crypto"}],
                       sort={"field": "close", "order": "asc"}, limit=2)
    q = query_of(scanner)
    with FakeScreener(ROWS) as srv:
        out = run_scanner(scanner, _tv(srv.url), TODAY)
        body = srv.log[0]["body"]
    assert "filter2" not in body and body["range"] == [0, 1000]  # nothing exact to push
    assert q.limit == 2 and list(out["symbol"]) == ["BINANCE:TSTDUSDT", "BINANCE:NOBARUSDT"]


def test_retries_on_429_and_5xx_then_answers() -> None:
    with FakeScreener(ROWS, fail=lambda n, p, q: {1: 429, 2: 502}.get(n)) as srv:
        out = _tv(srv.url).scan("crypto", TODAY)
        assert [e["status"] for e in srv.log] == [429, 502, 200]
    assert len(out) == len(ROWS)


def test_a_rejected_field_names_the_canonical_field() -> None:
    rows = [{k: v for k, v in r.items() if k != "Perf.3M"} for r in ROWS]
    with FakeScreener(rows) as srv, pytest.raises(
            ProviderResponseError, match=r"Perf\.3M.*canonical field 'perf_3m'"):
        _tv(srv.url).scan("crypto", TODAY)


def test_an_earlier_clock_is_refused_and_gets_no_ratings() -> None:
    with FakeScreener(ROWS) as srv:
        tv = _tv(srv.url)
        with pytest.raises(UsageError, match="only has today's values"):
            tv.scan("crypto", TODAY - pd.Timedelta(days=1))
        assert tv.technicals("crypto", ["BINANCE:TSTAUSDT"], TODAY - pd.Timedelta(days=1)) is None
        assert not srv.log
        now = tv.technicals("crypto", ["BINANCE:TSTAUSDT", "BINANCE:TSTBUSDT"], TODAY)
        assert srv.log[0]["body"]["symbols"]["tickers"] == ["BINANCE:TSTAUSDT", "BINANCE:TSTBUSDT"]
    assert now.set_index("symbol").loc["BINANCE:TSTBUSDT", "recommend_all"] == -0.3
