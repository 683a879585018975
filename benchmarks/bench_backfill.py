"""feature-backfill at scale: time and peak memory of a 5,000 symbol x 2,500 bar backfill.

Builds a lakehouse of synthetic OHLCV files (not timed), then runs the real backfill in a
fresh subprocess and reports its wall time and peak resident memory (target < 1.5 GiB),
then a second, incremental backfill (nothing changed: every symbol kept) in another one.

    .venv/bin/python benchmarks/bench_backfill.py [--symbols 5000] [--bars 2500]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from portflow.lakehouse.store import Lakehouse
from portflow.providers.synthetic import SyntheticProvider

AS_OF = pd.Timestamp("2026-06-30", tz="UTC")
UNIVERSE = "synthetic-crypto"

CHILD = r"""
import json, resource, sys, time
from portflow.data.features import backfill
from portflow.lakehouse.store import Lakehouse
lake = Lakehouse(sys.argv[1])
h = lake.read_health()
sources = [("synthetic", "1d", s) for s in h.loc[h["status"] == "healthy", "symbol"]]
t = time.perf_counter()
counts = backfill(lake, sources)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"seconds": seconds, "peak_gib": peak, **counts}))
"""


def build(data: Path, n_symbols: int, n_bars: int) -> None:
    provider = SyntheticProvider(sizes={UNIVERSE: n_symbols}, pathologies={UNIVERSE: []})
    lake = Lakehouse(data)
    start = AS_OF - pd.Timedelta(days=n_bars)
    rows = []
    for symbol in provider.symbols(UNIVERSE):
        bars = provider.fetch_ohlcv(UNIVERSE, symbol, start, AS_OF)
        bars = bars[bars["timestamp"] < AS_OF]
        lake.write_ohlcv("synthetic", "1d", symbol, bars)
        rows.append({"provider": "synthetic", "symbol": symbol, "status": "healthy",
                     "reason": "", "audited_at": pd.Timestamp.now(tz="UTC")})
    lake.update_health(rows)


def child(data: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(data)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=5000)
    ap.add_argument("--bars", type=int, default=2500)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    t = time.perf_counter()
    build(work, args.symbols, args.bars)
    print(f"lakehouse: {args.symbols} symbols x {args.bars} bars written in"
          f" {time.perf_counter() - t:.1f} s (setup, not the measurement)")
    full = child(work)
    print(f"full backfill:        {full['seconds']:6.2f} s, peak memory {full['peak_gib']:.2f} GiB"
          f" ({int(full['rows'])} rows, {int(full['recomputed'])} symbols computed)"
          f" target < 1.5 GiB: {'OK' if full['peak_gib'] < 1.5 else 'ABOVE TARGET'}")
    again = child(work)
    print(f"incremental (no change): {again['seconds']:6.2f} s, peak {again['peak_gib']:.2f} GiB"
          f" ({int(again['kept'])} kept, {int(again['recomputed'])} recomputed)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
