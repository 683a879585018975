"""Panels for the ratings engine: each symbol's own bars, left-aligned (SPEC §5).

Ratings are computed over each symbol's own sequence of stored bars — a missing day is not
a bar — so a date-aligned panel with NaN holes is compressed column by column before the
engine sees it, and results are mapped back to each symbol's own bar timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from portflow.ratings.engine import Ratings, compute_ratings

FIELDS = ("open", "high", "low", "close", "volume")


def left_align(bars: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(T, N) date-aligned arrays with NaN closes where a symbol has no bar → the same arrays
    with each column's bars moved to rows 0..n_j-1 (NaN padding after), and the n_j."""
    close = np.asarray(bars["close"], dtype=float)
    present = ~np.isnan(close)
    counts = present.sum(axis=0)
    # stable sort puts present rows first, in time order, for every column at once
    order = np.argsort(~present, axis=0, kind="stable")
    rows = np.arange(close.shape[0])[:, None]
    pad = rows >= counts[None, :]
    out = {}
    for f in FIELDS:
        a = np.take_along_axis(np.asarray(bars[f], dtype=float), order, axis=0)
        a[pad] = np.nan
        out[f] = a
    return out, counts


def frames_panel(
    frames: Sequence[pd.DataFrame | Mapping[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Left-aligned panel from per-symbol bars (frames or mappings of column arrays with the
    SPEC OHLCV fields, sorted by time). The (T, N) arrays are F-ordered: each symbol's column
    is contiguous, so filling it is one memcpy (a C-ordered fill writes one element per cache
    line); the engine reads any layout."""
    counts = np.array([len(f["close"]) for f in frames], dtype=np.int64)
    t = int(counts.max()) if len(counts) else 0
    out = {f: np.empty((len(frames), t)) for f in FIELDS}  # transposed on return
    for j, frame in enumerate(frames):
        n = counts[j]
        for f in FIELDS:
            out[f][j, :n] = np.asarray(frame[f], dtype=float)
            out[f][j, n:] = np.nan
    return {f: a.T for f, a in out.items()}, counts


def rate(panel: dict[str, np.ndarray]) -> Ratings:
    return compute_ratings(
        panel["open"], panel["high"], panel["low"], panel["close"], panel["volume"]
    )


def last_values(ratings: Ratings, counts: np.ndarray) -> pd.DataFrame:
    """adx and recommend_* at each column's last bar (NaN for a column without bars)."""
    cols = np.arange(len(counts))
    last = np.maximum(counts - 1, 0)
    out = {}
    for name in ("recommend_all", "recommend_ma", "recommend_other", "adx"):
        v = getattr(ratings, name)[last, cols] if len(cols) and ratings.adx.size else np.array([])
        out[name] = np.where(counts > 0, v, np.nan)
    return pd.DataFrame(out)
