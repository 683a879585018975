"""Write the packaged `files_example` sample: daily OHLCV CSVs of 12 plainly fictitious
symbols (XNYS sessions up to 2026-06-29, the last session before the pinned clock 2026-06-30)
in FOLDER, plus their metadata in FOLDER_metadata.csv beside it. Deterministic (seeded);
re-run it to regenerate them:

    .venv/bin/python scripts/make_sample_files.py src/portflow/configs/sample_files
"""

from __future__ import annotations

import sys
from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd

SESSIONS = 300
SYMBOLS = ["SMPA", "SMPB", "SMPC", "SMPD", "SMPE", "SMPF", "SMPG", "SMPH", "SMPI", "SMPJ",
           "SMPK", "SMPL.B"]


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cal = xcals.get_calendar("XNYS", start="2024-01-01", end="2026-12-31")
    sessions = cal.sessions_in_range("2024-01-02", "2026-06-29")[-SESSIONS:]
    rng = np.random.default_rng(20260630)
    market = rng.normal(0.0003, 0.008, SESSIONS)
    meta = []
    for sym in SYMBOLS:
        beta, vol = rng.uniform(0.4, 1.2), rng.uniform(0.008, 0.016)
        r = rng.uniform(0.0004, 0.0015) + beta * market + vol * rng.standard_normal(SESSIONS)
        close = np.round(rng.uniform(30, 250) * np.exp(np.cumsum(r)), 2)
        opn = np.round(np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.002, SESSIONS)), 2)
        high = np.round(np.maximum(opn, close) * (1 + np.abs(rng.normal(0, 0.004, SESSIONS))), 2)
        low = np.round(np.minimum(opn, close) * (1 - np.abs(rng.normal(0, 0.004, SESSIONS))), 2)
        value = np.exp(rng.uniform(np.log(2e8), np.log(2e9)) + rng.normal(0, 0.3, SESSIONS))
        frame = pd.DataFrame({"Date": sessions.strftime("%Y-%m-%d"), "Open": opn, "High": high,
                              "Low": low, "Close": close,
                              "Volume": np.round(value / close).astype(np.int64)})
        frame.to_csv(folder / f"{sym}.csv", index=False, lineterminator="\n")
        meta.append({"symbol": sym, "tick_size": 0.01, "lot_size": 1, "quote": "USD",
                     "asset_class": "equity", "exchange": "SAMPLE"})
    pd.DataFrame(meta).to_csv(folder.parent / f"{folder.name}_metadata.csv", index=False,
                              lineterminator="\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
