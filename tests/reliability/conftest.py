"""Fixtures of the in-process reliability tests: a small synthetic market and a few of its
symbols without planted pathologies."""

from __future__ import annotations

import pytest

from portflow.providers.synthetic import SyntheticProvider
from tests.reliability.faults import UNIVERSE


@pytest.fixture(scope="session")
def market() -> SyntheticProvider:
    return SyntheticProvider(sizes={UNIVERSE: 40})


@pytest.fixture(scope="session")
def clean(market: SyntheticProvider) -> list[str]:
    planted = market.pathologies(UNIVERSE)
    return [s for s in market.symbols(UNIVERSE) if s not in planted][:4]
