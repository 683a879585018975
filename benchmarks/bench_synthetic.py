"""Synthetic market speed: cold generation of 2,000 symbols x 2,500 daily bars, then a scan.

Run: ``python benchmarks/bench_synthetic.py [--quick]`` (quick: 500 x 1,000).
The baseline is the default universe (150 x ~2,900 bars) timed in the same process and scaled
to the same number of bar-symbols; the ratio shows how generation scales with symbols x bars
(it is vectorised over symbols, so the cost per bar-symbol should stay flat or fall: ratio
>= 1). It also times fetch_ohlcv per symbol, and a thread pool against a ``latency_ms``
provider to show that the sleeps overlap. Information rows: no targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pandas as pd

import harness
from harness import Row, dims
from portflow.providers.synthetic import (
    CRYPTO,
    SyntheticProvider,
    _clear_cache,
    _default_pathologies,
    _generate,
)

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def rows(quick: bool) -> list[Row]:
    n_symbols, n_bars = (500, 1000) if quick else (2000, 2500)
    start = pd.Timestamp("2019-01-01", tz="UTC")
    as_of = start + pd.Timedelta(days=n_bars)  # bars closed before the clock

    _clear_cache()
    base = SyntheticProvider()
    base_clock = pd.Timestamp("2026-06-30", tz="UTC")
    t_base, _ = timed(lambda: base._panel(CRYPTO, base_clock))
    base_cells = len(base._panel(CRYPTO, base_clock).dates) * len(base.symbols(CRYPTO))

    events = _default_pathologies(CRYPTO)
    end = start + pd.Timedelta(days=n_bars - 1)
    t_gen, panel = timed(lambda: _generate(CRYPTO, 7, n_symbols, start, end, events))
    cells = len(panel.dates) * n_symbols
    _clear_cache()
    big = SyntheticProvider(sizes={CRYPTO: n_symbols})
    t_scan, scan = timed(lambda: big.scan(CRYPTO, as_of))  # generates to the horizon first
    t_scan_warm, _ = timed(lambda: big.scan(CRYPTO, as_of))
    symbols = big.symbols(CRYPTO)[:200]
    t_fetch, _ = timed(lambda: [big.fetch_ohlcv(CRYPTO, s, None, as_of) for s in symbols])

    slow = SyntheticProvider(sizes={CRYPTO: n_symbols}, latency_ms=20)
    few = symbols[:64]
    t_serial, _ = timed(lambda: [slow.fetch_ohlcv(CRYPTO, s, None, as_of) for s in few])
    with ThreadPoolExecutor(max_workers=16) as pool:
        t_pool, _ = timed(
            lambda: list(pool.map(lambda s: slow.fetch_ohlcv(CRYPTO, s, None, as_of), few))
        )

    per_base = t_base / base_cells * 1e9
    per_big = t_gen / cells * 1e9
    print(
        f"baseline generate {len(base.symbols(CRYPTO))} symbols x "
        f"{base_cells // len(base.symbols(CRYPTO))} rows: {t_base:.2f} s "
        f"({per_base:.0f} ns per bar)"
    )
    print(
        f"cold generate {n_symbols} symbols x {len(panel.dates)} bars: {t_gen:.2f} s "
        f"({per_big:.0f} ns per bar, {per_big / per_base:.2f}x baseline per bar)"
    )
    print(
        f"cold scan of {len(scan)} symbols (generates to the {big_rows(big, as_of)}-row "
        f"horizon first): {t_scan:.2f} s; warm scan {t_scan_warm * 1e3:.0f} ms"
    )
    print(f"fetch_ohlcv, full history: {t_fetch / len(symbols) * 1e3:.2f} ms per symbol")
    print(
        f"latency 20 ms x {len(few)} fetches: serial {t_serial:.2f} s, 16 threads "
        f"{t_pool:.2f} s ({t_serial / t_pool:.1f}x speed-up)"
    )
    return [
        Row("synthetic market, cold generation", dims(n_symbols, len(panel.dates), unit="bars"),
            t_gen, "default universe, scaled per bar", per_base * cells / 1e9,
            note=f"cold scan {t_scan:.2f} s, warm {t_scan_warm * 1e3:.0f} ms; fetch_ohlcv "
            f"{t_fetch / len(symbols) * 1e3:.2f} ms per symbol"),
        Row("provider latency overlapped (16 threads)", f"{len(few)} fetches × 20 ms", t_pool,
            "serial fetches", t_serial),
    ]


def big_rows(p: SyntheticProvider, as_of: pd.Timestamp) -> int:
    return len(p._panel(CRYPTO, as_of).dates)


if __name__ == "__main__":
    harness.main(rows, __doc__)
