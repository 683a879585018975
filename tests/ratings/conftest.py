"""Seeded synthetic bars for the ratings tests (no data files)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

Bars = tuple[NDArray[np.float64], ...]


def make_bars(
    seed: int, n_bars: int, n_symbols: int = 1, *, vol: float = 0.02, tick: float | None = None
) -> Bars:
    """Geometric random walks with OHLCV derived: (open, high, low, close, volume), each
    (n_bars, n_symbols) float64; prices start near 100, volume lognormal around 1.6e5.

    ``tick`` rounds prices to a tick grid, which produces exact ties (equal closes, flat
    windows) the way real daily data does.
    """
    rng = np.random.default_rng(seed)
    shape = (n_bars, n_symbols)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0002, vol, shape), axis=0))
    open_ = np.empty(shape)
    if n_bars:
        open_[0] = close[0]
        open_[1:] = close[:-1] * np.exp(rng.normal(0.0, vol / 4, (n_bars - 1, n_symbols)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, vol / 2, shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, vol / 2, shape)))
    volume = rng.lognormal(12.0, 1.0, shape)
    if tick is not None:
        open_, high, low, close = (np.round(x / tick) * tick for x in (open_, high, low, close))
        high = np.maximum(high, np.maximum(open_, close))
        low = np.minimum(low, np.minimum(open_, close))
    return open_, high, low, close, volume


@pytest.fixture(scope="session")
def bar_factory():
    """``make_bars`` for tests that build their own bars."""
    return make_bars


@pytest.fixture(scope="session")
def bars() -> Bars:
    """600 bars x 4 symbols."""
    return make_bars(7, 600, 4)


@pytest.fixture(scope="session")
def long_bars() -> Bars:
    """1,200 bars x 2 symbols, long enough for TA-Lib's seeding differences to decay."""
    return make_bars(11, 1200, 2)
