"""Small seeded fixtures built in code for the provider tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from portflow import clock

# Recorded TradingView screener rows (crypto market), one dict per symbol keyed by column.
ROWS: list[dict[str, Any]] = [
    {"s": f"BINANCE:{base}USDT", "close": c, "volume": v, "Value.Traded": c * v,
     "change": ch, "Perf.W": pw, "Perf.1M": pm, "Perf.3M": p3, "Volatility.D": vd,
     "ADX": adx, "exchange": "BINANCE", "sector": "Crypto", "Recommend.All": ra,
     "Recommend.MA": rm, "Recommend.Other": ro, "market_cap_calc": c * 1e7}
    for base, c, v, ch, pw, pm, p3, vd, adx, ra, rm, ro in [
        ("TSTA", 10.5, 2e6, 1.2, 3.0, 8.0, 20.0, 3.1, 25.0, 0.4, 0.6, 0.2),
        ("TSTB", 2.25, 5e6, -0.5, -2.0, -6.0, -15.0, 4.2, 31.0, -0.3, -0.5, -0.1),
        ("TSTC", 150.0, 1e5, 0.1, 1.0, 2.0, 5.0, 2.0, 18.0, 0.1, 0.2, 0.0),
        ("TSTD", 0.5, 9e7, 3.0, 10.0, 30.0, 60.0, 6.5, 40.0, 0.7, 0.9, 0.5),
        ("TSTE", 33.0, 3e5, -1.0, -4.0, -1.0, 2.0, 2.8, 12.0, -0.1, 0.0, -0.2),
        ("NOBAR", 1.0, 1e8, 0.0, 0.0, 0.0, 0.0, 1.0, 10.0, 0.0, 0.0, 0.0),
    ]
]


def write_folder(root: Path, as_of: pd.Timestamp, n: int = 8, sessions: int = 320,
                 days_after: int = 5) -> Path:
    """A folder of XNYS daily CSVs: F001.. plus a dotted `BF.B` and `ODD` with other column
    names, ending `days_after` sessions after the clock (bars a scan must never read)."""
    folder = root / "bars"
    folder.mkdir(parents=True, exist_ok=True)
    end = as_of + pd.Timedelta(days=days_after * 2)
    stamps = clock.sessions("XNYS", as_of - pd.Timedelta(days=sessions * 2), end)[-sessions:]
    rng = np.random.default_rng(11)
    names = [f"F{i:03d}" for i in range(1, n + 1)] + ["BF.B", "ODD"]
    for sym in names:
        close = np.round(rng.uniform(20, 200) * np.exp(np.cumsum(rng.normal(4e-4, 0.012, len(stamps)))), 2)
        opn = np.round(close * (1 + rng.normal(0, 0.002, len(stamps))), 2)
        frame = pd.DataFrame({
            "date": stamps.strftime("%Y-%m-%d"), "open": opn,
            "high": np.maximum(opn, close) + 0.05, "low": np.minimum(opn, close) - 0.05,
            "close": close, "volume": rng.integers(10_000, 1_000_000, len(stamps)),
        })
        if sym == "ODD":
            frame.columns = ["Date", "Open", "High", "Low", "Close", "Volume"]
            frame = frame.iloc[::-1]  # newest first, as vendors often write
        frame.to_csv(folder / f"{sym}.csv", index=False)
    return folder
