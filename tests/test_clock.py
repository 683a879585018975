"""The clock: --as-of parsing and the refusal of a clock in the future."""

from __future__ import annotations

import pandas as pd
import pytest

from portflow.clock import parse_as_of
from portflow.errors import UsageError

TODAY = pd.Timestamp("2026-07-01 15:30", tz="UTC")


def test_a_clock_up_to_today_is_accepted() -> None:
    assert parse_as_of(None, TODAY) == pd.Timestamp("2026-07-01", tz="UTC")
    assert parse_as_of("2026-07-01", TODAY) == pd.Timestamp("2026-07-01", tz="UTC")
    assert parse_as_of("1990-01-01", TODAY) == pd.Timestamp("1990-01-01", tz="UTC")


@pytest.mark.parametrize("value", ["2026-07-02", "2126-06-30"])
def test_a_clock_after_today_is_refused(value: str) -> None:
    with pytest.raises(UsageError, match=f"--as-of {value} is after today \\(2026-07-01 UTC\\)"):
        parse_as_of(value, TODAY)


@pytest.mark.parametrize("value", ["30/06/2026", "2026-02-30", "x" * 10_000])
def test_a_malformed_clock_is_one_short_line(value: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_as_of(value, TODAY)
    assert "YYYY-MM-DD" in str(err.value) and len(str(err.value)) < 200
