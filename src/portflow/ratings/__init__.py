"""TradingView technical ratings (SPEC §5), vectorised over symbols with numba.

A low-level numerics package: it imports nothing else from portflow.

- ``compute_ratings(open_, high, low, close, volume, with_components=False) -> Ratings``:
  Recommend.All / MA / Other, ADX and ±DI for a (T, N) panel (see ``engine``).
- ``bucket`` / ``bucket_codes``: the five SPEC §5 labels of a rating.
- Indicator kernels on (T,) or (T, N) arrays with Pine's definitions (see ``kernels``).
"""

from portflow.ratings.engine import (
    BUCKET_LABELS,
    COMPONENT_NAMES,
    N_COMPONENTS,
    N_MA,
    VOTE_ABSENT,
    Ratings,
    bucket,
    bucket_codes,
    compute_ratings,
)
from portflow.ratings.kernels import (
    IchimokuLines,
    ao,
    bull_bear_power,
    cci,
    dmi,
    ema,
    highest,
    hma,
    ichimoku,
    lowest,
    macd,
    mom,
    rma,
    rsi,
    sma,
    stoch,
    stoch_rsi,
    ultimate_oscillator,
    vwma,
    williams_r,
    wma,
)

__all__ = [
    "BUCKET_LABELS",
    "COMPONENT_NAMES",
    "N_COMPONENTS",
    "N_MA",
    "VOTE_ABSENT",
    "IchimokuLines",
    "Ratings",
    "ao",
    "bucket",
    "bucket_codes",
    "bull_bear_power",
    "cci",
    "compute_ratings",
    "dmi",
    "ema",
    "highest",
    "hma",
    "ichimoku",
    "lowest",
    "macd",
    "mom",
    "rma",
    "rsi",
    "sma",
    "stoch",
    "stoch_rsi",
    "ultimate_oscillator",
    "vwma",
    "williams_r",
    "wma",
]
